//! The route configuration: raw JSON parsed once into an immutable, typed FilterConfig.
//!
//! [`RawConfig`] mirrors the public contract of `docs/DESIGN.md` field for field (serde,
//! `deny_unknown_fields`, every field optional so that defaults and "required" are decided in one
//! place); [`FilterConfig`] is what the rest of the filter sees: validated header names, parsed
//! URLs and claim paths, enums instead of strings, non-empty lists, numbers in range. Kong's
//! DB-less mode turns an empty array into `{}`, so every list also accepts `{}` (and every map
//! accepts `[]`). An invalid configuration is a [`ConfigError`] value naming the field; its text
//! never contains secret material (the service-account key).
//!
//! Decisions where the contract is silent (also stated in `kong/cloudrun_oidc.meta.json`):
//! - `null` is accepted wherever a value is optional and means "absent", except for
//!   `original_token_header`, `token.header` and `token.scheme`, where an explicit `null` means
//!   "none" (drop the caller's token; no header location; the header holds the bare token) while
//!   absence means the default.
//! - At most one of `jwks`, `jwks_url`, `discovery_url` per issuer.
//! - `google_id_token.source` defaults to `metadata`; fields of the other sources are refused.
//! - `google_id_token.external_account` is Google's credential configuration file unchanged (an
//!   object, or a string holding it); [`crate::google::federation::external_account`] parses it
//!   and errors name the field inside it
//!   (`google_id_token.external_account.credential_source.file`).
//! - Header names are lowercased; `algorithms` duplicates are dropped.

use crate::google::federation::external_account::ExternalAccount;
use crate::google::id_token::ServiceAccountKey;
use crate::http::header_name::{is_tchar, HeaderName};
use crate::http::url::{parse_authority, HttpUrl};
use crate::jose::alg::Algorithm;
use crate::jose::verifier::{token_type, IssuerRule, Limits};
use crate::keys::cache::CachePolicy;
use crate::request::claims::ClaimPath;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;

/// Most issuers one route may trust.
pub const MAX_ISSUERS: usize = 16;
/// Default `token.header`.
pub const DEFAULT_TOKEN_HEADER: &str = "authorization";
/// Default `token.scheme`.
pub const DEFAULT_TOKEN_SCHEME: &str = "Bearer";
/// Default `original_token_header`, and the header Cloud Run reads as "the caller's token".
pub const FORWARDED_AUTHORIZATION: &str = "x-forwarded-authorization";
/// The header Cloud Run checks before `Authorization` when present (`google_id_token.header`).
pub const SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";
/// Default `google_id_token.metadata_host`.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// Default `google_id_token.token_url`.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Default `shm_namespace` (also the `shm_kv` zone Kong creates from `KONG_NGINX_WASM_SHM_KV_CLOUDRUN_OIDC`).
pub const DEFAULT_SHM_NAMESPACE: &str = "cloudrun_oidc";
/// The path appended to an issuer to find its discovery document (OIDC Discovery §4).
pub const WELL_KNOWN_SUFFIX: &str = "/.well-known/openid-configuration";

/// Longest string accepted for names, audiences, scopes and other short settings.
const MAX_SHORT_STRING: usize = 1024;
/// Largest inline `jwks` or `service_account_key` accepted (bytes of JSON text).
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Longest `shm_namespace`.
const MAX_NAMESPACE: usize = 64;
/// Most entries in any list or map of the configuration.
const MAX_LIST: usize = 64;

// ---------------------------------------------------------------------------------------------
// The typed configuration.
// ---------------------------------------------------------------------------------------------

/// Why a configuration was refused: the field (`issuers[0].audiences`) and a short reason.
/// Never contains secret material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where one issuer's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `jwks`: inline keys, nothing is fetched. The JWKS JSON text, re-serialised.
    Inline(String),
    /// `jwks_url`: fetch the JWKS directly.
    JwksUrl(HttpUrl),
    /// `discovery_url` (default `<issuer>/.well-known/openid-configuration`): fetch the
    /// discovery document, then its `jwks_uri`.
    Discovery(HttpUrl),
}

/// One `issuers[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// Issuer, audiences, algorithms (default [`Algorithm::ALL`]).
    pub rule: IssuerRule,
    pub keys: KeySource,
    /// `callout_host`: `host[:port]` for `dispatch_http_call`; `None` = the URL's authority.
    pub callout_upstream: Option<String>,
}

/// Where the caller's token is looked for (`token`). At least one location is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenLocation {
    /// Lowercased header name. Default `authorization`; `null` = no header.
    pub header: Option<String>,
    /// Auth scheme before the token in the header, compared case-insensitively. Default
    /// `Bearer`; `null` = the header value is the bare token.
    pub scheme: Option<String>,
    /// Query parameter holding the token. Default none.
    pub query_param: Option<String>,
    /// Cookie holding the token. Default none.
    pub cookie: Option<String>,
}

impl Default for TokenLocation {
    fn default() -> Self {
        TokenLocation {
            header: Some(DEFAULT_TOKEN_HEADER.to_string()),
            scheme: Some(DEFAULT_TOKEN_SCHEME.to_string()),
            query_param: None,
            cookie: None,
        }
    }
}

/// Where the Google ID token comes from.
#[derive(Debug)]
pub enum GoogleSource {
    /// The metadata server at `host[:port]` (default `metadata.google.internal`).
    Metadata { host: String },
    /// A service-account key signing a JWT-bearer assertion exchanged at `token_url`
    /// (default `https://oauth2.googleapis.com/token`).
    ServiceAccount {
        /// Boxed: the signing key is large and rare.
        key: Box<ServiceAccountKey>,
        token_url: HttpUrl,
    },
    /// Workload Identity Federation: the gateway's own identity (a URL's token, or AWS
    /// instance credentials) exchanged at Google's STS, then an ID token of the impersonated
    /// service account. Boxed: large and rare.
    ExternalAccount(Box<ExternalAccount>),
}

/// Which request header carries the Google ID token to Cloud Run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoogleHeader {
    /// `Authorization` (the default): replaced, the caller's token moves to
    /// `original_token_header`.
    Authorization,
    /// `X-Serverless-Authorization`, which Cloud Run checks in preference to `Authorization`:
    /// the caller's `Authorization` reaches the service unchanged.
    XServerlessAuthorization,
}

impl GoogleHeader {
    /// The header's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            GoogleHeader::Authorization => "authorization",
            GoogleHeader::XServerlessAuthorization => SERVERLESS_AUTHORIZATION,
        }
    }
}

/// `google_id_token`.
#[derive(Debug)]
pub struct GoogleIdTokenConfig {
    /// The token's audience: the Cloud Run service URL (or a custom audience).
    pub audience: String,
    pub source: GoogleSource,
    /// Where the token goes. Default `authorization`.
    pub header: GoogleHeader,
    /// Refresh a cached token this long before it expires. Default 300.
    pub refresh_before_expiry_secs: u64,
}

/// The whole route configuration, immutable once built.
#[derive(Debug)]
pub struct FilterConfig {
    /// 1..=16 issuers with distinct `issuer` strings.
    pub issuers: Vec<IssuerConfig>,
    pub token: TokenLocation,
    pub limits: Limits,
    /// All must be granted (`scope` / `scp`). Default none.
    pub required_scopes: Vec<String>,
    /// Each claim must equal, or be an array containing, one of the values.
    pub required_claims: Vec<(ClaimPath, Vec<Value>)>,
    /// In configuration order.
    pub claims_to_headers: Vec<(ClaimPath, HeaderName)>,
    /// Header receiving base64url(verified payload JSON). Default none.
    pub claims_header: Option<HeaderName>,
    /// Header receiving the caller's token when `Authorization` is replaced. Default
    /// `x-forwarded-authorization`; `None` = dropped.
    pub original_token_header: Option<HeaderName>,
    /// `None`: the caller's `Authorization` is kept as is.
    pub google_id_token: Option<GoogleIdTokenConfig>,
    pub jwks_cache: CachePolicy,
    /// Timeout of every callout (connect, send and read each). Default 5000.
    pub callout_timeout_ms: u32,
    /// Prefix of every shared-data key. Default `cloudrun_oidc`.
    pub shm_namespace: String,
}

