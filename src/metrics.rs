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
}

impl From<AuthError> for Metric {
    fn from(error: AuthError) -> Metric {
        Metric::Denied(error.metric_reason())
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
        }
    }

    /// Every counter, in the order they are defined when the filter starts.
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
            Metric::GoogleTokenMintFailures => DenyReason::all().next().map(Metric::Denied),
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
