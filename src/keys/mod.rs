//! Where an issuer's verification keys come from, fastest first: the worker's parsed copy, the
//! JWKS other workers stored in shared data, then a fetch (discovery → JWKS) through callouts.
//! The fetch is a small state machine driven both by paused requests and by the root tick.
//!
//! Its parts: [`discovery`] reads an OIDC discovery document; [`cache`] holds the JWKS entry
//! other workers read, its shared-data key names, and the freshness policy.

pub mod cache;
pub mod discovery;

use crate::host::shared::{self, layout, Lease, Slot, Width};
use crate::host::{CalloutRequest, CalloutResponse, CalloutToken, Host};
use crate::http::url::HttpUrl;
use crate::jose::jwk_set::KeySet;
use crate::keys::cache::{
    CachePolicy, Freshness, JwksEntry, JwksSharedDataKeys, FAILURE_BACKOFF_SECS,
    MAX_COLD_FETCHES_PER_WORKER, REDISCOVERY_EVERY_SECS,
};
use crate::metrics::Metric;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::rc::Rc;

/// How often (ms) a worker looks at shared data for keys another worker fetched.
const SHARED_RECHECK_MS: u64 = 1_000;

/// Where one issuer's keys come from.
#[derive(Debug)]
pub struct Source {
    /// Identifies the source across routes and workers by everything that decides which keys
    /// it yields: the JWKS or discovery URL, where its callouts go (`callout_host`), and for
    /// discovery the issuer its document was checked against. Keys one route fetched never
    /// serve a route that would have fetched elsewhere, whoever fetched them first.
    pub id: String,
    /// The issuer, for discovery checks and logs.
    pub issuer: String,
    pub origin: Origin,
    /// Shared-data keys of this source.
    pub shared: JwksSharedDataKeys,
}

/// The three ways keys are configured.
#[derive(Debug)]
pub enum Origin {
    /// `jwks` in the config: nothing is fetched.
    Inline(Rc<KeySet>),
    /// `jwks_url`.
    JwksUrl {
        url: HttpUrl,
        upstream: Option<String>,
    },
    /// `discovery_url` (default `<issuer>/.well-known/openid-configuration`).
    Discovery {
        url: HttpUrl,
        upstream: Option<String>,
    },
}

impl Source {
    /// A fetched source under `namespace`. Its id is `<kind> <url> <route>` (+ ` <issuer>` for
    /// discovery), `<route>` being `via <callout_host>` or `direct`: URLs and `host[:port]` have
    /// no spaces, so the issuer, last, is unambiguous. Ids of earlier versions (`jwks:<url>`,
    /// `discovery:<url> <issuer>`) have a `:` after the kind, so no id equals one of them.
    pub fn fetched(namespace: &str, issuer: &str, origin: Origin) -> Source {
        let route = |upstream: &Option<String>| match upstream {
            Some(host) => format!("via {host}"),
            None => "direct".to_string(),
        };
        let id = match &origin {
            Origin::Inline(_) => format!("inline {issuer}"),
            Origin::JwksUrl { url, upstream } => format!("jwks {url} {}", route(upstream)),
            Origin::Discovery { url, upstream } => {
                format!("discovery {url} {} {issuer}", route(upstream))
            }
        };
        Source {
            shared: JwksSharedDataKeys::new(namespace, &id),
            id,
            issuer: issuer.to_string(),
            origin,
        }
    }

    /// The key of this source in the worker's maps: its namespaced shared-data key, so the
    /// worker's copy and the shared one are always the same source's.
    fn cache_key(&self) -> &str {
        &self.shared.entry
    }

    fn upstream_for(&self, url: &HttpUrl) -> String {
        match &self.origin {
            Origin::JwksUrl {
                upstream: Some(u), ..
            }
            | Origin::Discovery {
                upstream: Some(u), ..
            } => u.clone(),
            _ => url.dispatch_target(),
        }
    }
}

/// A parsed key set as one worker holds it.
#[derive(Debug)]
struct WorkerEntry {
    set: Rc<KeySet>,
    fetched_at: u64,
    /// SHA-256 of the JWKS document, to tell two fetches of the same second apart.
    digest: [u8; 32],
    jwks_uri: String,
    checked_at_ms: u64,
}

