//! `cargo fuzz run jwks`: see `fuzz/src/harness.rs` (`jwks`) for the input shape and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloudrun_oidc_fuzz::jwks(data));
