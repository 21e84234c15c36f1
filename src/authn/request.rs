//! One request's state machine: token → grant (cached, or verified with keys that may need a
//! fetch) → Google token (cached, or minted) → header edits. It waits for at most one callout
//! at a time, and every answer ends in a [`Step`].

use super::limits::{self, ResponseHeader};
use super::route::Grant;
use super::{Scope, Step};
use crate::google::{Mint, MintFor, MintProgress};
use crate::host::shared::{self, Lease};
use crate::host::{CalloutResponse, CalloutToken, Host};
use crate::jose::{verifier, TokenError};
use crate::keys::{Fetch, FetchBudget, FetchKind, Keys, Origin, Progress, Source};
use crate::metrics::Metric;
use crate::reject::AuthError;
use crate::request::extractor;
use crate::request::headers::{self, HeaderPairs};
use std::rc::Rc;

/// Where a request is.
#[derive(Debug)]
enum Stage {
    Start,
    Keys { issuer: usize, fetch: Fetch },
    Google { grant: Rc<Grant>, mint: Mint },
}

/// A refusal on its way out: what to answer, and the log line's context.
type Refusal = (AuthError, String);

/// One request's authentication.
#[derive(Debug)]
pub struct Request {
    token: String,
    stage: Stage,
    /// Keys were fetched (or a fetch failed) once already: never fetch again.
    fetch_budget: FetchBudget,
    /// A Google token mint was tried once already.
    minted: bool,
    /// A callout of this request carried a body (see [`Request::may_refuse_with_body`]).
    sent_body: bool,
    /// Headers for the answer: the rate-limit fields (on a 429 also `Retry-After`).
    response_headers: Vec<ResponseHeader>,
}

impl Request {
    /// Starts on the request headers: `pairs` as the host shows them, `path` the `:path`
    /// (read only when the token may be in the query).
    pub fn start(
        cx: &mut Scope<'_>,
        pairs: &HeaderPairs<'_>,
        path: Option<&[u8]>,
    ) -> (Option<Request>, Step) {
        let config = &cx.route.config;
        if let Err(refusal) = headers::screen(&cx.route.owned, pairs) {
            return (None, deny(cx.host, refusal.error, &refusal.detail));
        }
        let credentials = headers::credentials(&config.token, pairs, path);
        let token =
            match extractor::extract(&config.token, &credentials, config.limits.max_token_bytes) {
                Ok(token) => token.to_string(),
                Err(e) => return (None, deny(cx.host, e, "")),
            };
        // The upstream never sees an `Authorization` the filter did not verify or set.
        if !cx.route.replaces_authorization()
            && headers::unverified_authorization(&config.token, pairs)
        {
            return (None, deny(cx.host, AuthError::UnverifiedAuthorization, ""));
        }
        let mut request = Request {
            token,
            stage: Stage::Start,
            fetch_budget: FetchBudget::Available,
            minted: false,
            sent_body: false,
            response_headers: Vec::new(),
        };
        let step = request.run(cx);
        (Some(request), step)
    }

    /// Refuses a request whose headers could not be read whole (logged and counted like any
    /// refusal).
    pub fn refuse(cx: &mut Scope<'_>, refusal: &headers::Refusal) -> Step {
        deny(cx.host, refusal.error, &refusal.detail)
    }

    /// Whether a refusal of this request may carry a body. Not after a callout that sent a
    /// body: on Kong's engine, when such a call gets no answer (timeout, or a peer that closes),
    /// its body buffer is reused for the local response's body unreset, and the worker dies
    /// ("zero size buf in writer"; spec/tests/engine_facts.rs). Status and headers still say why.
    pub fn may_refuse_with_body(&self) -> bool {
        !self.sent_body
    }

    /// Headers the answer to this request carries: the upstream's answer when the request was
    /// allowed, the local response when it was refused (see [`limits::meter`]).
    pub fn response_headers(&self) -> &[ResponseHeader] {
        &self.response_headers
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
        cx: &mut Scope<'_>,
        token: CalloutToken,
        response: &CalloutResponse,
    ) -> Step {
        if self.pending() != Some(token) {
            // Not ours: refuse rather than let Kong resume the request on its own.
            return deny(cx.host, AuthError::Internal, "unexpected callout answer");
        }
        match std::mem::replace(&mut self.stage, Stage::Start) {
            Stage::Start => deny(cx.host, AuthError::Internal, "no callout pending"),
            Stage::Keys { issuer, fetch } => self.on_keys(cx, issuer, fetch, response),
            Stage::Google { grant, mint } => self.on_google(cx, grant, mint, response),
        }
    }

    fn on_keys(
        &mut self,
        cx: &mut Scope<'_>,
        issuer: usize,
        mut fetch: Fetch,
        response: &CalloutResponse,
    ) -> Step {
        let route = cx.route;
        let Some(source) = route.sources.get(issuer) else {
            return deny(cx.host, AuthError::Internal, "issuer index");
        };
        let keys = &mut cx.worker.keys;
        let progress = keys.advance(cx.host, source, &mut fetch, response);
        // A request context may start the next callout from a call answer at once.
        if let Progress::Next = progress {
            if keys.dispatch_next(cx.host, source, &mut fetch, &route.fetch) {
                self.stage = Stage::Keys { issuer, fetch };
                return Step::Wait;
            }
        }
        self.fetch_budget = FetchBudget::Spent;
        self.run(cx)
    }

