//! Raw proxy-wasm ABI 0.2.1 host calls that return every status instead of panicking.
//!
//! The proxy-wasm crate's `hostcalls::*` wrappers `panic!` on any status they do not expect,
//! and a panic in `on_http_call_response` makes Kong proxy the paused request upstream
//! (fail-open). Every host call the filter makes goes through here (the crate is not used at
//! all: `exports.rs` is the other half, the functions the host calls).

use std::ptr::{null, null_mut};

/// A host status other than `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

pub const CAS_MISMATCH: Status = Status(8);
/// Not a host status: the filter refused to dispatch (too many callouts in flight).
pub const TOO_MANY_CALLOUTS: Status = Status(u32::MAX);

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const STREAM_HTTP_REQUEST: u32 = 0;
const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    match status {
        0 => Ok(()),
        other => Err(Status(other)),
    }
}

/// Takes ownership of a host-allocated buffer (allocated through `proxy_on_memory_allocate`).
///
/// # Safety
/// `data`/`size` must be what the host returned for a successful call.
unsafe fn take_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

pub fn log(level: u32, message: &str) -> Result<(), Status> {
    // SAFETY: pointer and length describe a live &str for the duration of the call.
    check(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn now_nanos() -> Result<u64, Status> {
    let mut time = 0u64;
    // SAFETY: the host writes one u64 to a valid, aligned local.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut time) })?;
    Ok(time)
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

pub fn get_buffer(buffer_type: u32, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers are valid locals; on success the host hands us an owned buffer.
    match unsafe { proxy_get_buffer_bytes(buffer_type, start, max, &mut data, &mut size) } {
        0 => Ok(unsafe { take_buffer(data, size) }),
        1 => Ok(None),
        other => Err(Status(other)),
    }
}

pub fn get_header(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as in `get_buffer`.
    match unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    } {
        0 => Ok(unsafe { take_buffer(data, size) }),
        1 => Ok(None),
        other => Err(Status(other)),
    }
}

pub fn replace_header(map_type: u32, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: pointers and lengths describe live slices.
    check(unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// `Ok(None)` when the key is absent; else the value and its CAS.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: as in `get_buffer`.
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) }
    {
        0 => Ok(unsafe { take_buffer(data, size) }.map(|value| (value, cas))),
        1 => Ok(None),
        other => Err(Status(other)),
    }
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: pointers and lengths describe live slices.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn resume_http_request() -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

pub fn send_local_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let serialized = serialize_map(headers);
    // SAFETY: pointers and lengths describe live buffers; -1 = not a gRPC response.
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    })
}

/// Dispatches a callout and registers its token to the running context (`exports`), which
/// routes the answer back to it. Refused without asking the host when the instance already
/// has [`exports::MAX_CALLOUTS_IN_FLIGHT`] calls in flight.
pub fn http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout_ms: u32,
) -> Result<u32, Status> {
    if !super::exports::may_dispatch() {
        log::warn!(
            "{} callouts in flight; not dispatching another",
            super::exports::MAX_CALLOUTS_IN_FLIGHT
        );
        return Err(TOO_MANY_CALLOUTS);
    }
    let headers = serialize_map(headers);
    let trailers = serialize_map(&[]);
    let (body_data, body_size) = body.map_or((null(), 0), |b| (b.as_ptr(), b.len()));
    let mut token = 0u32;
    // SAFETY: pointers and lengths describe live buffers; the host writes the token to a local.
    check(unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body_data,
            body_size,
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    super::exports::register_callout(token);
    Ok(token)
}

/// A header map as the host returns it: one buffer in the ABI's encoding.
pub fn get_header_map(map_type: u32) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as in `get_buffer`.
    match unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) } {
        0 => Ok(unsafe { take_buffer(data, size) }.unwrap_or_default()),
        1 => Ok(Vec::new()),
        other => Err(Status(other)),
    }
}

pub fn define_counter(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: pointer and length describe a live &str; the host writes the id to a local.
    check(unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn define_gauge(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: as in `define_counter`.
    check(unsafe { proxy_define_metric(METRIC_GAUGE, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(id, value) })
}

pub fn get_metric(id: u32) -> Result<u64, Status> {
    let mut value = 0u64;
    // SAFETY: the host writes the value to a local.
    check(unsafe { proxy_get_metric(id, &mut value) })?;
    Ok(value)
}

/// The ABI's header-map encoding: count, then (name len, value len) pairs, then NUL-terminated
/// names and values.
fn serialize_map(map: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + map
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, value) in map {
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}
