//! The IETF rate-limit header fields (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy`
//! lists the route's limits, `RateLimit` what is left of each for this caller. Names are
//! `[a-z0-9_]` (checked with the configuration), so they are valid structured-field strings.

use super::RateLimit;
use std::fmt::Write;

pub const POLICY: &str = "ratelimit-policy";
pub const STATE: &str = "ratelimit";
pub const RETRY_AFTER: &str = "retry-after";

/// `"partners_minute";q=5;w=60, "partners_day";q=10000;w=86400`: the same for every request of
/// the route, rendered once.
pub fn policy(limits: &[RateLimit]) -> String {
    let mut out = String::new();
    for (i, limit) in limits.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "\"{}\";q={};w={}",
            limit.name,
            limit.requests,
            limit.window.secs()
        );
    }
    out
}

/// Appends one limit's item to a `RateLimit` value: `"name";r=<remaining>;t=<seconds to reset>`.
pub fn push_state(out: &mut String, name: &str, remaining: u64, reset_after: u64) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    let _ = write!(out, "\"{name}\";r={remaining};t={reset_after}");
}
