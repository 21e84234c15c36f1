//! The WASI preview1 subset a proxy-wasm filter needs, implemented by the host itself like
//! ngx_wasm_module's `ngx_wasi` (no files, no sockets, no environment): stdout/stderr go to the
//! error log, clocks, random bytes, `proc_exit` traps. Other WASI imports trap when called.

use super::context::HostState;
use super::memory;
use anyhow::{bail, Result};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Linker};

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;

/// Per-instance WASI state: partial output lines.
#[derive(Debug)]
pub struct WasiState {
    pub started: Instant,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Default for WasiState {
    fn default() -> Self {
        WasiState {
            started: Instant::now(),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }
}

const M: &str = "wasi_snapshot_preview1";

/// Most bytes of stdout/stderr one `fd_write` puts into the log (and a partial line may hold).
const MAX_LOG_BYTES: usize = 64 * 1024;

/// Registers the WASI group of imports.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(M, "fd_write", fd_write)?;
    linker.func_wrap(
        M,
        "random_get",
        |mut c: Caller<'_, HostState>, ptr: i32, len: i32| -> Result<i32> {
            // Bounds first: the length is the guest's to choose.
            memory::check(&mut c, ptr, len)?;
            let mut buf = vec![0u8; len as u32 as usize];
            openssl::rand::rand_bytes(&mut buf)?;
            memory::write(&mut c, ptr, &buf)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut c: Caller<'_, HostState>, id: i32, _precision: i64, ret: i32| -> Result<i32> {
            let nanos = match id {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0),
                1..=3 => c.data().wasi.started.elapsed().as_nanos() as u64 + 1,
                _ => return Ok(ERRNO_INVAL),
            };
            memory::write_u64(&mut c, ret, nanos)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        M,
        "clock_res_get",
        |mut c: Caller<'_, HostState>, _id: i32, ret: i32| -> Result<i32> {
            memory::write_u64(&mut c, ret, 1)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            M,
            name,
            |mut c: Caller<'_, HostState>, count: i32, size: i32| -> Result<i32> {
                memory::write_u32(&mut c, count, 0)?;
                memory::write_u32(&mut c, size, 0)?;
                Ok(ERRNO_SUCCESS)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(
            M,
            name,
            |_c: Caller<'_, HostState>, _a: i32, _b: i32| -> i32 { ERRNO_SUCCESS },
        )?;
    }
    linker.func_wrap(
        M,
        "proc_exit",
        |mut c: Caller<'_, HostState>, code: i32| -> Result<()> {
            Err(c.data_mut().trap(format!("proc_exit({code})")))
        },
    )?;
    linker.func_wrap(M, "sched_yield", || -> i32 { ERRNO_SUCCESS })?;
    linker.func_wrap(M, "fd_close", |_fd: i32| -> i32 { ERRNO_BADF })?;
    linker.func_wrap(
        M,
        "fd_seek",
        |_fd: i32, _off: i64, _whence: i32, _ret: i32| -> i32 { ERRNO_BADF },
    )?;
    linker.func_wrap(M, "fd_fdstat_get", |_fd: i32, _ret: i32| -> i32 {
        ERRNO_BADF
    })?;
    linker.func_wrap(M, "fd_prestat_get", |_fd: i32, _ret: i32| -> i32 {
        ERRNO_BADF
    })?;
    linker.func_wrap(
        M,
        "fd_prestat_dir_name",
        |_fd: i32, _p: i32, _l: i32| -> i32 { ERRNO_BADF },
    )?;
    linker.func_wrap(
        M,
        "fd_read",
        |_fd: i32, _iovs: i32, _n: i32, _ret: i32| -> i32 { ERRNO_BADF },
    )?;
    linker.func_wrap(
        M,
        "poll_oneoff",
        |_i: i32, _o: i32, _n: i32, _ret: i32| -> i32 { ERRNO_NOSYS },
    )?;
    Ok(())
}

/// Defines every `wasi_snapshot_preview1` import of `module` not implemented above as a function
/// that traps with `NYI - NAME` when called.
pub fn add_unimplemented(linker: &mut Linker<HostState>, module: &wasmtime::Module) {
    for import in module.imports() {
        if import.module() != M {
            continue;
        }
        let wasmtime::ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let name = import.name().to_string();
        // Fails when the name is already defined (implemented): nothing to do then.
        let _ = linker.func_new(M, import.name(), ty, move |mut c, _args, _results| {
            Err(c.data_mut().trap(format!("NYI - wasi {name}")))
        });
    }
}

fn fd_write(
    mut c: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<i32> {
    if fd != 1 && fd != 2 {
        return Ok(ERRNO_BADF);
    }
    if !(0..=1024).contains(&iovs_len) {
        bail!("fd_write: bad iovec count {iovs_len}");
    }
    let raw = memory::read(&mut c, iovs, iovs_len * 8)?;
    // Every iovec is bounds-checked and counted; at most MAX_LOG_BYTES per call are copied (the
    // same region may be listed 1024 times).
    let mut out = Vec::new();
    let mut written: u32 = 0;
    for iov in raw.chunks_exact(8) {
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        memory::check(&mut c, ptr, len)?;
        written = written.saturating_add(len as u32);
        let room = MAX_LOG_BYTES.saturating_sub(out.len());
        let take = (len as u32 as usize).min(room);
        if take > 0 {
            out.extend(memory::read(&mut c, ptr, take as i32)?);
        }
    }
    let state = c.data_mut();
    let buf = if fd == 1 {
        &mut state.wasi.stdout
    } else {
        &mut state.wasi.stderr
    };
    buf.extend_from_slice(&out);
    // A partial line never grows without bound: past the limit it is logged as is.
    if buf.len() > MAX_LOG_BYTES && !buf.contains(&b'\n') {
        buf.push(b'\n');
    }
    let mut lines = Vec::new();
    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=nl).collect();
        lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
    }
    let level = if fd == 1 { "info" } else { "error" };
    for line in lines {
        super::log_filter(state, level, &line);
    }
    memory::write_u32(&mut c, nwritten, written)?;
    Ok(ERRNO_SUCCESS)
}
