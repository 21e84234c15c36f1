//! The proxy-wasm ABI 0.2.1 imports (module `env`), registered per group, with ngx_wasm_module's
//! rules: which step may call what, what traps and what returns a status.

use super::context::RequestHeaders;
use super::context::{HostState, LocalResponse, NewCall, Step};
use super::dispatch;
use super::log_filter;
use super::memory::{self as mem, deserialize_pairs, serialize_pairs};
use super::metrics::{MetricError, MetricType};
use super::properties::{self, Property};
use super::shared_data::{SetOutcome, ZoneError};
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Linker};

/// proxy-wasm status codes.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
}
use status::*;

type C<'a> = Caller<'a, HostState>;
const ENV: &str = "env";

/// Registers every group of proxy-wasm imports.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    add_integration(linker)?;
    add_buffers(linker)?;
    add_maps(linker)?;
    add_properties(linker)?;
    add_shared(linker)?;
    add_http(linker)?;
    add_metrics(linker)?;
    add_unsupported(linker)?;
    Ok(())
}

/// Logging, time, effective context, tick period.
fn add_integration(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        ENV,
        "proxy_log",
        |mut c: C, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let msg = mem::read_string(&mut c, ptr, len)?;
            let level = match level {
                0 | 1 => "debug",
                2 => "info",
                3 => "warn",
                4 => "error",
                5 => "crit",
                _ => return Ok(BAD_ARGUMENT),
            };
            log_filter(c.data(), level, &msg);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_current_time_nanoseconds",
        |mut c: C, ret: i32| -> Result<i32> {
            if c.data().world.clock_fails.load(Ordering::Relaxed) {
                return Ok(INTERNAL_FAILURE);
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            mem::write_u64(&mut c, ret, now)?;
            Ok(OK)
        },
    )?;
    // A no-op in ngx_wasm_module: resume/continue act on the context being run, whatever this says.
    linker.func_wrap(
        ENV,
        "proxy_set_effective_context",
        |_c: C, _id: i32| -> i32 { OK },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_tick_period_milliseconds",
        |mut c: C, period: i32| -> Result<i32> {
            let st = c.data_mut();
            if !st.exec.is_root {
                return Err(st.trap("can only set tick_period in root context"));
            }
            let root = st.exec.root_id;
            let period = period as u32;
            // ngx_proxy_wasm_host.c (set_tick_period): only a second non-zero period traps; 0
            // stops the timer after its next tick.
            if period != 0 && st.tick_periods.get(&root).is_some_and(|p| *p != 0) {
                return Err(st.trap("tick_period already set"));
            }
            st.tick_periods.insert(root, period);
            st.tick_arms.push((root, period));
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_continue_stream",
        |mut c: C, stream: i32| -> Result<i32> {
            if stream != 0 && stream != 1 {
                return Ok(BAD_ARGUMENT);
            }
            c.data_mut().exec.resumed = true;
            Ok(OK)
        },
    )?;
    linker.func_wrap(ENV, "proxy_send_local_response", send_local_response)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn send_local_response(
    mut c: C,
    status_code: i32,
    _reason_ptr: i32,
    _reason_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    _grpc: i32,
) -> Result<i32> {
    let body = mem::read_opt(&mut c, body_ptr, body_len)?.unwrap_or_default();
    let raw_headers = mem::read_opt(&mut c, headers_ptr, headers_len)?.unwrap_or_default();
    let Ok(headers) = deserialize_pairs(&raw_headers) else {
        return Ok(INTERNAL_FAILURE);
    };
    let st = c.data_mut();
    let step = st.step();
    let Some(ex) = st.exec.exchange.as_mut() else {
        return Ok(BAD_ARGUMENT);
    };
    if !(100..=999).contains(&status_code) {
        return Ok(BAD_ARGUMENT);
    }
    let status_code = status_code as u16;
    if ex.body_call_unanswered && !body.is_empty() {
        let st = c.data();
        super::log_line(
            &st.filter,
            st.worker,
            "alert",
            st.exec.context_id,
            "a local response with a body after a callout that sent a body and got no answer: \
             this crashes Kong's engine (ngx_wasm_module: zero size buf in writer, worker exits \
             on signal 6)",
        );
    }
    let st = c.data_mut();
    let Some(ex) = st.exec.exchange.as_mut() else {
        return Ok(BAD_ARGUMENT);
    };
    match step {
        Step::ResponseHeaders => {
            // Header filter entered, body not yet: the response is rewritten in place.
            ex.resp_status = status_code;
            ex.resp_body = body;
            if !ex.resp_body.is_empty() {
                ex.resp_body.push(b'\n');
            }
            Ok(OK)
        }
        Step::ResponseBody | Step::Log | Step::Done => Err(st.trap("response already sent")),
        _ if ex.local.is_some() => Err(st.trap("local response already stashed")),
        _ => {
            ex.local = Some(LocalResponse {
                status: status_code,
                headers,
                body,
            });
            Ok(OK)
        }
    }
}

/// `proxy_get_buffer_bytes` / `proxy_set_buffer_bytes`.
fn add_buffers(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(ENV, "proxy_get_buffer_bytes", |mut c: C, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
        let st = c.data_mut();
        let step = st.step();
        let data: Vec<u8> = match kind {
            7 => st.root_configs.get(&st.exec.root_id).cloned().unwrap_or_default(),
            6 => Vec::new(),
            0 => {
                if !matches!(step, Step::RequestHeaders | Step::RequestBody | Step::Log) {
                    return Err(st.trap("can only get request body during \"on_request_body\", \"on_log\""));
                }
                match st.exec.exchange.as_ref() {
                    Some(ex) if !ex.req_body.is_empty() => ex.req_body.clone(),
                    _ => return Ok(NOT_FOUND),
                }
            }
            1 => {
                if step != Step::ResponseBody {
                    return Err(st.trap("can only get response body during \"on_response_body\""));
                }
                match st.exec.exchange.as_ref() {
                    Some(ex) if !ex.resp_body.is_empty() => ex.resp_body.clone(),
                    _ => return Ok(NOT_FOUND),
                }
            }
            4 => {
                if !matches!(step, Step::CallResponse | Step::Log) {
                    return Err(st.trap("can only get dispatch response body during \"on_http_dispatch_response\""));
                }
                match st.exec.call.as_ref() {
                    Some(call) if !call.body.is_empty() => call.body.clone(),
                    _ => return Ok(NOT_FOUND),
                }
            }
            _ => return Ok(BAD_ARGUMENT),
        };
        let start = start as u32 as usize;
        let end = start.saturating_add(max as u32 as usize).min(data.len());
        let slice = data.get(start.min(end)..end).unwrap_or_default();
        if slice.is_empty() {
            return Ok(OK);
        }
        mem::return_bytes(&mut c, slice, ret_ptr, ret_size)?;
        Ok(OK)
    })?;
    linker.func_wrap(
        ENV,
        "proxy_set_buffer_bytes",
        |mut c: C, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            let value = mem::read_opt(&mut c, ptr, len)?.unwrap_or_default();
            let st = c.data_mut();
            let step = st.step();
            let allowed = match kind {
                0 => matches!(step, Step::RequestHeaders | Step::RequestBody),
                1 => step == Step::ResponseBody,
                _ => return Ok(BAD_ARGUMENT),
            };
            if !allowed {
                let msg = if kind == 0 {
                    "can only set request body during \"on_request_body\""
                } else {
                    "can only set response body during \"on_response_body\""
                };
                return Err(st.trap(msg));
            }
            let Some(ex) = st.exec.exchange.as_mut() else {
                return Ok(BAD_ARGUMENT);
            };
            let body = if kind == 0 {
                &mut ex.req_body
            } else {
                &mut ex.resp_body
            };
            let start = (start as u32 as usize).min(body.len());
            let mut size = size as u32 as usize;
            if start > 0 && size == 0 && !value.is_empty() {
                size = value.len();
            }
            let end = start.saturating_add(size).min(body.len());
            body.splice(start..end, value);
            Ok(OK)
        },
    )?;
    Ok(())
}

