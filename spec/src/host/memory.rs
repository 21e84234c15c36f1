//! Bounds-checked access to a guest's linear memory, and allocation inside the guest.

use anyhow::{anyhow, bail, Context, Result};
use wasmtime::{AsContextMut, Caller, Extern, Memory};

/// The guest's exported `memory`.
pub fn memory<T>(caller: &mut Caller<'_, T>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => bail!("guest exports no memory"),
    }
}

/// Reads `len` bytes at `ptr`; out of bounds is an error (the caller traps).
pub fn read<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let (start, end) = span(ptr, len)?;
    data.get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| anyhow!("invalid memory access: {len} bytes at {ptr:#x}"))
}

/// Checks that `len` bytes at `ptr` lie inside guest memory (without copying them).
pub fn check<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Result<()> {
    let mem = memory(caller)?;
    let (_, end) = span(ptr, len)?;
    if end > mem.data_size(&*caller) {
        bail!("invalid memory access: {len} bytes at {ptr:#x}");
    }
    Ok(())
}

/// Reads `len` bytes at `ptr`, or `None` when `ptr` is null (a "no value" argument).
pub fn read_opt<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Result<Option<Vec<u8>>> {
    if ptr == 0 {
        return Ok(None);
    }
    read(caller, ptr, len).map(Some)
}

/// Reads a UTF-8-or-not string (lossy) at `ptr`.
pub fn read_string<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

