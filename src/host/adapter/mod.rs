//! The proxy-wasm glue: root and HTTP contexts that move bytes between Kong and [`crate::authn`].
//!
//! Rules from KONG_HOST.md this module keeps: `on_configure` always returns true (false makes
//! Kong proxy without the filter); `create_http_context` always returns a context; every path
//! through `on_http_call_response` ends in a local response, another callout or an explicit
//! resume, because Kong resumes a paused request by itself after its last callout.
//!
//! Each callback starts with `logger::enter(id)`, so that what the core logs names the context.

mod exports;
mod ffi;
mod host;
mod logger;
mod zone;

use crate::authn::limits::ResponseHeader;
use crate::authn::{Request, RootJobs, Route, RouteState, Scope, Step, Worker};
use crate::host::{CalloutResponse, Host};
use crate::reject::{AuthError, BODY_CONTENT_TYPE, REALM};
use crate::request::headers;
use exports::{Action, Context, HttpContext, RootContext};
use host::ProxyHost;
use std::cell::RefCell;
use std::rc::Rc;

/// Background work runs this often (ms).
const TICK_PERIOD_MS: u32 = 1_000;
/// Callout answers larger than this are not read (the parsers' own caps are lower).
const MAX_CALLOUT_BODY_BYTES: usize = 1024 * 1024;

thread_local! {
    /// State shared by every route of this worker (one instance per Kong worker).
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Runs `f` in the scope of `route` with this worker's state; `None` if that state is somehow
/// busy (never expected).
fn in_scope<R>(
    host: &mut ProxyHost,
    route: &Route,
    f: impl FnOnce(&mut Scope<'_>) -> R,
) -> Option<R> {
    WORKER.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let worker = slot.get_or_insert_with(|| {
            // Lease holders only need to differ between workers; start times in ns do.
            Worker::new(ffi::now_nanos().unwrap_or(0))
        });
        Some(f(&mut Scope {
            host,
            route,
            worker,
        }))
    })
}

struct Root {
    /// The host's context id, for log lines.
    id: u32,
    route: Option<Rc<RouteState>>,
    jobs: RootJobs,
    ticking: bool,
    /// Kong called `on_vm_start` for this root: it is a new root, not one re-created in an
    /// instance that replaced a trapped one (see `on_configure`).
    vm_started: bool,
}

