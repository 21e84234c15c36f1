//! `cloudrun` binary (see spec/README.md).
fn main() -> std::process::ExitCode {
    cloudrun_spec::mocks::cloudrun::main()
}