fn digest(jwks_json: &[u8]) -> [u8; 32] {
    Sha256::digest(jwks_json).into()
}

/// How one route fetches and keeps keys: its configuration, read once.
#[derive(Clone, Copy, Debug)]
pub struct FetchSettings {
    pub policy: CachePolicy,
    pub timeout_ms: u32,
    /// How long a fetch lease lasts: discovery and JWKS round trips, plus slack.
    pub lease_ms: u64,
}

impl FetchSettings {
    pub fn new(policy: CachePolicy, timeout_ms: u32) -> FetchSettings {
        FetchSettings {
            policy,
            timeout_ms,
            lease_ms: u64::from(timeout_ms)
                .saturating_mul(2)
                .saturating_add(1_000),
        }
    }
}

/// Whether a lookup may still start a fetch: a request fetches at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchBudget {
    Available,
    /// Keys were fetched (or a fetch failed) for this request already: use what is usable.
    Spent,
}

/// What kind of fetch, which decides its bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchKind {
    /// No usable keys: counts against the per-worker cap of cold fetches, and its failure
    /// starts the shared back-off.
    Cold,
    /// A refresh under the shared fetch lease, released after success.
    Leased,
    /// A refresh without a lease (shared data unavailable, or an unknown `kid`'s refetch,
    /// which holds its own cooldown lease).
    Unleased,
}

/// What a request or the tick may do with a source's keys right now.
#[derive(Debug)]
pub enum Keys {
    /// Verify with these.
    Ready(Rc<KeySet>),
    /// Fetch first. `fallback` are stale keys to use if the fetch fails.
    Fetch {
        fallback: Option<Rc<KeySet>>,
        kind: FetchKind,
    },
    /// Nothing usable and no fetch allowed now (back-off after a failure, or too many cold
    /// fetches in flight): the request gets 503.
    Unavailable,
}

/// The document a fetch gets next: discovery, or the JWKS at a known `jwks_uri`. The callout
/// token travels separately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchTarget {
    Discovery,
    Jwks { jwks_uri: String },
}

/// One fetch in flight, owned by the request or root context that started it.
#[derive(Debug)]
pub struct Fetch {
    pub token: CalloutToken,
    pub target: FetchTarget,
    kind: FetchKind,
    started_ms: u64,
    /// This fetch ran discovery itself: a failing `jwks_uri` is then not rediscovered.
    discovered: bool,
}

/// What a callout answer did to a fetch.
#[derive(Debug)]
pub enum Progress {
    /// Discovery done, JWKS next: the fetch waits for [`KeyCache::dispatch_next`].
    Next,
    /// Keys stored in the worker and shared data.
    Done(Rc<KeySet>),
    /// The fetch failed; the reason has been logged and counted.
    Failed,
}

/// The worker's key cache: parsed key sets by source, and cold fetches in flight.
#[derive(Debug)]
pub struct KeyCache {
    entries: HashMap<String, WorkerEntry>,
    cold_started_ms: HashMap<String, Vec<u64>>,
    /// When a cold fetch of a source last failed in this worker (seconds): the back-off holds
    /// even when shared data did not take it.
    failed_at: HashMap<String, u64>,
    /// This worker as a holder of shared leases.
    holder: u64,
}

impl KeyCache {
    pub fn new(holder: u64) -> KeyCache {
        KeyCache {
            entries: HashMap::new(),
            cold_started_ms: HashMap::new(),
            failed_at: HashMap::new(),
            holder,
        }
    }