/// Header maps: request (0), response (2), callout response (6); trailers are always empty.
fn add_maps(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        ENV,
        "proxy_get_header_map_pairs",
        |mut c: C, kind: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let st = c.data();
            let pairs: Vec<(String, Vec<u8>)> = match (kind, &st.exec.exchange, &st.exec.call) {
                (0, Some(ex), _) => {
                    // As the engine marshals it: pseudo-headers first, and from 98 headers on
                    // a map longer than the buffer handed over (memory::engine_request_map).
                    let pseudo: Vec<(String, Vec<u8>)> = [
                        (":path", &ex.path),
                        (":method", &ex.method),
                        (":scheme", &ex.scheme),
                        (":authority", &ex.authority),
                    ]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect();
                    let headers: Vec<(String, Vec<u8>)> = ex
                        .req_headers
                        .live()
                        .map(|(k, v)| (k.to_string(), v.to_vec()))
                        .collect();
                    let (map, truncated) =
                        mem::engine_request_map(&pseudo, &headers, super::MAX_HEADER_PAIRS);
                    if truncated {
                        log_filter(
                            st,
                            "warn",
                            &format!(
                                "marshalled map truncated to {} elements",
                                super::MAX_HEADER_PAIRS
                            ),
                        );
                    }
                    mem::return_bytes(&mut c, &map, ret_ptr, ret_size)?;
                    return Ok(OK);
                }
                (2, Some(ex), _) => ex.resp_headers.clone(),
                (6, _, Some(call)) if st.step() == Step::CallResponse => call.headers.clone(),
                (1 | 3 | 7, _, _) => Vec::new(),
                _ => return Ok(BAD_ARGUMENT),
            };
            mem::return_bytes(&mut c, &serialize_pairs(&pairs), ret_ptr, ret_size)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_header_map_value",
        |mut c: C, kind: i32, kptr: i32, klen: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let key = mem::read_string(&mut c, kptr, klen)?;
            let st = c.data();
            let found = match (kind, &st.exec.exchange, &st.exec.call) {
                (0, Some(ex), _) => match key.as_str() {
                    ":path" => Some(ex.path.as_bytes().to_vec()),
                    ":method" => Some(ex.method.as_bytes().to_vec()),
                    ":scheme" => Some(ex.scheme.as_bytes().to_vec()),
                    ":authority" => Some(ex.authority.as_bytes().to_vec()),
                    k => ex.req_headers.get(k),
                },
                (2, Some(ex), _) => match key.as_str() {
                    ":status" => Some(ex.resp_status.to_string().into_bytes()),
                    k => lookup(&ex.resp_headers, k),
                },
                (6, _, Some(call)) if st.step() == Step::CallResponse => {
                    lookup(&call.headers, &key)
                }
                (1 | 3 | 7, _, _) => None,
                _ => return Ok(BAD_ARGUMENT),
            };
            let Some(value) = found else {
                return Ok(NOT_FOUND);
            };
            mem::return_bytes(&mut c, &value, ret_ptr, ret_size)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_header_map_pairs",
        |mut c: C, kind: i32, ptr: i32, len: i32| -> Result<i32> {
            let raw = mem::read(&mut c, ptr, len)?;
            let Ok(pairs) = deserialize_pairs(&raw) else {
                return Ok(INTERNAL_FAILURE);
            };
            edit_map(
                c.data_mut(),
                kind,
                |request| request.replace_all(pairs.clone()),
                |headers| *headers = pairs.clone(),
            )
        },
    )?;
    for (name, op) in [
        ("proxy_add_header_map_value", Edit::Add),
        ("proxy_replace_header_map_value", Edit::Replace),
    ] {
        linker.func_wrap(
            ENV,
            name,
            move |mut c: C, kind: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| -> Result<i32> {
                let key = mem::read_string(&mut c, kptr, klen)?;
                let value = mem::read(&mut c, vptr, vlen)?;
                set_value(c.data_mut(), kind, key, Some(value), op)
            },
        )?;
    }
    linker.func_wrap(
        ENV,
        "proxy_remove_header_map_value",
        |mut c: C, kind: i32, kptr: i32, klen: i32| -> Result<i32> {
            let key = mem::read_string(&mut c, kptr, klen)?;
            set_value(c.data_mut(), kind, key, None, Edit::Replace)
        },
    )?;
    Ok(())
}

