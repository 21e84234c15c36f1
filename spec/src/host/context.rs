//! Per-`Store` state of one filter instance: what is running now (which context, which step),
//! the HTTP exchange a request context sees, callouts made during the current call, and handles
//! to the gateway-wide shared state. Nothing here is global: every instance has its own.

use super::dispatch::CallSpec;
use super::wasi::WasiState;
use super::World;
use std::collections::HashMap;
use std::sync::Arc;

/// The proxy-wasm callback being run, as ngx_wasm_module names its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `_initialize` / `_start` and context creation.
    Init,
    VmStart,
    Configure,
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    Log,
    Done,
    CallResponse,
    Tick,
}

impl Step {
    /// Whether `dispatch_http_call` is allowed now.
    pub fn may_dispatch(self) -> bool {
        matches!(
            self,
            Step::RequestHeaders | Step::RequestBody | Step::CallResponse | Step::Tick
        )
    }

    /// ngx_wasm_module's name of the step (for logs).
    pub fn name(self) -> &'static str {
        match self {
            Step::Init => "init",
            Step::VmStart => "on_vm_start",
            Step::Configure => "on_configure",
            Step::RequestHeaders => "on_request_headers",
            Step::RequestBody => "on_request_body",
            Step::ResponseHeaders => "on_response_headers",
            Step::ResponseBody => "on_response_body",
            Step::Log => "on_log",
            Step::Done => "on_done",
            Step::CallResponse => "on_http_call_response",
            Step::Tick => "on_tick",
        }
    }
}

/// A response produced by `proxy_send_local_response`.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// What a request context may read (properties) besides headers.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub source_address: String,
    pub source_port: u16,
    pub route_name: Option<String>,
    pub route_id: Option<String>,
    pub service_name: Option<String>,
    pub connection_id: u64,
}

/// Request headers as nginx keeps them for ngx_wasm_module. A header a filter removes stays in
/// the list marked deleted (`hash = 0`): it leaves the header pairs, but a lookup by name still
/// finds it and nginx's proxy module still sends it upstream. Setting a header rewrites its first copy in place and marks the others
/// deleted (still sent); setting one that is absent (or only deleted) appends it; setting an
/// empty value removes it. Measured on the engine: `spec/tests/engine_facts.rs`.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders {
    entries: Vec<HeaderEntry>,
}

/// One entry of [`RequestHeaders`].
#[derive(Debug, Clone)]
struct HeaderEntry {
    name: String,
    value: Vec<u8>,
    deleted: bool,
}

impl RequestHeaders {
    /// Headers as the client sent them.
    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> RequestHeaders {
        RequestHeaders {
            entries: pairs
                .into_iter()
                .map(|(name, value)| HeaderEntry {
                    name,
                    value,
                    deleted: false,
                })
                .collect(),
        }
    }

    /// What filters see, in order.
    pub fn live(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries
            .iter()
            .filter(|e| !e.deleted)
            .map(|e| (e.name.as_str(), e.value.as_slice()))
    }

    /// How many headers filters see (the count `on_http_request_headers` receives).
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// The first value of `name` (any case), deleted or not: ngx_wasm_module looks a header
    /// up by name without looking at the deleted mark (only the pairs skip deleted entries).
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .map(|e| e.value.clone())
    }

    /// What nginx sends upstream: every entry, deleted or not.
    pub fn forwarded(&self) -> Vec<(String, Vec<u8>)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    }

    /// `proxy_add_header_map_value`.
    pub fn add(&mut self, name: String, value: Vec<u8>) {
        self.entries.push(HeaderEntry {
            name,
            value,
            deleted: false,
        });
    }

    /// `proxy_replace_header_map_value` (an empty value removes).
    pub fn set(&mut self, name: String, value: Vec<u8>) {
        if value.is_empty() {
            return self.remove(&name);
        }
        let mut value = Some(value);
        for e in self
            .entries
            .iter_mut()
            .filter(|e| !e.deleted && e.name.eq_ignore_ascii_case(&name))
        {
            match value.take() {
                Some(v) => {
                    e.name = name.clone();
                    e.value = v;
                }
                None => e.deleted = true,
            }
        }
        if let Some(value) = value {
            self.add(name, value);
        }
    }

    /// `proxy_remove_header_map_value`: marked deleted, still forwarded.
    pub fn remove(&mut self, name: &str) {
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.name.eq_ignore_ascii_case(name))
        {
            e.deleted = true;
        }
    }

    /// `proxy_set_header_map_pairs`: every entry marked deleted, then the pairs appended.
    pub fn replace_all(&mut self, pairs: Vec<(String, Vec<u8>)>) {
        for e in &mut self.entries {
            e.deleted = true;
        }
        for (name, value) in pairs {
            self.set(name, value);
        }
    }
}

