//! The fixed verification order: size → segments → header → `crit` → alg allowlist → issuer →
//! cheap claim refusals → key → signature → [`VerifiedToken`].

use crate::alg::Algorithm;

/// What one configured issuer accepts. Built by `config` from an `issuers[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRule {
    /// Compared byte for byte with the token's `iss`.
    pub issuer: String,
    /// Any-of against the token's `aud` (string or array). Never empty.
    pub audiences: Vec<String>,
    /// Algorithms accepted for this issuer. Never empty; never `none` or `HS*` (unrepresentable).
    pub algorithms: Vec<Algorithm>,
}

/// Route-wide limits applied before any key work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `max_token_bytes` (default 8192).
    pub max_token_bytes: usize,
    /// `clock_skew_seconds` (default 60), applied to `exp` and `nbf`.
    pub clock_skew_secs: i64,
}
