//! Rate limits per verified caller (`rate_limits`): who the caller is, which window a request
//! falls in, and the answer's `RateLimit-Policy` / `RateLimit` headers. The counting itself, in
//! the host's shared data across workers, is [`counter`].
//!
//! A limit counts requests of one caller in fixed windows aligned on UTC (a `day` starts at
//! 00:00 UTC). The caller is read from the **verified** token only (a claim, or the issuer and
//! subject pair by default), so a refused or forged token never spends anyone's budget. Limits
//! with the same name, number, window and key share their counters across routes: that is how a
//! budget spans several routes, and why two limits meant to be apart need different names.

pub mod counter;
pub mod headers;

use crate::request::claims::{self, ClaimPath};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::rc::Rc;

/// Most limits on one route.
pub const MAX_LIMITS: usize = 8;
/// Longest limit name (it becomes part of a metric name).
pub const MAX_NAME_BYTES: usize = 32;

/// The length of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
}

impl Window {
    /// Every window, in the order the configuration reference lists them.
    pub const ALL: [Window; 4] = [Window::Second, Window::Minute, Window::Hour, Window::Day];

    /// The configuration's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    pub fn parse(name: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.name() == name)
    }

    pub fn secs(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }

    /// The start of the window holding `now` (seconds since the epoch, aligned on UTC).
    pub fn start(self, now: u64) -> u64 {
        now - now % self.secs()
    }

    /// Seconds from `now` until the window holding it ends (at least 1).
    pub fn reset_after(self, now: u64) -> u64 {
        self.secs() - now % self.secs()
    }
}

/// What identifies a caller for a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerKey {
    /// The verified `iss` and `sub` together (the default).
    IssuerSubject,
    /// A verified claim (`client_id`, `azp`, `tenant`, `org.id`): a non-empty string or a number.
    Claim(ClaimPath),
}

impl CallerKey {
    /// How the configuration and the logs name it.
    pub fn describe(&self) -> &str {
        match self {
            CallerKey::IssuerSubject => "iss+sub",
            CallerKey::Claim(path) => path.as_str(),
        }
    }
}

/// One `rate_limits[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// `[a-z0-9_]{1,32}`, unique on the route: the policy's name in the headers and the
    /// per-limit metric `rate_limited_<name>`.
    pub name: String,
    /// Requests allowed per window (1 ..= 10⁹).
    pub requests: u64,
    pub window: Window,
    pub key: CallerKey,
    /// Size of the limit's counter table in shared data: callers counted at once per window.
    pub max_callers: u32,
}

impl RateLimit {
    /// The shared-data prefix of this limit's counters, `<namespace>/rl/<16 hex digits>`: a hash
    /// of everything that decides what is counted, so equal limits on two routes share their
    /// counters and a changed limit starts afresh.
    pub fn table_prefix(&self, namespace: &str) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.name.as_bytes(),
            &self.requests.to_be_bytes(),
            self.window.name().as_bytes(),
            self.key.describe().as_bytes(),
            &self.max_callers.to_be_bytes(),
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut out = format!("{namespace}/rl/");
        for byte in digest.iter().take(8) {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
        out
    }
}

/// A caller as one limit sees it: a 128-bit digest of the key's value (what is stored), and the
/// value itself for the log line of a limited request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub id: [u8; 16],
    /// `sub="ada" iss="https://idp"` or `client_id="partner-7"`: verified values, quoted,
    /// escaped and capped.
    pub label: Rc<str>,
}

/// Longest value shown in a caller's label.
const MAX_LABEL_VALUE: usize = 96;

impl Caller {
    /// The caller of `limit` in verified `claims`; `None` when the token does not carry the key
    /// (missing, empty, not a string or number, or ambiguous).
    pub fn of(limit: &RateLimit, claims: &Map<String, Value>) -> Option<Caller> {
        match &limit.key {
            CallerKey::IssuerSubject => {
                let iss = claims.get("iss")?.as_str().filter(|s| !s.is_empty())?;
                let sub = claims.get("sub")?.as_str().filter(|s| !s.is_empty())?;
                Some(Caller::new(
                    &[b"iss+sub", iss.as_bytes(), sub.as_bytes()],
                    format!("sub={} iss={}", quoted(sub), quoted(iss)),
                ))
            }
            CallerKey::Claim(path) => {
                let value = claims::lookup(claims, path)?;
                let text = match value {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some(Caller::new(
                    &[path.as_str().as_bytes(), text.as_bytes()],
                    format!("{}={}", path.as_str(), quoted(&text)),
                ))
            }
        }
    }

    fn new(parts: &[&[u8]], label: String) -> Caller {
        let mut hasher = Sha256::new();
        hasher.update(b"cloudrun_oidc rate-limit caller");
        for part in parts {
            // Length-prefixed: no two different part lists hash the same bytes.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        for (out, byte) in id.iter_mut().zip(digest.iter()) {
            *out = *byte;
        }
        Caller {
            id,
            label: Rc::from(label),
        }
    }
}

fn quoted(value: &str) -> String {
    let cut: String = value.chars().take(MAX_LABEL_VALUE).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests;
