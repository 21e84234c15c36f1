//! `mock-idp` binary (see spec/README.md).
fn main() {}
