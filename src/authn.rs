//! The per-request flow: find the token, get keys, verify, apply rules, build the upstream header edits.