impl FilterConfig {
    /// Parses the configuration bytes Kong hands to `on_configure`.
    pub fn from_json(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::new(
                "issuers",
                "is required (the configuration is empty)",
            ));
        }
        let raw = RawConfig::from_json(bytes)?;
        FilterConfig::try_from(raw)
    }

    /// Every header the filter owns (a client copy refuses the request), sorted, without
    /// duplicates: `claims_to_headers` targets, `claims_header`, `original_token_header`, and
    /// `x-forwarded-authorization` and `x-serverless-authorization` when `google_id_token` is set.
    pub fn owned_headers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .claims_to_headers
            .iter()
            .map(|(_, h)| h.as_str().to_string())
            .chain(self.claims_header.iter().map(|h| h.as_str().to_string()))
            .chain(
                self.original_token_header
                    .iter()
                    .map(|h| h.as_str().to_string()),
            )
            .collect();
        if self.google_id_token.is_some() {
            out.push(FORWARDED_AUTHORIZATION.to_string());
            out.push(SERVERLESS_AUTHORIZATION.to_string());
        }
        out.sort();
        out.dedup();
        out
    }

    /// The issuer entry whose `issuer` equals `iss` byte for byte.
    pub fn issuer(&self, iss: &str) -> Option<&IssuerConfig> {
        self.issuers.iter().find(|i| i.rule.issuer == iss)
    }
}

// ---------------------------------------------------------------------------------------------
// The raw configuration (serde).
// ---------------------------------------------------------------------------------------------

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

/// A JSON array, or `{}` (what Kong DB-less makes of an empty array).
#[derive(Debug, Clone, PartialEq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array (or {} for an empty one)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if out.len() >= MAX_LIST {
                        return Err(de::Error::custom(format!("more than {MAX_LIST} entries")));
                    }
                    out.push(item);
                }
                Ok(List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<List<T>, A::Error> {
                match map.next_key::<de::IgnoredAny>()? {
                    None => Ok(List(Vec::new())),
                    Some(_) => Err(de::Error::custom(
                        "expected an array; only an empty object {} stands for an empty array",
                    )),
                }
            }
        }
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// A JSON object kept in document order (duplicate keys refused), or `[]` for an empty one.
#[derive(Debug, Clone, PartialEq)]
pub struct Dict<T>(pub Vec<(String, T)>);

impl<T> Default for Dict<T> {
    fn default() -> Self {
        Dict(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Dict<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DictVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for DictVisitor<T> {
            type Value = Dict<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object (or [] for an empty one)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dict<T>, A::Error> {
                let mut out: Vec<(String, T)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    if out.len() >= MAX_LIST {
                        return Err(de::Error::custom(format!("more than {MAX_LIST} entries")));
                    }
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Dict(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dict<T>, A::Error> {
                match seq.next_element::<de::IgnoredAny>()? {
                    None => Ok(Dict(Vec::new())),
                    Some(_) => Err(de::Error::custom(
                        "expected an object; only an empty array [] stands for an empty object",
                    )),
                }
            }
        }
        d.deserialize_any(DictVisitor(PhantomData))
    }
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
    /// Deserialises the raw configuration. On failure, finds the field at fault by probing
    /// each field on its own, so that the error names `issuers[1].algorithms` rather than a
    /// line and column.
    pub fn from_json(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        match serde_json::from_slice::<Option<RawConfig>>(bytes) {
            Ok(Some(raw)) => Ok(raw),
            Ok(None) => Err(ConfigError::new(
                "issuers",
                "is required (the configuration is null)",
            )),
            Err(e) => Err(locate_error(bytes, &e)),
        }
    }
}

/// Turns a serde failure into a [`ConfigError`] naming the field at fault.
fn locate_error(bytes: &[u8], original: &serde_json::Error) -> ConfigError {
    let value = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => v,
        Err(e) => {
            return ConfigError::new(
                "(root)",
                format!("not valid JSON (line {}, column {})", e.line(), e.column()),
            )
        }
    };
    let Value::Object(map) = value else {
        return ConfigError::new("(root)", "must be a JSON object");
    };
    probe::<RawConfig>(&map, "", &|key, value, path| match (key, value) {
        ("issuers", Value::Array(items)) => items.iter().enumerate().find_map(|(i, item)| {
            let at = format!("{path}[{i}]");
            match item {
                Value::Object(m) => probe::<RawIssuer>(m, &at, &|_, _, _| None),
                _ => Some(ConfigError::new(at, "must be an object")),
            }
        }),
        ("token", Value::Object(m)) => probe::<RawToken>(m, path, &|_, _, _| None),
        ("jwks_cache", Value::Object(m)) => probe::<RawJwksCache>(m, path, &|_, _, _| None),
        ("google_id_token", Value::Object(m)) => probe::<RawGoogle>(m, path, &|_, _, _| None),
        _ => None,
    })
    .unwrap_or_else(|| ConfigError::new("(root)", sanitize(&original.to_string())))
}

type Nested<'a> = &'a dyn Fn(&str, &Value, &str) -> Option<ConfigError>;

/// Deserialises `T` from each field of `map` alone; the first field that fails is the culprit
/// (every raw field is optional, so a one-field object is otherwise valid).
fn probe<T: DeserializeOwned>(
    map: &Map<String, Value>,
    prefix: &str,
    nested: Nested<'_>,
) -> Option<ConfigError> {
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let mut single = Map::new();
        single.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(single)) {
            if let Some(inner) = nested(key, value, &path) {
                return Some(inner);
            }
            let message = if key == "service_account_key" {
                "must be the key file's JSON, as a string or an object".to_string()
            } else {
                sanitize(&e.to_string())
            };
            return Some(ConfigError::new(path, message));
        }
    }
    None
}

/// Keeps serde's message short and free of anything resembling key material.
fn sanitize(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("private") || lower.contains("-----begin") {
        return "has an invalid value".into();
    }
    // serde_json appends " at line L column C", which means nothing for a probed value.
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

// ---------------------------------------------------------------------------------------------
// RawConfig → FilterConfig.
// ---------------------------------------------------------------------------------------------

impl TryFrom<RawConfig> for FilterConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<FilterConfig, ConfigError> {
        let issuers = issuers(raw.issuers)?;
        let token = token(raw.token)?;
        let limits = Limits {
            clock_skew_secs: in_range(raw.clock_skew_seconds, 60, 0, 600, "clock_skew_seconds")?
                .try_into()
                .map_err(|_| ConfigError::new("clock_skew_seconds", "out of range"))?,
            max_token_bytes: in_range(raw.max_token_bytes, 8192, 256, 65_536, "max_token_bytes")?
                .try_into()
                .map_err(|_| ConfigError::new("max_token_bytes", "out of range"))?,
        };
        let required_scopes = scopes(raw.required_scopes)?;
        let required_claims = claim_rules(raw.required_claims)?;
        let claims_to_headers = claim_headers(raw.claims_to_headers)?;
        let claims_header = raw
            .claims_header
            .map(|h| owned_header(&h, "claims_header"))
            .transpose()?;
        let original_token_header = match raw.original_token_header {
            None => Some(owned_header(
                FORWARDED_AUTHORIZATION,
                "original_token_header",
            )?),
            Some(None) => None,
            Some(Some(h)) => Some(owned_header(&h, "original_token_header")?),
        };
        let google_id_token = raw.google_id_token.map(google).transpose()?;
        let jwks_cache = jwks_cache(raw.jwks_cache)?;
        let callout_timeout_ms: u32 = in_range(
            raw.callout_timeout_ms,
            5000,
            100,
            60_000,
            "callout_timeout_ms",
        )?
        .try_into()
        .map_err(|_| ConfigError::new("callout_timeout_ms", "out of range"))?;
        let shm_namespace = namespace(raw.shm_namespace)?;

        let config = FilterConfig {
            issuers,
            token,
            limits,
            required_scopes,
            required_claims,
            claims_to_headers,
            claims_header,
            original_token_header,
            google_id_token,
            jwks_cache,
            callout_timeout_ms,
            shm_namespace,
        };
        check_header_collisions(&config)?;
        Ok(config)
    }
}

fn in_range(
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
    field: &str,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::new(
            field,
            format!("must be between {min} and {max}"),
        ))
    }
}

/// A non-empty printable string of bounded length.
fn short_string(value: &str, field: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if value.len() > MAX_SHORT_STRING {
        return Err(ConfigError::new(
            field,
            format!("is longer than {MAX_SHORT_STRING} bytes"),
        ));
    }
    if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(ConfigError::new(field, "contains control characters"));
    }
    Ok(())
}

