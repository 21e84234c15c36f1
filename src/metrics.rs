//! The filter's counters and their names. Kong's Prometheus plugin exports each as
//! `pw_cloudrun_oidc_<name>`.

use crate::reject::{AuthError, DenyReason};

/// A counter the filter increments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests forwarded upstream.
    Allowed,
    /// Requests refused, by reason (see [`AuthError::metric_reason`]).
    Denied(DenyReason),
    /// Requests answered from the verified-token cache (no signature check).
    TokenCacheHits,
    /// JWKS or discovery fetches started.
    JwksFetches,
    /// JWKS or discovery fetches that failed (callout failure, non-200, unparsable).
    JwksFetchFailures,
    /// Google ID token mints started.
    GoogleTokenMints,
    /// Google ID token mints that failed.
    GoogleTokenMintFailures,
    /// Requests refused with 429 by any rate limit.
    RateLimited,
    /// Requests refused with 429 by the named limit (`rate_limits[].name`).
    RateLimitedBy(LimitName),
    /// Requests admitted without being counted against a rate limit (a full counter table, a
    /// CAS race lost every time, a host error): see the README's rate-limit faults.
    RateLimitUnmetered,
}

/// A rate limit's name in a metric (`[a-z0-9_]`, at most 32 bytes): inline, so that a
/// [`Metric`] stays `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitName {
    bytes: [u8; 32],
    len: u8,
}

impl LimitName {
    /// `None` when `name` is longer than 32 bytes.
    pub fn new(name: &str) -> Option<LimitName> {
        let len = u8::try_from(name.len()).ok().filter(|&n| n <= 32)?;
        let mut bytes = [0u8; 32];
        for (out, byte) in bytes.iter_mut().zip(name.bytes()) {
            *out = byte;
        }
        Some(LimitName { bytes, len })
    }

    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl From<AuthError> for Metric {
    fn from(error: AuthError) -> Metric {
        error
            .metric_reason()
            .map_or(Metric::RateLimited, Metric::Denied)
    }
}

impl Metric {
    /// The metric name given to `proxy_define_metric`.
    pub fn name(self) -> String {
        match self {
            Metric::Allowed => "allowed".to_string(),
            Metric::Denied(reason) => format!("denied_{}", reason.name()),
            Metric::TokenCacheHits => "token_cache_hits".to_string(),
            Metric::JwksFetches => "jwks_fetches".to_string(),
            Metric::JwksFetchFailures => "jwks_fetch_failures".to_string(),
            Metric::GoogleTokenMints => "google_token_mints".to_string(),
            Metric::GoogleTokenMintFailures => "google_token_mint_failures".to_string(),
            Metric::RateLimited => "rate_limited".to_string(),
            Metric::RateLimitedBy(name) => format!("rate_limited_{}", name.as_str()),
            Metric::RateLimitUnmetered => "rate_limit_unmetered".to_string(),
        }
    }

    /// Every counter but the per-limit ones ([`Metric::RateLimitedBy`], defined from the routes'
    /// configurations), in the order they are defined when the filter starts.
    pub fn all() -> impl Iterator<Item = Metric> {
        std::iter::successors(Some(Metric::Allowed), |m| m.next())
    }

    /// The counter after this one in [`Metric::all`]: an exhaustive match, so a new counter does
    /// not compile until it has a place in the chain.
    fn next(self) -> Option<Metric> {
        match self {
            Metric::Allowed => Some(Metric::TokenCacheHits),
            Metric::TokenCacheHits => Some(Metric::JwksFetches),
            Metric::JwksFetches => Some(Metric::JwksFetchFailures),
            Metric::JwksFetchFailures => Some(Metric::GoogleTokenMints),
            Metric::GoogleTokenMints => Some(Metric::GoogleTokenMintFailures),
            Metric::GoogleTokenMintFailures => Some(Metric::RateLimited),
            Metric::RateLimited => Some(Metric::RateLimitUnmetered),
            Metric::RateLimitUnmetered => DenyReason::all().next().map(Metric::Denied),
            Metric::RateLimitedBy(_) => None,
            Metric::Denied(reason) => reason.next().map(Metric::Denied),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_error_counts_under_a_defined_reason() {
        let defined: Vec<String> = Metric::all().map(Metric::name).collect();
        for e in [
            AuthError::MissingToken,
            AuthError::Expired,
            AuthError::WrongTokenType,
            AuthError::AmbiguousClaim,
            AuthError::RateLimited,
            AuthError::Internal,
        ] {
            assert!(defined.contains(&Metric::from(e).name()), "{e:?}");
        }
    }

    #[test]
    fn names_are_prometheus_safe() {
        for m in Metric::all() {
            let name = m.name();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }
}
