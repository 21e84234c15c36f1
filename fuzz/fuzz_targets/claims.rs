//! `cargo fuzz run claims`: see `fuzz/src/harness.rs` (`claim_mapping`) for the input shape and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloudrun_oidc_fuzz::claim_mapping(data));