    fn on_google(
        &mut self,
        cx: &mut Scope<'_>,
        grant: Rc<Grant>,
        mut mint: Mint,
        response: &CalloutResponse,
    ) -> Step {
        let route = cx.route;
        let Some(google) = &route.google else {
            return deny(cx.host, AuthError::Internal, "google config");
        };
        let tokens = &mut cx.worker.google;
        match tokens.advance(cx.host, google, &mut mint, response) {
            // A federated mint's next step; a request starts it at once.
            MintProgress::Next if tokens.dispatch_next(cx.host, google, &mut mint) => {
                self.sent_body |= mint.carries_body;
                self.stage = Stage::Google { grant, mint };
                Step::Wait
            }
            MintProgress::Done(bearer) => self.allow(cx, &grant, Some(bearer)),
            MintProgress::Next | MintProgress::Failed => {
                deny(cx.host, AuthError::GoogleTokenUnavailable, "")
            }
        }
    }

    fn run(&mut self, cx: &mut Scope<'_>) -> Step {
        match self.grant(cx) {
            Ok(Some(grant)) => match limits::meter(cx, &grant) {
                Ok(headers) => {
                    self.response_headers = headers;
                    self.forward(cx, grant)
                }
                Err(limited) => {
                    self.response_headers = limited.headers;
                    deny(cx.host, AuthError::RateLimited, &limited.context)
                }
            },
            Ok(None) => Step::Wait,
            Err((e, context)) => deny(cx.host, e, &context),
        }
    }

    /// The grant for this token: from the cache, or verified now. `Ok(None)`: a key fetch started.
    fn grant(&mut self, cx: &mut Scope<'_>) -> Result<Option<Rc<Grant>>, Refusal> {
        let route = cx.route;
        let now = cx.host.now_secs();
        if let Some(grant) = route.cached(&self.token, now, &cx.worker.keys) {
            cx.host.count(Metric::TokenCacheHits);
            return Ok(Some(grant));
        }
        let now_signed = i64::try_from(now).unwrap_or(i64::MAX);
        let prechecked =
            verifier::precheck(&self.token, &route.rules, &route.config.limits, now_signed)
                .map_err(|e| (e.into(), String::new()))?;
        let issuer = prechecked.issuer_index;
        let source = route
            .sources
            .get(issuer)
            .ok_or((AuthError::Internal, String::new()))?;
        let keys = cx
            .worker
            .keys
            .lookup(cx.host, source, &route.fetch, self.fetch_budget);
        let set = match keys {
            Keys::Ready(set) => set,
            Keys::Unavailable => return Err((AuthError::KeysUnavailable, describe(&self.token))),
            fetch @ Keys::Fetch { .. } => return self.fetch(cx, issuer, &fetch),
        };
        let verified = match verifier::verify_signature(prechecked, &set) {
            Ok(verified) => verified,
            Err(TokenError::UnknownKey) if self.may_refetch(cx, source) => {
                let fetch = Keys::Fetch {
                    fallback: Some(set),
                    kind: FetchKind::Unleased,
                };
                return self.fetch(cx, issuer, &fetch);
            }
            Err(e) => return Err((e.into(), describe(&self.token))),
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
    fn may_refetch(&self, cx: &mut Scope<'_>, source: &Source) -> bool {
        if self.fetch_budget == FetchBudget::Spent || matches!(source.origin, Origin::Inline(_)) {
            return false;
        }
        let cooldown = cx.route.config.jwks_cache.unknown_kid_cooldown_ms();
        let lease = &source.shared.unknown_kid;
        matches!(
            shared::try_lease(cx.host, lease, cx.worker.holder, cooldown),
            Ok(Lease::Acquired | Lease::Uncoordinated)
        )
    }

    fn fetch(
        &mut self,
        cx: &mut Scope<'_>,
        issuer: usize,
        keys: &Keys,
    ) -> Result<Option<Rc<Grant>>, Refusal> {
        let route = cx.route;
        let source = route
            .sources
            .get(issuer)
            .ok_or((AuthError::Internal, String::new()))?;
        match cx.worker.keys.begin(cx.host, source, keys, &route.fetch) {
            Some(fetch) => {
                self.stage = Stage::Keys { issuer, fetch };
                Ok(None)
            }
            None => {
                // The callout could not start: decide with what we have (stale keys or 503).
                self.fetch_budget = FetchBudget::Spent;
                self.grant(cx)
            }
        }
    }

    /// Adds the Google token (cached, or minted now) and lets the request go.
    fn forward(&mut self, cx: &mut Scope<'_>, grant: Rc<Grant>) -> Step {
        let route = cx.route;
        let Some(google) = &route.google else {
            return self.allow(cx, &grant, None);
        };
        if let Some(bearer) = cx.worker.google.current(cx.host, &google.keys) {
            return self.allow(cx, &grant, Some(bearer));
        }
        if self.minted {
            return deny(cx.host, AuthError::GoogleTokenUnavailable, "");
        }
        self.minted = true;
        match cx.worker.google.begin(cx.host, google, MintFor::Request) {
            Some(mint) => {
                self.sent_body |= mint.carries_body;
                self.stage = Stage::Google { grant, mint };
                Step::Wait
            }
            None => deny(cx.host, AuthError::GoogleTokenUnavailable, ""),
        }
    }

    /// The header edits for an allowed request. `google` (the whole `Authorization` value) is
    /// `None` without `google_id_token`.
    fn allow(&self, cx: &mut Scope<'_>, grant: &Grant, google: Option<Rc<str>>) -> Step {
        cx.host.count(Metric::Allowed);
        let route = cx.route;
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
        | AuthError::TooManyHeaders
        | AuthError::UnverifiedAuthorization => log::Level::Warn,
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
