//! The per-request flow (token → verified grant → Google token → header edits) and the root
//! context's background work, over [`Host`]. The adapter only moves bytes in and out.
//!
//! A request either finishes at once or waits for exactly one callout at a time; every answer
//! ends in [`Step::Allow`], [`Step::Deny`] or another [`Step::Wait`], never in silence (Kong
//! resumes a paused request by itself after its last callout, which would fail open).

use crate::config::FilterConfig;
use crate::config::GoogleHeader;
use crate::google::{GoogleSharedDataKeys, GoogleTokens, Mint, MintFor, MintProgress};
use crate::host::shared::{self, Lease};
use crate::host::{CalloutResponse, CalloutToken, Host};
use crate::jose::b64;
use crate::jose::jwk_set::KeySet;
use crate::jose::verifier::{self, IssuerRule, VerifiedToken};
use crate::keys::{Fetch, KeyCache, Keys, Origin, Progress, Source};
use crate::metrics::Metric;
use crate::reject::AuthError;
use crate::request::claims;
use crate::request::extractor;
use crate::request::headers::{self, HeaderPairs, OwnedHeaders};
use crate::request::policy;
use crate::request::token_cache::{TokenCache, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What the adapter does next with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Set these request headers (name, value) and let the request go upstream.
    Allow(Vec<HeaderEdit>),
    /// Answer locally with this refusal; the request never goes upstream.
    Deny(AuthError),
    /// A callout is in flight; keep the request paused.
    Wait,
}

/// A request header to set: shared strings, so a cache hit copies pointers, not bytes.
pub type HeaderEdit = (Rc<str>, Rc<str>);

/// What a verified token earns on this route, kept in the verified-token cache.
#[derive(Debug)]
pub struct Grant {
    /// Headers from claims (`claims_to_headers`, `claims_header`).
    edits: Vec<HeaderEdit>,
    /// The verifying key, so the entry dies when the key leaves the JWKS.
    key_thumbprint: [u8; 32],
    issuer_index: usize,
    /// `Bearer <token>` for `original_token_header`, rendered once per token.
    forwarded_token: Option<Rc<str>>,
}

/// One route's filter, built once per root context from its configuration.
pub struct Route {
    pub config: FilterConfig,
    rules: Vec<IssuerRule>,
    sources: Vec<Source>,
    google: Option<GoogleSharedDataKeys>,
    owned: OwnedHeaders,
    original_token_header: Option<Rc<str>>,
    /// Where the Google token goes (`None` without `google_id_token`).
    google_header: Option<Rc<str>>,
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
            Err(e) => return RouteState::Invalid(format!("cloudrun_oidc: {e}")),
        };
        match Route::new(config) {
            Ok(route) => RouteState::Ready(Box::new(route)),
            Err(message) => RouteState::Invalid(message),
        }
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
    fn new(config: FilterConfig) -> Result<Route, String> {
        let namespace = config.shm_namespace.clone();
        let mut sources = Vec::with_capacity(config.issuers.len());
        for (i, issuer) in config.issuers.iter().enumerate() {
            let name = &issuer.rule.issuer;
            let upstream = issuer.callout_upstream.clone();
            let origin = match &issuer.keys {
                crate::config::KeySource::Inline(json) => match KeySet::parse(json.as_bytes()) {
                    Ok(set) => Origin::Inline(Rc::new(set)),
                    Err(e) => {
                        return Err(format!(
                            "cloudrun_oidc: invalid configuration: issuers[{i}].jwks: {e}"
                        ));
                    }
                },
                crate::config::KeySource::JwksUrl(url) => Origin::JwksUrl {
                    url: url.clone(),
                    upstream,
                },
                crate::config::KeySource::Discovery(url) => Origin::Discovery {
                    url: url.clone(),
                    upstream,
                },
            };
            sources.push(Source::fetched(&namespace, name, origin));
        }
        Ok(Route {
            rules: config.issuers.iter().map(|i| i.rule.clone()).collect(),
            google: config
                .google_id_token
                .as_ref()
                .map(|g| GoogleSharedDataKeys::new(&namespace, g)),
            owned: OwnedHeaders::new(config.owned_headers()),
            // The caller's token moves aside only when the Google token takes its header.
            original_token_header: config
                .original_token_header
                .as_ref()
                .filter(|_| {
                    config
                        .google_id_token
                        .as_ref()
                        .is_some_and(|g| g.header == GoogleHeader::Authorization)
                })
                .map(|h| Rc::from(h.as_str())),
            google_header: config
                .google_id_token
                .as_ref()
                .map(|g| Rc::from(g.header.name())),
            sources,
            cache: RefCell::new(TokenCache::new(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)),
            config,
        })
    }

    /// How long a fetch lease lasts: discovery and JWKS round trips, plus slack.
    fn lease_ms(&self) -> u64 {
        u64::from(self.config.callout_timeout_ms)
            .saturating_mul(2)
            .saturating_add(1_000)
    }

    /// A cached grant for `token` whose key is still in the worker's key set.
    fn cached(&self, token: &str, now: u64, keys: &KeyCache) -> Option<Rc<Grant>> {
        let mut cache = self.cache.try_borrow_mut().ok()?;
        let grant = cache.get(token.as_bytes(), now)?.clone();
        let source = self.sources.get(grant.issuer_index)?;
        keys.current(source, &self.config.jwks_cache, now)
            .is_some_and(|set| set.contains_thumbprint(&grant.key_thumbprint))
            .then_some(grant)
    }

    /// Route rules and claim mapping for a verified token.
    fn grant_for(&self, verified: &VerifiedToken) -> Result<Grant, AuthError> {
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
        })
    }

    fn remember(&self, token: &str, grant: &Rc<Grant>, exp: i64, now: u64) {
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            let expires_at = u64::try_from(exp).unwrap_or(0);
            cache.insert(token.as_bytes(), grant.clone(), expires_at, now);
        }
    }
}

/// What one wasm instance (one Kong worker) shares between all its routes.
pub struct Worker {
    pub keys: KeyCache,
    pub google: GoogleTokens,
    /// Identifies this worker as a lease holder.
    pub holder: u64,
}

impl Worker {
    pub fn new(holder: u64) -> Worker {
        Worker {
            keys: KeyCache::default(),
            google: GoogleTokens::default(),
            holder,
        }
    }
}

