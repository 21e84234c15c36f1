//! Fuzzing entry points for cloudrun_oidc; see `harness.rs` and `fuzz/README.md`.

mod harness;
pub use harness::*;
