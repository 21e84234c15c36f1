//! The filter's logger: the `log` crate's macros, written to the host's error log through
//! `proxy_log`, each line prefixed with the id of the context whose callback is running.
//!
//! Not the SDK's logger: it panics when `proxy_log` returns an error, and a panic in
//! `on_http_call_response` makes Kong proxy the paused request (fail-open). Here a failed write
//! is dropped. A line reads `cloudrun_oidc[ctx 7]: request refused: ...`; outside any callback
//! (never expected) it reads `cloudrun_oidc: ...`. Never call `proxy_wasm::set_log_level`: it
//! installs the SDK's logger with `set_logger(..).unwrap()`, which panics once this one is in.

use super::ffi;
use std::cell::Cell;
use std::fmt::{self, Write as _};

/// Lines below this level are dropped before they are formatted. The host filters again by
/// its own level (Kong's `log_level`), which a filter cannot read: ngx_wasm_module does not
/// implement `proxy_get_log_level`.
const MAX_LEVEL: log::LevelFilter = log::LevelFilter::Info;

/// proxy-wasm's `critical` level, which `log` does not have (the panic hook, a refusal that
/// could not be sent).
pub const CRITICAL: u32 = 5;

thread_local! {
    /// The context whose callback is running (one instance per worker, one thread).
    static CONTEXT_ID: Cell<Option<u32>> = const { Cell::new(None) };
}

struct ProxyLogger;

static LOGGER: ProxyLogger = ProxyLogger;

/// Installs the logger; called once per instance, when the module starts. `set_logger` fails
/// only when a logger is already installed: that one is then kept, and nothing panics.
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(MAX_LEVEL);
    }
}

/// Marks the start of a callback for context `id`: lines logged until the guard drops carry
/// the id. Restores the previous id on drop, for a callback the host runs inside another.
#[must_use = "the id is only recorded while the guard lives"]
pub struct InContext {
    previous: Option<u32>,
}

pub fn enter(id: u32) -> InContext {
    let previous = CONTEXT_ID.try_with(|c| c.replace(Some(id))).ok().flatten();
    InContext { previous }
}

impl Drop for InContext {
    fn drop(&mut self) {
        let _ = CONTEXT_ID.try_with(|c| c.set(self.previous));
    }
}

/// Writes one line at a proxy-wasm level (0 trace … 5 critical). Never fails, never panics:
/// a line the host refuses is lost.
pub fn write(level: u32, message: fmt::Arguments<'_>) {
    let mut line = String::with_capacity(160);
    // Writing to a String fails only if a `Display` fails: the line is then cut short.
    let _ = match CONTEXT_ID.try_with(Cell::get).ok().flatten() {
        Some(id) => write!(line, "cloudrun_oidc[ctx {id}]: "),
        None => line.write_str("cloudrun_oidc: "),
    };
    let _ = line.write_fmt(message);
    let _ = ffi::log(level, &line);
}

impl log::Log for ProxyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= MAX_LEVEL
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        write(level, *record.args());
    }

    fn flush(&self) {}
}
