//! Whether this instance may touch a shared-data namespace.
//!
//! On Kong, any shared-data access to a namespace without an `shm_kv` zone traps, and no host call
//! tells whether the zone exists without trapping. A trap ends the instance, and Kong then
//! proxies every request of it that was paused on a callout, unverified. So a namespace is
//! *proven* once per instance, by one read at the start of a request of a route using it, and
//! only while no request of the instance is paused (so the first request of an instance always
//! may; with one namespace for every route, as by default, that is the only probe). Ticks and root call answers never touch a namespace that is not proven:
//! [`ProxyHost`](super::host::ProxyHost) refuses such calls without calling the host.
//!
//! Before probing, the request records the time in a gauge (host memory, which outlives the
//! instance) and clears it once the read returns: a gauge left set means the read trapped.
//! Requests then refuse with 500 without probing for
//! [`PROBE_RETRY_MS`](crate::host::zone::PROBE_RETRY_MS), so a missing zone costs one trap per
//! worker per period however busy the route. (The gauge is shared by all workers: a worker
//! probing in the same microseconds as another can refuse one request it could have served.)

use super::ffi;
use crate::host::zone::{gauge_name, namespace_of, probe_key, recent_trap};
use std::cell::{Cell, RefCell};

thread_local! {
    /// Namespaces proven in this instance.
    static PROVEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Requests of this instance paused on a callout: a trap now would let Kong proxy them
    /// without the filter, so nothing is probed while there are any.
    static PAUSED: Cell<usize> = const { Cell::new(0) };
}

/// Why a request cannot use its namespace now.
#[derive(Debug, PartialEq, Eq)]
pub enum NotProven {
    /// A probe of the namespace trapped recently: the zone is missing (500).
    Missing {
        namespace: String,
        trapped_ms_ago: u64,
    },
    /// Other requests of this instance wait on callouts, so probing could lose them (503).
    Busy { namespace: String },
}

impl std::fmt::Display for NotProven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotProven::Missing {
                namespace,
                trapped_ms_ago,
            } => write!(
                f,
                "shared-data namespace \"{namespace}\" has no shm_kv zone (reading it trapped \
                 {trapped_ms_ago} ms ago); Kong needs KONG_NGINX_WASM_SHM_KV_{}=12m",
                namespace.to_ascii_uppercase()
            ),
            NotProven::Busy { namespace } => write!(
                f,
                "shared-data namespace \"{namespace}\" is not proven in this instance yet, and \
                 other requests wait on callouts"
            ),
        }
    }
}

/// Whether `namespace` was proven in this instance.
pub fn is_proven(namespace: &str) -> bool {
    PROVEN.with(|p| p.borrow().iter().any(|n| n == namespace))
}

/// Whether the namespace of shared-data `key` was proven.
pub fn key_is_proven(key: &str) -> bool {
    namespace_of(key).is_some_and(is_proven)
}

/// Proves `namespace` for a request at `now_ms`. May trap on a missing zone: call it only at the
/// start of a request, before this request pauses or stores anything; it never probes while
/// another request of the instance is paused. Only the request's own namespace is probed: a
/// route must never answer 500 for another route's missing zone.
pub fn prove_for_request(namespace: &str, now_ms: u64) -> Result<(), NotProven> {
    if is_proven(namespace) {
        return Ok(());
    }
    if PAUSED.with(Cell::get) > 0 {
        return Err(NotProven::Busy {
            namespace: namespace.to_string(),
        });
    }
    probe(namespace, now_ms).map_err(|trapped_ms_ago| NotProven::Missing {
        namespace: namespace.to_string(),
        trapped_ms_ago,
    })
}

/// Reads one key of `namespace` (traps if its zone is missing), unless a probe of it trapped
/// recently (`Err(ms ago)`). The gauge brackets the read, so a trap leaves it set.
fn probe(namespace: &str, now_ms: u64) -> Result<(), u64> {
    let gauge = ffi::define_gauge(&gauge_name(namespace)).ok();
    let pending_since = gauge.and_then(|id| ffi::get_metric(id).ok()).unwrap_or(0);
    if let Some(ago) = recent_trap(pending_since, now_ms) {
        return Err(ago);
    }
    if let Some(id) = gauge {
        let _ = ffi::record_metric(id, now_ms.max(1));
    }
    let _ = ffi::get_shared_data(&probe_key(namespace));
    if let Some(id) = gauge {
        let _ = ffi::record_metric(id, 0);
    }
    PROVEN.with(|p| p.borrow_mut().push(namespace.to_string()));
    Ok(())
}

/// Held by a request while it is paused on a callout (see [`PAUSED`]).
#[derive(Debug)]
pub struct PausedRequest(());

impl PausedRequest {
    pub fn new() -> PausedRequest {
        PAUSED.with(|p| p.set(p.get() + 1));
        PausedRequest(())
    }
}

impl Drop for PausedRequest {
    fn drop(&mut self) {
        PAUSED.with(|p| p.set(p.get().saturating_sub(1)));
    }
}
