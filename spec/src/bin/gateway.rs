//! `gateway` binary (see spec/README.md).
fn main() {}