fn lookup(headers: &[(String, Vec<u8>)], key: &str) -> Option<Vec<u8>> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.clone())
}

#[derive(Clone, Copy)]
enum Edit {
    Add,
    Replace,
}

/// Applies an edit to request headers (`request`, with nginx's semantics) or response headers.
fn edit_map(
    st: &mut HostState,
    kind: i32,
    request: impl FnOnce(&mut RequestHeaders),
    f: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> Result<i32> {
    let step = st.step();
    let filter = st.filter.clone();
    let Some(ex) = st.exec.exchange.as_mut() else {
        return Ok(if kind == 6 || kind == 7 {
            OK
        } else {
            BAD_ARGUMENT
        });
    };
    match kind {
        0 if ex.response_started => {
            super::log_line(
                &filter,
                st.worker,
                "error",
                st.exec.context_id,
                "cannot set request headers: response produced",
            );
            Ok(OK)
        }
        0 => {
            request(&mut ex.req_headers);
            Ok(OK)
        }
        2 if matches!(step, Step::Log | Step::Done) => {
            super::log_line(
                &filter,
                st.worker,
                "error",
                st.exec.context_id,
                "cannot set response headers: headers already sent",
            );
            Ok(OK)
        }
        2 => {
            f(&mut ex.resp_headers);
            Ok(OK)
        }
        1 | 3 | 6 | 7 => Ok(OK),
        _ => Ok(BAD_ARGUMENT),
    }
}

fn set_value(
    st: &mut HostState,
    kind: i32,
    key: String,
    value: Option<Vec<u8>>,
    op: Edit,
) -> Result<i32> {
    if let (Some(ex), Some(v)) = (st.exec.exchange.as_mut(), value.as_ref()) {
        let text = String::from_utf8_lossy(v).into_owned();
        match (kind, key.as_str()) {
            (0, ":path") if !ex.response_started => ex.path = text,
            (0, ":method") if !ex.response_started => ex.method = text,
            (0, ":authority") if !ex.response_started => ex.authority = text,
            (0, ":scheme") if !ex.response_started => ex.scheme = text,
            (2, ":status") => ex.resp_status = text.parse().unwrap_or(ex.resp_status),
            _ => return edit_headers(st, kind, key, value, op),
        }
        return Ok(OK);
    }
    edit_headers(st, kind, key, value, op)
}

fn edit_headers(
    st: &mut HostState,
    kind: i32,
    key: String,
    value: Option<Vec<u8>>,
    op: Edit,
) -> Result<i32> {
    let (k2, v2) = (key.clone(), value.clone());
    edit_map(
        st,
        kind,
        |request| match (op, v2) {
            (Edit::Add, Some(v)) => request.add(k2, v),
            (Edit::Replace, Some(v)) => request.set(k2, v),
            (_, None) => request.remove(&k2),
        },
        |h| apply(h, key, value, op),
    )
}

fn apply(headers: &mut Vec<(String, Vec<u8>)>, key: String, value: Option<Vec<u8>>, op: Edit) {
    match (op, value) {
        (Edit::Add, Some(v)) => headers.push((key, v)),
        (Edit::Replace, Some(v)) => {
            let mut v = Some(v);
            headers.retain_mut(|(k, old)| {
                if !k.eq_ignore_ascii_case(&key) {
                    return true;
                }
                match v.take() {
                    Some(new) => {
                        *old = new;
                        true
                    }
                    None => false,
                }
            });
            if let Some(v) = v {
                headers.push((key, v));
            }
        }
        (_, None) => headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key)),
    }
}

