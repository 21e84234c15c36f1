//! The proxy-wasm host: ABI 0.2.1 on wasmtime, behaving like Kong's ngx_wasm_module.
//!
//! - [`abi`]: the `env` imports, [`wasi`]: the WASI subset, [`memory`]: guest memory access;
//! - [`context`]: per-`Store` state, [`instance`]: one filter instance and its lifecycle;
//! - [`dispatch`]: HTTP callouts, [`shared_data`]: shm_kv zones, [`metrics`], [`properties`].
//!
//! Gateway-wide state shared by workers lives in [`World`]; nothing is global.

pub mod abi;
pub mod context;
pub mod dispatch;
pub mod instance;
pub mod memory;
pub mod metrics;
pub mod ngx_parse_url;
pub mod properties;
pub mod shared_data;
pub mod wasi;

use context::HostState;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

/// Kong hands filters at most this many request header pairs.
pub const MAX_HEADER_PAIRS: usize = 100;

/// State shared by every worker of one gateway.
#[derive(Debug)]
pub struct World {
    pub zones: shared_data::Zones,
    pub metrics: metrics::Metrics,
    pub resolver: dispatch::Resolver,
    tokens: AtomicU32,
    /// Per worker: filter name → number of instances created so far.
    pub instances_created: Mutex<Vec<BTreeMap<String, u64>>>,
    /// Per worker: filter name → linear-memory size (bytes) of its live instance, as last seen
    /// after a guest callback (for `/__status`: soak tests watch it stay bounded).
    pub memory_bytes: Mutex<Vec<BTreeMap<String, u64>>>,
    /// Host fault (admin `POST /__fault {"fault": "clock"}`): `proxy_get_current_time_nanoseconds`
    /// answers `InternalFailure` instead of the time, in every worker.
    pub clock_fails: AtomicBool,
}

impl World {
    /// A world for `workers` workers.
    pub fn new(workers: usize, zones: shared_data::Zones, resolver: dispatch::Resolver) -> World {
        World {
            zones,
            metrics: metrics::Metrics::new(workers),
            resolver,
            tokens: AtomicU32::new(1),
            instances_created: Mutex::new(vec![BTreeMap::new(); workers]),
            memory_bytes: Mutex::new(vec![BTreeMap::new(); workers]),
            clock_fails: AtomicBool::new(false),
        }
    }

    /// A callout token never handed out before in this gateway.
    pub fn next_token(&self) -> u32 {
        self.tokens.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts one more instance of `filter` on `worker`.
    pub fn count_instance(&self, worker: usize, filter: &str) {
        let mut all = self
            .instances_created
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(w) = all.get_mut(worker) {
            *w.entry(filter.to_string()).or_insert(0) += 1;
        }
    }
}

impl World {
    /// Records the linear-memory size of `filter`'s live instance on `worker`.
    pub fn record_memory(&self, worker: usize, filter: &str, bytes: u64) {
        let mut all = self.memory_bytes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = all.get_mut(worker) {
            match w.get_mut(filter) {
                Some(v) => *v = bytes,
                None => {
                    w.insert(filter.to_string(), bytes);
                }
            }
        }
    }
}

/// Logs a filter message like ngx_wasm_module: `[proxy-wasm]["name" #ctx] message`.
pub fn log_filter(state: &HostState, level: &str, msg: &str) {
    let conn = state.exec.exchange.as_ref().map(|e| e.info.connection_id);
    crate::gateway::log::emit(
        level,
        state.worker,
        conn,
        &format!(
            "[proxy-wasm][\"{}\" #{}] {msg}",
            state.filter,
            state.log_context()
        ),
    );
}

/// Logs a host message about a filter context.
pub fn log_line(filter: &str, worker: usize, level: &str, ctx: u32, msg: &str) {
    crate::gateway::log::emit(
        level,
        worker,
        None,
        &format!("[proxy-wasm][\"{filter}\" #{ctx}] {msg}"),
    );
}