fn url(value: &str, field: &str) -> Result<HttpUrl, ConfigError> {
    HttpUrl::parse(value)
        .map_err(|e| ConfigError::new(field, format!("is not an http(s) URL: {e}")))
}

fn issuers(raw: Option<List<RawIssuer>>) -> Result<Vec<IssuerConfig>, ConfigError> {
    let list = raw
        .ok_or_else(|| ConfigError::new("issuers", "is required"))?
        .0;
    if list.is_empty() {
        return Err(ConfigError::new("issuers", "must list at least one issuer"));
    }
    if list.len() > MAX_ISSUERS {
        return Err(ConfigError::new(
            "issuers",
            format!("at most {MAX_ISSUERS} issuers"),
        ));
    }
    let mut out: Vec<IssuerConfig> = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let at = format!("issuers[{i}]");
        let issuer = issuer(raw, &at)?;
        if out.iter().any(|o| o.rule.issuer == issuer.rule.issuer) {
            return Err(ConfigError::new(format!("{at}.issuer"), "is listed twice"));
        }
        out.push(issuer);
    }
    Ok(out)
}

fn issuer(raw: RawIssuer, at: &str) -> Result<IssuerConfig, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let issuer = raw
        .issuer
        .ok_or_else(|| ConfigError::new(field("issuer"), "is required"))?;
    short_string(&issuer, &field("issuer"))?;

    let audiences = raw
        .audiences
        .ok_or_else(|| ConfigError::new(field("audiences"), "is required"))?
        .0;
    if audiences.is_empty() {
        return Err(ConfigError::new(
            field("audiences"),
            "must list at least one audience",
        ));
    }
    for (j, aud) in audiences.iter().enumerate() {
        short_string(aud, &format!("{at}.audiences[{j}]"))?;
    }

    let algorithms = match raw.algorithms {
        None => Algorithm::ALL.to_vec(),
        Some(List(names)) => {
            if names.is_empty() {
                return Err(ConfigError::new(
                    field("algorithms"),
                    "must list at least one algorithm (omit it for the default)",
                ));
            }
            let mut algs: Vec<Algorithm> = Vec::with_capacity(names.len());
            for (j, name) in names.iter().enumerate() {
                let alg = Algorithm::from_name(name).ok_or_else(|| {
                    ConfigError::new(
                        format!("{at}.algorithms[{j}]"),
                        "unsupported algorithm (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA; never HS* or none)",
                    )
                })?;
                if !algs.contains(&alg) {
                    algs.push(alg);
                }
            }
            algs
        }
    };

    let keys = match (raw.jwks, raw.jwks_url, raw.discovery_url) {
        (Some(jwks), None, None) => KeySource::Inline(inline_jwks(jwks, &field("jwks"))?),
        (None, Some(u), None) => KeySource::JwksUrl(url(&u, &field("jwks_url"))?),
        (None, None, Some(u)) => KeySource::Discovery(url(&u, &field("discovery_url"))?),
        (None, None, None) => {
            let base = issuer.trim_end_matches('/');
            KeySource::Discovery(
                HttpUrl::parse(&format!("{base}{WELL_KNOWN_SUFFIX}")).map_err(|e| {
                    ConfigError::new(
                        field("issuer"),
                        format!("is not an http(s) URL ({e}): set discovery_url, jwks_url or jwks"),
                    )
                })?,
            )
        }
        _ => {
            return Err(ConfigError::new(
                at,
                "set at most one of jwks, jwks_url, discovery_url",
            ))
        }
    };

    let callout_upstream = raw
        .callout_host
        .map(|h| {
            parse_authority(&h).map(|_| h).map_err(|e| {
                ConfigError::new(field("callout_host"), format!("must be host[:port]: {e}"))
            })
        })
        .transpose()?;
    if callout_upstream.is_some() && matches!(keys, KeySource::Inline(_)) {
        return Err(ConfigError::new(
            field("callout_host"),
            "has no use with inline jwks (nothing is fetched)",
        ));
    }

    let token_types = token_types(raw.token_types, at)?;

    Ok(IssuerConfig {
        rule: IssuerRule {
            issuer,
            audiences,
            algorithms,
            token_types,
        },
        keys,
        callout_upstream,
    })
}

/// `token_types`: media type names (RFC 6838 restricted names, optionally `application/`-prefixed),
/// stored lowercased without the prefix, duplicates dropped. Absent: no `typ` check.
fn token_types(raw: Option<List<String>>, at: &str) -> Result<Vec<String>, ConfigError> {
    let Some(List(names)) = raw else {
        return Ok(Vec::new());
    };
    if names.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.token_types"),
            "must list at least one token type (omit it to accept any typ)",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        let normal = token_type(name);
        let valid = normal.len() <= 127
            && normal
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && normal.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                    )
            });
        if !valid {
            return Err(ConfigError::new(
                format!("{at}.token_types[{j}]"),
                "must be a media type name such as at+jwt or application/at+jwt",
            ));
        }
        if !out.contains(&normal) {
            out.push(normal);
        }
    }
    Ok(out)
}

/// Inline keys: an object, or a string holding one, with a non-empty `keys` array.
fn inline_jwks(value: Value, field: &str) -> Result<String, ConfigError> {
    let doc = match value {
        Value::String(text) => {
            if text.len() > MAX_DOCUMENT_BYTES {
                return Err(ConfigError::new(field, "is too large"));
            }
            serde_json::from_str::<Value>(&text)
                .map_err(|_| ConfigError::new(field, "is not valid JSON"))?
        }
        other => other,
    };
    let Value::Object(map) = &doc else {
        return Err(ConfigError::new(
            field,
            "must be a JWKS object {\"keys\": [...]} or a string holding one",
        ));
    };
    match map.get("keys") {
        Some(Value::Array(keys)) if !keys.is_empty() => {}
        _ => {
            return Err(ConfigError::new(
                field,
                "must have a non-empty \"keys\" array",
            ))
        }
    }
    let text = doc.to_string();
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(ConfigError::new(field, "is too large"));
    }
    Ok(text)
}

fn token(raw: Option<RawToken>) -> Result<TokenLocation, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TokenLocation::default());
    };
    let header = match raw.header {
        None => Some(DEFAULT_TOKEN_HEADER.to_string()),
        Some(None) => None,
        Some(Some(h)) => Some(
            HeaderName::parse(&h)
                .map_err(|m| ConfigError::new("token.header", m))?
                .into_string(),
        ),
    };
    let scheme = match raw.scheme {
        None => Some(DEFAULT_TOKEN_SCHEME.to_string()),
        Some(None) => None,
        Some(Some(s)) => {
            if s.is_empty() || s.len() > 64 || !s.bytes().all(is_tchar) {
                return Err(ConfigError::new(
                    "token.scheme",
                    "must be an auth-scheme token such as Bearer (null for none)",
                ));
            }
            Some(s)
        }
    };
    let query_param = raw
        .query_param
        .map(|q| {
            if !q.is_empty()
                && q.len() <= 256
                && q.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            {
                Ok(q)
            } else {
                Err(ConfigError::new(
                    "token.query_param",
                    "must be a parameter name of letters, digits, - . _ ~",
                ))
            }
        })
        .transpose()?;
    let cookie = raw
        .cookie
        .map(|c| {
            if !c.is_empty() && c.len() <= 256 && c.bytes().all(is_tchar) {
                Ok(c)
            } else {
                Err(ConfigError::new(
                    "token.cookie",
                    "must be a cookie name (RFC 6265 token characters)",
                ))
            }
        })
        .transpose()?;
    if header.is_none() && query_param.is_none() && cookie.is_none() {
        return Err(ConfigError::new(
            "token",
            "at least one of header, query_param, cookie must be set",
        ));
    }
    Ok(TokenLocation {
        header,
        scheme,
        query_param,
        cookie,
    })
}

fn scopes(raw: Option<List<String>>) -> Result<Vec<String>, ConfigError> {
    let list = raw.unwrap_or_default().0;
    for (i, scope) in list.iter().enumerate() {
        let field = format!("required_scopes[{i}]");
        short_string(scope, &field)?;
        if scope.contains(' ') {
            return Err(ConfigError::new(field, "a scope cannot contain spaces"));
        }
    }
    Ok(list)
}

fn claim_path(path: &str, field: &str) -> Result<ClaimPath, ConfigError> {
    ClaimPath::parse(path).map_err(|m| ConfigError::new(field, m))
}

