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
    pub req_headers: Vec<(String, Vec<u8>)>,
    pub req_body: Vec<u8>,
    pub resp_status: u16,
    pub resp_headers: Vec<(String, Vec<u8>)>,
    pub resp_body: Vec<u8>,
    /// Set once a response (upstream or local) has started: request headers are read-only then.
    pub response_started: bool,
    /// A local response stashed by a filter.
    pub local: Option<LocalResponse>,
    pub info: RequestInfo,
}

/// The response to a callout, as `on_http_call_response` reads it.
#[derive(Debug, Clone, Default)]
pub struct CallResult {
    /// Headers including `:status`, or only `:dispatch_status` on failure.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// `None` on success, the `:dispatch_status` value on failure.
    pub failure: Option<&'static str>,
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
    /// Tick periods set by root contexts (ms), read by the worker after each callback.
    pub tick_periods: HashMap<u32, u32>,
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
