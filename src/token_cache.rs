//! Per-worker cache of verified tokens so a repeated token costs no signature check.
