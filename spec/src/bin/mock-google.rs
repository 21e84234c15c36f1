//! `mock-google` binary (see spec/README.md).
fn main() {}
