//! The one real [`Host`]: the filter's logic talking to Kong through proxy-wasm host calls.
//!
//! The clock is read once per callback ([`ProxyHost::at_callback_start`]): the core sees one
//! `now` per callback, and a clock that cannot be read stops the callback before any
//! verification, instead of standing in a made-up time (the far future would make every token
//! look expired, until one with an absurd `exp` comes along).

use super::{ffi, zone};
use crate::host::{CalloutRequest, CalloutToken, Host, HostError, SharedSetError};
use crate::http::url::dispatch_target_ok;
use crate::metrics::Metric;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

thread_local! {
    /// Metric ids by name, defined at the first request of the instance (after a trap Kong
    /// re-runs `on_configure` but not `on_vm_start`, so nothing defined at VM start could be
    /// relied upon).
    static METRIC_IDS: RefCell<HashMap<Metric, u32>> = RefCell::new(HashMap::new());
    /// Counters the routes' configurations name (one per rate limit), registered by
    /// `on_configure` and defined with the others at the instance's first request.
    static ROUTE_METRICS: RefCell<Vec<Metric>> = const { RefCell::new(Vec::new()) };
    /// The last clock reading of this instance (ms), for work that must finish without one.
    static LAST_READING_MS: Cell<u64> = const { Cell::new(0) };
}

/// Host calls for the current callback (root or HTTP context), with the clock read at its start.
pub struct ProxyHost {
    now_ms: u64,
}

impl ProxyHost {
    /// Reads the host clock for this callback. `Err` when the host cannot tell the time: a
    /// request is then refused and a tick skipped, never run against a made-up time.
    pub fn at_callback_start() -> Result<ProxyHost, HostError> {
        let now_ms = ffi::now_nanos()
            .map(|ns| ns / 1_000_000)
            .map_err(|s| host_error("get_current_time_nanoseconds", s))?;
        LAST_READING_MS.with(|last| last.set(now_ms));
        Ok(ProxyHost { now_ms })
    }

    /// A host at this instance's last clock reading, for a background callout answer that
    /// arrives while the clock fails: the answer must still end its job (stored times then
    /// look older than they are, which only makes keys and tokens refresh sooner). Never used
    /// for a request.
    pub fn at_last_reading() -> ProxyHost {
        ProxyHost {
            now_ms: LAST_READING_MS.with(Cell::get),
        }
    }

    /// Defines every counter, once per instance. Called at the start of a request while nothing
    /// of the instance is paused: `define_metric` traps when Kong's metrics zone is full, and a
    /// trap in `on_configure` would run the worker's routes without the filter.
    pub fn define_metrics() {
        METRIC_IDS.with(|ids| {
            let Ok(mut ids) = ids.try_borrow_mut() else {
                return;
            };
            if !ids.is_empty() {
                return;
            }
            let routes =
                ROUTE_METRICS.with(|m| m.try_borrow().map(|m| m.clone()).unwrap_or_default());
            for metric in crate::metrics::Metric::all().chain(routes) {
                if ids.contains_key(&metric) {
                    continue;
                }
                if let Ok(id) = ffi::define_counter(&metric.name()) {
                    ids.insert(metric, id);
                }
            }
        });
    }

    /// Remembers counters a route's configuration names; no host call (a trap in
    /// `on_configure` would run the worker's routes without the filter).
    pub fn register_metrics(metrics: impl Iterator<Item = Metric>) {
        ROUTE_METRICS.with(|registered| {
            if let Ok(mut registered) = registered.try_borrow_mut() {
                for metric in metrics {
                    if !registered.contains(&metric) {
                        registered.push(metric);
                    }
                }
            }
        });
    }

    /// The host's id for `metric`, if defined (never defined here: see [`Self::define_metrics`]).
    fn metric_id(metric: Metric) -> Option<u32> {
        METRIC_IDS.with(|ids| ids.try_borrow().ok()?.get(&metric).copied())
    }
}

/// Shared data of a namespace this instance has not proven is never touched: on Kong a missing
/// zone traps, and only a request's start may risk that (see [`zone`]).
fn require_proven(key: &str) -> Result<(), HostError> {
    if zone::key_is_proven(key) {
        return Ok(());
    }
    Err(HostError(
        "shared data skipped: no request has proven its namespace's zone in this instance yet"
            .to_string(),
    ))
}

fn host_error(what: &str, status: ffi::Status) -> HostError {
    HostError(format!("{what} failed with host status {}", status.0))
}

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn dispatch(&mut self, request: &CalloutRequest) -> Result<CalloutToken, HostError> {
        // Last guard: a target the engine cannot parse traps instead of failing (url.rs).
        if !dispatch_target_ok(&request.upstream) {
            return Err(HostError(
                "dispatch target refused: Kong's engine cannot parse it or reads a Unix socket"
                    .to_string(),
            ));
        }
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        ffi::http_call(
            &request.upstream,
            &headers,
            request.body.as_deref(),
            request.timeout_ms,
        )
        .map_err(|s| host_error("dispatch_http_call", s))
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        require_proven(key)?;
        ffi::get_shared_data(key).map_err(|s| host_error("get_shared_data", s))
    }

    fn shared_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedSetError> {
        require_proven(key).map_err(SharedSetError::Host)?;
        // The one bound on what reaches the zone: Kong's engine traps on a write that does not fit.
        crate::host::check_shared_value(value)?;
        match ffi::set_shared_data(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(ffi::CAS_MISMATCH) => Err(SharedSetError::CasMismatch),
            Err(s) => Err(SharedSetError::Host(host_error("set_shared_data", s))),
        }
    }

    fn count(&mut self, metric: Metric) {
        if let Some(id) = Self::metric_id(metric) {
            let _ = ffi::increment_metric(id, 1);
        }
    }
}