impl Root {
    fn new(id: u32) -> Root {
        Root {
            id,
            route: None,
            jobs: RootJobs::default(),
            ticking: false,
            vm_started: false,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        let _ctx = logger::enter(self.id);
        let response = read_callout_response(body_size);
        let Some(RouteState::Ready(route)) = self.route.as_deref() else {
            return;
        };
        // The answer must end its job even while the clock fails (it holds the source busy).
        let mut host = ProxyHost::at_callback_start().unwrap_or_else(|e| {
            log::warn!(
                "{}; finishing a background callout with the last reading",
                e.0
            );
            ProxyHost::at_last_reading()
        });
        let jobs = &mut self.jobs;
        let _ = in_scope(&mut host, route, |cx| jobs.on_callout(cx, token, &response));
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        let _ctx = logger::enter(self.id);
        log::info!("version {} started", crate::VERSION);
        self.vm_started = true;
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let _ctx = logger::enter(self.id);
        let config = ffi::get_buffer(ffi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let state = RouteState::from_config(&config);
        match &state {
            RouteState::Invalid(message) => log::error!("{message}"),
            RouteState::Ready(route) => ProxyHost::register_metrics(route.metrics()),
        }
        self.route = Some(Rc::new(state));
        // Only new roots arm the tick. In an instance that replaced a trapped one, Kong keeps
        // firing the old root's timer into this root: arming again would add a second timer
        // per trap (the old one keeps running). Such a root ticks on the old timer, or not at
        // all when Kong reset it; requests still fetch what they need.
        if self.vm_started && !self.ticking {
            self.ticking = ffi::set_tick_period_ms(TICK_PERIOD_MS).is_ok();
        }
        // Never false: Kong would then proxy without the filter (fail-open).
        true
    }

    fn on_tick(&mut self) {
        let _ctx = logger::enter(self.id);
        let Some(RouteState::Ready(route)) = self.route.as_deref() else {
            return;
        };
        // Background work waits until a request has proven the route's shared-data zone.
        if !zone::is_proven(&route.config.shm_namespace) {
            return;
        }
        let mut host = match ProxyHost::at_callback_start() {
            Ok(host) => host,
            Err(e) => {
                log::warn!("{}; tick skipped", e.0);
                return;
            }
        };
        let jobs = &mut self.jobs;
        let _ = in_scope(&mut host, route, |cx| jobs.tick(cx));
    }

    fn create_http_context(&self, id: u32) -> Box<dyn HttpContext> {
        Box::new(Http {
            id,
            route: self.route.clone(),
            request: None,
            paused: None,
            done: false,
        })
    }
}

struct Http {
    /// The host's context id, for log lines.
    id: u32,
    /// `None` when Kong never configured this root: every request is refused.
    route: Option<Rc<RouteState>>,
    request: Option<Request>,
    /// Set while the request is paused on a callout (see `zone::PausedRequest`).
    paused: Option<zone::PausedRequest>,
    /// A decision was applied; later callbacks change nothing.
    done: bool,
}

impl Http {
    fn on_headers(&mut self) -> Action {
        // Once per instance, at its first request: nothing of the instance is paused yet.
        ProxyHost::define_metrics();
        let Some(state) = self.route.clone() else {
            return self.finish(Step::Deny(AuthError::InvalidConfiguration));
        };
        let route = match &*state {
            RouteState::Ready(route) => route,
            RouteState::Invalid(message) => {
                log::error!("{message}");
                return self.finish(Step::Deny(AuthError::InvalidConfiguration));
            }
        };
        let Ok(map) = ffi::get_header_map(ffi::MAP_REQUEST_HEADERS) else {
            return self.finish(deny_internal("reading request headers failed"));
        };
        // Kong's engine hands a malformed map from 98 headers on: 400 like 100 headers.
        let pairs = headers::read_header_map(&map);
        // Pseudo-headers are read by name: hosts differ on listing them among the pairs.
        let path = match route.config.token.query_param {
            Some(_) => ffi::get_header(ffi::MAP_REQUEST_HEADERS, ":path")
                .ok()
                .flatten(),
            None => None,
        };
        // Never verify against a made-up time: no clock, no decision (500, logged).
        let mut host = match ProxyHost::at_callback_start() {
            Ok(host) => host,
            Err(e) => {
                return self.finish(deny_internal(&format!(
                    "reading the clock failed ({})",
                    e.0
                )))
            }
        };
        if let Err(refusal) = prove_zone(&route.config.shm_namespace, host.now_ms()) {
            return self.finish(refusal);
        }
        let step = in_scope(&mut host, route, |cx| match &pairs {
            Ok(pairs) => {
                let (request, step) = Request::start(cx, pairs, path.as_deref());
                self.request = request;
                step
            }
            Err(refusal) => Request::refuse(cx, refusal),
        });
        self.finish(step.unwrap_or_else(|| deny_internal("worker state busy")))
    }

    fn on_response(&mut self, token: u32, body_size: usize) {
        if self.done {
            return;
        }
        let response = read_callout_response(body_size);
        // Read before the request is taken: a refusal still knows what the request sent.
        let mut host = match ProxyHost::at_callback_start() {
            Ok(host) => host,
            Err(e) => {
                self.finish(deny_internal(&format!(
                    "reading the clock failed ({})",
                    e.0
                )));
                return;
            }
        };
        let (Some(state), Some(mut request)) = (self.route.clone(), self.request.take()) else {
            self.finish(deny_internal("callout answer without a request"));
            return;
        };
        let RouteState::Ready(route) = &*state else {
            self.request = Some(request);
            self.finish(Step::Deny(AuthError::InvalidConfiguration));
            return;
        };
        let step = in_scope(&mut host, route, |cx| {
            request.on_callout(cx, token, &response)
        });
        self.request = Some(request);
        self.finish(step.unwrap_or_else(|| deny_internal("worker state busy")));
    }

    /// Applies a decision. Returns the action for a header callback.
    fn finish(&mut self, step: Step) -> Action {
        match step {
            Step::Wait => {
                if self.paused.is_none() {
                    self.paused = Some(zone::PausedRequest::new());
                }
                Action::Pause
            }
            Step::Allow(edits) => {
                for (name, value) in &edits {
                    if ffi::replace_header(ffi::MAP_REQUEST_HEADERS, name, value.as_bytes())
                        .is_err()
                    {
                        return self.finish(deny_internal("setting a request header failed"));
                    }
                }
                self.done = true;
                if self.paused.take().is_some() && ffi::resume_http_request().is_err() {
                    return self.finish(deny_internal("resuming the request failed"));
                }
                Action::Continue
            }
            Step::Deny(error) => {
                self.done = true;
                self.paused = None;
                let body = match &self.request {
                    Some(request) if !request.may_refuse_with_body() => RefusalBody::Omitted,
                    _ => RefusalBody::Generic,
                };
                let extra = self
                    .request
                    .as_ref()
                    .map_or(&[][..], Request::response_headers);
                respond(error, body, extra);
                // Its headers are in the local response: none to add to it again.
                self.request = None;
                Action::Pause
            }
        }
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        let _ctx = logger::enter(self.id);
        self.on_response(token, body_size);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _ctx = logger::enter(self.id);
        if self.done {
            return Action::Continue;
        }
        self.on_headers()
    }

    /// Adds the rate-limit fields to an allowed request's answer, replacing any the upstream
    /// sent (they would describe limits the client does not deal with here).
    fn on_http_response_headers(&mut self) {
        let _ctx = logger::enter(self.id);
        let Some(request) = self.request.as_ref().filter(|_| self.done) else {
            return;
        };
        for (name, value) in request.response_headers() {
            if ffi::replace_header(ffi::MAP_RESPONSE_HEADERS, name, value.as_bytes()).is_err() {
                log::warn!("could not set the {name} response header");
            }
        }
    }
}

/// Proves the route's shared-data zone before anything touches it: the one host call that may
/// trap by design, made only while nothing of this instance is paused (see `zone`).
fn prove_zone(namespace: &str, now_ms: u64) -> Result<(), Step> {
    match zone::prove_for_request(namespace, now_ms) {
        Ok(()) => Ok(()),
        Err(e @ zone::NotProven::Missing { .. }) => Err(deny_internal(&e.to_string())),
        Err(e @ zone::NotProven::Busy { .. }) => {
            log::warn!("{e}; refusing the request (503)");
            Err(Step::Deny(AuthError::KeysUnavailable))
        }
    }
}

fn deny_internal(what: &str) -> Step {
    log::error!("{what}; refusing the request");
    Step::Deny(AuthError::Internal)
}

/// Whether a local refusal carries a body (see `Request::may_refuse_with_body`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RefusalBody {
    /// The rejection's generic JSON body.
    Generic,
    /// Status and headers only.
    Omitted,
}

/// Sends the local response for `error` with `extra` headers (a 429's `Retry-After` and
/// rate-limit fields); this also cancels any pending callouts.
fn respond(error: AuthError, body: RefusalBody, extra: &[ResponseHeader]) {
    let rejection = error.rejection();
    let retry_after = rejection.retry_after.map(|s| s.to_string());
    let with_body = body == RefusalBody::Generic;
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3 + extra.len());
    if with_body {
        headers.push(("content-type", BODY_CONTENT_TYPE));
    }
    if let Some(challenge) = rejection.www_authenticate.as_deref() {
        headers.push(("www-authenticate", challenge));
    }
    if let Some(seconds) = retry_after.as_deref() {
        headers.push(("retry-after", seconds));
    }
    headers.extend(extra.iter().map(|(name, value)| (*name, &**value)));
    let body = if with_body { rejection.body } else { "" };
    if ffi::send_local_response(u32::from(rejection.status), &headers, body.as_bytes()).is_err() {
        logger::write(
            logger::CRITICAL,
            format_args!("could not refuse a request ({REALM}); host refused the local response"),
        );
    }
}

/// The answer to a callout as the core sees it. A failed call has no `:status`; a body over
/// the cap is not read and counts as a failure.
fn read_callout_response(body_size: usize) -> CalloutResponse {
    let header = |name: &str| {
        ffi::get_header(ffi::MAP_CALL_RESPONSE_HEADERS, name)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
    };
    let status = header(":status").and_then(|s| s.trim().parse::<u16>().ok());
    let dispatch_status = header(":dispatch_status");
    if body_size > MAX_CALLOUT_BODY_BYTES {
        return CalloutResponse {
            status: None,
            dispatch_status: Some(format!("response body too large ({body_size} bytes)")),
            body: Vec::new(),
        };
    }
    let body = if body_size == 0 {
        Vec::new()
    } else {
        match ffi::get_buffer(ffi::BUFFER_CALL_RESPONSE_BODY, 0, body_size) {
            Ok(body) => body.unwrap_or_default(),
            Err(_) => {
                return CalloutResponse {
                    status: None,
                    dispatch_status: Some("reading the response body failed".into()),
                    body: Vec::new(),
                }
            }
        }
    };
    CalloutResponse {
        status,
        dispatch_status,
        body,
    }
}
