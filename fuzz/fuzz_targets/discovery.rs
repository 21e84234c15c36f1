//! `cargo fuzz run discovery`: see `fuzz/src/harness.rs` (`discovery_doc`) for the input shape and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloudrun_oidc_fuzz::discovery_doc(data));