/// Where a request is.
#[derive(Debug)]
enum Stage {
    Start,
    Keys { issuer: usize, fetch: Fetch },
    Google { grant: Rc<Grant>, mint: Mint },
}

/// One request's authentication.
#[derive(Debug)]
pub struct Request {
    token: String,
    stage: Stage,
    /// Keys were fetched (or a fetch failed) once already: never fetch again.
    fetched: bool,
    /// A Google token mint was tried once already.
    minted: bool,
    /// A callout of this request carried a body (see [`Request::may_refuse_with_body`]).
    sent_body: bool,
}

impl Request {
    /// Starts on the request headers: `pairs` as the host shows them, `path` the `:path`
    /// (read only when the token may be in the query).
    pub fn start(
        host: &mut dyn Host,
        route: &Route,
        worker: &mut Worker,
        pairs: &HeaderPairs<'_>,
        path: Option<&[u8]>,
    ) -> (Option<Request>, Step) {
        if let Err(refusal) = headers::screen(&route.owned, pairs) {
            return (None, deny(host, refusal.error, &refusal.detail));
        }
        let config = &route.config;
        let credentials = headers::credentials(&config.token, pairs, path);
        let token =
            match extractor::extract(&config.token, &credentials, config.limits.max_token_bytes) {
                Ok(token) => token.to_string(),
                Err(e) => return (None, deny(host, e, "")),
            };
        let mut request = Request {
            token,
            stage: Stage::Start,
            fetched: false,
            minted: false,
            sent_body: false,
        };
        let step = request.run(host, route, worker);
        (Some(request), step)
    }

    /// Whether a refusal of this request may carry a body. Not after a callout that sent a
    /// body: on Kong's engine, when such a call gets no answer (timeout, or a peer that closes),
    /// its body buffer is reused for the local response's body unreset, and the worker dies
    /// ("zero size buf in writer"; spec/tests/engine_facts.rs). Status and headers still say why.
    pub fn may_refuse_with_body(&self) -> bool {
        !self.sent_body
    }

    /// The callout this request waits for, if any.
    pub fn pending(&self) -> Option<CalloutToken> {
        match &self.stage {
            Stage::Start => None,
            Stage::Keys { fetch, .. } => Some(fetch.token),
            Stage::Google { mint, .. } => Some(mint.token),
        }
    }

    /// Takes the answer to the pending callout.
    pub fn on_callout(
        &mut self,
        host: &mut dyn Host,
        route: &Route,
        worker: &mut Worker,
        token: CalloutToken,
        response: &CalloutResponse,
    ) -> Step {
        if self.pending() != Some(token) {
            // Not ours: refuse rather than let Kong resume the request on its own.
            return deny(host, AuthError::Internal, "unexpected callout answer");
        }
        match std::mem::replace(&mut self.stage, Stage::Start) {
            Stage::Start => deny(host, AuthError::Internal, "no callout pending"),
            Stage::Keys { issuer, mut fetch } => {
                let Some(source) = route.sources.get(issuer) else {
                    return deny(host, AuthError::Internal, "issuer index");
                };
                let timeout = route.config.callout_timeout_ms;
                let progress =
                    worker
                        .keys
                        .advance(host, source, &mut fetch, response, worker.holder);
                // A request context may start the next callout from a call answer at once.
                if let Progress::Next = progress {
                    if worker
                        .keys
                        .dispatch_next(host, source, &mut fetch, timeout, worker.holder)
                    {
                        self.stage = Stage::Keys { issuer, fetch };
                        return Step::Wait;
                    }
                }
                self.fetched = true;
                self.run(host, route, worker)
            }
            Stage::Google { grant, mut mint } => {
                let (Some(keys), Some(config)) = (&route.google, &route.config.google_id_token)
                else {
                    return deny(host, AuthError::Internal, "google config");
                };
                match worker
                    .google
                    .advance(host, keys, config, &mut mint, response, worker.holder)
                {
                    // A federated mint's next step; a request starts it at once.
                    MintProgress::Next if worker.google.dispatch_next(host, keys, &mut mint) => {
                        self.sent_body |= mint.carries_body;
                        self.stage = Stage::Google { grant, mint };
                        Step::Wait
                    }
                    MintProgress::Done(bearer) => self.allow(host, route, &grant, Some(bearer)),
                    MintProgress::Next | MintProgress::Failed => {
                        deny(host, AuthError::GoogleTokenUnavailable, "")
                    }
                }
            }
        }
    }

    fn run(&mut self, host: &mut dyn Host, route: &Route, worker: &mut Worker) -> Step {
        match self.grant(host, route, worker) {
            Ok(Some(grant)) => self.forward(host, route, worker, grant),
            Ok(None) => Step::Wait,
            Err((e, context)) => deny(host, e, &context),
        }
    }

    /// The grant for this token: from the cache, or verified now. `Ok(None)`: a key fetch started.
    fn grant(
        &mut self,
        host: &mut dyn Host,
        route: &Route,
        worker: &mut Worker,
    ) -> Result<Option<Rc<Grant>>, (AuthError, String)> {
        let now = host.now_secs();
        if let Some(grant) = route.cached(&self.token, now, &worker.keys) {
            host.count(Metric::TokenCacheHits);
            return Ok(Some(grant));
        }
        let now_signed = i64::try_from(now).unwrap_or(i64::MAX);
        let prechecked =
            verifier::precheck(&self.token, &route.rules, &route.config.limits, now_signed)
                .map_err(|e| (e, String::new()))?;
        let issuer = prechecked.issuer_index;
        let source = route
            .sources
            .get(issuer)
            .ok_or((AuthError::Internal, String::new()))?;
        let policy = route.config.jwks_cache;
        let keys = worker.keys.lookup(
            host,
            source,
            &policy,
            worker.holder,
            route.lease_ms(),
            self.fetched,
        );
        let set = match keys {
            Keys::Ready(set) => set,
            Keys::Unavailable => return Err((AuthError::KeysUnavailable, describe(&self.token))),
            fetch @ Keys::Fetch { .. } => return self.fetch(host, route, worker, issuer, &fetch),
        };
        let verified = match verifier::verify_signature(prechecked, &set) {
            Ok(verified) => verified,
            Err(AuthError::UnknownKey) if self.may_refetch(host, route, worker, source) => {
                let fetch = Keys::Fetch {
                    fallback: Some(set),
                    cold: false,
                    lease: false,
                };
                return self.fetch(host, route, worker, issuer, &fetch);
            }
            Err(e) => return Err((e, describe(&self.token))),
        };
        let mut grant = route
            .grant_for(&verified)
            .map_err(|e| (e, describe(&self.token)))?;
        if route.original_token_header.is_some() {
            grant.forwarded_token = Some(Rc::from(format!("Bearer {}", self.token)));
        }
        let grant = Rc::new(grant);
        route.remember(&self.token, &grant, verified.exp, now);
        Ok(Some(grant))
    }

