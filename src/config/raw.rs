//! The raw serde shape: the configuration exactly as Kong hands it over, every field of the
//! contract optional (defaults and "required" are decided in validation), unknown fields
//! refused; and the one place that turns a serde failure into a [`ConfigError`] naming the
//! field (`issuers[1].algorithms`), found with `serde_path_to_error`.

use super::kong_lists::{Dict, List};
use super::ConfigError;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;

/// The configuration as written: every field of the contract, optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default, deserialize_with = "present")]
    pub issuers: Option<List<RawIssuer>>,
    #[serde(default)]
    pub token: Option<RawToken>,
    #[serde(default, deserialize_with = "present")]
    pub clock_skew_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub max_token_bytes: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub required_scopes: Option<List<String>>,
    #[serde(default, deserialize_with = "present")]
    pub required_claims: Option<Dict<List<Value>>>,
    #[serde(default, deserialize_with = "present")]
    pub claims_to_headers: Option<Dict<String>>,
    #[serde(default)]
    pub claims_header: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub original_token_header: Option<Option<String>>,
    #[serde(default)]
    pub google_id_token: Option<RawGoogle>,
    #[serde(default, deserialize_with = "present")]
    pub jwks_cache: Option<RawJwksCache>,
    #[serde(default, deserialize_with = "present")]
    pub callout_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub shm_namespace: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limits: Option<List<RawRateLimit>>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limit_headers: Option<bool>,
}

/// One `rate_limits[]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub requests: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub window: Option<String>,
    /// `null` means absent (the issuer and subject pair).
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub max_callers: Option<u64>,
}

/// One `issuers[]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    #[serde(default, deserialize_with = "present")]
    pub issuer: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub audiences: Option<List<String>>,
    #[serde(default)]
    pub discovery_url: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// An object, or a string holding the JWKS JSON.
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub algorithms: Option<List<String>>,
    #[serde(default)]
    pub callout_host: Option<String>,
    /// `null` means absent (no `typ` check).
    #[serde(default)]
    pub token_types: Option<List<String>>,
}

/// `token` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    #[serde(default, deserialize_with = "nullable")]
    pub header: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub scheme: Option<Option<String>>,
    #[serde(default)]
    pub query_param: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
}

/// `google_id_token` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGoogle {
    #[serde(default, deserialize_with = "present")]
    pub audience: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub metadata_host: Option<String>,
    /// The key file's JSON, as a string or an object. Never printed.
    #[serde(default)]
    pub service_account_key: Option<Value>,
    #[serde(default)]
    pub token_url: Option<String>,
    /// Google's credential configuration (`type: external_account`), as an object or a string.
    #[serde(default)]
    pub external_account: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub refresh_before_expiry_seconds: Option<u64>,
    #[serde(default)]
    pub header: Option<String>,
}

impl fmt::Debug for RawGoogle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawGoogle")
            .field("audience", &self.audience)
            .field("source", &self.source)
            .field("metadata_host", &self.metadata_host)
            .field(
                "service_account_key",
                &self.service_account_key.as_ref().map(|_| "<redacted>"),
            )
            .field("token_url", &self.token_url)
            .field(
                "external_account",
                &self
                    .external_account
                    .as_ref()
                    .map(|_| "<credential configuration>"),
            )
            .field(
                "refresh_before_expiry_seconds",
                &self.refresh_before_expiry_seconds,
            )
            .finish()
    }
}

/// `jwks_cache` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwksCache {
    #[serde(default, deserialize_with = "present")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub max_stale_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub unknown_kid_cooldown_seconds: Option<u64>,
}

/// An optional field that may not be `null`: absent → `None` (via `default`), present → `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A field where absent (`None`, via `default`) and `null` (`Some(None)`) differ.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl RawConfig {
    /// Deserialises the raw configuration; an error names the field at fault
    /// (`issuers[1].algorithms`) rather than a line and column.
    pub fn from_json(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw = serde_path_to_error::deserialize::<_, Option<RawConfig>>(&mut de)
            .map_err(|e| refused(&e, bytes))?;
        de.end().map_err(|e| not_json(&e))?;
        // serde also reads a struct from an array of its fields in order: refuse that too.
        if !root_is_object_or_null(bytes) {
            return Err(not_an_object());
        }
        raw.ok_or_else(|| ConfigError::new("issuers", "is required (the configuration is null)"))
    }
}

/// Why serde refused the document: not JSON, not an object, or a field's value.
fn refused(e: &serde_path_to_error::Error<serde_json::Error>, bytes: &[u8]) -> ConfigError {
    if e.inner().is_syntax() || e.inner().is_eof() {
        not_json(e.inner())
    } else if !root_is_object_or_null(bytes) {
        not_an_object()
    } else {
        at_field(e)
    }
}

fn not_an_object() -> ConfigError {
    ConfigError::new("(root)", "must be a JSON object")
}

fn not_json(e: &serde_json::Error) -> ConfigError {
    ConfigError::new(
        "(root)",
        format!("not valid JSON (line {}, column {})", e.line(), e.column()),
    )
}

/// Whether the document is an object or `null` (judged by its first byte; it parsed as JSON).
fn root_is_object_or_null(bytes: &[u8]) -> bool {
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'n')
    )
}

/// A data error at the path `serde_path_to_error` recorded (`.` is the document itself).
fn at_field(e: &serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let field = match e.path().to_string() {
        root if root == "." => "(root)".to_string(),
        path => path,
    };
    ConfigError::new(field, sanitize(&e.inner().to_string()))
}

/// Keeps serde's message short and free of anything resembling key material.
fn sanitize(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("private") || lower.contains("-----begin") {
        return "has an invalid value".into();
    }
    // serde_json appends " at line L column C"; the field path says where.
    let message = message.split(" at line ").next().unwrap_or(message);
    // Say what the contract calls things, not what the Rust types are.
    let message = match message.find("expected struct ") {
        Some(at) => format!(
            "{}expected an object",
            message.get(..at).unwrap_or_default()
        ),
        None => message.replace("expected u64", "expected a non-negative integer"),
    };
    message.chars().take(400).collect()
}
