//! When cached keys are fresh, due for refresh, stale-but-usable or unusable; refetch cooldowns.
//!
//! Pure policy with an injected clock: what to do with a cached JWKS is a function of when it was
//! fetched, the route's `jwks_cache` settings and `now`. The shared-data entry format lives here
//! too, so that every worker reads what another wrote.

use crate::host::shared::layout;

/// A refresh becomes due at this fraction of `ttl_seconds` (per mille), leaving the rest of the
/// TTL for a background refresh to land before anyone sees stale keys.
const REFRESH_AT_PER_MILLE: u64 = 800;
/// After a failed fetch, requests do not start another cold fetch for this long (seconds).
pub const FAILURE_BACKOFF_SECS: u64 = 5;
/// A JWKS fetch from a `jwks_uri` found by an earlier discovery that fails sends the fetch back
/// to discovery at most this often per source across workers (seconds): the failure back-off.
pub const REDISCOVERY_EVERY_SECS: u64 = FAILURE_BACKOFF_SECS;
/// Concurrent cold fetches one worker may have in flight for one issuer.
pub const MAX_COLD_FETCHES_PER_WORKER: usize = 4;

/// The route's `jwks_cache` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Keys are fresh this long after a fetch. Default 600.
    pub ttl_secs: u64,
    /// After the TTL, keys stay usable this long, but only while refetches fail. Default 86400.
    pub max_stale_secs: u64,
    /// At most one refetch per issuer for an unknown `kid` in this window. Default 30.
    pub unknown_kid_cooldown_secs: u64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            ttl_secs: 600,
            max_stale_secs: 86_400,
            unknown_kid_cooldown_secs: 30,
        }
    }
}

/// How usable a cached key set is right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Use it; nothing to do.
    Fresh,
    /// Use it; a background refresh should start (tick) if nobody is on it.
    RefreshDue,
    /// Past the TTL: use it only because refreshing has not succeeded yet; the request path
    /// tries a refresh itself when it can take the lease.
    Stale,
    /// Too old to trust: fetch before verifying anything.
    Unusable,
}

impl CachePolicy {
    /// Classifies keys fetched at `fetched_at` (seconds) at time `now` (seconds).
    pub fn freshness(&self, fetched_at: u64, now: u64) -> Freshness {
        let age = now.saturating_sub(fetched_at);
        if age >= self.ttl_secs.saturating_add(self.max_stale_secs) {
            Freshness::Unusable
        } else if age >= self.ttl_secs {
            Freshness::Stale
        } else if age.saturating_mul(1000) >= self.ttl_secs.saturating_mul(REFRESH_AT_PER_MILLE) {
            Freshness::RefreshDue
        } else {
            Freshness::Fresh
        }
    }

    /// The unknown-`kid` cooldown as a lease duration.
    pub fn unknown_kid_cooldown_ms(&self) -> u64 {
        self.unknown_kid_cooldown_secs.saturating_mul(1000)
    }
}

/// A JWKS as shared between workers: raw JSON (each worker parses it once per version), where it
/// came from, and when it was fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksEntry {
    /// Seconds since the epoch when the JWKS was fetched.
    pub fetched_at: u64,
    /// The URL the keys came from (from discovery or `jwks_url`), kept for refreshes.
    pub jwks_uri: String,
    /// The JWKS document as received (already checked to contain a usable key).
    pub jwks_json: Vec<u8>,
}

impl JwksEntry {
    /// Payload bytes for [`crate::host::shared::write`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.jwks_uri.len() + self.jwks_json.len());
        layout::put_u64(&mut out, self.fetched_at);
        layout::put_bytes(&mut out, self.jwks_uri.as_bytes());
        layout::put_bytes(&mut out, &self.jwks_json);
        out
    }

    /// Reads a payload written by [`JwksEntry::encode`]; `None` for anything else.
    pub fn decode(payload: &[u8]) -> Option<JwksEntry> {
        let mut input = payload;
        let fetched_at = layout::take_u64(&mut input)?;
        let jwks_uri = String::from_utf8(layout::take_bytes(&mut input)?.to_vec()).ok()?;
        let jwks_json = layout::take_bytes(&mut input)?.to_vec();
        input.is_empty().then_some(JwksEntry {
            fetched_at,
            jwks_uri,
            jwks_json,
        })
    }
}

