//! Probe filter for the Kong stand-in tests: its JSON configuration says what to do in which
//! callback, and it reports what it saw in the `x-probe-seen` response header (`; `-separated
//! `name=value` records) or, from root contexts, in the log (`probe-seen: ...`).
//!
//! ```json
//! {
//!   "configure_result": true,
//!   "pause": false,
//!   "on_vm_start": [...], "on_configure": [...], "on_tick": [...], "root_on_http_call_response": [...],
//!   "on_request_headers": [...], "on_request_body": [...], "on_http_call_response": [...],
//!   "on_first_http_call_response": [...] (before on_http_call_response, for the first one only),
//!   "on_http_call_response_N": [...] (before on_http_call_response, for the N-th one only),
//!   "on_response_headers": [...], "on_log": [...]
//! }
//! ```
//! Actions (`{"do": ...}`): `dispatch` (`upstream`, `headers` [[k, v]...], `body`, `timeout_ms`),
//! `set_shared` (`key`, `value` or null to delete, `cas` or null), `get_shared` (`key`),
//! `incr_shared` (`key`), `metrics_json` (`names`: `filter:metric`; answers 200 with their values,
//! read by id on Kong's engine), `set_tick_period` (`ms`), `trap`, `respond` (`status`, `body`,
//! `headers`), `resume`, `set_effective_context` (`id`, or `id_from_shared`: key), `property`
//! (`path`), `define_metric` (`kind`, `name`), `increment_metric` (`name`, `by`), `record_metric`
//! (`name`, `value`), `count_headers`, `get_header` (`name`), `remove_header` (`name`),
//! `set_header` (`name`, `value`), `log` (`level`, `msg`),
//! `static_incr`, `record_call` (call response status, dispatch status, body), `mark` (`value`:
//! records `mark=value`), `append_header` (`name`, `value`: appends `,value` to a request header),
//! `trap_if_header` (`name`: traps when the request has that header), `get_metric` (`name`),
//! `wasi` (clocks, random_get, environment, arguments, stdout/stderr through WASI),
//! `wasi_nyi` (calls a WASI import the host does not implement), `bad_pointer` (`proxy_log` with
//! an out-of-bounds pointer), `huge_random` (`random_get` of 2 GB into a small buffer),
//! `repeat` (`call`, `n`: one host call `n` times, for `make bench`'s host-call costs; `call` is
//! `none`, `get_header` (`name`), `get_pairs`, `replace_header` (`name`, `value`), `property`
//! (`path`), `get_shared` (`key`), `cas_shared` (`key`, `value`: read the CAS, then
//! replace), `log` (`level`, `msg`) or `time`; records
//! `repeat_<call>=<n>:<calls that failed>:<calls that found nothing>` once).
//! `$ctx` in a `value` or a shared-data `key` is replaced by the current context id.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

thread_local! {
    /// In-instance state: lost when the instance is destroyed after a trap.
    static STATIC_COUNTER: Cell<u64> = const { Cell::new(0) };
    static METRIC_IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, config: Rc::new(Value::Null), seen: Vec::new() })
    });
}}

fn actions<'a>(config: &'a Value, hook: &str) -> Vec<&'a Value> {
    config
        .get(hook)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// CRC-32 (IEEE 802.3, as zlib and nginx's `ngx_crc32_long` compute it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn status_name(s: Status) -> String {
    format!("{s:?}")
}