    /// An unknown `kid` may trigger one refetch per issuer per cooldown, across workers.
    fn may_refetch(
        &self,
        host: &mut dyn Host,
        route: &Route,
        worker: &Worker,
        source: &Source,
    ) -> bool {
        if self.fetched || matches!(source.origin, Origin::Inline(_)) {
            return false;
        }
        let cooldown = route.config.jwks_cache.unknown_kid_cooldown_ms();
        matches!(
            shared::try_lease(host, &source.shared.unknown_kid, worker.holder, cooldown),
            Ok(Lease::Acquired | Lease::Uncoordinated)
        )
    }

    fn fetch(
        &mut self,
        host: &mut dyn Host,
        route: &Route,
        worker: &mut Worker,
        issuer: usize,
        keys: &Keys,
    ) -> Result<Option<Rc<Grant>>, (AuthError, String)> {
        let source = route
            .sources
            .get(issuer)
            .ok_or((AuthError::Internal, String::new()))?;
        match worker
            .keys
            .begin(host, source, keys, route.config.callout_timeout_ms)
        {
            Some(fetch) => {
                self.stage = Stage::Keys { issuer, fetch };
                Ok(None)
            }
            None => {
                // The callout could not start: decide with what we have (stale keys or 503).
                self.fetched = true;
                self.grant(host, route, worker)
            }
        }
    }

    /// Adds the Google token (cached, or minted now) and lets the request go.
    fn forward(
        &mut self,
        host: &mut dyn Host,
        route: &Route,
        worker: &mut Worker,
        grant: Rc<Grant>,
    ) -> Step {
        let (Some(keys), Some(config)) = (&route.google, &route.config.google_id_token) else {
            return self.allow(host, route, &grant, None);
        };
        if let Some(bearer) = worker.google.current(host, keys) {
            return self.allow(host, route, &grant, Some(bearer));
        }
        if self.minted {
            return deny(host, AuthError::GoogleTokenUnavailable, "");
        }
        self.minted = true;
        let timeout = route.config.callout_timeout_ms;
        match worker
            .google
            .begin(host, keys, config, timeout, MintFor::Request, worker.holder)
        {
            Some(mint) => {
                self.sent_body |= mint.carries_body;
                self.stage = Stage::Google { grant, mint };
                Step::Wait
            }
            None => deny(host, AuthError::GoogleTokenUnavailable, ""),
        }
    }

    /// The header edits for an allowed request. `google` (the whole `Authorization` value) is
    /// `None` without `google_id_token`.
    fn allow(
        &self,
        host: &mut dyn Host,
        route: &Route,
        grant: &Grant,
        google: Option<Rc<str>>,
    ) -> Step {
        host.count(Metric::Allowed);
        let mut edits = Vec::with_capacity(grant.edits.len() + 2);
        edits.extend(grant.edits.iter().cloned());
        if let (Some(bearer), Some(header)) = (google, &route.google_header) {
            edits.push((header.clone(), bearer));
            if let (Some(original), Some(value)) =
                (&route.original_token_header, &grant.forwarded_token)
            {
                edits.push((original.clone(), value.clone()));
            }
        }
        Step::Allow(edits)
    }
}

/// Logs and counts a refusal. `context` names the unverified issuer and key, escaped.
fn deny(host: &mut dyn Host, error: AuthError, context: &str) -> Step {
    host.count(Metric::from(error));
    let level = match error {
        AuthError::Internal | AuthError::InvalidConfiguration => log::Level::Error,
        AuthError::KeysUnavailable
        | AuthError::GoogleTokenUnavailable
        | AuthError::ForgedHeader
        | AuthError::TooManyHeaders => log::Level::Warn,
        _ => log::Level::Info,
    };
    log::log!(level, "request refused: {}{context}", error.reason());
    Step::Deny(error)
}

/// ` (iss=…, kid=…)` of a refused token for logs: attacker-controlled until verified, so
/// quoted, escaped, capped. Parsed again here, only when a refusal needs it, so that accepted
/// tokens pay nothing for it.
fn describe(token: &str) -> String {
    fn short(value: Option<&str>) -> String {
        let value = value.unwrap_or("-");
        let cut: String = value.chars().take(96).collect();
        format!("{cut:?}")
    }
    let Ok(token) = crate::jose::jwt::parse(token) else {
        return String::new();
    };
    format!(
        " (iss={}, kid={})",
        short(token.unverified_claims.iss.as_deref()),
        short(token.unverified_header.kid.as_deref())
    )
}

/// Background work one root context does for its route on every tick: refresh keys before they
/// go stale (or fetch them before the first request), and Google tokens before they expire.
///
/// A root context never starts a callout from a call answer: on Kong's engine
/// (ngx_wasm_module), a callout dispatched from a root context's `on_http_call_response` gets
/// the connection the finished call just released, which the engine then tears down under it,
/// and the worker dies (SIGSEGV). A fetch's next step (discovery → JWKS) waits for the next tick.
#[derive(Debug, Default)]
pub struct RootJobs {
    jobs: HashMap<CalloutToken, Job>,
    /// Jobs whose next callout (chosen by a call answer) is due at the next tick.
    next_steps: Vec<Job>,
}

#[derive(Debug)]
enum Job {
    Keys { issuer: usize, fetch: Fetch },
    Google(Mint),
}