    /// The worker's parsed keys for `source` when they are still usable, without touching the
    /// host beyond the clock: the hot path of the verified-token cache.
    pub fn current<'a>(
        &'a self,
        source: &'a Source,
        policy: &CachePolicy,
        now: u64,
    ) -> Option<&'a KeySet> {
        if let Origin::Inline(set) = &source.origin {
            return Some(set);
        }
        let entry = self.entries.get(source.cache_key())?;
        (policy.freshness(entry.fetched_at, now) != Freshness::Unusable).then_some(&*entry.set)
    }

    /// Decides how a request gets keys for `source`. With its budget spent (the request
    /// fetched once already), whatever is usable is used and nothing else is tried.
    pub fn lookup(
        &mut self,
        host: &mut dyn Host,
        source: &Source,
        settings: &FetchSettings,
        budget: FetchBudget,
    ) -> Keys {
        if let Origin::Inline(set) = &source.origin {
            return Keys::Ready(set.clone());
        }
        let now = host.now_secs();
        let now_ms = host.now_ms();
        let recent = self
            .entries
            .get(source.cache_key())
            .is_some_and(|e| now_ms.saturating_sub(e.checked_at_ms) < SHARED_RECHECK_MS);
        if !recent {
            self.sync_from_shared(host, source);
        }
        let current = self
            .entries
            .get(source.cache_key())
            .map(|e| (e.set.clone(), settings.policy.freshness(e.fetched_at, now)));
        let spent = budget == FetchBudget::Spent;
        match current {
            Some((set, Freshness::Fresh | Freshness::RefreshDue)) => Keys::Ready(set),
            Some((set, Freshness::Stale)) if spent => Keys::Ready(set),
            Some((set, Freshness::Stale)) => {
                let lease = &source.shared.fetch_lease;
                let kind = match shared::try_lease(host, lease, self.holder, settings.lease_ms) {
                    Ok(Lease::Acquired) => FetchKind::Leased,
                    Ok(Lease::Uncoordinated) => FetchKind::Unleased,
                    Ok(Lease::Held) | Err(_) => return Keys::Ready(set),
                };
                Keys::Fetch {
                    fallback: Some(set),
                    kind,
                }
            }
            _ if spent => Keys::Unavailable,
            _ => self.cold(host, source, settings.lease_ms),
        }
    }

    /// No usable keys: fetch unless an earlier failure is recent or too many are in flight.
    fn cold(&mut self, host: &mut dyn Host, source: &Source, lease_ms: u64) -> Keys {
        if self.failed_recently(host, source) {
            return Keys::Unavailable;
        }
        let now_ms = host.now_ms();
        let in_flight = self
            .cold_started_ms
            .entry(source.cache_key().to_string())
            .or_default();
        // A fetch whose request vanished never reports back: forget it after its lease time.
        in_flight.retain(|started| now_ms.saturating_sub(*started) < lease_ms);
        if in_flight.len() >= MAX_COLD_FETCHES_PER_WORKER {
            return Keys::Unavailable;
        }
        Keys::Fetch {
            fallback: None,
            kind: FetchKind::Cold,
        }
    }

    /// Starts fetching keys for `source`. Known `jwks_uri`s (from an earlier discovery) skip
    /// discovery. Returns `None` (logged, counted) when the host refuses the callout.
    pub fn begin(
        &mut self,
        host: &mut dyn Host,
        source: &Source,
        keys: &Keys,
        settings: &FetchSettings,
    ) -> Option<Fetch> {
        let kind = match keys {
            Keys::Fetch { kind, .. } => *kind,
            _ => FetchKind::Unleased,
        };
        let target = match &source.origin {
            Origin::Inline(_) => return None,
            Origin::JwksUrl { url, .. } => FetchTarget::Jwks {
                jwks_uri: url.to_string(),
            },
            // Refreshing keys found by discovery reuses their `jwks_uri`; a cold fetch rediscovers.
            Origin::Discovery { .. } => match (keys, self.entries.get(source.cache_key())) {
                (
                    Keys::Fetch {
                        fallback: Some(_), ..
                    },
                    Some(entry),
                ) if !entry.jwks_uri.is_empty() => FetchTarget::Jwks {
                    jwks_uri: entry.jwks_uri.clone(),
                },
                _ => FetchTarget::Discovery,
            },
        };
        host.count(Metric::JwksFetches);
        let started_ms = host.now_ms();
        let token = match self.dispatch(host, source, &target, settings.timeout_ms) {
            Ok(token) => token,
            Err(reason) => {
                self.fail(host, source, kind, &reason);
                return None;
            }
        };
        if kind == FetchKind::Cold {
            self.cold_started_ms
                .entry(source.cache_key().to_string())
                .or_default()
                .push(started_ms);
        }
        Some(Fetch {
            token,
            target,
            kind,
            started_ms,
            discovered: false,
        })
    }

    /// Feeds a callout answer to `fetch`. On `Next`, `fetch` has its next target chosen but no
    /// callout yet: the caller starts it with [`KeyCache::dispatch_next`] when its context may
    /// (a request at once; the root context only from its next tick, see `authn::RootJobs`).
    pub fn advance(
        &mut self,
        host: &mut dyn Host,
        source: &Source,
        fetch: &mut Fetch,
        response: &CalloutResponse,
    ) -> Progress {
        let result = match &fetch.target {
            FetchTarget::Discovery => self.after_discovery(source, fetch, response),
            FetchTarget::Jwks { jwks_uri } => {
                let jwks_uri = jwks_uri.clone();
                self.after_jwks(host, source, &jwks_uri, response)
            }
        };
        let progress = match result {
            Ok(progress) => progress,
            Err(reason) if self.rediscover(host, source, fetch, &reason) => Progress::Next,
            Err(reason) => {
                self.fail(host, source, fetch.kind, &reason);
                Progress::Failed
            }
        };
        if let Progress::Done(_) = progress {
            self.release_lease(host, source, fetch);
        }
        if !matches!(progress, Progress::Next) {
            self.end_cold(source, fetch);
        }
        progress
    }

    /// Starts the callout of `fetch`'s current target (after [`Progress::Next`]). `false`: the
    /// host refused it; the fetch has failed and is finished (logged, counted).
    pub fn dispatch_next(
        &mut self,
        host: &mut dyn Host,
        source: &Source,
        fetch: &mut Fetch,
        settings: &FetchSettings,
    ) -> bool {
        match self.dispatch(host, source, &fetch.target, settings.timeout_ms) {
            Ok(token) => {
                fetch.token = token;
                true
            }
            Err(reason) => {
                self.fail(host, source, fetch.kind, &reason);
                self.end_cold(source, fetch);
                false
            }
        }
    }

    fn after_discovery(
        &mut self,
        source: &Source,
        fetch: &mut Fetch,
        response: &CalloutResponse,
    ) -> Result<Progress, String> {
        let body = response.ok_body().map_err(|e| format!("discovery: {e}"))?;
        let jwks_uri = crate::keys::discovery::jwks_uri(body, &source.issuer)
            .map_err(|e| format!("discovery: {e}"))?;
        fetch.target = FetchTarget::Jwks {
            jwks_uri: jwks_uri.to_string(),
        };
        fetch.discovered = true;
        Ok(Progress::Next)
    }

    /// After a failed JWKS fetch from a `jwks_uri` an earlier discovery gave (the IdP may have
    /// moved its keys), sends `fetch` back to discovery. At most once per
    /// [`REDISCOVERY_EVERY_SECS`] per source across workers (a lease left to run out). `true`:
    /// the fetch's next target is discovery (the failure was logged and counted); like any
    /// [`Progress::Next`], its callout starts through [`KeyCache::dispatch_next`].
    fn rediscover(
        &mut self,
        host: &mut dyn Host,
        source: &Source,
        fetch: &mut Fetch,
        reason: &str,
    ) -> bool {
        let known_uri = matches!(fetch.target, FetchTarget::Jwks { .. }) && !fetch.discovered;
        if !known_uri || !matches!(source.origin, Origin::Discovery { .. }) {
            return false;
        }
        let every_ms = REDISCOVERY_EVERY_SECS.saturating_mul(1000);
        if !matches!(
            shared::try_lease(host, &source.shared.rediscovery, self.holder, every_ms),
            Ok(Lease::Acquired | Lease::Uncoordinated)
        ) {
            return false;
        }
        host.count(Metric::JwksFetchFailures);
        log::warn!(
            "fetching keys for issuer {} failed: {reason}; discovering its jwks_uri again",
            source.issuer
        );
        fetch.target = FetchTarget::Discovery;
        true
    }

    fn after_jwks(
        &mut self,
        host: &mut dyn Host,
        source: &Source,
        jwks_uri: &str,
        response: &CalloutResponse,
    ) -> Result<Progress, String> {
        let body = response.ok_body().map_err(|e| format!("jwks: {e}"))?;
        let set = Rc::new(KeySet::parse(body).map_err(|e| format!("jwks: {e}"))?);
        let now = host.now_secs();
        // The worker keeps the keys first: whatever happens to the shared copy, they are used.
        self.entries.insert(
            source.cache_key().to_string(),
            WorkerEntry {
                set: set.clone(),
                fetched_at: now,
                digest: digest(body),
                jwks_uri: jwks_uri.to_string(),
                checked_at_ms: host.now_ms(),
            },
        );
        self.failed_at.remove(source.cache_key());
        log::info!(
            "fetched {} keys for issuer {} from {}",
            set.len(),
            source.issuer,
            jwks_uri
        );
        share_jwks(host, source, now, jwks_uri, body);
        Ok(Progress::Done(set))
    }

    fn dispatch(
        &self,
        host: &mut dyn Host,
        source: &Source,
        target: &FetchTarget,
        timeout_ms: u32,
    ) -> Result<CalloutToken, String> {
        let url = match (target, &source.origin) {
            (FetchTarget::Discovery, Origin::Discovery { url, .. }) => url.clone(),
            (FetchTarget::Jwks { jwks_uri }, _) => {
                HttpUrl::parse(jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?
            }
            _ => return Err("no URL to fetch".to_string()),
        };
        let request = get_request(&url, source.upstream_for(&url), timeout_ms);
        host.dispatch(&request)
            .map_err(|e| format!("dispatch_http_call refused: {}", e.0))
    }

    /// Logs and counts a failed fetch; cold failures start the back-off, in this worker first
    /// (it holds whether or not shared data takes the write), then for the other workers.
    fn fail(&mut self, host: &mut dyn Host, source: &Source, kind: FetchKind, reason: &str) {
        host.count(Metric::JwksFetchFailures);
        log::warn!(
            "fetching keys for issuer {} failed: {reason}",
            source.issuer
        );
        if kind == FetchKind::Cold {
            let now = host.now_secs();
            self.failed_at.insert(source.cache_key().to_string(), now);
            let mut payload = Vec::with_capacity(8);
            layout::put_u64(&mut payload, now);
            let _ = shared::overwrite(host, &source.shared.failure_backoff, &payload, Width::Exact);
        }
    }

    /// Whether a cold fetch for `source` failed less than [`FAILURE_BACKOFF_SECS`] ago, in this
    /// worker or (as shared data says) in another.
    fn failed_recently(&self, host: &dyn Host, source: &Source) -> bool {
        let now = host.now_secs();
        let recent = |at: u64| now.saturating_sub(at) < FAILURE_BACKOFF_SECS;
        self.failed_at
            .get(source.cache_key())
            .is_some_and(|at| recent(*at))
            || failed_recently_in_shared(host, source, recent)
    }

    /// A finished cold fetch frees its place under the per-worker cap.
    fn end_cold(&mut self, source: &Source, fetch: &Fetch) {
        if fetch.kind != FetchKind::Cold {
            return;
        }
        if let Some(started) = self.cold_started_ms.get_mut(source.cache_key()) {
            if let Some(i) = started.iter().position(|s| *s == fetch.started_ms) {
                started.swap_remove(i);
            }
        }
    }

    /// Releases a successful fetch's lease. After a failure the lease runs out by itself,
    /// which spaces out retries while the IdP is down.
    fn release_lease(&self, host: &mut dyn Host, source: &Source, fetch: &Fetch) {
        if fetch.kind == FetchKind::Leased {
            let _ = shared::release_lease(host, &source.shared.fetch_lease, self.holder);
        }
    }

    /// Adopts keys another worker stored when they are newer than ours.
    /// The shared entry replaces ours when it was fetched later, or in the same second with
    /// other content: the shared copy is the last one written, and a key retired by a rotation
    /// must leave every worker, not only the one that refetched.
    fn sync_from_shared(&mut self, host: &mut dyn Host, source: &Source) {
        let now_ms = host.now_ms();
        let ours = self
            .entries
            .get(source.cache_key())
            .map(|e| (e.fetched_at, e.digest));
        if let Ok(Slot::Ours(record)) = shared::read(host, &source.shared.entry) {
            if let Some(entry) = JwksEntry::decode(&record.payload) {
                // The shared document's digest, when it is to replace ours (hashed once).
                let replacing = match ours {
                    Some((fetched_at, _)) if entry.fetched_at < fetched_at => None,
                    Some((fetched_at, ours)) if entry.fetched_at == fetched_at => {
                        Some(digest(&entry.jwks_json)).filter(|theirs| *theirs != ours)
                    }
                    _ => Some(digest(&entry.jwks_json)),
                };
                if let Some(digest) = replacing {
                    if let Ok(set) = KeySet::parse(&entry.jwks_json) {
                        self.entries.insert(
                            source.cache_key().to_string(),
                            WorkerEntry {
                                set: Rc::new(set),
                                fetched_at: entry.fetched_at,
                                digest,
                                jwks_uri: entry.jwks_uri,
                                checked_at_ms: now_ms,
                            },
                        );
                        return;
                    }
                }
            }
        }
        if let Some(e) = self.entries.get_mut(source.cache_key()) {
            e.checked_at_ms = now_ms;
        }
    }

    /// For the tick: refresh due (or keys missing) for `source`? Looks at shared data first.
    pub fn needs_refresh(
        &mut self,
        host: &mut dyn Host,
        source: &Source,
        settings: &FetchSettings,
    ) -> bool {
        if matches!(source.origin, Origin::Inline(_)) {
            return false;
        }
        self.sync_from_shared(host, source);
        let now = host.now_secs();
        match self.entries.get(source.cache_key()) {
            Some(e) => settings.policy.freshness(e.fetched_at, now) != Freshness::Fresh,
            None => true,
        }
    }

    /// For the tick: the stale set to keep if a background refresh fails.
    pub fn background_fetch(&self, source: &Source) -> Keys {
        Keys::Fetch {
            fallback: self.entries.get(source.cache_key()).map(|e| e.set.clone()),
            kind: FetchKind::Leased,
        }
    }
}

