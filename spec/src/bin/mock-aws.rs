//! `mock-aws` binary (see spec/README.md).
fn main() -> std::process::ExitCode {
    cloudrun_spec::mocks::aws::main()
}