impl RootJobs {
    /// Starts whatever is due. Ticks do not wait for earlier ticks' callouts, so sources with a
    /// job in flight are skipped, and leases keep workers and routes from fetching together.
    pub fn tick(&mut self, host: &mut dyn Host, route: &Route, worker: &mut Worker) {
        self.start_next_steps(host, route, worker);
        let policy = route.config.jwks_cache;
        let timeout = route.config.callout_timeout_ms;
        for (issuer, source) in route.sources.iter().enumerate() {
            if self.fetching(route, source) || !worker.keys.needs_refresh(host, source, &policy) {
                continue;
            }
            let lease = shared::try_lease(
                host,
                &source.shared.fetch_lease,
                worker.holder,
                route.lease_ms(),
            );
            if !matches!(lease, Ok(Lease::Acquired | Lease::Uncoordinated)) {
                continue;
            }
            let keys = worker.keys.background_fetch(source);
            if let Some(fetch) = worker.keys.begin(host, source, &keys, timeout) {
                self.jobs.insert(fetch.token, Job::Keys { issuer, fetch });
            }
        }
        let google_busy = self
            .jobs
            .values()
            .chain(&self.next_steps)
            .any(|job| matches!(job, Job::Google(_)));
        if let (false, Some(keys), Some(config)) =
            (google_busy, &route.google, &route.config.google_id_token)
        {
            if worker
                .google
                .refresh_due(host, keys, config.refresh_before_expiry_secs)
            {
                if let Some(mint) = worker.google.begin(
                    host,
                    keys,
                    config,
                    timeout,
                    MintFor::Refresh,
                    worker.holder,
                ) {
                    self.jobs.insert(mint.token, Job::Google(mint));
                }
            }
        }
    }

    /// Whether a fetch for `source` (the same URL, whichever issuer entry) is under way.
    fn fetching(&self, route: &Route, source: &Source) -> bool {
        let same = |i: &usize| route.sources.get(*i).is_some_and(|s| s.id == source.id);
        self.jobs
            .values()
            .chain(&self.next_steps)
            .any(|job| match job {
                Job::Keys { issuer, .. } => same(issuer),
                Job::Google(_) => false,
            })
    }

    /// Starts the callouts that call answers left for this tick.
    fn start_next_steps(&mut self, host: &mut dyn Host, route: &Route, worker: &mut Worker) {
        let timeout = route.config.callout_timeout_ms;
        for job in std::mem::take(&mut self.next_steps) {
            match job {
                Job::Keys { issuer, mut fetch } => {
                    let Some(source) = route.sources.get(issuer) else {
                        continue;
                    };
                    if worker
                        .keys
                        .dispatch_next(host, source, &mut fetch, timeout, worker.holder)
                    {
                        self.jobs.insert(fetch.token, Job::Keys { issuer, fetch });
                    }
                }
                Job::Google(mut mint) => {
                    let Some(keys) = &route.google else {
                        continue;
                    };
                    if worker.google.dispatch_next(host, keys, &mut mint) {
                        self.jobs.insert(mint.token, Job::Google(mint));
                    }
                }
            }
        }
    }

