//! The route configuration: Kong's JSON parsed once into an immutable, typed [`FilterConfig`].
//!
//! [`FilterConfig`] is what the rest of the filter sees: validated header names, parsed URLs,
//! claim paths and inline key sets, enums instead of strings, non-empty lists, numbers in range.
//! An invalid configuration is a [`ConfigError`] value naming the field; its text never contains
//! secret material (the service-account key). The work is split by concern:
//!
//! - [`raw`]: the serde shape ([`RawConfig`], `deny_unknown_fields`, every field optional so that
//!   defaults and "required" are decided in one place), and serde errors → the field's path;
//! - [`kong_lists`]: Kong DB-less turns an empty array into `{}`, so every list also accepts `{}`
//!   (and every map accepts `[]`);
//! - [`settings`]: the one table of defaults and ranges ([`SETTINGS`]);
//! - `validate` ([`RawConfig`] → [`FilterConfig`]), with `issuers` and `google_id_token` for
//!   those sections.
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

mod google_id_token;
mod issuers;
pub mod kong_lists;
mod rate_limits;
pub mod raw;
pub mod settings;
mod validate;

#[cfg(test)]
mod tests;

pub use kong_lists::{Dict, List};
pub use raw::{RawConfig, RawGoogle, RawIssuer, RawJwksCache, RawRateLimit, RawToken};
pub use settings::{
    IntegerSetting, Setting, TextSetting, DEFAULT_METADATA_HOST, DEFAULT_SHM_NAMESPACE,
    DEFAULT_TOKEN_HEADER, DEFAULT_TOKEN_SCHEME, DEFAULT_TOKEN_URL, FORWARDED_AUTHORIZATION,
    MAX_ISSUERS, SERVERLESS_AUTHORIZATION, SETTINGS, WELL_KNOWN_SUFFIX,
};

use crate::google::federation::external_account::ExternalAccount;
use crate::google::id_token::ServiceAccountKey;
use crate::http::header_name::HeaderName;
use crate::http::url::HttpUrl;
use crate::jose::jwk_set::KeySet;
use crate::jose::verifier::{IssuerRule, Limits};
use crate::keys::cache::CachePolicy;
use crate::ratelimit::RateLimit;
use crate::request::claims::ClaimPath;
use serde_json::Value;
use std::fmt;
use std::rc::Rc;

/// Why a configuration was refused: the field (`issuers[0].audiences`) and a short reason.
/// Never contains secret material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
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
#[derive(Clone, Debug)]
pub enum KeySource {
    /// `jwks`: inline keys, parsed once with the configuration; nothing is fetched.
    Inline(Rc<KeySet>),
    /// `jwks_url`: fetch the JWKS directly.
    JwksUrl(HttpUrl),
    /// `discovery_url` (default `<issuer>/.well-known/openid-configuration`): fetch the
    /// discovery document, then its `jwks_uri`.
    Discovery(HttpUrl),
}

/// Inline sets are equal when they hold the same usable keys.
impl PartialEq for KeySource {
    fn eq(&self, other: &KeySource) -> bool {
        match (self, other) {
            (KeySource::Inline(a), KeySource::Inline(b)) => a.keys() == b.keys(),
            (KeySource::JwksUrl(a), KeySource::JwksUrl(b)) => a == b,
            (KeySource::Discovery(a), KeySource::Discovery(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for KeySource {}

/// One `issuers[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// Issuer, audiences, algorithms (default [`Algorithm::ALL`](crate::jose::alg::Algorithm::ALL)).
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
    /// Rate limits per verified caller, checked in order. Default none.
    pub rate_limits: Vec<RateLimit>,
    /// `RateLimit-Policy` / `RateLimit` on answers that passed the limits. Default true.
    pub rate_limit_headers: bool,
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
