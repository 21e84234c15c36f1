//! A route as the request flow sees it, built once per root context from its configuration
//! (issuer rules, key sources, the Google token, owned headers, the verified-token cache), and
//! what one worker shares between its routes.

use super::limits::{RateKey, RouteLimit};
use super::HeaderEdit;
use crate::config::{FilterConfig, GoogleHeader, KeySource};
use crate::google::{GoogleRoute, GoogleTokens};
use crate::jose::b64;
use crate::jose::verifier::{IssuerRule, VerifiedToken};
use crate::keys::{FetchSettings, KeyCache, Origin, Source};
use crate::metrics::Metric;
use crate::ratelimit::{self, Caller};
use crate::reject::AuthError;
use crate::request::claims;
use crate::request::headers::OwnedHeaders;
use crate::request::policy;
use crate::request::token_cache::{
    TokenCache, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRY_BYTES,
};
use std::cell::RefCell;
use std::rc::Rc;

/// What a verified token earns on this route, kept in the verified-token cache.
#[derive(Debug)]
pub struct Grant {
    /// Headers from claims (`claims_to_headers`, `claims_header`).
    pub(super) edits: Vec<HeaderEdit>,
    /// The verifying key, so the entry dies when the key leaves the JWKS.
    key_thumbprint: [u8; 32],
    issuer_index: usize,
    /// `Bearer <token>` for `original_token_header`, rendered once per token.
    pub(super) forwarded_token: Option<Rc<str>>,
    /// The caller as each of the route's rate limits counts it, in their order.
    pub(super) rate_keys: Vec<RateKey>,
}

/// What one header edit costs beyond its name and value: two `Rc<str>` allocations (counts and
/// allocator headers) and its slot in the vector.
pub(super) const EDIT_OVERHEAD: usize = 64;

impl Grant {
    /// The heap bytes this grant holds: every header name and value it stores, the `Bearer`
    /// copy of the token, and their allocations' overhead.
    pub(super) fn held_bytes(&self) -> usize {
        let edits = self.edits.iter().fold(0usize, |sum, (name, value)| {
            sum.saturating_add(name.len() + value.len() + EDIT_OVERHEAD)
        });
        let forwarded = self
            .forwarded_token
            .as_ref()
            .map_or(0, |value| value.len() + EDIT_OVERHEAD);
        let rate_keys = self.rate_keys.iter().fold(0usize, |sum, key| {
            sum.saturating_add(key.held_bytes() + 3 * EDIT_OVERHEAD)
        });
        edits.saturating_add(forwarded).saturating_add(rate_keys)
    }
}

/// One route's filter, built once per root context from its configuration.
pub struct Route {
    /// The configuration, except `google_id_token`, which moved into `google`.
    pub config: FilterConfig,
    pub(super) rules: Vec<IssuerRule>,
    pub(super) sources: Vec<Source>,
    pub(super) fetch: FetchSettings,
    pub(super) google: Option<GoogleRoute>,
    pub(super) owned: OwnedHeaders,
    pub(super) original_token_header: Option<Rc<str>>,
    /// Where the Google token goes (`None` without `google_id_token`).
    pub(super) google_header: Option<Rc<str>>,
    /// `rate_limits`, ready to count.
    pub(super) limits: Vec<RouteLimit>,
    /// The `RateLimit-Policy` value of the route's limits, rendered once.
    pub(super) limit_policy: Rc<str>,
    cache: RefCell<TokenCache<Rc<Grant>>>,
}

/// A root context's configuration: a route, or why every request is refused.
pub enum RouteState {
    Ready(Box<Route>),
    /// The log line naming the bad field (never secret material).
    Invalid(String),
}

impl RouteState {
    /// Parses `config` (the JSON Kong hands to `on_configure`). Never fails: a bad config becomes
    /// [`RouteState::Invalid`].
    pub fn from_config(config: &[u8]) -> RouteState {
        let config = match FilterConfig::from_json(config) {
            Ok(config) => config,
            Err(e) => return RouteState::Invalid(e.to_string()),
        };
        RouteState::Ready(Box::new(Route::new(config)))
    }

    /// Every header the filter owns on this route (a client copy refuses the request).
    pub fn owned_headers(&self) -> &[String] {
        match self {
            RouteState::Ready(route) => route.owned.names(),
            RouteState::Invalid(_) => &[],
        }
    }
}