/// One HTTP exchange as the filter chain sees and edits it. It is moved into the instance for
/// the duration of a callback and back out afterwards.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub method: String,
    /// Path with query string, as the client sent it (`:path`).
    pub path: String,
    pub scheme: String,
    pub authority: String,
    /// Request headers (not pseudo-headers), in order, names as received.
    pub req_headers: RequestHeaders,
    pub req_body: Vec<u8>,
    pub resp_status: u16,
    pub resp_headers: Vec<(String, Vec<u8>)>,
    pub resp_body: Vec<u8>,
    /// Set once a response (upstream or local) has started: request headers are read-only then.
    pub response_started: bool,
    /// A local response stashed by a filter.
    pub local: Option<LocalResponse>,
    /// A callout of this request sent a body and got no answer: on Kong's engine the body
    /// buffer goes back to the request's free list unreset, and a local response with a body
    /// then crashes the worker ("zero size buf in writer", engine_facts.rs).
    pub body_call_unanswered: bool,
    pub info: RequestInfo,
}

/// The response to a callout, as `on_http_call_response` reads it.
#[derive(Debug, Clone, Default)]
pub struct CallResult {
    /// Headers including `:status` and `:dispatch_status: ok`, or only `:dispatch_status` on
    /// failure (`ok` too when the peer closed without answering, as ngx_wasm_module reports it).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// `None` on success, why the call failed otherwise.
    pub failure: Option<&'static str>,
    /// The call carried a body, sent it, and then got no answer (timeout or EOF). On Kong's
    /// engine the request's local response may then carry no body (see `Exchange`).
    pub body_sent_unanswered: bool,
}

/// A callout requested during the current callback, started by the worker afterwards.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub token: u32,
    pub spec: CallSpec,
    /// Made from a root context (tick or root call response): uses Kong's `wasm{}` resolver.
    pub from_root: bool,
}

/// What is running in the instance right now.
#[derive(Debug, Default)]
pub struct Exec {
    pub context_id: u32,
    pub root_id: u32,
    pub is_root: bool,
    pub step: Option<Step>,
    pub exchange: Option<Exchange>,
    pub call: Option<CallResult>,
    /// `proxy_continue_stream` / `resume_http_request` was called.
    pub resumed: bool,
}

/// Per-instance state kept in the wasmtime `Store`.
pub struct HostState {
    pub filter: Arc<str>,
    pub worker: usize,
    pub world: Arc<World>,
    /// Plugin configuration of each root context id.
    pub root_configs: HashMap<u32, Vec<u8>>,
    /// Tick periods set by root contexts (ms) in this instance: a second non-zero one traps.
    pub tick_periods: HashMap<u32, u32>,
    /// Every `set_tick_period` call (root, ms), drained by the worker after each callback:
    /// ngx_wasm_module starts a new timer for each non-zero one.
    pub tick_arms: Vec<(u32, u32)>,
    pub exec: Exec,
    pub new_calls: Vec<NewCall>,
    pub wasi: WasiState,
    /// Message of the last host-raised trap (for the log).
    pub trap_reason: Option<String>,
}

impl HostState {
    /// Fresh state for a new instance of `filter` on `worker`.
    pub fn new(filter: Arc<str>, worker: usize, world: Arc<World>) -> HostState {
        HostState {
            filter,
            worker,
            world,
            root_configs: HashMap::new(),
            tick_periods: HashMap::new(),
            tick_arms: Vec::new(),
            exec: Exec::default(),
            new_calls: Vec::new(),
            wasi: WasiState::default(),
            trap_reason: None,
        }
    }

    /// Records why the host traps and returns the error to raise.
    pub fn trap(&mut self, msg: impl Into<String>) -> anyhow::Error {
        let msg = msg.into();
        self.trap_reason = Some(msg.clone());
        anyhow::anyhow!(msg)
    }

    /// The step running now (`Init` when none).
    pub fn step(&self) -> Step {
        self.exec.step.unwrap_or(Step::Init)
    }

    /// The context id used in log prefixes.
    pub fn log_context(&self) -> u32 {
        self.exec.context_id
    }
}