fn claim_rules(
    raw: Option<Dict<List<Value>>>,
) -> Result<Vec<(ClaimPath, Vec<Value>)>, ConfigError> {
    let mut out = Vec::new();
    for (path, List(values)) in raw.unwrap_or_default().0 {
        let field = format!("required_claims.{path}");
        let claim = claim_path(&path, &field)?;
        if values.is_empty() {
            return Err(ConfigError::new(field, "must list at least one value"));
        }
        for (j, v) in values.iter().enumerate() {
            if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return Err(ConfigError::new(
                    format!("{field}[{j}]"),
                    "values must be strings, numbers or booleans",
                ));
            }
        }
        out.push((claim, values));
    }
    Ok(out)
}

/// A header the filter sets: valid, and never `authorization` (replaced or kept, never mapped).
fn owned_header(name: &str, field: &str) -> Result<HeaderName, ConfigError> {
    let h = HeaderName::parse(name).map_err(|m| ConfigError::new(field, m))?;
    if h.as_str() == "authorization" {
        return Err(ConfigError::new(
            field,
            "`authorization` cannot be set from claims or used as an owned header",
        ));
    }
    // CGI-style upstreams read `x_user_id` and `x-user-id` as one variable, and nginx drops
    // underscored request headers by default: such a name could never be protected.
    if h.as_str().contains('_') {
        return Err(ConfigError::new(
            field,
            "must not contain `_` (use `-`: upstreams may read `_` and `-` alike)",
        ));
    }
    Ok(h)
}

fn claim_headers(raw: Option<Dict<String>>) -> Result<Vec<(ClaimPath, HeaderName)>, ConfigError> {
    let mut out: Vec<(ClaimPath, HeaderName)> = Vec::new();
    for (path, header) in raw.unwrap_or_default().0 {
        let field = format!("claims_to_headers.{path}");
        let claim = claim_path(&path, &field)?;
        let header = owned_header(&header, &field)?;
        if out.iter().any(|(_, h)| *h == header) {
            return Err(ConfigError::new(
                field,
                format!("header `{header}` is the target of another claim"),
            ));
        }
        out.push((claim, header));
    }
    Ok(out)
}

/// Rejects two owned headers with the same name, and an owned header that is the token header
/// (it would be stripped before the token is read).
fn check_header_collisions(config: &FilterConfig) -> Result<(), ConfigError> {
    // Settings in blame order: a later one colliding with an earlier one is reported.
    let mut named: Vec<(&str, String)> = Vec::new();
    if config.google_id_token.is_some() {
        // The original token header may be x-forwarded-authorization itself (the default).
        if config
            .original_token_header
            .as_ref()
            .is_none_or(|h| h.as_str() != FORWARDED_AUTHORIZATION)
        {
            named.push((FORWARDED_AUTHORIZATION, "google_id_token".into()));
        }
        named.push((SERVERLESS_AUTHORIZATION, "google_id_token".into()));
    }
    if let Some(h) = &config.original_token_header {
        named.push((h.as_str(), "original_token_header".into()));
    }
    if let Some(h) = &config.claims_header {
        named.push((h.as_str(), "claims_header".into()));
    }
    named.extend(
        config
            .claims_to_headers
            .iter()
            .map(|(p, h)| (h.as_str(), format!("claims_to_headers.{}", p.as_str()))),
    );
    for (i, (name, field)) in named.iter().enumerate() {
        if let Some((_, earlier)) = named.iter().take(i).find(|(other, _)| other == name) {
            return Err(ConfigError::new(
                field.clone(),
                format!("header `{name}` is already set by {earlier}"),
            ));
        }
        if config.token.header.as_deref() == Some(*name) {
            return Err(ConfigError::new(
                field.clone(),
                format!("header `{name}` is where the caller's token is read from"),
            ));
        }
    }
    Ok(())
}