/// Whether the shared back-off of `source` holds a `recent` failure.
fn failed_recently_in_shared(
    host: &dyn Host,
    source: &Source,
    recent: impl Fn(u64) -> bool,
) -> bool {
    match shared::read(host, &source.shared.failure_backoff) {
        Ok(Slot::Ours(record)) => {
            let mut payload = record.payload.as_slice();
            layout::take_u64(&mut payload).is_some_and(recent)
        }
        _ => false,
    }
}

/// Shares a fetched JWKS with the other workers when it fits the shared-data bound
/// ([`crate::host::MAX_SHARED_VALUE_BYTES`]); a larger one stays with this worker (the others
/// fetch their own), since a write that does not fit the zone traps on Kong's engine.
fn share_jwks(host: &mut dyn Host, source: &Source, now: u64, jwks_uri: &str, body: &[u8]) {
    let entry = JwksEntry {
        fetched_at: now,
        jwks_uri: jwks_uri.to_string(),
        jwks_json: body.to_vec(),
    }
    .encode();
    if !shared::fits(&source.shared.entry, &entry) {
        log::info!(
            "the JWKS of issuer {} ({} bytes) is too large for shared data: kept by this worker only",
            source.issuer,
            body.len()
        );
        return;
    }
    if let Err(e) = shared::overwrite(host, &source.shared.entry, &entry, Width::Full) {
        // Other workers will fetch for themselves; this one has the keys.
        log::warn!("could not share keys of {}: {}", source.issuer, e.0);
    }
}

/// A plain `GET url` callout.
pub fn get_request(url: &HttpUrl, upstream: String, timeout_ms: u32) -> CalloutRequest {
    CalloutRequest {
        upstream,
        headers: vec![
            (":method".into(), "GET".into()),
            (":path".into(), url.path_and_query.clone()),
            (":authority".into(), url.authority()),
            (":scheme".into(), url.scheme.as_str().into()),
            ("accept".into(), "application/json".into()),
        ],
        body: None,
        timeout_ms,
    }
}