/// `proxy_get_property` / `proxy_set_property`.
fn add_properties(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        ENV,
        "proxy_get_property",
        |mut c: C, ptr: i32, len: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let path = properties::dotted(&mem::read(&mut c, ptr, len)?);
            let st = c.data();
            let exchange = if st.exec.is_root {
                None
            } else {
                st.exec.exchange.as_ref()
            };
            match properties::get(exchange, &path) {
                Property::Value(v) => {
                    mem::return_bytes(&mut c, &v, ret_ptr, ret_size)?;
                    Ok(OK)
                }
                Property::NotFound => Ok(NOT_FOUND),
                Property::OutsideRequest => {
                    log_filter(
                        st,
                        "error",
                        &format!("cannot get \"{path}\" outside of a request"),
                    );
                    Ok(INTERNAL_FAILURE)
                }
            }
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_property",
        |_c: C, _p: i32, _l: i32, _v: i32, _vl: i32| -> i32 { NOT_FOUND },
    )?;
    Ok(())
}

/// Shared key/value data (shm_kv zones) and queues (none can be declared here).
fn add_shared(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        ENV,
        "proxy_get_shared_data",
        |mut c: C,
         kptr: i32,
         klen: i32,
         ret_ptr: i32,
         ret_size: i32,
         ret_cas: i32|
         -> Result<i32> {
            let key = mem::read(&mut c, kptr, klen)?;
            let got = c.data().world.zones.get(&key);
            match got {
                Err(_) => Err(c
                    .data_mut()
                    .trap("failed getting value from shm (could not resolve namespace)")),
                Ok(None) => Ok(NOT_FOUND),
                Ok(Some((value, cas))) => {
                    mem::return_bytes(&mut c, &value, ret_ptr, ret_size)?;
                    mem::write_u32(&mut c, ret_cas, cas)?;
                    Ok(OK)
                }
            }
        },
    )?;
    linker.func_wrap(ENV, "proxy_set_shared_data", |mut c: C, kptr: i32, klen: i32, vptr: i32, vlen: i32, cas: i32| -> Result<i32> {
        let key = mem::read(&mut c, kptr, klen)?;
        let value = mem::read_opt(&mut c, vptr, vlen)?;
        let res = c.data().world.zones.set(&key, value.as_deref(), cas as u32);
        match res {
            Ok(SetOutcome::Written) => Ok(OK),
            Ok(SetOutcome::CasMismatch) => Ok(CAS_MISMATCH),
            Ok(SetOutcome::WrittenAfterEvictingItself) => {
                // The engine frees the replaced node a second time here (ngx_wa_shm_kv.c:345-350).
                log_filter(c.data(), "alert", "shm store: eviction freed the entry being replaced; the engine frees it twice (zone corrupted)");
                Ok(OK)
            }
            Err(ZoneError::NoNamespace) => Err(c.data_mut().trap("failed setting value to shm (could not resolve namespace)")),
            Err(ZoneError::NoMemory) => {
                let zone = c.data().world.zones.zone_name(&key).unwrap_or("*").to_string();
                let msg = format!("\"{zone}\" shm store: no memory; cannot allocate pair with key size {} and value size {}", key.len(), vlen);
                log_filter(c.data(), "crit", &msg);
                Err(c.data_mut().trap("failed setting value to shm (could not write to slab)"))
            }
        }
    })?;
    linker.func_wrap(
        ENV,
        "proxy_register_shared_queue",
        |mut c: C, _p: i32, _l: i32, _ret: i32| -> Result<i32> {
            Err(c.data_mut().trap("could not find queue"))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_resolve_shared_queue",
        |_c: C, _a: i32, _b: i32, _p: i32, _l: i32, _ret: i32| -> i32 { NOT_FOUND },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_enqueue_shared_queue",
        |mut c: C, _t: i32, _p: i32, _l: i32| -> Result<i32> {
            Err(c.data_mut().trap("could not find queue"))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_dequeue_shared_queue",
        |mut c: C, _t: i32, _p: i32, _l: i32| -> Result<i32> {
            Err(c.data_mut().trap("could not find queue"))
        },
    )?;
    Ok(())
}

/// `proxy_http_call`.
fn add_http(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(ENV, "proxy_http_call", http_call)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn http_call(
    mut c: C,
    up_ptr: i32,
    up_len: i32,
    h_ptr: i32,
    h_len: i32,
    b_ptr: i32,
    b_len: i32,
    _t_ptr: i32,
    _t_len: i32,
    timeout: i32,
    ret_token: i32,
) -> Result<i32> {
    if !c.data().step().may_dispatch() {
        return Err(c.data_mut().trap(
            "can only send HTTP dispatch during \"on_request_headers\", \"on_request_body\", \"on_dispatch_response\", \"on_tick\"",
        ));
    }
    if c.data().exec.is_root && c.data().step() == Step::CallResponse {
        // Kong's engine gives such a call's fake connection the one the answered call just
        // released, then tears that down under it: the worker dies (SIGSEGV), every request in
        // flight on it with it (engine_facts.rs). Loud here, so a regression fails fast tests.
        let st = c.data();
        super::log_line(
            &st.filter,
            st.worker,
            "alert",
            st.exec.context_id,
            "dispatch_http_call from a root context's on_http_call_response: this crashes Kong's \
             engine (ngx_wasm_module: worker exits on signal 11); the stand-in traps instead",
        );
        return Err(c.data_mut().trap(
            "dispatch_http_call from a root context's on_http_call_response (crashes Kong's engine)",
        ));
    }
    let target = mem::read_string(&mut c, up_ptr, up_len)?;
    let raw_headers = mem::read_opt(&mut c, h_ptr, h_len)?.unwrap_or_default();
    let body = mem::read_opt(&mut c, b_ptr, b_len)?.unwrap_or_default();
    let from_root = c.data().exec.is_root;
    let spec = deserialize_pairs(&raw_headers)
        .map_err(|_| "dispatch failed: marshalling error".to_string())
        .and_then(|headers| dispatch::build(&target, headers, body, timeout as u32));
    let spec = match spec {
        Ok(spec) => spec,
        // Outside a request (fake request) the error is logged; in a request it traps.
        Err(msg) if from_root => {
            log_filter(c.data(), "error", &msg);
            return Ok(INTERNAL_FAILURE);
        }
        Err(msg) => return Err(c.data_mut().trap(msg)),
    };
    let token = c.data().world.next_token();
    mem::write_u32(&mut c, ret_token, token)?;
    c.data_mut().new_calls.push(NewCall {
        token,
        spec,
        from_root,
    });
    Ok(OK)
}

/// `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`, `proxy_get_metric`.
fn add_metrics(linker: &mut Linker<HostState>) -> Result<()> {
    fn code(r: Result<(), MetricError>) -> i32 {
        match r {
            Ok(()) => OK,
            Err(MetricError::NotFound) => NOT_FOUND,
            Err(MetricError::BadArgument) => BAD_ARGUMENT,
        }
    }
    linker.func_wrap(
        ENV,
        "proxy_define_metric",
        |mut c: C, kind: i32, ptr: i32, len: i32, ret: i32| -> Result<i32> {
            let name = mem::read_string(&mut c, ptr, len)?;
            let Some(kind) = MetricType::from_abi(kind) else {
                return Ok(BAD_ARGUMENT);
            };
            let st = c.data();
            match st.world.metrics.define(&st.filter, kind, &name) {
                Ok(id) => {
                    mem::write_u32(&mut c, ret, id)?;
                    Ok(OK)
                }
                Err(e) => Ok(code(Err(e))),
            }
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_increment_metric",
        |c: C, id: i32, offset: i64| -> i32 {
            code(
                c.data()
                    .world
                    .metrics
                    .increment(c.data().worker, id as u32, offset),
            )
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_record_metric",
        |c: C, id: i32, value: i64| -> i32 {
            code(
                c.data()
                    .world
                    .metrics
                    .record(c.data().worker, id as u32, value as u64),
            )
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_metric",
        |mut c: C, id: i32, ret: i32| -> Result<i32> {
            match c.data().world.metrics.get(id as u32) {
                Ok(v) => {
                    mem::write_u64(&mut c, ret, v)?;
                    Ok(OK)
                }
                Err(e) => Ok(code(Err(e))),
            }
        },
    )?;
    Ok(())
}

/// Imports ngx_wasm_module does not implement ("NYI"): calling them traps.
fn add_unsupported(linker: &mut Linker<HostState>) -> Result<()> {
    fn nyi(c: &mut C, name: &str) -> anyhow::Error {
        c.data_mut().trap(format!("NYI - {name}"))
    }
    linker.func_wrap(
        ENV,
        "proxy_get_log_level",
        |mut c: C, _r: i32| -> Result<i32> { Err(nyi(&mut c, "proxy_get_log_level")) },
    )?;
    linker.func_wrap(ENV, "proxy_done", |mut c: C| -> Result<i32> {
        Err(nyi(&mut c, "proxy_done"))
    })?;
    linker.func_wrap(
        ENV,
        "proxy_close_stream",
        |mut c: C, _s: i32| -> Result<i32> { Err(nyi(&mut c, "proxy_close_stream")) },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_status",
        |mut c: C, _a: i32, _b: i32, _d: i32| -> Result<i32> {
            Err(nyi(&mut c, "proxy_get_status"))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_call_foreign_function",
        |_c: C, _a: i32, _b: i32, _d: i32, _e: i32, _f: i32, _g: i32| -> i32 { NOT_FOUND },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_grpc_call",
        |mut c: C,
         _a: i32,
         _b: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _j: i32,
         _k: i32,
         _l: i32,
         _m: i32|
         -> Result<i32> { Err(nyi(&mut c, "proxy_grpc_call")) },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_grpc_stream",
        |mut c: C,
         _a: i32,
         _b: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _j: i32|
         -> Result<i32> { Err(nyi(&mut c, "proxy_grpc_stream")) },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_grpc_send",
        |mut c: C, _a: i32, _b: i32, _d: i32, _e: i32| -> Result<i32> {
            Err(nyi(&mut c, "proxy_grpc_send"))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_grpc_cancel",
        |mut c: C, _a: i32| -> Result<i32> { Err(nyi(&mut c, "proxy_grpc_cancel")) },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_grpc_close",
        |mut c: C, _a: i32| -> Result<i32> { Err(nyi(&mut c, "proxy_grpc_close")) },
    )?;
    Ok(())
}