impl Route {
    fn new(mut config: FilterConfig) -> Route {
        let namespace = config.shm_namespace.clone();
        let mut sources = Vec::with_capacity(config.issuers.len());
        for issuer in &config.issuers {
            let name = &issuer.rule.issuer;
            let upstream = issuer.callout_upstream.clone();
            let origin = match &issuer.keys {
                KeySource::Inline(set) => Origin::Inline(Rc::clone(set)),
                KeySource::JwksUrl(url) => Origin::JwksUrl {
                    url: url.clone(),
                    upstream,
                },
                KeySource::Discovery(url) => Origin::Discovery {
                    url: url.clone(),
                    upstream,
                },
            };
            sources.push(Source::fetched(&namespace, name, origin));
        }
        // Owned headers include the Google token's: read them before it moves out.
        let owned = OwnedHeaders::new(config.owned_headers());
        let google = config.google_id_token.take();
        let google_header = google.as_ref().map(|g| g.header);
        Route {
            rules: config.issuers.iter().map(|i| i.rule.clone()).collect(),
            fetch: FetchSettings::new(config.jwks_cache, config.callout_timeout_ms),
            google: google.map(|g| GoogleRoute::new(&namespace, g, config.callout_timeout_ms)),
            owned,
            // The caller's token moves aside only when the Google token takes its header.
            original_token_header: config
                .original_token_header
                .as_ref()
                .filter(|_| google_header == Some(GoogleHeader::Authorization))
                .map(|h| Rc::from(h.as_str())),
            google_header: google_header.map(|h| Rc::from(h.name())),
            limits: config
                .rate_limits
                .iter()
                .map(|limit| RouteLimit::new(limit, &namespace))
                .collect(),
            limit_policy: Rc::from(ratelimit::headers::policy(&config.rate_limits)),
            sources,
            cache: RefCell::new(TokenCache::new(
                DEFAULT_MAX_ENTRIES,
                DEFAULT_MAX_BYTES,
                DEFAULT_MAX_ENTRY_BYTES,
            )),
            config,
        }
    }

    /// Counters this route's configuration adds (one per rate limit).
    pub fn metrics(&self) -> impl Iterator<Item = Metric> + '_ {
        self.limits.iter().filter_map(|limit| limit.metric)
    }

    /// Whether the Google token takes the caller's `Authorization` header.
    pub(super) fn replaces_authorization(&self) -> bool {
        self.google_header.as_deref() == Some(GoogleHeader::Authorization.name())
    }

    /// A cached grant for `token` whose key is still in the worker's key set.
    pub(super) fn cached(&self, token: &str, now: u64, keys: &KeyCache) -> Option<Rc<Grant>> {
        let mut cache = self.cache.try_borrow_mut().ok()?;
        let grant = cache.get(token.as_bytes(), now)?.clone();
        let source = self.sources.get(grant.issuer_index)?;
        keys.current(source, &self.fetch.policy, now)
            .is_some_and(|set| set.contains_thumbprint(&grant.key_thumbprint))
            .then_some(grant)
    }

    /// Route rules and claim mapping for a verified token.
    pub(super) fn grant_for(&self, verified: &VerifiedToken) -> Result<Grant, AuthError> {
        let config = &self.config;
        policy::check(
            &verified.claims,
            &config.required_scopes,
            &config.required_claims,
        )?;
        let mut edits: Vec<HeaderEdit> =
            claims::map_claims(&verified.claims, &config.claims_to_headers)?
                .into_iter()
                .map(|(name, value)| (Rc::from(name), Rc::from(value)))
                .collect();
        if let Some(header) = &config.claims_header {
            edits.push((
                Rc::from(header.as_str()),
                Rc::from(b64::encode(&verified.payload_json)),
            ));
        }
        Ok(Grant {
            edits,
            key_thumbprint: verified.key_thumbprint,
            issuer_index: verified.issuer_index,
            forwarded_token: None,
            rate_keys: self.rate_keys(verified)?,
        })
    }

    /// The caller of each rate limit: a token without a limit's key claim is refused (403).
    fn rate_keys(&self, verified: &VerifiedToken) -> Result<Vec<RateKey>, AuthError> {
        self.limits
            .iter()
            .map(|limit| {
                let caller =
                    Caller::of(&limit.limit, &verified.claims).ok_or(AuthError::NoRateLimitKey)?;
                let slots = limit.table.slot_keys(&caller);
                Ok(RateKey { caller, slots })
            })
            .collect()
    }

    /// Caches `grant` for `token` unless it is too large to (the request is served all the same).
    pub(super) fn remember(&self, token: &str, grant: &Rc<Grant>, exp: i64, now: u64) {
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            let expires_at = u64::try_from(exp).unwrap_or(0);
            let held = grant.held_bytes();
            if !cache.insert(token.as_bytes(), grant.clone(), held, expires_at, now) {
                log::debug!("verified token not cached (within skew of exp, or {held} bytes held)");
            }
        }
    }

    /// Every cached (token, grant), for tests that account for the cache's bytes on their own.
    #[cfg(test)]
    pub(super) fn cached_grants(&self) -> Vec<(Vec<u8>, Rc<Grant>)> {
        self.cache
            .borrow()
            .entries()
            .map(|(token, grant)| (token.to_vec(), grant.clone()))
            .collect()
    }
}

/// What one wasm instance (one Kong worker) shares between all its routes.
pub struct Worker {
    pub keys: KeyCache,
    pub google: GoogleTokens,
    /// Identifies this worker as a lease holder.
    pub holder: u64,
    /// When a request was last logged as admitted uncounted by a rate limit (ms).
    pub rate_limit_fault_logged_ms: u64,
}

impl Worker {
    pub fn new(holder: u64) -> Worker {
        Worker {
            keys: KeyCache::new(holder),
            google: GoogleTokens::new(holder),
            holder,
            rate_limit_fault_logged_ms: 0,
        }
    }
}