/// Runs `list` in context `ctx_id`; records go to `seen`.
fn run(list: Vec<&Value>, ctx_id: u32, seen: &mut Vec<String>) {
    for action in list {
        let what = text(action, "do");
        match what.as_str() {
            "dispatch" => {
                let upstream = text(action, "upstream");
                let owned: Vec<(String, String)> = action
                    .get("headers")
                    .and_then(Value::as_array)
                    .map(|hs| {
                        hs.iter()
                            .filter_map(|p| {
                                Some((
                                    p.get(0)?.as_str()?.to_string(),
                                    p.get(1)?.as_str()?.to_string(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let headers: Vec<(&str, &str)> = owned
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = text(action, "body");
                let body = if body.is_empty() {
                    None
                } else {
                    Some(body.as_bytes())
                };
                let timeout = action
                    .get("timeout_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(5000);
                match hostcalls::dispatch_http_call(
                    &upstream,
                    headers,
                    body,
                    vec![],
                    Duration::from_millis(timeout),
                ) {
                    Ok(token) => seen.push(format!("dispatch=ok:{token}")),
                    Err(s) => seen.push(format!("dispatch={}", status_name(s))),
                }
            }
            "set_shared" => {
                let key = text(action, "key").replace("$ctx", &ctx_id.to_string());
                let value = action
                    .get("value")
                    .and_then(Value::as_str)
                    .map(|v| v.replace("$ctx", &ctx_id.to_string()));
                let cas = action.get("cas").and_then(Value::as_u64).map(|c| c as u32);
                let r = hostcalls::set_shared_data(&key, value.as_deref().map(str::as_bytes), cas);
                seen.push(format!(
                    "set_shared={}",
                    r.map(|_| "Ok".to_string()).unwrap_or_else(status_name)
                ));
            }
            "get_shared" => {
                let key = text(action, "key").replace("$ctx", &ctx_id.to_string());
                match hostcalls::get_shared_data(&key) {
                    Ok((Some(v), cas)) => seen.push(format!(
                        "get_shared={}@{}",
                        clean(&String::from_utf8_lossy(&v)),
                        cas.unwrap_or(0)
                    )),
                    Ok((None, _)) => seen.push("get_shared=NotFound".to_string()),
                    Err(s) => seen.push(format!("get_shared={}", status_name(s))),
                }
            }
            "incr_shared" => {
                let key = text(action, "key").replace("$ctx", &ctx_id.to_string());
                for _ in 0..100 {
                    let (value, cas) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
                    let n: u64 = value
                        .and_then(|v| String::from_utf8(v).ok())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    if hostcalls::set_shared_data(&key, Some((n + 1).to_string().as_bytes()), cas)
                        .is_ok()
                    {
                        seen.push(format!("incr_shared={}", n + 1));
                        break;
                    }
                }
            }
            "set_tick_period" => {
                let ms = action.get("ms").and_then(Value::as_u64).unwrap_or(100);
                let r = hostcalls::set_tick_period(Duration::from_millis(ms));
                seen.push(format!(
                    "set_tick_period={}",
                    r.map(|_| "Ok".to_string()).unwrap_or_else(status_name)
                ));
            }
            "trap" => {
                // `abort` is the wasm `unreachable` instruction: a trap.
                std::process::abort();
            }
            "respond" => {
                let status = action.get("status").and_then(Value::as_u64).unwrap_or(200) as u32;
                let body = text(action, "body");
                let mut headers: Vec<(String, String)> = action
                    .get("headers")
                    .and_then(Value::as_array)
                    .map(|hs| {
                        hs.iter()
                            .filter_map(|p| {
                                Some((
                                    p.get(0)?.as_str()?.to_string(),
                                    p.get(1)?.as_str()?.to_string(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                headers.push(("x-probe-seen".to_string(), seen.join("; ")));
                let hs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let r = hostcalls::send_http_response(status, hs, Some(body.as_bytes()));
                seen.push(format!(
                    "respond={}",
                    r.map(|_| "Ok".to_string()).unwrap_or_else(status_name)
                ));
            }
            "resume" => {
                let r = hostcalls::resume_http_request();
                seen.push(format!(
                    "resume={}",
                    r.map(|_| "Ok".to_string()).unwrap_or_else(status_name)
                ));
            }
            "set_effective_context" => {
                let id = match action.get("id_from_shared").and_then(Value::as_str) {
                    Some(key) => hostcalls::get_shared_data(key)
                        .ok()
                        .and_then(|(v, _)| v)
                        .and_then(|v| String::from_utf8(v).ok())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    None => action.get("id").and_then(Value::as_u64).unwrap_or(0) as u32,
                };
                let r = hostcalls::set_effective_context(id);
                seen.push(format!(
                    "set_effective_context={}",
                    r.map(|_| "Ok".to_string()).unwrap_or_else(status_name)
                ));
            }
            "property" => {
                let path = text(action, "path");
                let r = hostcalls::get_property(path.split('.').collect());
                let v = match r {
                    Ok(Some(v)) => clean(&String::from_utf8_lossy(&v)),
                    Ok(None) => "NotFound".to_string(),
                    Err(s) => status_name(s),
                };
                seen.push(format!("{path}={v}"));
            }
            "define_metric" => {
                let name = text(action, "name");
                let kind = match text(action, "kind").as_str() {
                    "gauge" => MetricType::Gauge,
                    "histogram" => MetricType::Histogram,
                    _ => MetricType::Counter,
                };
                if let Ok(id) = hostcalls::define_metric(kind, &name) {
                    METRIC_IDS.with(|m| m.borrow_mut().insert(name, id));
                }
            }
            "increment_metric" | "record_metric" => {
                let name = text(action, "name");
                let id = METRIC_IDS.with(|m| m.borrow().get(&name).copied());
                let r = match id {
                    None => Err(Status::NotFound),
                    Some(id) if what == "increment_metric" => hostcalls::increment_metric(
                        id,
                        action.get("by").and_then(Value::as_i64).unwrap_or(1),
                    ),
                    Some(id) => hostcalls::record_metric(
                        id,
                        action.get("value").and_then(Value::as_u64).unwrap_or(0),
                    ),
                };
                seen.push(format!(
                    "{what}={}",
                    r.map(|_| "Ok".to_string()).unwrap_or_else(status_name)
                ));
            }
            "count_headers" => {
                let n = hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                    .map(|m| m.len())
                    .unwrap_or(0);
                seen.push(format!("headers={n}"));
            }
            "get_header" => {
                let name = text(action, "name");
                let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, &name)
                    .map(|v| v.map(|v| clean(&String::from_utf8_lossy(&v))));
                seen.push(format!(
                    "header_{name}={}",
                    match value {
                        Ok(Some(v)) => v,
                        Ok(None) => "none".to_string(),
                        Err(s) => status_name(s),
                    }
                ));
            }
            "remove_header" => {
                let r =
                    hostcalls::remove_map_value(MapType::HttpRequestHeaders, &text(action, "name"));
                seen.push(format!(
                    "remove={}",
                    r.map(|_| "Ok".to_string()).unwrap_or_else(status_name)
                ));
            }
            "set_header" => {
                let _ = hostcalls::set_map_value(
                    MapType::HttpRequestHeaders,
                    &text(action, "name"),
                    Some(&text(action, "value")),
                );
            }
            "log" => {
                let level = match text(action, "level").as_str() {
                    "info" => LogLevel::Info,
                    "error" => LogLevel::Error,
                    "critical" => LogLevel::Critical,
                    _ => LogLevel::Warn,
                };
                let _ = hostcalls::log(level, &text(action, "msg"));
            }
            "static_incr" => {
                let n = STATIC_COUNTER.with(|c| {
                    c.set(c.get() + 1);
                    c.get()
                });
                seen.push(format!("static={n}"));
            }
            "record_call" => {
                let status =
                    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
                        .ok()
                        .flatten();
                let dstatus = hostcalls::get_map_value_bytes(
                    MapType::HttpCallResponseHeaders,
                    ":dispatch_status",
                )
                .ok()
                .flatten();
                let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, usize::MAX)
                    .ok()
                    .flatten();
                let s = |b: Option<Vec<u8>>| {
                    b.map(|v| clean(&String::from_utf8_lossy(&v)))
                        .unwrap_or_else(|| "-".to_string())
                };
                seen.push(format!("call_status={}", s(status)));
                seen.push(format!("call_dispatch_status={}", s(dstatus)));
                seen.push(format!("call_body={}", s(body)));
            }
            "mark" => seen.push(format!("mark={}", text(action, "value"))),
            "append_header" => {
                let name = text(action, "name");
                let value = text(action, "value");
                let old = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, &name)
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                let new = match old {
                    Some(old) if !old.is_empty() => format!("{old},{value}"),
                    _ => value,
                };
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some(&new));
            }
            "trap_if_header" => {
                let name = text(action, "name");
                if let Ok(Some(_)) =
                    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, &name)
                {
                    std::process::abort();
                }
            }
            "metrics_json" => {
                // Kong's engine names a metric's id after the CRC32 of `pw:<filter>:<name>`: read
                // another filter's counters by name and answer them as Kong's Prometheus names.
                let mut out = serde_json::Map::new();
                for name in action
                    .get("names")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let id = crc32(format!("pw:{name}").as_bytes());
                    if let Ok(value) = hostcalls::get_metric(id) {
                        out.insert(format!("pw_{}", name.replace(':', "_")), value.into());
                    }
                }
                let body = Value::Object(out).to_string();
                let _ = hostcalls::send_http_response(
                    200,
                    vec![("content-type", "application/json")],
                    Some(body.as_bytes()),
                );
            }
            "get_metric" => {
                let name = text(action, "name");
                let id = METRIC_IDS.with(|m| m.borrow().get(&name).copied());
                let r = match id {
                    None => Err(Status::NotFound),
                    Some(id) => hostcalls::get_metric(id),
                };
                seen.push(format!(
                    "metric_{name}={}",
                    r.map(|v| v.to_string()).unwrap_or_else(status_name)
                ));
            }
            "wasi" => wasi_basics(seen),
            "bad_pointer" => {
                // A host call with a pointer past the end of memory: the host must trap.
                let r = unsafe { raw_env::proxy_log(3, 0xffff_fff0usize as *const u8, 100) };
                seen.push(format!("bad_pointer={r}"));
            }
            "huge_random" => {
                // random_get of 2 GB into a 16-byte buffer: the host must trap, not allocate.
                let mut b = [0u8; 16];
                let r = unsafe { wasi_nyi::random_get(b.as_mut_ptr(), 0x7fff_ffff) };
                seen.push(format!("huge_random={r}"));
            }
            "wasi_nyi" => {
                // An import the host does not implement: calling it traps.
                let mut buf = [0u8; 64];
                let errno = unsafe { wasi_nyi::fd_filestat_get(3, buf.as_mut_ptr()) };
                seen.push(format!("wasi_nyi={errno}"));
            }
            "repeat" => repeat(action, seen),
            other => seen.push(format!("unknown_action={other}")),
        }
    }
}

/// The level of a `repeat` of `log`: `trace`, `debug` (default), `info`, `warn`, `error`.
fn log_level(name: &str) -> LogLevel {
    match name {
        "trace" => LogLevel::Trace,
        "info" => LogLevel::Info,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        "critical" => LogLevel::Critical,
        _ => LogLevel::Debug,
    }
}

/// `repeat`: the host call `call` made `n` times with arguments read once, so that a route doing
/// it `n` times minus a route doing `none` is `n` calls' cost; records one line for all of them.
fn repeat(action: &Value, seen: &mut Vec<String>) {
    let call = text(action, "call");
    let n = action.get("n").and_then(Value::as_u64).unwrap_or(1);
    let name = text(action, "name");
    let value = text(action, "value");
    let path = text(action, "path");
    let key = text(action, "key");
    let msg = text(action, "msg");
    let level = log_level(&text(action, "level"));
    let (mut failed, mut missing) = (0u64, 0u64);
    for _ in 0..n {
        // Ok(true): an answer; Ok(false): nothing found; Err: the call failed.
        let outcome: Result<bool, Status> = match call.as_str() {
            "get_header" => hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, &name)
                .map(|v| v.is_some()),
            "get_pairs" => {
                hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map(|m| !m.is_empty())
            }
            "replace_header" => {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some(&value))
                    .map(|()| true)
            }
            "property" => hostcalls::get_property(path.split('.').collect()).map(|v| v.is_some()),
            "get_shared" => hostcalls::get_shared_data(&key).map(|(v, _)| v.is_some()),
            // Kong's engine takes a missing CAS as "create only": read the CAS, then replace.
            "cas_shared" => hostcalls::get_shared_data(&key).and_then(|(_, cas)| {
                hostcalls::set_shared_data(&key, Some(value.as_bytes()), cas).map(|()| true)
            }),
            "log" => hostcalls::log(level, &msg).map(|()| true),
            "time" => hostcalls::get_current_time().map(|_| true),
            "increment_metric" => METRIC_IDS
                .with(|m| m.borrow().get(&name).copied())
                .ok_or(Status::NotFound)
                .and_then(|id| hostcalls::increment_metric(id, 1))
                .map(|()| true),
            _ => Ok(true),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => missing += 1,
            Err(_) => failed += 1,
        }
    }
    seen.push(format!("repeat_{call}={n}:{failed}:{missing}"));
}

mod raw_env {
    extern "C" {
        pub fn proxy_log(level: u32, ptr: *const u8, len: usize) -> u32;
    }
}

mod wasi_nyi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn fd_filestat_get(fd: u32, buf: *mut u8) -> u16;
        pub fn random_get(buf: *mut u8, len: usize) -> u16;
    }
}

/// WASI preview1 through std (clocks, stdout/stderr, environment, arguments) and `random_get`.
fn wasi_basics(seen: &mut Vec<String>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    seen.push(format!("wasi_realtime={now}"));
    let t0 = std::time::Instant::now();
    let mut x = 0u64;
    for i in 0..10_000u64 {
        x = x.wrapping_mul(31).wrapping_add(i);
    }
    let t1 = std::time::Instant::now();
    seen.push(format!("wasi_monotonic={}", t1 >= t0 && x != 1));
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    let ea = unsafe { wasi_nyi::random_get(a.as_mut_ptr(), a.len()) };
    let eb = unsafe { wasi_nyi::random_get(b.as_mut_ptr(), b.len()) };
    let hex: String = a.iter().map(|v| format!("{v:02x}")).collect();
    seen.push(format!("wasi_random={ea}:{eb}:{}:{hex}", a != b));
    seen.push(format!("wasi_env={}", std::env::vars().count()));
    seen.push(format!("wasi_args={}", std::env::args().count()));
    println!("probe stdout line");
    eprintln!("probe stderr line");
}

struct Root {
    id: u32,
    config: Rc<Value>,
    seen: Vec<String>,
}

impl Root {
    fn run_root(&mut self, hook: &str) {
        let config = self.config.clone();
        let mut seen = std::mem::take(&mut self.seen);
        run(actions(&config, hook), self.id, &mut seen);
        if !seen.is_empty() {
            let _ = hostcalls::log(
                LogLevel::Warn,
                &format!("probe-seen {hook}: {}", seen.join("; ")),
            );
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, _nh: usize, _bs: usize, _nt: usize) {
        self.run_root("root_on_http_call_response");
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        if let Ok(Some(bytes)) =
            hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        {
            self.config = Rc::new(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        let _ = hostcalls::log(
            LogLevel::Warn,
            &format!("probe on_vm_start root #{}", self.id),
        );
        self.run_root("on_vm_start");
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        self.config = Rc::new(config);
        let _ = hostcalls::log(
            LogLevel::Warn,
            &format!("probe on_configure root #{}", self.id),
        );
        self.run_root("on_configure");
        self.config
            .get("configure_result")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    fn on_tick(&mut self) {
        self.run_root("on_tick");
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            calls: 0,
            config: self.config.clone(),
            seen: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    /// Call responses received so far.
    calls: u32,
    config: Rc<Value>,
    seen: Vec<String>,
}

impl Http {
    fn hook(&mut self, hook: &str) {
        let config = self.config.clone();
        run(actions(&config, hook), self.id, &mut self.seen);
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, nh: usize, bs: usize, _nt: usize) {
        self.seen.push(format!("call_response={token}:{nh}:{bs}"));
        self.calls += 1;
        if self.calls == 1 {
            self.hook("on_first_http_call_response");
        }
        self.hook(&format!("on_http_call_response_{}", self.calls));
        self.hook("on_http_call_response");
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, n: usize, _eos: bool) -> Action {
        self.seen.push(format!("ctx={}", self.id));
        self.seen.push(format!("num_headers={n}"));
        self.hook("on_request_headers");
        if self
            .config
            .get("pause")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, size: usize, _eos: bool) -> Action {
        self.seen.push(format!("body={size}"));
        self.hook("on_request_body");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.hook("on_response_headers");
        let _ = hostcalls::add_map_value(
            MapType::HttpResponseHeaders,
            "x-probe-seen",
            &self.seen.join("; "),
        );
        Action::Continue
    }

    fn on_log(&mut self) {
        self.hook("on_log");
    }
}