/// Writes `bytes` at `ptr`; out of bounds is an error.
pub fn write<T>(caller: &mut Caller<'_, T>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let mem = memory(caller)?;
    let len = i32::try_from(bytes.len()).context("write too large")?;
    let (start, end) = span(ptr, len)?;
    let data = mem.data_mut(caller.as_context_mut());
    let dst = data
        .get_mut(start..end)
        .ok_or_else(|| anyhow!("invalid memory access: {len} bytes at {ptr:#x}"))?;
    dst.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32 at `ptr`.
pub fn write_u32<T>(caller: &mut Caller<'_, T>, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian u64 at `ptr`.
pub fn write_u64<T>(caller: &mut Caller<'_, T>, ptr: i32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `bytes.len()` bytes in the guest (`proxy_on_memory_allocate`, else `malloc`), copies
/// `bytes` there and returns the guest pointer. A zero-length value still gets a 1-byte buffer.
pub fn alloc_copy<T>(caller: &mut Caller<'_, T>, bytes: &[u8]) -> Result<u32> {
    let alloc = ["proxy_on_memory_allocate", "malloc"]
        .iter()
        .find_map(|name| caller.get_export(name).and_then(Extern::into_func))
        .ok_or_else(|| anyhow!("guest exports no proxy_on_memory_allocate"))?;
    let alloc = alloc
        .typed::<i32, i32>(&*caller)
        .context("proxy_on_memory_allocate signature")?;
    let size = i32::try_from(bytes.len().max(1)).context("allocation too large")?;
    let ptr = alloc.call(&mut *caller, size)?;
    if ptr == 0 {
        bail!("guest allocation of {size} bytes failed");
    }
    write(caller, ptr, bytes)?;
    Ok(ptr as u32)
}

/// Copies `bytes` into the guest and stores pointer and size at `ret_ptr` / `ret_size`.
pub fn return_bytes<T>(
    caller: &mut Caller<'_, T>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_size: i32,
) -> Result<()> {
    let ptr = alloc_copy(caller, bytes)?;
    write_u32(caller, ret_ptr, ptr)?;
    write_u32(
        caller,
        ret_size,
        u32::try_from(bytes.len()).context("value too large")?,
    )
}

fn span(ptr: i32, len: i32) -> Result<(usize, usize)> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let end = start
        .checked_add(len)
        .ok_or_else(|| anyhow!("invalid memory span"))?;
    Ok((start, end))
}

/// Serialises header pairs the proxy-wasm way: count, then (key len, value len) pairs, then
/// NUL-terminated keys and values.
pub fn serialize_pairs(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// The request header map as Kong's engine hands it to a filter (ngx_wasm_module 9136e463,
/// `ngx_proxy_wasm_pairs_size` and `ngx_proxy_wasm_pairs_marshal`): the pseudo-headers
/// (`pseudo`, those with a value) first, then the headers, cut at `max` pairs. The buffer the
/// engine allocates, and hands over, is as long as its size estimate, which counts the first
/// `max` headers and then pseudo-headers only until its running count reaches `max`. While
/// headers and pseudo-headers fit (`headers + pseudo <= max`) both agree. Beyond, the estimate
/// lacks the last pseudo-headers and holds headers the writer drops: the map written is longer
/// than the buffer as soon as those pseudo-headers outweigh those headers (98 or more headers
/// of a few bytes each), and the filter gets a map whose last pairs run past its end. The
/// engine writes the rest past the allocation; the stand-in hands over the same bytes and
/// drops the rest. The second value: whether the map was cut at `max` pairs.
pub fn engine_request_map(
    pseudo: &[(String, Vec<u8>)],
    headers: &[(String, Vec<u8>)],
    max: usize,
) -> (Vec<u8>, bool) {
    let pair = |(k, v): &(String, Vec<u8>)| 8 + k.len() + 1 + v.len() + 1;
    let pseudo: Vec<(String, Vec<u8>)> = pseudo
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    let listed = headers.len().min(max);
    let mut estimate = 4 + headers.iter().take(listed).map(pair).sum::<usize>();
    // The engine adds a pseudo-header, then stops once its count (before that one) had
    // reached `max`.
    for (n, p) in (listed..).zip(&pseudo) {
        estimate += pair(p);
        if n >= max {
            break;
        }
    }
    let written: Vec<(String, Vec<u8>)> = pseudo.iter().chain(headers).take(max).cloned().collect();
    let mut bytes = serialize_pairs(&written);
    bytes.resize(estimate, 0);
    (bytes, pseudo.len() + headers.len() > max)
}

/// Parses the proxy-wasm pair serialisation; malformed input is an error.
pub fn deserialize_pairs(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let u32_at = |at: usize| -> Result<usize> {
        let b = bytes
            .get(at..at + 4)
            .ok_or_else(|| anyhow!("truncated map"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    if count > bytes.len() / 8 + 1 {
        bail!("map count {count} too large");
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (klen, vlen) in sizes {
        let key = bytes
            .get(at..at + klen)
            .ok_or_else(|| anyhow!("truncated map key"))?;
        at += klen + 1;
        let value = bytes
            .get(at..at + vlen)
            .ok_or_else(|| anyhow!("truncated map value"))?;
        at += vlen + 1;
        pairs.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs = vec![
            (":path".to_string(), b"/x".to_vec()),
            ("a".to_string(), Vec::new()),
        ];
        assert_eq!(deserialize_pairs(&serialize_pairs(&pairs)).unwrap(), pairs);
        assert!(deserialize_pairs(&[9, 0, 0, 0]).is_err());
        assert!(deserialize_pairs(&[]).unwrap().is_empty());
    }

    fn headers(n: usize, value: &str) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("h{i}"), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn engine_request_maps_list_pseudo_headers_first_and_run_past_their_buffer_from_98_headers() {
        let pseudo: Vec<(String, Vec<u8>)> = [
            (":path", "/orders"),
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "127.0.0.1:18080"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        // Up to 96 headers: every pair, pseudo-headers first, nothing cut.
        let (map, cut) = engine_request_map(&pseudo, &headers(96, "1"), 100);
        let pairs = deserialize_pairs(&map).unwrap();
        assert!(!cut);
        assert_eq!(pairs.len(), 100);
        assert_eq!(pairs[0].0, ":path");
        assert_eq!(pairs[99].0, "h95");
        // 97: cut at 100 pairs, still whole (the estimate holds more than is written).
        let (map, cut) = engine_request_map(&pseudo, &headers(97, "1"), 100);
        assert!(cut);
        assert_eq!(deserialize_pairs(&map).unwrap().len(), 100);
        // 98 to 101 small headers: 100 pairs declared, the last ones past the buffer's end.
        for n in 98..=101 {
            let (map, cut) = engine_request_map(&pseudo, &headers(n, "1"), 100);
            assert!(cut);
            assert_eq!(map[..4], 100u32.to_le_bytes(), "{n} headers");
            assert!(deserialize_pairs(&map).is_err(), "{n} headers");
        }
        // Large headers past the 96th outweigh the pseudo-headers: the map stays whole.
        let (map, _) = engine_request_map(&pseudo, &headers(101, "a-long-value"), 100);
        assert_eq!(deserialize_pairs(&map).unwrap().len(), 100);
    }
}
