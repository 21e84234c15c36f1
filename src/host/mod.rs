//! The one door from the filter's logic to the proxy host: clock, HTTP callouts, shared data
//! and metrics. The adapter implements [`Host`] over proxy-wasm hostcalls; unit tests use
//! `fake::FakeHost` (built for tests and with the `fake-host` feature). Nothing outside the
//! adapter talks to the host; the adapter uses no proxy-wasm SDK (its own imports and exports).
//!
//! Logging is not part of [`Host`]: the core writes through the `log` crate's macros
//! (`log::warn!(...)`, never token bytes), and whoever runs the core installs the one logger.
//! On wasm32 the adapter installs one over `proxy_log` that prefixes each line with the id of
//! the context whose callback is running (`cloudrun_oidc[ctx 7]: ...`); in tests `FakeHost`
//! installs one that captures lines per thread, read back with `FakeHost::logged`.

pub mod shared;
pub mod zone;

/// The real host: proxy-wasm contexts and hostcalls (wasm32 only).
#[cfg(target_arch = "wasm32")]
mod adapter;

use crate::metrics::Metric;

/// Identifies one in-flight HTTP callout; the host hands it back with the response.
pub type CalloutToken = u32;

/// An HTTP callout as `proxy_http_call` takes it. Its `Debug` shows the upstream, header
/// names and the body's length only: values and bodies carry credentials (SECURITY.md §18).
#[derive(Clone, PartialEq, Eq)]
pub struct CalloutRequest {
    /// `host[:port]` for `dispatch_http_call` (never a URL: Kong traps on one).
    pub upstream: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`) first, then the rest.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Applies to connect, send and read separately (Kong).
    pub timeout_ms: u32,
}

impl std::fmt::Debug for CalloutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CalloutRequest")
            .field("upstream", &self.upstream)
            .field("header_names", &names)
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// What came back for a callout. A failed call (timeout, refused, DNS, TLS) has no `status`
/// and usually a `dispatch_status` saying why (ngx_wasm_module's `:dispatch_status`). Its
/// `Debug` shows the body's length only: answers carry tokens and credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CalloutResponse {
    pub status: Option<u16>,
    pub dispatch_status: Option<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for CalloutResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalloutResponse")
            .field("status", &self.status)
            .field("dispatch_status", &self.dispatch_status)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl CalloutResponse {
    /// The body when the call succeeded with 200, or a short reason for the log. Kong's engine
    /// says `:dispatch_status: ok` on success; any other value is a failure even when a
    /// `:status` came with it (a response head too large for its reader keeps its status).
    pub fn ok_body(&self) -> Result<&[u8], String> {
        match (self.status, self.dispatch_status.as_deref()) {
            (_, Some(failure)) if failure != "ok" => Err(format!("callout failed: {failure}")),
            (Some(200), _) => Ok(&self.body),
            (Some(other), _) => Err(format!("HTTP status {other}")),
            // The engine's answer for a peer that closed before answering.
            (None, Some(_)) => Err("callout failed: no answer (connection closed)".to_string()),
            (None, None) => Err("callout failed: no :status".to_string()),
        }
    }
}

/// A host call that failed; the caller fails closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError(pub String);

/// Largest value the filter hands to `set_shared_data`. On Kong's engine a write that does not
/// fit the zone traps (a value larger than eviction can free, or any allocation in a full zone
/// with `eviction=none`), and a trap in a callout answer proxies the request unverified. With
/// the engine's node header (96 bytes) and a host key of at most 256 bytes
/// ([`shared::MAX_HOST_KEY_BYTES`]), one entry then takes at most 16 pages (64 KiB) of the zone's
/// slab: the README's minimum zone size is counted in those. 64 KiB minus 512 bytes.
pub const MAX_SHARED_VALUE_BYTES: usize = 64 * 1024 - 512;

/// Refuses a value larger than [`MAX_SHARED_VALUE_BYTES`] before any host is asked to store it:
/// every [`Host`] implementation calls this first, so no write of any size reaches the zone.
pub fn check_shared_value(value: &[u8]) -> Result<(), SharedSetError> {
    if value.len() > MAX_SHARED_VALUE_BYTES {
        return Err(SharedSetError::TooLarge(value.len()));
    }
    Ok(())
}

/// Why a shared-data write did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedSetError {
    /// The value (this many bytes) is over [`MAX_SHARED_VALUE_BYTES`]: not written, host not
    /// called.
    TooLarge(usize),
    /// Someone else wrote the key since it was read (or created it, for a create-only write).
    CasMismatch,
    Host(HostError),
}

/// Everything the filter's logic needs from the proxy.
pub trait Host {
    /// Wall-clock milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Starts a callout. The response arrives later through the context that made the call.
    fn dispatch(&mut self, request: &CalloutRequest) -> Result<CalloutToken, HostError>;
    /// Reads a shared-data key: `None` when absent, else the value and its CAS.
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes a shared-data key. Kong's CAS is strict: `None` creates only when the key is
    /// absent; `Some(cas)` overwrites only if nobody wrote since that read. A value over
    /// [`MAX_SHARED_VALUE_BYTES`] is refused ([`check_shared_value`]) without a host call.
    fn shared_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedSetError>;
    /// Adds one to a counter.
    fn count(&mut self, metric: Metric);

    /// Wall-clock seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// An in-memory [`Host`] for unit tests: a settable clock, recorded callouts, strict-CAS shared
/// data, counters, and the lines the `log` macros wrote on the test's thread.
#[cfg(any(test, feature = "fake-host"))]
pub mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    #[derive(Default)]
    pub struct FakeHost {
        pub now_ms: u64,
        pub next_token: CalloutToken,
        pub callouts: Vec<(CalloutToken, CalloutRequest)>,
        /// When set, `dispatch` fails with this error.
        pub dispatch_error: Option<String>,
        pub shared: HashMap<String, (Vec<u8>, u32)>,
        /// Writes that reached the shared data (accepted or refused for CAS).
        pub shared_writes: usize,
        /// When set, every shared write within the bound fails as a host error.
        pub refuse_shared_writes: bool,
        /// What the `log` macros wrote on this thread since the host was made.
        pub logs: Logs,
        pub metrics: HashMap<Metric, u64>,
    }

    impl FakeHost {
        pub fn at(now_secs: u64) -> Self {
            FakeHost {
                now_ms: now_secs * 1000,
                next_token: 1,
                ..Default::default()
            }
        }

        pub fn advance_secs(&mut self, secs: u64) {
            self.now_ms += secs * 1000;
        }

        pub fn metric(&self, metric: Metric) -> u64 {
            self.metrics.get(&metric).copied().unwrap_or(0)
        }

        /// Whether a line logged on this thread since the host was made contains `needle`.
        pub fn logged(&self, needle: &str) -> bool {
            self.logs
                .borrow()
                .iter()
                .any(|(_, line)| line.contains(needle))
        }
    }

    /// Lines the `log` macros wrote on this thread from the moment this value was made.
    ///
    /// `log` has one logger per process while tests run on parallel threads: the test logger
    /// (installed by the first `Logs`, unless a logger is already installed) appends each line
    /// to a buffer of the thread that wrote it, and a `Logs` reads its own thread's lines.
    pub struct Logs {
        /// Sequence number of the first line that belongs to this value.
        since: u64,
    }

    impl Default for Logs {
        fn default() -> Self {
            // A thread that loses the race to install waits inside `set_logger` until the
            // winner has; each sets the level itself, so no thread logs before it is on.
            let _ = log::set_logger(&CAPTURE);
            log::set_max_level(log::LevelFilter::Trace);
            let since = CAPTURED
                .try_with(|captured| captured.try_borrow().map_or(0, |c| c.next))
                .unwrap_or(0);
            Logs { since }
        }
    }

    impl Logs {
        /// A copy of the lines, with their levels, oldest first. (Named like the
        /// `RefCell::borrow` it replaced, so that tests read the same.)
        pub fn borrow(&self) -> Vec<(log::Level, String)> {
            CAPTURED
                .try_with(|captured| {
                    captured.try_borrow().map_or_else(
                        |_| Vec::new(),
                        |captured| {
                            captured
                                .lines
                                .iter()
                                .filter(|(seq, _, _)| *seq >= self.since)
                                .map(|(_, level, line)| (*level, line.clone()))
                                .collect()
                        },
                    )
                })
                .unwrap_or_default()
        }
    }

    /// Lines kept per thread; older ones are dropped (benches may log in a loop).
    const MAX_CAPTURED_LINES: usize = 10_000;

    #[derive(Default)]
    struct Captured {
        /// Sequence number of the next line.
        next: u64,
        lines: VecDeque<(u64, log::Level, String)>,
    }

    thread_local! {
        static CAPTURED: RefCell<Captured> = RefCell::new(Captured::default());
    }

    /// The test logger: every line, into the writing thread's buffer.
    struct CaptureLogger;

    static CAPTURE: CaptureLogger = CaptureLogger;

    impl log::Log for CaptureLogger {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &log::Record<'_>) {
            let mut line = String::new();
            // A `Display` that fails leaves a partial line; nothing here panics.
            let _ = std::fmt::write(&mut line, *record.args());
            let _ = CAPTURED.try_with(|captured| {
                let Ok(mut captured) = captured.try_borrow_mut() else {
                    return;
                };
                let seq = captured.next;
                captured.next += 1;
                if captured.lines.len() >= MAX_CAPTURED_LINES {
                    captured.lines.pop_front();
                }
                captured.lines.push_back((seq, record.level(), line));
            });
        }

        fn flush(&self) {}
    }

    impl Host for FakeHost {
        fn now_ms(&self) -> u64 {
            self.now_ms
        }

        fn dispatch(&mut self, request: &CalloutRequest) -> Result<CalloutToken, HostError> {
            if let Some(error) = &self.dispatch_error {
                return Err(HostError(error.clone()));
            }
            let token = self.next_token;
            self.next_token += 1;
            self.callouts.push((token, request.clone()));
            Ok(token)
        }

        fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            Ok(self.shared.get(key).cloned())
        }

        fn shared_set(
            &mut self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), SharedSetError> {
            check_shared_value(value)?;
            self.shared_writes += 1;
            if self.refuse_shared_writes {
                return Err(SharedSetError::Host(HostError("refused".into())));
            }
            let current = self.shared.get(key).map(|(_, c)| *c);
            let next = match (current, cas) {
                (None, None) => 1,
                (Some(have), Some(want)) if have == want => have + 1,
                _ => return Err(SharedSetError::CasMismatch),
            };
            self.shared.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }

        fn count(&mut self, metric: Metric) {
            *self.metrics.entry(metric).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeHost;
    use super::*;

    #[test]
    fn a_fake_host_sees_what_its_thread_logged_since_it_was_made() {
        log::warn!("before the host");
        let host = FakeHost::at(1);
        log::warn!("after the host");
        std::thread::spawn(|| log::error!("on another thread"))
            .join()
            .ok();
        assert!(host.logged("after the host"));
        assert!(!host.logged("before the host"));
        assert!(!host.logged("on another thread"), "threads must not mix");
        assert_eq!(
            host.logs.borrow(),
            vec![(log::Level::Warn, "after the host".to_string())]
        );
        let later = FakeHost::at(1);
        assert!(!later.logged("after the host"));
    }

    #[test]
    fn debug_shows_header_names_but_no_value_and_no_body() {
        let request = CalloutRequest {
            upstream: "sts.googleapis.com:443".to_string(),
            headers: vec![
                (":path".to_string(), "/v1/token".to_string()),
                (
                    "authorization".to_string(),
                    "Bearer secret-bearer".to_string(),
                ),
            ],
            body: Some(b"subject_token=secret-body".to_vec()),
            timeout_ms: 5000,
        };
        let shown = format!("{request:?} {request:#?}");
        assert!(shown.contains("authorization") && shown.contains(":path"));
        assert!(shown.contains("sts.googleapis.com:443"));
        for secret in ["secret", "Bearer", "/v1/token", "subject_token"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let answer = CalloutResponse {
            status: Some(200),
            dispatch_status: None,
            body: b"{\"access_token\":\"secret-token\"}".to_vec(),
        };
        let shown = format!("{answer:?}");
        assert!(
            shown.contains("200") && !shown.contains("secret") && !shown.contains("access_token")
        );
    }

    fn answer(status: Option<u16>, dispatch_status: Option<&str>) -> CalloutResponse {
        CalloutResponse {
            status,
            dispatch_status: dispatch_status.map(str::to_string),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn only_a_200_with_a_clean_dispatch_status_is_a_success() {
        assert!(answer(Some(200), Some("ok")).ok_body().is_ok());
        assert!(
            answer(Some(200), None).ok_body().is_ok(),
            "the stand-in's old answers"
        );
        assert_eq!(
            answer(Some(200), Some("reader failure")).ok_body(),
            Err("callout failed: reader failure".to_string()),
            "Kong's engine keeps :status when the head was too large"
        );
        assert_eq!(
            answer(None, Some("ok")).ok_body(),
            Err("callout failed: no answer (connection closed)".to_string())
        );
        assert_eq!(
            answer(None, Some("timeout")).ok_body(),
            Err("callout failed: timeout".to_string())
        );
        assert_eq!(
            answer(Some(503), Some("ok")).ok_body(),
            Err("HTTP status 503".to_string())
        );
    }
}
