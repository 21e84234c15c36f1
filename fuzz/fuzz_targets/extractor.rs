//! `cargo fuzz run extractor`: see `fuzz/src/harness.rs` (`extract`) for the input shape and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloudrun_oidc_fuzz::extract(data));
