//! The one door from the filter's logic to the proxy host: clock, HTTP callouts, shared data,
//! logs and metrics. The adapter implements [`Host`] over proxy-wasm hostcalls; unit tests use
//! `fake::FakeHost` (built for tests and with the `fake-host` feature). Nothing outside the
//! adapter imports `proxy_wasm`.

pub mod shared;

/// The real host: proxy-wasm contexts and hostcalls (wasm32 only).
#[cfg(target_arch = "wasm32")]
mod adapter;

use crate::metrics::Metric;

/// Identifies one in-flight HTTP callout; the host hands it back with the response.
pub type CalloutToken = u32;

/// An HTTP callout as `proxy_http_call` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalloutRequest {
    /// `host[:port]` for `dispatch_http_call` (never a URL: Kong traps on one).
    pub upstream: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`) first, then the rest.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Applies to connect, send and read separately (Kong).
    pub timeout_ms: u32,
}

/// What came back for a callout. A failed call (timeout, refused, DNS, TLS) has no `status`
/// and usually a `dispatch_status` saying why (ngx_wasm_module's `:dispatch_status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalloutResponse {
    pub status: Option<u16>,
    pub dispatch_status: Option<String>,
    pub body: Vec<u8>,
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

/// Log severities, as proxy-wasm defines them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// A host call that failed; the caller fails closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError(pub String);

/// Why a shared-data write did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedSetError {
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
    /// absent; `Some(cas)` overwrites only if nobody wrote since that read.
    fn shared_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedSetError>;
    /// Logs one line. Never pass token bytes here.
    fn log(&self, level: LogLevel, message: &str);
    /// Adds one to a counter.
    fn count(&mut self, metric: Metric);

    /// Wall-clock seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// An in-memory [`Host`] for unit tests: a settable clock, recorded callouts, strict-CAS shared
/// data, captured logs and counters.
#[cfg(any(test, feature = "fake-host"))]
pub mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct FakeHost {
        pub now_ms: u64,
        pub next_token: CalloutToken,
        pub callouts: Vec<(CalloutToken, CalloutRequest)>,
        /// When set, `dispatch` fails with this error.
        pub dispatch_error: Option<String>,
        pub shared: HashMap<String, (Vec<u8>, u32)>,
        pub logs: RefCell<Vec<(LogLevel, String)>>,
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

        pub fn logged(&self, needle: &str) -> bool {
            self.logs
                .borrow()
                .iter()
                .any(|(_, line)| line.contains(needle))
        }
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
            let current = self.shared.get(key).map(|(_, c)| *c);
            let next = match (current, cas) {
                (None, None) => 1,
                (Some(have), Some(want)) if have == want => have + 1,
                _ => return Err(SharedSetError::CasMismatch),
            };
            self.shared.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }

        fn log(&self, level: LogLevel, message: &str) {
            self.logs.borrow_mut().push((level, message.to_string()));
        }

        fn count(&mut self, metric: Metric) {
            *self.metrics.entry(metric).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