/// Shared-data keys for one key source (`source` is its id, [`crate::keys::Source::id`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSharedDataKeys {
    /// The cached JWKS entry.
    pub entry: String,
    /// The lease held while one worker fetches.
    pub fetch_lease: String,
    /// Rate limit for unknown-`kid` refetches.
    pub unknown_kid: String,
    /// Rate limit for cold fetches after a failure.
    pub failure_backoff: String,
    /// Rate limit for rediscovering a `jwks_uri` that stopped answering.
    pub rediscovery: String,
}

impl JwksSharedDataKeys {
    /// The keys of source `source` (its id) under `namespace`. Full keys, however long: the
    /// host gets a bounded form of each ([`crate::host::shared::host_key`]).
    pub fn new(namespace: &str, source: &str) -> JwksSharedDataKeys {
        JwksSharedDataKeys {
            entry: format!("{namespace}/jwks/{source}"),
            fetch_lease: format!("{namespace}/jwks-lease/{source}"),
            unknown_kid: format!("{namespace}/jwks-kid/{source}"),
            failure_backoff: format!("{namespace}/jwks-fail/{source}"),
            rediscovery: format!("{namespace}/jwks-rediscover/{source}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CachePolicy = CachePolicy {
        ttl_secs: 600,
        max_stale_secs: 3_600,
        unknown_kid_cooldown_secs: 30,
    };

    #[test]
    fn keys_are_fresh_until_refresh_point() {
        assert_eq!(POLICY.freshness(1_000, 1_000), Freshness::Fresh);
        assert_eq!(POLICY.freshness(1_000, 1_479), Freshness::Fresh);
        assert_eq!(POLICY.freshness(1_000, 1_480), Freshness::RefreshDue);
        assert_eq!(POLICY.freshness(1_000, 1_599), Freshness::RefreshDue);
    }

    #[test]
    fn keys_past_ttl_are_stale_until_max_stale() {
        assert_eq!(POLICY.freshness(1_000, 1_600), Freshness::Stale);
        assert_eq!(POLICY.freshness(1_000, 5_199), Freshness::Stale);
        assert_eq!(POLICY.freshness(1_000, 5_200), Freshness::Unusable);
    }

    #[test]
    fn clock_going_backwards_counts_as_fresh() {
        assert_eq!(POLICY.freshness(2_000, 1_000), Freshness::Fresh);
    }

    #[test]
    fn zero_max_stale_means_never_stale() {
        let p = CachePolicy {
            max_stale_secs: 0,
            ..POLICY
        };
        assert_eq!(p.freshness(0, 599), Freshness::RefreshDue);
        assert_eq!(p.freshness(0, 600), Freshness::Unusable);
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let p = CachePolicy {
            ttl_secs: u64::MAX,
            max_stale_secs: u64::MAX,
            ..POLICY
        };
        assert_eq!(p.freshness(0, u64::MAX - 1), Freshness::RefreshDue);
    }

    #[test]
    fn entry_round_trips_and_refuses_trailing_bytes() {
        let e = JwksEntry {
            fetched_at: 77,
            jwks_uri: "https://idp/jwks".into(),
            jwks_json: b"{\"keys\":[]}".to_vec(),
        };
        let bytes = e.encode();
        assert_eq!(JwksEntry::decode(&bytes), Some(e));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(JwksEntry::decode(&longer), None);
        assert_eq!(JwksEntry::decode(&bytes[..bytes.len() - 1]), None);
    }
}
