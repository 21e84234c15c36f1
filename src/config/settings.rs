//! Defaults and ranges: [`SETTINGS`], the one table of every setting that has a default, with
//! the accepted range and unit of the integer ones, and the size caps of the configuration.
//!
//! Validation takes its defaults and bounds from the named entries below (the table lists the
//! same constants); `tests/config_schema_parity.rs` checks the table against the `default`,
//! `minimum` and `maximum` of `kong/cloudrun_oidc.meta.json` and against the README's
//! configuration reference. Lists with defaults (`algorithms`, the empty rule lists) are not
//! scalars and are checked there through a parsed configuration instead.

use super::ConfigError;

/// An integer setting: where it is, its default, the inclusive range accepted and its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntegerSetting {
    /// The field path, as in error messages (`jwks_cache.ttl_seconds`).
    pub path: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
    /// `seconds`, `milliseconds` or `bytes`.
    pub unit: &'static str,
}

impl IntegerSetting {
    /// The configured value, or the default when absent; refused outside `min..=max`.
    pub fn resolve(&self, value: Option<u64>) -> Result<u64, ConfigError> {
        let value = value.unwrap_or(self.default);
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                self.path,
                format!("must be between {} and {}", self.min, self.max),
            ))
        }
    }

    /// [`IntegerSetting::resolve`], converted to the type the filter keeps it in.
    pub fn resolve_as<T: TryFrom<u64>>(&self, value: Option<u64>) -> Result<T, ConfigError> {
        T::try_from(self.resolve(value)?).map_err(|_| ConfigError::new(self.path, "out of range"))
    }
}

/// A string setting with a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextSetting {
    /// The field path, as in error messages (`google_id_token.metadata_host`).
    pub path: &'static str,
    pub default: &'static str,
}

/// One row of [`SETTINGS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Integer(IntegerSetting),
    Text(TextSetting),
}

impl Setting {
    /// The field path (`jwks_cache.ttl_seconds`).
    pub fn path(&self) -> &'static str {
        match self {
            Setting::Integer(s) => s.path,
            Setting::Text(s) => s.path,
        }
    }
}

/// `clock_skew_seconds`: leeway for `exp` and `nbf`.
pub const CLOCK_SKEW_SECONDS: IntegerSetting = IntegerSetting {
    path: "clock_skew_seconds",
    default: 60,
    min: 0,
    max: 600,
    unit: "seconds",
};
/// `max_token_bytes`: longer tokens are refused before parsing.
pub const MAX_TOKEN_BYTES: IntegerSetting = IntegerSetting {
    path: "max_token_bytes",
    default: 8192,
    min: 256,
    max: 65_536,
    unit: "bytes",
};
/// `callout_timeout_ms`: connect, send and read of every callout, each.
pub const CALLOUT_TIMEOUT_MS: IntegerSetting = IntegerSetting {
    path: "callout_timeout_ms",
    default: 5000,
    min: 100,
    max: 60_000,
    unit: "milliseconds",
};
/// `jwks_cache.ttl_seconds`: keys are fresh this long after a fetch.
pub const JWKS_TTL_SECONDS: IntegerSetting = IntegerSetting {
    path: "jwks_cache.ttl_seconds",
    default: 600,
    min: 1,
    max: 86_400,
    unit: "seconds",
};
/// `jwks_cache.max_stale_seconds`: stale keys serve this long while refetches fail.
pub const JWKS_MAX_STALE_SECONDS: IntegerSetting = IntegerSetting {
    path: "jwks_cache.max_stale_seconds",
    default: 86_400,
    min: 0,
    max: 2_592_000,
    unit: "seconds",
};
/// `jwks_cache.unknown_kid_cooldown_seconds`: at most one unknown-`kid` refetch per window.
pub const JWKS_UNKNOWN_KID_COOLDOWN_SECONDS: IntegerSetting = IntegerSetting {
    path: "jwks_cache.unknown_kid_cooldown_seconds",
    default: 30,
    min: 0,
    max: 3600,
    unit: "seconds",
};
/// `google_id_token.refresh_before_expiry_seconds`: renew a cached Google token this early.
pub const GOOGLE_REFRESH_BEFORE_EXPIRY_SECONDS: IntegerSetting = IntegerSetting {
    path: "google_id_token.refresh_before_expiry_seconds",
    default: 300,
    min: 0,
    max: 3000,
    unit: "seconds",
};