    /// Takes the answer to a tick callout. Starts no callout (see [`RootJobs`]).
    pub fn on_callout(
        &mut self,
        host: &mut dyn Host,
        route: &Route,
        worker: &mut Worker,
        token: CalloutToken,
        response: &CalloutResponse,
    ) {
        match self.jobs.remove(&token) {
            Some(Job::Keys { issuer, mut fetch }) => {
                let Some(source) = route.sources.get(issuer) else {
                    return;
                };
                if let Progress::Next =
                    worker
                        .keys
                        .advance(host, source, &mut fetch, response, worker.holder)
                {
                    self.next_steps.push(Job::Keys { issuer, fetch });
                }
            }
            Some(Job::Google(mut mint)) => {
                if let (Some(keys), Some(config)) = (&route.google, &route.config.google_id_token) {
                    let progress = worker.google.advance(
                        host,
                        keys,
                        config,
                        &mut mint,
                        response,
                        worker.holder,
                    );
                    // A federated mint is a chain: its next callout waits for the next tick.
                    if progress == MintProgress::Next {
                        self.next_steps.push(Job::Google(mint));
                    }
                }
            }
            None => log::warn!("answer to unknown tick callout {token}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use crate::host::CalloutRequest;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::sign::Signer;
    use serde_json::{json, Value};

    mod security;

    const ISSUER: &str = "https://idp.example/realms/prod";
    const NOW: u64 = 1_800_000_000;

    struct Idp {
        key: PKey<Private>,
    }

    impl Idp {
        fn new() -> Idp {
            let rsa = Rsa::generate(2048).unwrap();
            Idp {
                key: PKey::from_rsa(rsa).unwrap(),
            }
        }

        fn jwks(&self, kid: &str) -> Vec<u8> {
            let rsa = self.key.rsa().unwrap();
            json!({"keys": [{
                "kty": "RSA", "kid": kid, "use": "sig",
                "n": b64::encode(&rsa.n().to_vec()),
                "e": b64::encode(&rsa.e().to_vec()),
            }]})
            .to_string()
            .into_bytes()
        }

        fn token(&self, kid: &str, claims: Value) -> String {
            let mut all =
                json!({"iss": ISSUER, "aud": "orders-api", "sub": "ada", "exp": NOW + 300});
            for (k, v) in claims.as_object().unwrap() {
                all[k] = v.clone();
            }
            let header = json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
            let input = format!(
                "{}.{}",
                b64::encode(header.to_string().as_bytes()),
                b64::encode(all.to_string().as_bytes())
            );
            let mut signer = Signer::new(MessageDigest::sha256(), &self.key).unwrap();
            signer.update(input.as_bytes()).unwrap();
            format!("{input}.{}", b64::encode(&signer.sign_to_vec().unwrap()))
        }
    }

    fn route(extra: Value) -> Route {
        let mut config = json!({
            "issuers": [{"issuer": ISSUER, "audiences": ["orders-api"]}],
            "claims_to_headers": {"sub": "x-user-id"},
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        match RouteState::from_config(config.to_string().as_bytes()) {
            RouteState::Ready(route) => *route,
            RouteState::Invalid(why) => panic!("{why}"),
        }
    }

    fn start(
        host: &mut FakeHost,
        route: &Route,
        worker: &mut Worker,
        token: &str,
    ) -> (Option<Request>, Step) {
        let value = format!("Bearer {token}");
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"authorization", value.as_bytes())];
        Request::start(host, route, worker, &pairs, None)
    }

    fn ok(body: &[u8]) -> CalloutResponse {
        CalloutResponse {
            status: Some(200),
            dispatch_status: None,
            body: body.to_vec(),
        }
    }

    fn failed(why: &str) -> CalloutResponse {
        CalloutResponse {
            status: None,
            dispatch_status: Some(why.into()),
            body: vec![],
        }
    }

    fn discovery() -> Vec<u8> {
        json!({"issuer": ISSUER, "jwks_uri": "https://idp.example/realms/prod/certs"})
            .to_string()
            .into_bytes()
    }

    fn last_callout(host: &FakeHost) -> (CalloutToken, CalloutRequest) {
        host.callouts.last().cloned().unwrap()
    }

    fn header<'a>(req: &'a CalloutRequest, name: &str) -> &'a str {
        req.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// A fresh IdP, the default route, one worker and a host at `NOW`.
    fn setup() -> (Idp, Route, Worker, FakeHost) {
        (
            Idp::new(),
            route(json!({})),
            Worker::new(1),
            FakeHost::at(NOW),
        )
    }

    /// Warms the worker's keys with a cold request for a default `k1` token.
    fn warm(host: &mut FakeHost, route: &Route, worker: &mut Worker, idp: &Idp) -> Step {
        cold(host, route, worker, idp, &idp.token("k1", json!({})))
    }

    /// Runs a cold request through discovery and JWKS; returns its final step.
    fn cold(
        host: &mut FakeHost,
        route: &Route,
        worker: &mut Worker,
        idp: &Idp,
        token: &str,
    ) -> Step {
        cold_request(host, route, worker, idp, token).1
    }

    fn cold_request(
        host: &mut FakeHost,
        route: &Route,
        worker: &mut Worker,
        idp: &Idp,
        token: &str,
    ) -> (Request, Step) {
        let (request, step) = start(host, route, worker, token);
        assert_eq!(step, Step::Wait);
        let mut request = request.unwrap();
        let (t1, discovery_call) = last_callout(host);
        assert_eq!(discovery_call.upstream, "idp.example:443");
        assert_eq!(
            header(&discovery_call, ":path"),
            "/realms/prod/.well-known/openid-configuration"
        );
        assert_eq!(header(&discovery_call, ":scheme"), "https");
        let step = request.on_callout(host, route, worker, t1, &ok(&discovery()));
        assert_eq!(step, Step::Wait);
        let (t2, jwks_call) = last_callout(host);
        assert_eq!(header(&jwks_call, ":path"), "/realms/prod/certs");
        let step = request.on_callout(host, route, worker, t2, &ok(&idp.jwks("k1")));
        (request, step)
    }

    fn allowed_user(step: &Step) -> Option<&str> {
        match step {
            Step::Allow(edits) => edits
                .iter()
                .find(|(n, _)| &**n == "x-user-id")
                .map(|(_, v)| &**v),
            _ => None,
        }
    }

    #[test]
    fn cold_request_discovers_fetches_keys_then_allows() {
        let (idp, route, mut worker, mut host) = setup();
        let step = warm(&mut host, &route, &mut worker, &idp);
        assert_eq!(allowed_user(&step), Some("ada"));
        assert_eq!(host.callouts.len(), 2);
        assert_eq!(host.metric(Metric::JwksFetches), 1);
        assert_eq!(host.metric(Metric::Allowed), 1);
    }

    #[test]
    fn warm_requests_need_no_callout_and_repeats_hit_the_cache() {
        let (idp, route, mut worker, mut host) = setup();
        let token = idp.token("k1", json!({}));
        cold(&mut host, &route, &mut worker, &idp, &token);
        let (_, step) = start(&mut host, &route, &mut worker, &token);
        assert_eq!(allowed_user(&step), Some("ada"));
        assert_eq!(host.metric(Metric::TokenCacheHits), 1);
        let other = idp.token("k1", json!({"sub": "bob"}));
        let (_, step) = start(&mut host, &route, &mut worker, &other);
        assert_eq!(allowed_user(&step), Some("bob"));
        assert_eq!(
            host.callouts.len(),
            2,
            "no new callout once keys are cached"
        );
    }

    #[test]
    fn another_worker_adopts_keys_from_shared_data() {
        let (idp, route, mut host) = (Idp::new(), route(json!({})), FakeHost::at(NOW));
        cold(
            &mut host,
            &route,
            &mut Worker::new(1),
            &idp,
            &idp.token("k1", json!({})),
        );
        let mut second = Worker::new(2);
        let (_, step) = start(&mut host, &route, &mut second, &idp.token("k1", json!({})));
        assert_eq!(allowed_user(&step), Some("ada"));
        assert_eq!(host.callouts.len(), 2);
    }

    #[test]
    fn failed_cold_fetch_is_503_and_backs_off() {
        let (idp, route, mut worker, mut host) = setup();
        let token = idp.token("k1", json!({}));
        let (request, _) = start(&mut host, &route, &mut worker, &token);
        let (t1, _) = last_callout(&host);
        let step =
            request
                .unwrap()
                .on_callout(&mut host, &route, &mut worker, t1, &failed("timeout"));
        assert_eq!(step, Step::Deny(AuthError::KeysUnavailable));
        assert!(host.logged("timeout"));
        assert_eq!(host.metric(Metric::JwksFetchFailures), 1);
        let (_, step) = start(&mut host, &route, &mut worker, &token);
        assert_eq!(step, Step::Deny(AuthError::KeysUnavailable));
        assert_eq!(host.callouts.len(), 1, "no new fetch during the back-off");
        host.advance_secs(6);
        let (_, step) = start(&mut host, &route, &mut worker, &token);
        assert_eq!(step, Step::Wait);
        assert_eq!(host.callouts.len(), 2);
    }

    #[test]
    fn non_200_and_garbage_answers_fail_closed() {
        for response in [
            CalloutResponse {
                status: Some(500),
                dispatch_status: None,
                body: discovery(),
            },
            ok(b"<html>"),
            ok(b"{\"issuer\": \"https://elsewhere\", \"jwks_uri\": \"https://elsewhere/k\"}"),
            CalloutResponse::default(),
        ] {
            let (idp, route, mut worker, mut host) = setup();
            let (request, _) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
            let (t1, _) = last_callout(&host);
            let step = request
                .unwrap()
                .on_callout(&mut host, &route, &mut worker, t1, &response);
            assert_eq!(step, Step::Deny(AuthError::KeysUnavailable), "{response:?}");
        }
    }

    #[test]
    fn stale_keys_are_used_when_the_refresh_fails() {
        let (idp, route, mut worker, mut host) = setup();
        warm(&mut host, &route, &mut worker, &idp);
        host.advance_secs(700);
        let token = idp.token("k1", json!({"sub": "late", "exp": NOW + 1000}));
        let (request, step) = start(&mut host, &route, &mut worker, &token);
        assert_eq!(step, Step::Wait, "past the TTL the request refreshes");
        let (t, call) = last_callout(&host);
        assert_eq!(
            header(&call, ":path"),
            "/realms/prod/certs",
            "known jwks_uri reused"
        );
        let mut request = request.unwrap();
        let step = request.on_callout(
            &mut host,
            &route,
            &mut worker,
            t,
            &failed("broken connection"),
        );
        // The failed URI came from discovery: the fetch asks discovery again (it may have moved).
        assert_eq!(step, Step::Wait);
        let (t, call) = last_callout(&host);
        assert_eq!(
            header(&call, ":path"),
            "/realms/prod/.well-known/openid-configuration"
        );
        let step = request.on_callout(
            &mut host,
            &route,
            &mut worker,
            t,
            &failed("broken connection"),
        );
        assert_eq!(allowed_user(&step), Some("late"));
    }

    #[test]
    fn unknown_kid_refetches_once_per_cooldown() {
        let (idp, route, mut worker, mut host) = setup();
        warm(&mut host, &route, &mut worker, &idp);
        let (request, step) = start(&mut host, &route, &mut worker, &idp.token("k2", json!({})));
        assert_eq!(step, Step::Wait);
        let (t, _) = last_callout(&host);
        let step =
            request
                .unwrap()
                .on_callout(&mut host, &route, &mut worker, t, &ok(&idp.jwks("k1")));
        assert_eq!(step, Step::Deny(AuthError::UnknownKey));
        let (_, step) = start(&mut host, &route, &mut worker, &idp.token("k3", json!({})));
        assert_eq!(step, Step::Deny(AuthError::UnknownKey));
        assert_eq!(host.callouts.len(), 3, "one refetch within the cooldown");
        host.advance_secs(31);
        let (_, step) = start(&mut host, &route, &mut worker, &idp.token("k4", json!({})));
        assert_eq!(step, Step::Wait);
    }

    #[test]
    fn rotated_key_is_fetched_and_old_cache_entries_die() {
        let (idp, route, mut worker, mut host) = setup();
        let old = idp.token("k1", json!({}));
        cold(&mut host, &route, &mut worker, &idp, &old);
        let rotated = Idp::new();
        let (request, _) = start(
            &mut host,
            &route,
            &mut worker,
            &rotated.token("k9", json!({"sub": "new"})),
        );
        let (t, _) = last_callout(&host);
        let step = request.unwrap().on_callout(
            &mut host,
            &route,
            &mut worker,
            t,
            &ok(&rotated.jwks("k9")),
        );
        assert_eq!(allowed_user(&step), Some("new"));
        let (_, step) = start(&mut host, &route, &mut worker, &old);
        assert_eq!(
            step,
            Step::Deny(AuthError::UnknownKey),
            "cached grant of a removed key"
        );
    }

    #[test]
    fn answer_to_another_callout_is_refused() {
        let (idp, route, mut worker, mut host) = setup();
        let (request, _) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
        let step =
            request
                .unwrap()
                .on_callout(&mut host, &route, &mut worker, 999, &ok(&discovery()));
        assert_eq!(step, Step::Deny(AuthError::Internal));
    }

    #[test]
    fn refusals_before_any_key_work_need_no_callout() {
        let (idp, route, mut worker, mut host) = setup();
        let cases = [
            (
                idp.token("k1", json!({"exp": NOW - 600})),
                AuthError::Expired,
            ),
            (
                idp.token("k1", json!({"aud": "other"})),
                AuthError::WrongAudience,
            ),
            (
                idp.token("k1", json!({"iss": "https://evil"})),
                AuthError::UnknownIssuer,
            ),
        ];
        for (token, error) in cases {
            let (_, step) = start(&mut host, &route, &mut worker, &token);
            assert_eq!(step, Step::Deny(error));
        }
        let (_, step) = start(&mut host, &route, &mut worker, "");
        assert_eq!(step, Step::Deny(AuthError::Malformed));
        assert!(host.callouts.is_empty());
        assert!(
            !host.logs.borrow().iter().any(|(_, l)| l.contains("eyJ")),
            "a token was logged"
        );
    }

    #[test]
    fn policy_and_claim_rules_give_403() {
        let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
        let route = route(json!({"required_scopes": ["orders.read"]}));
        cold(
            &mut host,
            &route,
            &mut worker,
            &idp,
            &idp.token("k1", json!({"scope": "orders.read"})),
        );
        let (_, step) = start(
            &mut host,
            &route,
            &mut worker,
            &idp.token("k1", json!({"scope": "x"})),
        );
        assert_eq!(step, Step::Deny(AuthError::InsufficientScope));
    }

    #[test]
    fn client_copies_of_owned_headers_refuse_the_request_before_any_key_work() {
        let (idp, route, mut worker, mut host) = setup();
        let token = idp.token("k1", json!({}));
        for forged in ["X-User-Id", "x_user_id", "X-Forwarded-Authorization"] {
            let value = format!("Bearer {token}");
            let pairs: Vec<(&[u8], &[u8])> = vec![
                (b"authorization", value.as_bytes()),
                (forged.as_bytes(), b"mallory"),
            ];
            let (request, step) = Request::start(&mut host, &route, &mut worker, &pairs, None);
            assert!(request.is_none(), "{forged}");
            assert_eq!(step, Step::Deny(AuthError::ForgedHeader), "{forged}");
        }
        assert!(host.callouts.is_empty());
        assert!(host
            .logs
            .borrow()
            .iter()
            .any(|(_, l)| l.contains("the client sent `x-user-id`")));
    }

    #[test]
    fn invalid_configuration_names_the_field() {
        let state =
            RouteState::from_config(br#"{"issuers": [{"issuer": "https://a", "audiences": []}]}"#);
        match state {
            RouteState::Invalid(message) => {
                assert!(message.contains("issuers[0].audiences"), "{message}")
            }
            RouteState::Ready(_) => panic!("accepted"),
        }
        let inline = json!({"issuers": [{"issuer": ISSUER, "audiences": ["a"], "jwks": {"keys": [{"kty": "oct", "k": "AA"}]}}]});
        match RouteState::from_config(inline.to_string().as_bytes()) {
            RouteState::Invalid(message) => {
                assert!(message.contains("issuers[0].jwks"), "{message}")
            }
            RouteState::Ready(_) => panic!("accepted"),
        }
    }

    fn google_jwt(exp: u64) -> Vec<u8> {
        let payload =
            json!({"iss": "https://accounts.google.com", "aud": "https://run.example", "exp": exp});
        format!(
            "{}.{}.c2ln",
            b64::encode(br#"{"alg":"RS256"}"#),
            b64::encode(payload.to_string().as_bytes())
        )
        .into_bytes()
    }

    fn google_route() -> Route {
        route(
            json!({"google_id_token": {"audience": "https://run.example", "metadata_host": "metadata:8080"}}),
        )
    }

    #[test]
    fn google_token_is_minted_once_and_forwarded() {
        let (idp, route, mut worker, mut host) = (
            Idp::new(),
            google_route(),
            Worker::new(1),
            FakeHost::at(NOW),
        );
        let caller = idp.token("k1", json!({}));
        let (mut request, step) = cold_request(&mut host, &route, &mut worker, &idp, &caller);
        assert_eq!(step, Step::Wait, "verified; now minting");
        let (t, mint) = last_callout(&host);
        assert_eq!(mint.upstream, "metadata:8080");
        assert_eq!(header(&mint, "metadata-flavor"), "Google");
        assert!(header(&mint, ":path").contains("audience=https%3A%2F%2Frun.example"));
        let step = request.on_callout(
            &mut host,
            &route,
            &mut worker,
            t,
            &ok(&google_jwt(NOW + 3600)),
        );
        let Step::Allow(edits) = step else {
            panic!("{step:?}")
        };
        let google = String::from_utf8(google_jwt(NOW + 3600)).unwrap();
        assert!(edits.contains(&("authorization".into(), format!("Bearer {google}").into())));
        assert!(edits.contains(&(
            "x-forwarded-authorization".into(),
            format!("Bearer {caller}").into()
        )));
        let before = host.callouts.len();
        let (_, step) = start(&mut host, &route, &mut worker, &caller);
        assert!(matches!(step, Step::Allow(_)));
        assert_eq!(
            host.callouts.len(),
            before,
            "cached Google token, no callout"
        );
    }

    #[test]
    fn google_mint_failure_is_503() {
        let (idp, route, mut worker, mut host) = (
            Idp::new(),
            google_route(),
            Worker::new(1),
            FakeHost::at(NOW),
        );
        let caller = idp.token("k1", json!({}));
        cold(&mut host, &route, &mut worker, &idp, &caller);
        for response in [
            failed("timeout"),
            ok(b"not a jwt"),
            ok(&google_jwt(NOW + 5)),
        ] {
            let (request, step) = start(&mut host, &route, &mut worker, &caller);
            assert_eq!(step, Step::Wait);
            let (t, _) = last_callout(&host);
            let step = request
                .unwrap()
                .on_callout(&mut host, &route, &mut worker, t, &response);
            assert_eq!(
                step,
                Step::Deny(AuthError::GoogleTokenUnavailable),
                "{response:?}"
            );
        }
        assert_eq!(host.metric(Metric::GoogleTokenMintFailures), 3);
    }

    #[test]
    fn tick_prefetches_keys_once_across_workers_and_skips_overlap() {
        let (idp, route, mut host) = (Idp::new(), route(json!({})), FakeHost::at(NOW));
        let (mut first, mut second) = (Worker::new(1), Worker::new(2));
        let (mut jobs1, mut jobs2) = (RootJobs::default(), RootJobs::default());
        jobs1.tick(&mut host, &route, &mut first);
        assert_eq!(host.callouts.len(), 1);
        jobs1.tick(&mut host, &route, &mut first);
        jobs2.tick(&mut host, &route, &mut second);
        assert_eq!(
            host.callouts.len(),
            1,
            "overlapping tick and other worker wait for the lease"
        );
        let (t1, _) = last_callout(&host);
        jobs1.on_callout(&mut host, &route, &mut first, t1, &ok(&discovery()));
        assert_eq!(
            host.callouts.len(),
            1,
            "a root context starts no callout from a call answer (it crashes Kong's engine)"
        );
        jobs2.tick(&mut host, &route, &mut second);
        assert_eq!(host.callouts.len(), 1, "the lease is still held");
        jobs1.tick(&mut host, &route, &mut first);
        let (t2, jwks_call) = last_callout(&host);
        assert_eq!(header(&jwks_call, ":path"), "/realms/prod/certs");
        jobs1.on_callout(&mut host, &route, &mut first, t2, &ok(&idp.jwks("k1")));
        let (_, step) = start(&mut host, &route, &mut second, &idp.token("k1", json!({})));
        assert_eq!(
            allowed_user(&step),
            Some("ada"),
            "second worker uses the shared keys"
        );
        assert_eq!(host.callouts.len(), 2);
    }

    #[test]
    fn tick_refreshes_google_token_ahead_of_expiry() {
        let (route, mut worker, mut host) = (google_route(), Worker::new(1), FakeHost::at(NOW));
        let mut jobs = RootJobs::default();
        // Keys are not configured reachable here: answer the key fetch with a failure.
        jobs.tick(&mut host, &route, &mut worker);
        let mint = host
            .callouts
            .iter()
            .find(|(_, c)| c.upstream == "metadata:8080")
            .cloned()
            .unwrap();
        jobs.on_callout(
            &mut host,
            &route,
            &mut worker,
            mint.0,
            &ok(&google_jwt(NOW + 3600)),
        );
        let count = host.callouts.len();
        host.advance_secs(1000);
        jobs.tick(&mut host, &route, &mut worker);
        assert_eq!(
            host.callouts
                .iter()
                .filter(|(_, c)| c.upstream == "metadata:8080")
                .count(),
            1,
            "not due yet"
        );
        host.advance_secs(2400);
        jobs.tick(&mut host, &route, &mut worker);
        assert!(host.callouts.len() > count);
        assert_eq!(
            host.callouts
                .iter()
                .filter(|(_, c)| c.upstream == "metadata:8080")
                .count(),
            2,
            "refresh 300 s ahead of expiry"
        );
    }

    /// A route minting its Google token through Workload Identity Federation with a URL
    /// subject source; `jwks`: inline caller keys (no key fetch job in the tick).
    fn federated_route(jwks: Option<Value>) -> Route {
        let mut issuer = json!({"issuer": ISSUER, "audiences": ["orders-api"]});
        if let Some(jwks) = jwks {
            issuer["jwks"] = jwks;
        }
        route(json!({
            "issuers": [issuer],
            "google_id_token": {
                "audience": "https://run.example",
                "source": "external_account",
                "external_account": {
                    "type": "external_account",
                    "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/idp",
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "token_url": "http://sts.test/v1/token",
                    "service_account_impersonation_url": "http://iam.test/v1/projects/-/serviceAccounts/kong@p.iam.gserviceaccount.com:generateAccessToken",
                    "credential_source": {"url": "http://token.test/token"}
                }
            }
        }))
    }

    /// The answer each federation step's upstream gives when healthy.
    fn federation_answer(call: &CalloutRequest) -> CalloutResponse {
        match call.upstream.as_str() {
            "token.test:80" => ok(b"subject.jwt.token"),
            "sts.test:80" => {
                ok(br#"{"access_token":"ya29.sts","token_type":"Bearer","expires_in":3600}"#)
            }
            "iam.test:80" => {
                let token = String::from_utf8(google_jwt(NOW + 3600)).unwrap();
                ok(json!({ "token": token }).to_string().as_bytes())
            }
            other => panic!("unexpected callout to {other}"),
        }
    }

    #[test]
    fn federated_mint_chains_one_callout_at_a_time_then_forwards() {
        let (idp, route, mut worker, mut host) = (
            Idp::new(),
            federated_route(None),
            Worker::new(1),
            FakeHost::at(NOW),
        );
        let caller = idp.token("k1", json!({}));
        let (mut request, mut step) = cold_request(&mut host, &route, &mut worker, &idp, &caller);
        let mut upstreams = Vec::new();
        while step == Step::Wait {
            let before = host.callouts.len();
            let (t, call) = last_callout(&host);
            upstreams.push(call.upstream.clone());
            step = request.on_callout(&mut host, &route, &mut worker, t, &federation_answer(&call));
            let started = host.callouts.len() - before;
            assert!(started <= 1, "{started} callouts started by one answer");
            assert_eq!(
                started == 1,
                step == Step::Wait,
                "waiting exactly when a callout is in flight"
            );
        }
        assert_eq!(upstreams, ["token.test:80", "sts.test:80", "iam.test:80"]);
        let Step::Allow(edits) = step else {
            panic!("{step:?}")
        };
        let google = String::from_utf8(google_jwt(NOW + 3600)).unwrap();
        assert!(edits.contains(&("authorization".into(), format!("Bearer {google}").into())));
        let before = host.callouts.len();
        let (_, step) = start(&mut host, &route, &mut worker, &caller);
        assert!(matches!(step, Step::Allow(_)));
        assert_eq!(host.callouts.len(), before, "cached: no callout");
    }

    #[test]
    fn federated_step_failure_is_503_and_names_the_step() {
        let (idp, route, mut worker, mut host) = (
            Idp::new(),
            federated_route(None),
            Worker::new(1),
            FakeHost::at(NOW),
        );
        let caller = idp.token("k1", json!({}));
        let (mut request, _) = cold_request(&mut host, &route, &mut worker, &idp, &caller);
        let (t, call) = last_callout(&host);
        let step = request.on_callout(&mut host, &route, &mut worker, t, &federation_answer(&call));
        assert_eq!(step, Step::Wait);
        let (t, _) = last_callout(&host);
        let refused = CalloutResponse {
            status: Some(400),
            dispatch_status: None,
            body: br#"{"error":"invalid_grant"}"#.to_vec(),
        };
        let step = request.on_callout(&mut host, &route, &mut worker, t, &refused);
        assert_eq!(step, Step::Deny(AuthError::GoogleTokenUnavailable));
        assert!(host.logged("STS token exchange (token_url): HTTP status 400 (invalid_grant)"));
        assert_eq!(host.metric(Metric::GoogleTokenMintFailures), 1);
        assert!(!host.logged("subject.jwt.token"));
    }

    #[test]
    fn federated_cold_mints_are_capped_at_one_per_worker() {
        let idp = Idp::new();
        let jwks: Value = serde_json::from_slice(&idp.jwks("k1")).unwrap();
        let (route, mut worker, mut host) = (
            federated_route(Some(jwks)),
            Worker::new(1),
            FakeHost::at(NOW),
        );
        let caller = idp.token("k1", json!({}));
        let (first, step) = start(&mut host, &route, &mut worker, &caller);
        assert_eq!(step, Step::Wait);
        assert_eq!(host.callouts.len(), 1);
        let (_, step) = start(&mut host, &route, &mut worker, &caller);
        assert_eq!(step, Step::Deny(AuthError::GoogleTokenUnavailable));
        assert_eq!(host.callouts.len(), 1, "no second chain in this worker");
        let mut first = first.unwrap();
        let mut step = Step::Wait;
        while step == Step::Wait {
            let (t, call) = last_callout(&host);
            step = first.on_callout(&mut host, &route, &mut worker, t, &federation_answer(&call));
        }
        assert!(matches!(step, Step::Allow(_)));
    }

    #[test]
    fn tick_runs_the_federated_chain_as_one_job() {
        let idp = Idp::new();
        let jwks: Value = serde_json::from_slice(&idp.jwks("k1")).unwrap();
        let (route, mut worker, mut host) = (
            federated_route(Some(jwks)),
            Worker::new(1),
            FakeHost::at(NOW),
        );
        let mut jobs = RootJobs::default();
        jobs.tick(&mut host, &route, &mut worker);
        assert_eq!(host.callouts.len(), 1);
        for _ in 0..3 {
            let (t, call) = last_callout(&host);
            let before = host.callouts.len();
            jobs.on_callout(&mut host, &route, &mut worker, t, &federation_answer(&call));
            assert_eq!(
                host.callouts.len(),
                before,
                "a root context starts no callout from a call answer (it crashes Kong's engine)"
            );
            // The chain's next step (if any) starts here, and no second chain with it.
            jobs.tick(&mut host, &route, &mut worker);
            assert!(host.callouts.len() - before <= 1);
        }
        assert_eq!(
            host.callouts.len(),
            3,
            "ticks start no second chain meanwhile"
        );
        let (_, step) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
        assert!(matches!(step, Step::Allow(_)), "{step:?}");
        assert_eq!(host.callouts.len(), 3);
    }
}
