//! `cargo fuzz run config`: see `fuzz/src/harness.rs` (`config`) for the input shape and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloudrun_oidc_fuzz::config(data));