fn google(mut raw: RawGoogle) -> Result<GoogleIdTokenConfig, ConfigError> {
    let audience = raw
        .audience
        .take()
        .ok_or_else(|| ConfigError::new("google_id_token.audience", "is required"))?;
    short_string(&audience, "google_id_token.audience")?;
    let refresh_before_expiry_secs = in_range(
        raw.refresh_before_expiry_seconds,
        300,
        0,
        3000,
        "google_id_token.refresh_before_expiry_seconds",
    )?;
    let header = match raw.header.take().as_deref() {
        None | Some("authorization") => GoogleHeader::Authorization,
        Some(SERVERLESS_AUTHORIZATION) => GoogleHeader::XServerlessAuthorization,
        Some(_) => {
            return Err(ConfigError::new(
                "google_id_token.header",
                "must be authorization or x-serverless-authorization",
            ))
        }
    };
    let source = match raw.source.as_deref().unwrap_or("metadata") {
        "metadata" => {
            // Name the setting that was given: the operator forgot `source`, or left a key behind.
            let given = match (&raw.service_account_key, &raw.token_url) {
                (Some(_), _) => Some("service_account_key"),
                (None, Some(_)) => Some("token_url"),
                (None, None) => None,
            };
            if let Some(given) = given {
                return Err(ConfigError::new(
                    "google_id_token.source",
                    format!(
                        "is metadata{}, but {given} needs source: service_account",
                        if raw.source.is_none() {
                            " (the default)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            refuse_external_account(&raw.external_account)?;
            let host = raw
                .metadata_host
                .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string());
            parse_authority(&host).map_err(|e| {
                ConfigError::new(
                    "google_id_token.metadata_host",
                    format!("must be host[:port]: {e}"),
                )
            })?;
            GoogleSource::Metadata { host }
        }
        "service_account" => {
            if raw.metadata_host.is_some() {
                return Err(ConfigError::new(
                    "google_id_token.metadata_host",
                    "is only used with source: metadata",
                ));
            }
            refuse_external_account(&raw.external_account)?;
            let key = raw.service_account_key.ok_or_else(|| {
                ConfigError::new(
                    "google_id_token.service_account_key",
                    "is required with source: service_account",
                )
            })?;
            let key = service_account_key(key)?;
            let token_url = url(
                raw.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL),
                "google_id_token.token_url",
            )?;
            GoogleSource::ServiceAccount {
                key: Box::new(key),
                token_url,
            }
        }
        "external_account" => GoogleSource::ExternalAccount(Box::new(external_account(raw)?)),
        _ => {
            return Err(ConfigError::new(
                "google_id_token.source",
                "must be metadata, service_account or external_account",
            ))
        }
    };
    Ok(GoogleIdTokenConfig {
        audience,
        source,
        header,
        refresh_before_expiry_secs,
    })
}

/// `external_account` belongs to `source: external_account` only.
fn refuse_external_account(external_account: &Option<Value>) -> Result<(), ConfigError> {
    match external_account {
        Some(_) => Err(ConfigError::new(
            "google_id_token.source",
            "external_account needs source: external_account",
        )),
        None => Ok(()),
    }
}

/// `source: external_account`: the credential configuration, and none of the other sources'
/// fields.
fn external_account(raw: RawGoogle) -> Result<ExternalAccount, ConfigError> {
    const FIELD: &str = "google_id_token.external_account";
    if raw.metadata_host.is_some() {
        return Err(ConfigError::new(
            "google_id_token.metadata_host",
            "is only used with source: metadata",
        ));
    }
    if raw.service_account_key.is_some() {
        return Err(ConfigError::new(
            "google_id_token.service_account_key",
            "is only used with source: service_account (external_account needs no key)",
        ));
    }
    if raw.token_url.is_some() {
        return Err(ConfigError::new(
            "google_id_token.token_url",
            "is only used with source: service_account (the STS URL is the credential configuration's token_url)",
        ));
    }
    let value = raw.external_account.ok_or_else(|| {
        ConfigError::new(
            FIELD,
            "is required with source: external_account (the credential configuration gcloud iam workload-identity-pools create-cred-config writes)",
        )
    })?;
    if value.as_str().is_some_and(|s| s.len() > MAX_DOCUMENT_BYTES) {
        return Err(ConfigError::new(FIELD, "is too large"));
    }
    ExternalAccount::parse(&value).map_err(|e| {
        let field = if e.field.is_empty() {
            FIELD.to_string()
        } else {
            format!("{FIELD}.{}", e.field)
        };
        ConfigError::new(field, e.message)
    })
}

/// Parses a Google service-account key file. Error messages never quote the input.
fn service_account_key(value: Value) -> Result<ServiceAccountKey, ConfigError> {
    const FIELD: &str = "google_id_token.service_account_key";
    #[derive(Deserialize)]
    struct KeyFile {
        #[serde(rename = "type")]
        kind: Option<String>,
        private_key_id: String,
        private_key: String,
        client_email: String,
    }
    let value = match value {
        Value::String(text) => {
            if text.len() > MAX_DOCUMENT_BYTES {
                return Err(ConfigError::new(FIELD, "is too large"));
            }
            serde_json::from_str::<Value>(&text)
                .map_err(|_| ConfigError::new(FIELD, "is not valid JSON"))?
        }
        other => other,
    };
    if !value.is_object() {
        return Err(ConfigError::new(
            FIELD,
            "must be the key file's JSON object (or a string holding it)",
        ));
    }
    let file: KeyFile = serde_json::from_value(value).map_err(|_| {
        ConfigError::new(
            FIELD,
            "needs string fields private_key_id, private_key and client_email",
        )
    })?;
    if file.kind.as_deref().is_some_and(|k| k != "service_account") {
        return Err(ConfigError::new(FIELD, "type must be service_account"));
    }
    if file.client_email.is_empty() || file.client_email.chars().any(char::is_control) {
        return Err(ConfigError::new(FIELD, "client_email is invalid"));
    }
    if file.private_key_id.chars().any(char::is_control) {
        return Err(ConfigError::new(FIELD, "private_key_id is invalid"));
    }
    ServiceAccountKey::new(&file.private_key_id, &file.client_email, &file.private_key)
        .map_err(|_| ConfigError::new(FIELD, "private_key is not a PKCS#8 RSA key in PEM"))
}

fn jwks_cache(raw: Option<RawJwksCache>) -> Result<CachePolicy, ConfigError> {
    let raw = raw.unwrap_or_default();
    Ok(CachePolicy {
        ttl_secs: in_range(raw.ttl_seconds, 600, 1, 86_400, "jwks_cache.ttl_seconds")?,
        max_stale_secs: in_range(
            raw.max_stale_seconds,
            86_400,
            0,
            2_592_000,
            "jwks_cache.max_stale_seconds",
        )?,
        unknown_kid_cooldown_secs: in_range(
            raw.unknown_kid_cooldown_seconds,
            30,
            0,
            3600,
            "jwks_cache.unknown_kid_cooldown_seconds",
        )?,
    })
}

fn namespace(raw: Option<String>) -> Result<String, ConfigError> {
    let ns = raw.unwrap_or_else(|| DEFAULT_SHM_NAMESPACE.to_string());
    if ns.is_empty()
        || ns.len() > MAX_NAMESPACE
        || !ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ConfigError::new(
            "shm_namespace",
            format!("must be 1..={MAX_NAMESPACE} characters of a-z, 0-9, _"),
        ));
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<FilterConfig, ConfigError> {
        FilterConfig::from_json(v.to_string().as_bytes())
    }

    fn err(v: Value) -> ConfigError {
        parse(v).unwrap_err()
    }

    fn minimal() -> Value {
        json!({"issuers": [{"issuer": "https://idp.example.com/realms/prod", "audiences": ["orders-api"]}]})
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base.as_object_mut().unwrap().insert(key.into(), value);
        base
    }

    fn issuer_with(key: &str, value: Value) -> Value {
        let mut base = minimal();
        base["issuers"][0]
            .as_object_mut()
            .unwrap()
            .insert(key.into(), value);
        base
    }

    fn sa_pem() -> String {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
        String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn minimal_config_gets_every_default() {
        let c = parse(minimal()).unwrap();
        assert_eq!(c.issuers.len(), 1);
        let i = &c.issuers[0];
        assert_eq!(i.rule.issuer, "https://idp.example.com/realms/prod");
        assert_eq!(i.rule.audiences, vec!["orders-api"]);
        assert_eq!(i.rule.algorithms, Algorithm::ALL.to_vec());
        assert_eq!(
            i.keys,
            KeySource::Discovery(
                HttpUrl::parse(
                    "https://idp.example.com/realms/prod/.well-known/openid-configuration"
                )
                .unwrap()
            )
        );
        assert_eq!(i.callout_upstream, None);
        assert!(i.rule.token_types.is_empty(), "typ is not checked");
        assert_eq!(c.token, TokenLocation::default());
        assert_eq!(c.token.header.as_deref(), Some("authorization"));
        assert_eq!(c.token.scheme.as_deref(), Some("Bearer"));
        assert_eq!(
            c.limits,
            Limits {
                max_token_bytes: 8192,
                clock_skew_secs: 60
            }
        );
        assert!(c.required_scopes.is_empty());
        assert!(c.required_claims.is_empty());
        assert!(c.claims_to_headers.is_empty());
        assert_eq!(c.claims_header, None);
        assert_eq!(
            c.original_token_header.as_ref().map(HeaderName::as_str),
            Some("x-forwarded-authorization")
        );
        assert!(c.google_id_token.is_none());
        assert_eq!(c.jwks_cache, CachePolicy::default());
        assert_eq!(c.callout_timeout_ms, 5000);
        assert_eq!(c.shm_namespace, "cloudrun_oidc");
        assert_eq!(c.owned_headers(), vec!["x-forwarded-authorization"]);
    }

    #[test]
    fn token_types_are_normalised_and_checked() {
        let c = parse(issuer_with(
            "token_types",
            json!(["application/AT+JWT", "at+jwt", "JWT"]),
        ))
        .unwrap();
        assert_eq!(c.issuers[0].rule.token_types, vec!["at+jwt", "jwt"]);
        for (bad, field) in [
            (json!([]), "issuers[0].token_types"),
            (json!({}), "issuers[0].token_types"),
            (json!("at+jwt"), "issuers[0].token_types"),
            (json!(["at+jwt", "at jwt"]), "issuers[0].token_types[1]"),
            (json!(["application/"]), "issuers[0].token_types[0]"),
            (json!(["a/b"]), "issuers[0].token_types[0]"),
            (json!(["+jwt"]), "issuers[0].token_types[0]"),
            (json!([""]), "issuers[0].token_types[0]"),
        ] {
            assert_eq!(
                err(issuer_with("token_types", bad.clone())).field,
                field,
                "{bad}"
            );
        }
    }

    #[test]
    fn google_source_errors_name_the_setting_given() {
        let e = err(with(
            minimal(),
            "google_id_token",
            json!({"audience": "a", "token_url": "https://t/token"}),
        ));
        assert_eq!(e.field, "google_id_token.source");
        assert!(e.message.contains("token_url"), "{e}");
        assert!(e.message.contains("default"), "{e}");
        let e = err(with(
            minimal(),
            "google_id_token",
            json!({"audience": "a", "source": "metadata", "service_account_key": "{}"}),
        ));
        assert!(e.message.contains("service_account_key"), "{e}");
        assert!(!e.message.contains("default"), "{e}");
    }

    #[test]
    fn full_config_is_parsed_into_types() {
        let pem = sa_pem();
        let key = json!({"type": "service_account", "project_id": "p", "private_key_id": "k1",
            "private_key": pem, "client_email": "sa@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token"});
        let v = json!({
            "issuers": [
                {"issuer": "https://idp.example.com/", "audiences": ["a", "b"],
                 "algorithms": ["RS256", "ES256", "RS256"], "callout_host": "idp:8080"},
                {"issuer": "https://other", "audiences": ["x"], "jwks_url": "http://mock:9000/jwks"},
                {"issuer": "inline", "audiences": ["x"], "jwks": {"keys": [{"kty": "OKP"}]}},
                {"issuer": "inline2", "audiences": ["x"], "jwks": "{\"keys\":[{\"kty\":\"EC\"}]}"},
                {"issuer": "https://d", "audiences": ["x"], "discovery_url": "https://d/custom"}
            ],
            "token": {"header": "X-Token", "scheme": null, "query_param": "access_token", "cookie": "session"},
            "clock_skew_seconds": 0,
            "max_token_bytes": 65536,
            "required_scopes": ["orders.read", "orders.write"],
            "required_claims": {"groups": ["admins", 7, true], "realm_access.roles": ["r"]},
            "claims_to_headers": {"sub": "X-User-Id", "email": "x-user-email", "https://example.com/roles": "x-roles"},
            "claims_header": "x-jwt-claims",
            "original_token_header": "x-original-token",
            "google_id_token": {"audience": "https://orders-abc-uc.a.run.app", "source": "service_account",
                "service_account_key": key.to_string(), "refresh_before_expiry_seconds": 120},
            "jwks_cache": {"ttl_seconds": 60, "max_stale_seconds": 0, "unknown_kid_cooldown_seconds": 5},
            "callout_timeout_ms": 100,
            "shm_namespace": "oidc_2"
        });
        let c = parse(v).unwrap();
        let i = &c.issuers;
        assert_eq!(
            i[0].rule.algorithms,
            vec![Algorithm::Rs256, Algorithm::Es256]
        );
        assert_eq!(
            i[0].keys,
            KeySource::Discovery(
                HttpUrl::parse("https://idp.example.com/.well-known/openid-configuration").unwrap()
            )
        );
        assert_eq!(i[0].callout_upstream.as_deref(), Some("idp:8080"));
        assert_eq!(
            i[1].keys,
            KeySource::JwksUrl(HttpUrl::parse("http://mock:9000/jwks").unwrap())
        );
        assert_eq!(
            i[2].keys,
            KeySource::Inline("{\"keys\":[{\"kty\":\"OKP\"}]}".into())
        );
        assert_eq!(
            i[3].keys,
            KeySource::Inline("{\"keys\":[{\"kty\":\"EC\"}]}".into())
        );
        assert_eq!(
            i[4].keys,
            KeySource::Discovery(HttpUrl::parse("https://d/custom").unwrap())
        );
        assert_eq!(
            c.token,
            TokenLocation {
                header: Some("x-token".into()),
                scheme: None,
                query_param: Some("access_token".into()),
                cookie: Some("session".into())
            }
        );
        assert_eq!(c.limits.clock_skew_secs, 0);
        assert_eq!(c.limits.max_token_bytes, 65536);
        assert_eq!(c.required_scopes, vec!["orders.read", "orders.write"]);
        assert_eq!(c.required_claims.len(), 2);
        assert_eq!(c.required_claims[0].0.as_str(), "groups");
        assert_eq!(
            c.required_claims[0].1,
            vec![json!("admins"), json!(7), json!(true)]
        );
        let mapped: Vec<(&str, &str)> = c
            .claims_to_headers
            .iter()
            .map(|(p, h)| (p.as_str(), h.as_str()))
            .collect();
        assert_eq!(
            mapped,
            // json! sorts keys; document order is kept (see keeps_claims_to_headers_in_document_order).
            vec![
                ("email", "x-user-email"),
                ("https://example.com/roles", "x-roles"),
                ("sub", "x-user-id"),
            ]
        );
        let g = c.google_id_token.as_ref().unwrap();
        assert_eq!(g.audience, "https://orders-abc-uc.a.run.app");
        assert_eq!(g.refresh_before_expiry_secs, 120);
        match &g.source {
            GoogleSource::ServiceAccount { key, token_url } => {
                assert_eq!(key.private_key_id, "k1");
                assert_eq!(key.client_email, "sa@p.iam.gserviceaccount.com");
                assert_eq!(token_url.to_string(), DEFAULT_TOKEN_URL);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.jwks_cache,
            CachePolicy {
                ttl_secs: 60,
                max_stale_secs: 0,
                unknown_kid_cooldown_secs: 5
            }
        );
        assert_eq!(c.callout_timeout_ms, 100);
        assert_eq!(c.shm_namespace, "oidc_2");
        assert_eq!(
            c.owned_headers(),
            vec![
                "x-forwarded-authorization",
                "x-jwt-claims",
                "x-original-token",
                "x-roles",
                "x-serverless-authorization",
                "x-user-email",
                "x-user-id"
            ]
        );
        assert!(c.issuer("inline2").is_some());
        assert!(c.issuer("inline3").is_none());
    }

    #[test]
    fn metadata_source_is_the_default() {
        let c = parse(with(
            minimal(),
            "google_id_token",
            json!({"audience": "https://svc.a.run.app"}),
        ))
        .unwrap();
        let g = c.google_id_token.unwrap();
        assert_eq!(g.refresh_before_expiry_secs, 300);
        assert!(
            matches!(g.source, GoogleSource::Metadata { ref host } if host == "metadata.google.internal")
        );
        let c = parse(with(
            minimal(),
            "google_id_token",
            json!({"audience": "a", "source": "metadata", "metadata_host": "mock-google:8081"}),
        ))
        .unwrap();
        assert!(
            matches!(c.google_id_token.unwrap().source, GoogleSource::Metadata { ref host } if host == "mock-google:8081")
        );
    }

    #[test]
    fn kong_empty_object_stands_for_empty_arrays() {
        let v = with(
            with(minimal(), "required_scopes", json!({})),
            "claims_to_headers",
            json!([]),
        );
        let v = with(v, "required_claims", json!([]));
        let c = parse(v).unwrap();
        assert!(c.required_scopes.is_empty());
        assert!(c.claims_to_headers.is_empty());
        let e = err(with(minimal(), "required_scopes", json!({"a": 1})));
        assert_eq!(e.field, "required_scopes");
        let e = err(with(minimal(), "issuers", json!({})));
        assert_eq!(e.field, "issuers");
        assert!(e.message.contains("at least one"), "{e}");
    }

    #[test]
    fn original_token_header_null_means_drop() {
        let c = parse(with(minimal(), "original_token_header", Value::Null)).unwrap();
        assert_eq!(c.original_token_header, None);
        assert!(c.owned_headers().is_empty());
        let c = parse(with(
            with(minimal(), "original_token_header", Value::Null),
            "google_id_token",
            json!({"audience": "a"}),
        ))
        .unwrap();
        assert_eq!(
            c.owned_headers(),
            vec!["x-forwarded-authorization", "x-serverless-authorization"]
        );
    }

    #[test]
    fn google_token_header_is_authorization_or_x_serverless_authorization() {
        let google = |header: Value| {
            parse(with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "header": header}),
            ))
        };
        let header = |c: FilterConfig| c.google_id_token.map(|g| g.header);
        assert_eq!(
            header(google(Value::Null).unwrap()),
            Some(GoogleHeader::Authorization)
        );
        assert_eq!(
            header(google(json!("x-serverless-authorization")).unwrap()),
            Some(GoogleHeader::XServerlessAuthorization)
        );
        let e = google(json!("x-other")).unwrap_err();
        assert_eq!(e.field, "google_id_token.header");
        let e = parse(with(
            with(
                minimal(),
                "original_token_header",
                json!("X-Serverless-Authorization"),
            ),
            "google_id_token",
            json!({"audience": "a"}),
        ))
        .unwrap_err();
        assert_eq!(e.field, "original_token_header");
    }

    #[test]
    fn owned_header_names_with_underscores_are_refused() {
        for (field, value) in [
            ("claims_to_headers", json!({"sub": "x_user_id"})),
            ("claims_header", json!("x_jwt_claims")),
            ("original_token_header", json!("x_original")),
        ] {
            let e = parse(with(minimal(), field, value)).unwrap_err();
            assert!(e.field.starts_with(field), "{field}: {}", e.field);
            assert!(e.message.contains('_'), "{}", e.message);
        }
    }

    #[test]
    fn nulls_mean_absent_for_optional_settings() {
        let v = with(
            minimal(),
            "token",
            json!({"query_param": null, "cookie": null}),
        );
        let v = with(v, "claims_header", Value::Null);
        let v = with(v, "google_id_token", Value::Null);
        let c = parse(v).unwrap();
        assert_eq!(c.token, TokenLocation::default());
        assert!(c.google_id_token.is_none());
        // Numbers and lists are never null.
        assert_eq!(
            err(with(minimal(), "clock_skew_seconds", Value::Null)).field,
            "clock_skew_seconds"
        );
        assert_eq!(
            err(with(minimal(), "required_scopes", Value::Null)).field,
            "required_scopes"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({}), "issuers"),
            (json!({"issuers": []}), "issuers"),
            (json!({"issuers": "x"}), "issuers"),
            (with(minimal(), "bogus", json!(1)), "bogus"),
            (issuer_with("bogus", json!(1)), "issuers[0].bogus"),
            (issuer_with("audiences", json!([])), "issuers[0].audiences"),
            (
                issuer_with("audiences", json!("orders")),
                "issuers[0].audiences",
            ),
            (
                issuer_with("audiences", json!([""])),
                "issuers[0].audiences[0]",
            ),
            (
                issuer_with("algorithms", json!(["RS256", "HS256"])),
                "issuers[0].algorithms[1]",
            ),
            (
                issuer_with("algorithms", json!(["none"])),
                "issuers[0].algorithms[0]",
            ),
            (
                issuer_with("algorithms", json!([])),
                "issuers[0].algorithms",
            ),
            (
                issuer_with("jwks_url", json!("ftp://x/")),
                "issuers[0].jwks_url",
            ),
            (
                issuer_with("discovery_url", json!("not a url")),
                "issuers[0].discovery_url",
            ),
            (
                issuer_with("callout_host", json!("idp:99999")),
                "issuers[0].callout_host",
            ),
            (issuer_with("jwks", json!({"keys": []})), "issuers[0].jwks"),
            (issuer_with("jwks", json!("not json")), "issuers[0].jwks"),
            (issuer_with("jwks", json!(5)), "issuers[0].jwks"),
            (
                json!({"issuers": [{"issuer": "not-a-url", "audiences": ["a"]}]}),
                "issuers[0].issuer",
            ),
            (
                json!({"issuers": [{"issuer": "https://a", "audiences": ["a"]}, {"issuer": "https://a", "audiences": ["b"]}]}),
                "issuers[1].issuer",
            ),
            (
                json!({"issuers": [{"audiences": ["a"]}]}),
                "issuers[0].issuer",
            ),
            (json!({"issuers": [5]}), "issuers[0]"),
            (
                with(minimal(), "token", json!({"header": "bad header"})),
                "token.header",
            ),
            (
                with(minimal(), "token", json!({"scheme": "Bea rer"})),
                "token.scheme",
            ),
            (
                with(minimal(), "token", json!({"scheme": ""})),
                "token.scheme",
            ),
            (
                with(minimal(), "token", json!({"query_param": "a&b"})),
                "token.query_param",
            ),
            (
                with(minimal(), "token", json!({"cookie": "a;b"})),
                "token.cookie",
            ),
            (with(minimal(), "token", json!({"header": null})), "token"),
            (with(minimal(), "token", json!({"extra": 1})), "token.extra"),
            (
                with(minimal(), "clock_skew_seconds", json!(601)),
                "clock_skew_seconds",
            ),
            (
                with(minimal(), "clock_skew_seconds", json!(-1)),
                "clock_skew_seconds",
            ),
            (
                with(minimal(), "clock_skew_seconds", json!("60")),
                "clock_skew_seconds",
            ),
            (
                with(minimal(), "max_token_bytes", json!(255)),
                "max_token_bytes",
            ),
            (
                with(minimal(), "max_token_bytes", json!(65537)),
                "max_token_bytes",
            ),
            (
                with(minimal(), "required_scopes", json!(["a b"])),
                "required_scopes[0]",
            ),
            (
                with(minimal(), "required_claims", json!({"groups": []})),
                "required_claims.groups",
            ),
            (
                with(minimal(), "required_claims", json!({"groups": [{"a": 1}]})),
                "required_claims.groups[0]",
            ),
            (
                with(minimal(), "required_claims", json!({"a..b": ["x"]})),
                "required_claims.a..b",
            ),
            (
                with(minimal(), "required_claims", json!({"groups": "admins"})),
                "required_claims",
            ),
            (
                with(minimal(), "claims_to_headers", json!({"sub": "host"})),
                "claims_to_headers.sub",
            ),
            (
                with(
                    minimal(),
                    "claims_to_headers",
                    json!({"sub": "Authorization"}),
                ),
                "claims_to_headers.sub",
            ),
            (
                with(
                    minimal(),
                    "claims_to_headers",
                    json!({"sub": "x-a", "email": "X-A"}),
                ),
                "claims_to_headers.sub",
            ),
            (
                with(minimal(), "claims_to_headers", json!({"sub": "connection"})),
                "claims_to_headers.sub",
            ),
            (
                with(minimal(), "claims_to_headers", json!({"sub": ":path"})),
                "claims_to_headers.sub",
            ),
            (
                with(
                    minimal(),
                    "claims_to_headers",
                    json!({"sub": "x-forwarded-authorization"}),
                ),
                "claims_to_headers.sub",
            ),
            (
                with(minimal(), "claims_header", json!("transfer-encoding")),
                "claims_header",
            ),
            (
                with(
                    minimal(),
                    "claims_header",
                    json!("x-forwarded-authorization"),
                ),
                "claims_header",
            ),
            (
                with(minimal(), "original_token_header", json!("authorization")),
                "original_token_header",
            ),
            (
                with(minimal(), "original_token_header", json!("content-length")),
                "original_token_header",
            ),
            (
                with(minimal(), "google_id_token", json!({})),
                "google_id_token.audience",
            ),
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "source": "magic"}),
                ),
                "google_id_token.source",
            ),
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "source": "service_account"}),
                ),
                "google_id_token.service_account_key",
            ),
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "service_account_key": "{}"}),
                ),
                "google_id_token.source",
            ),
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "metadata_host": "bad host"}),
                ),
                "google_id_token.metadata_host",
            ),
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "refresh_before_expiry_seconds": 3001}),
                ),
                "google_id_token.refresh_before_expiry_seconds",
            ),
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "extra": true}),
                ),
                "google_id_token.extra",
            ),
            (
                with(minimal(), "jwks_cache", json!({"ttl_seconds": 0})),
                "jwks_cache.ttl_seconds",
            ),
            (
                with(minimal(), "jwks_cache", json!({"ttl": 10})),
                "jwks_cache.ttl",
            ),
            (
                with(minimal(), "callout_timeout_ms", json!(99)),
                "callout_timeout_ms",
            ),
            (
                with(minimal(), "callout_timeout_ms", json!(60001)),
                "callout_timeout_ms",
            ),
            (
                with(minimal(), "shm_namespace", json!("Cloud-Run")),
                "shm_namespace",
            ),
            (with(minimal(), "shm_namespace", json!("")), "shm_namespace"),
        ];
        for (v, field) in cases {
            let e = err(v.clone());
            assert_eq!(e.field, field, "{v} → {e}");
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn keeps_claims_to_headers_in_document_order() {
        let text = r#"{"issuers": [{"issuer": "https://a", "audiences": ["a"]}],
            "claims_to_headers": {"sub": "x-user-id", "email": "x-user-email", "acr": "x-acr"}}"#;
        let c = FilterConfig::from_json(text.as_bytes()).unwrap();
        let order: Vec<&str> = c
            .claims_to_headers
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(order, vec!["sub", "email", "acr"]);
        let dup = r#"{"issuers": [{"issuer": "https://a", "audiences": ["a"]}],
            "claims_to_headers": {"sub": "x-a", "sub": "x-b"}}"#;
        let e = FilterConfig::from_json(dup.as_bytes()).unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        let dup = r#"{"issuers": [{"issuer": "https://a", "audiences": ["a"]}], "max_token_bytes": 300, "max_token_bytes": 400}"#;
        assert!(FilterConfig::from_json(dup.as_bytes()).is_err());
    }

    #[test]
    fn several_key_sources_are_refused() {
        let mut v = issuer_with("jwks_url", json!("https://x/jwks"));
        v["issuers"][0]["discovery_url"] = json!("https://x/d");
        assert_eq!(err(v).field, "issuers[0]");
        let mut v = issuer_with("jwks", json!({"keys": [{}]}));
        v["issuers"][0]["callout_host"] = json!("idp:80");
        assert_eq!(err(v).field, "issuers[0].callout_host");
    }

    #[test]
    fn token_header_cannot_be_an_owned_header() {
        let v = with(minimal(), "token", json!({"header": "x-token"}));
        let e = err(with(
            v.clone(),
            "claims_to_headers",
            json!({"sub": "X-Token"}),
        ));
        assert_eq!(e.field, "claims_to_headers.sub");
        let e = err(with(v, "original_token_header", json!("x-token")));
        assert_eq!(e.field, "original_token_header");
        let v = with(
            minimal(),
            "token",
            json!({"header": "x-forwarded-authorization"}),
        );
        let v = with(v, "original_token_header", Value::Null);
        assert!(parse(v.clone()).is_ok());
        let e = err(with(v, "google_id_token", json!({"audience": "a"})));
        assert_eq!(e.field, "google_id_token");
    }

    #[test]
    fn empty_or_null_config_names_issuers() {
        for bytes in [&b""[..], b"  \n", b"null", b"{}"] {
            let e = FilterConfig::from_json(bytes).unwrap_err();
            assert_eq!(e.field, "issuers", "{:?}", String::from_utf8_lossy(bytes));
        }
        let e = FilterConfig::from_json(b"{not json").unwrap_err();
        assert_eq!(e.field, "(root)");
        let e = FilterConfig::from_json(b"[1]").unwrap_err();
        assert_eq!(e.field, "(root)");
        assert_eq!(
            e.to_string(),
            "invalid configuration: (root): must be a JSON object"
        );
        let e = err(with(minimal(), "jwks_cache", json!("600")));
        assert_eq!(
            e.to_string(),
            "invalid configuration: jwks_cache: invalid type: string \"600\", expected an object"
        );
        let e = err(with(minimal(), "callout_timeout_ms", json!(-1)));
        assert_eq!(
            e.message,
            "invalid value: integer `-1`, expected a non-negative integer"
        );
    }

    #[test]
    fn errors_never_contain_the_service_account_key() {
        let pem = sa_pem();
        let secret_line = pem.lines().nth(3).unwrap().to_string();
        let bad_keys = vec![
            json!({"private_key_id": "k", "private_key": pem.replace("MII", "XXX"), "client_email": "e"}),
            json!({"private_key_id": "k", "private_key": pem.clone()}),
            json!({"private_key_id": 5, "private_key": pem.clone(), "client_email": "e"}),
            json!({"type": "authorized_user", "private_key_id": "k", "private_key": pem.clone(), "client_email": "e"}),
            json!(format!("{{\"private_key\": {:?}", pem)),
            json!([pem.clone()]),
            json!(42),
        ];
        for key in bad_keys {
            let key = if key.is_object() {
                json!(key.to_string())
            } else {
                key
            };
            for v in [
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "source": "service_account", "service_account_key": key.clone()}),
                ),
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "source": "service_account", "service_account_key": key.clone(), "bogus": 1}),
                ),
            ] {
                let e = err(v);
                let text = format!("{e} {e:?}");
                assert!(e.field.starts_with("google_id_token"), "{text}");
                assert!(!text.contains(&secret_line), "{text}");
                assert!(!text.contains("PRIVATE KEY"), "{text}");
            }
        }
    }

    #[test]
    fn service_account_key_may_be_an_object() {
        let pem = sa_pem();
        let v = with(
            minimal(),
            "google_id_token",
            json!({"audience": "a", "source": "service_account", "token_url": "http://mock-google:8082/token",
                "service_account_key": {"private_key_id": "k", "private_key": pem, "client_email": "e@x"}}),
        );
        let c = parse(v).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("PRIVATE"), "{text}");
        match c.google_id_token.unwrap().source {
            GoogleSource::ServiceAccount { token_url, .. } => {
                assert_eq!(token_url.dispatch_target(), "mock-google:8082")
            }
            other => panic!("{other:?}"),
        }
    }

    fn credential_file() -> Value {
        json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws",
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": "https://sts.googleapis.com/v1/token",
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/kong@p.iam.gserviceaccount.com:generateAccessToken",
            "credential_source": {
                "environment_id": "aws1",
                "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
                "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
            }
        })
    }

    #[test]
    fn external_account_is_the_credential_file_as_object_or_string() {
        for file in [credential_file(), json!(credential_file().to_string())] {
            let v = with(
                minimal(),
                "google_id_token",
                json!({"audience": "https://run.example", "source": "external_account", "external_account": file}),
            );
            let c = parse(v).unwrap();
            match &c.google_id_token.as_ref().unwrap().source {
                GoogleSource::ExternalAccount(a) => {
                    assert_eq!(a.service_account, "kong@p.iam.gserviceaccount.com")
                }
                other => panic!("{other:?}"),
            }
            assert!(c
                .owned_headers()
                .contains(&FORWARDED_AUTHORIZATION.to_string()));
        }
    }

    #[test]
    fn external_account_errors_name_the_field_inside_the_file() {
        let google = |extra: Value| {
            let mut g = json!({"audience": "a", "source": "external_account", "external_account": credential_file()});
            for (k, v) in extra.as_object().unwrap() {
                g[k] = v.clone();
            }
            with(minimal(), "google_id_token", g)
        };
        let mut file_source = credential_file();
        file_source["credential_source"] = json!({"file": "/run/token"});
        let cases = [
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "source": "external_account"}),
                ),
                "google_id_token.external_account",
            ),
            (
                with(
                    minimal(),
                    "google_id_token",
                    json!({"audience": "a", "external_account": credential_file()}),
                ),
                "google_id_token.source",
            ),
            (
                google(json!({"token_url": "https://oauth2.googleapis.com/token"})),
                "google_id_token.token_url",
            ),
            (
                google(json!({"metadata_host": "metadata"})),
                "google_id_token.metadata_host",
            ),
            (
                google(json!({"service_account_key": "{}"})),
                "google_id_token.service_account_key",
            ),
            (
                google(json!({"external_account": file_source})),
                "google_id_token.external_account.credential_source.file",
            ),
            (
                google(json!({"external_account": "{"})),
                "google_id_token.external_account",
            ),
            (
                google(json!({"external_account": 7})),
                "google_id_token.external_account",
            ),
        ];
        for (v, field) in cases {
            let e = err(v);
            assert_eq!(e.field, field, "{e}");
        }
        let e = err(google(json!({"external_account": file_source})));
        assert!(e.message.contains("cannot read files"), "{e}");
    }

    #[test]
    fn issuer_trailing_slash_is_not_doubled() {
        let v = json!({"issuers": [{"issuer": "https://accounts.google.com", "audiences": ["x"]},
            {"issuer": "https://dev.auth0.com/", "audiences": ["x"]}]});
        let c = parse(v).unwrap();
        let urls: Vec<String> = c
            .issuers
            .iter()
            .map(|i| match &i.keys {
                KeySource::Discovery(u) => u.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            urls,
            vec![
                "https://accounts.google.com/.well-known/openid-configuration",
                "https://dev.auth0.com/.well-known/openid-configuration"
            ]
        );
        // Issuers are still compared as written.
        assert_eq!(c.issuers[1].rule.issuer, "https://dev.auth0.com/");
    }

    #[test]
    fn never_panics_on_truncated_or_mangled_input() {
        let text = r#"{"issuers": [{"issuer": "https://a/", "audiences": ["x"], "algorithms": ["RS256"],
            "jwks": {"keys": [{"kty": "RSA"}]}}], "token": {"header": "x-t", "scheme": null,
            "query_param": "t", "cookie": "c"}, "required_scopes": {}, "required_claims": {"a.b": [1, "x", true]},
            "claims_to_headers": {"sub": "x-sub"}, "original_token_header": null,
            "google_id_token": {"audience": "a", "source": "service_account", "service_account_key": "{}"},
            "jwks_cache": {"ttl_seconds": 5}, "callout_timeout_ms": 100, "shm_namespace": "n"}"#;
        for end in 0..text.len() {
            if let Some(prefix) = text.get(..end) {
                let _ = FilterConfig::from_json(prefix.as_bytes());
            }
        }
        let replacements = [
            "null",
            "{}",
            "[]",
            "-1",
            "1e400",
            "\"\"",
            "[null]",
            "{\"a\":{}}",
            "true",
        ];
        let bytes = text.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b != b':' {
                continue;
            }
            // Replace the value after each colon (up to the next , or }) with odd JSON.
            let rest = &text[i + 1..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            for r in replacements {
                let mangled = format!("{}{r}{}", &text[..=i], &rest[end..]);
                let _ = FilterConfig::from_json(mangled.as_bytes());
            }
        }
        let _ = FilterConfig::from_json(&[0xff, 0xfe, b'{']);
        let deep = "[".repeat(10_000);
        let e = FilterConfig::from_json(deep.as_bytes()).unwrap_err();
        assert_eq!(e.field, "(root)");
    }

    #[test]
    fn at_most_sixteen_issuers() {
        let many: Vec<Value> = (0..17)
            .map(|i| json!({"issuer": format!("https://idp{i}"), "audiences": ["a"]}))
            .collect();
        assert_eq!(
            parse(json!({"issuers": many[..16]})).unwrap().issuers.len(),
            16
        );
        assert_eq!(err(json!({"issuers": many})).field, "issuers");
    }
}
