//! `cargo fuzz run token`: see `fuzz/src/harness.rs` (`token`) for the input shape and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloudrun_oidc_fuzz::token(data));