/// `token.header` (`null`: no header location).
pub const TOKEN_HEADER: TextSetting = TextSetting {
    path: "token.header",
    default: "authorization",
};
/// `token.scheme` (`null`: the header holds the bare token).
pub const TOKEN_SCHEME: TextSetting = TextSetting {
    path: "token.scheme",
    default: "Bearer",
};
/// `original_token_header` (`null`: the caller's token is dropped). Its default is the header
/// Cloud Run reads as "the caller's token".
pub const ORIGINAL_TOKEN_HEADER: TextSetting = TextSetting {
    path: "original_token_header",
    default: "x-forwarded-authorization",
};
/// `google_id_token.source`.
pub const GOOGLE_SOURCE: TextSetting = TextSetting {
    path: "google_id_token.source",
    default: "metadata",
};
/// `google_id_token.header`.
pub const GOOGLE_HEADER: TextSetting = TextSetting {
    path: "google_id_token.header",
    default: "authorization",
};
/// `google_id_token.metadata_host`.
pub const GOOGLE_METADATA_HOST: TextSetting = TextSetting {
    path: "google_id_token.metadata_host",
    default: "metadata.google.internal",
};
/// `google_id_token.token_url`.
pub const GOOGLE_TOKEN_URL: TextSetting = TextSetting {
    path: "google_id_token.token_url",
    default: "https://oauth2.googleapis.com/token",
};
/// `shm_namespace` (also the `shm_kv` zone Kong creates from `KONG_NGINX_WASM_SHM_KV_CLOUDRUN_OIDC`).
pub const SHM_NAMESPACE: TextSetting = TextSetting {
    path: "shm_namespace",
    default: "cloudrun_oidc",
};

/// `rate_limits[].max_callers`: callers one limit counts at once per window (its table's slots).
pub const RATE_LIMIT_MAX_CALLERS: IntegerSetting = IntegerSetting {
    path: "rate_limits[].max_callers",
    default: 1024,
    min: 16,
    max: 65536,
    unit: "callers",
};
/// `rate_limits[].requests`: no default (required); its range.
pub const RATE_LIMIT_REQUESTS_MAX: u64 = 1_000_000_000;

/// Every setting with a default, in the order of the README's configuration reference.
pub const SETTINGS: &[Setting] = &[
    Setting::Text(TOKEN_HEADER),
    Setting::Text(TOKEN_SCHEME),
    Setting::Integer(CLOCK_SKEW_SECONDS),
    Setting::Integer(MAX_TOKEN_BYTES),
    Setting::Integer(CALLOUT_TIMEOUT_MS),
    Setting::Text(ORIGINAL_TOKEN_HEADER),
    Setting::Text(GOOGLE_SOURCE),
    Setting::Text(GOOGLE_METADATA_HOST),
    Setting::Text(GOOGLE_TOKEN_URL),
    Setting::Text(GOOGLE_HEADER),
    Setting::Integer(GOOGLE_REFRESH_BEFORE_EXPIRY_SECONDS),
    Setting::Integer(JWKS_TTL_SECONDS),
    Setting::Integer(JWKS_MAX_STALE_SECONDS),
    Setting::Integer(JWKS_UNKNOWN_KID_COOLDOWN_SECONDS),
    Setting::Text(SHM_NAMESPACE),
    Setting::Integer(RATE_LIMIT_MAX_CALLERS),
];

/// Default `token.header`.
pub const DEFAULT_TOKEN_HEADER: &str = TOKEN_HEADER.default;
/// Default `token.scheme`.
pub const DEFAULT_TOKEN_SCHEME: &str = TOKEN_SCHEME.default;
/// Default `original_token_header`, and the header Cloud Run reads as "the caller's token".
pub const FORWARDED_AUTHORIZATION: &str = ORIGINAL_TOKEN_HEADER.default;
/// The header Cloud Run checks before `Authorization` when present (`google_id_token.header`).
pub const SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";
/// Default `google_id_token.metadata_host`.
pub const DEFAULT_METADATA_HOST: &str = GOOGLE_METADATA_HOST.default;
/// Default `google_id_token.token_url`.
pub const DEFAULT_TOKEN_URL: &str = GOOGLE_TOKEN_URL.default;
/// Default `shm_namespace` (also the `shm_kv` zone Kong creates from `KONG_NGINX_WASM_SHM_KV_CLOUDRUN_OIDC`).
pub const DEFAULT_SHM_NAMESPACE: &str = SHM_NAMESPACE.default;
/// The path appended to an issuer to find its discovery document (OIDC Discovery §4).
pub const WELL_KNOWN_SUFFIX: &str = "/.well-known/openid-configuration";

/// Most issuers one route may trust.
pub const MAX_ISSUERS: usize = 16;
/// Longest string accepted for names, audiences, scopes and other short settings.
pub(super) const MAX_SHORT_STRING: usize = 1024;
/// Largest inline `jwks`, `service_account_key` or `external_account` accepted (bytes of JSON text).
pub(super) const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Longest `shm_namespace`.
pub(super) const MAX_NAMESPACE: usize = 64;
/// Most entries in any list or map of the configuration.
pub(super) const MAX_LIST: usize = 64;
