//! Validation: the raw shape ([`RawConfig`]) turned into the typed [`FilterConfig`], every
//! refusal a [`ConfigError`] naming the field. The top-level settings live here, with the checks
//! shared by the sections; `issuers` and `google_id_token` have their own modules.

use super::google_id_token::google_id_token;
use super::issuers::issuers;
use super::kong_lists::{Dict, List};
use super::rate_limits::rate_limits;
use super::raw::{RawConfig, RawJwksCache, RawToken};
use super::settings::{
    CALLOUT_TIMEOUT_MS, CLOCK_SKEW_SECONDS, JWKS_MAX_STALE_SECONDS, JWKS_TTL_SECONDS,
    JWKS_UNKNOWN_KID_COOLDOWN_SECONDS, MAX_NAMESPACE, MAX_SHORT_STRING, MAX_TOKEN_BYTES,
    ORIGINAL_TOKEN_HEADER, SERVERLESS_AUTHORIZATION, SHM_NAMESPACE, TOKEN_HEADER, TOKEN_SCHEME,
};
use super::{ConfigError, FilterConfig, TokenLocation};
use crate::http::header_name::{is_tchar, HeaderName};
use crate::http::url::HttpUrl;
use crate::jose::verifier::Limits;
use crate::keys::cache::CachePolicy;
use crate::request::claims::ClaimPath;
use serde_json::Value;

impl TryFrom<RawConfig> for FilterConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<FilterConfig, ConfigError> {
        let config = FilterConfig {
            issuers: issuers(raw.issuers)?,
            token: token(raw.token)?,
            limits: Limits {
                clock_skew_secs: CLOCK_SKEW_SECONDS.resolve_as(raw.clock_skew_seconds)?,
                max_token_bytes: MAX_TOKEN_BYTES.resolve_as(raw.max_token_bytes)?,
            },
            required_scopes: scopes(raw.required_scopes)?,
            required_claims: claim_rules(raw.required_claims)?,
            claims_to_headers: claim_headers(raw.claims_to_headers)?,
            claims_header: raw
                .claims_header
                .map(|h| owned_header(&h, "claims_header"))
                .transpose()?,
            original_token_header: original_token_header(raw.original_token_header)?,
            google_id_token: raw.google_id_token.map(google_id_token).transpose()?,
            jwks_cache: jwks_cache(raw.jwks_cache)?,
            callout_timeout_ms: CALLOUT_TIMEOUT_MS.resolve_as(raw.callout_timeout_ms)?,
            shm_namespace: namespace(raw.shm_namespace)?,
            rate_limits: rate_limits(raw.rate_limits)?,
            rate_limit_headers: raw.rate_limit_headers.unwrap_or(true),
        };
        check_header_collisions(&config)?;
        Ok(config)
    }
}

/// A non-empty printable string of bounded length.
pub(super) fn short_string(value: &str, field: &str) -> Result<(), ConfigError> {
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

/// An http(s) URL.
pub(super) fn url(value: &str, field: &str) -> Result<HttpUrl, ConfigError> {
    HttpUrl::parse(value)
        .map_err(|e| ConfigError::new(field, format!("is not an http(s) URL: {e}")))
}

fn token(raw: Option<RawToken>) -> Result<TokenLocation, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TokenLocation::default());
    };
    let location = TokenLocation {
        header: token_header(raw.header)?,
        scheme: token_scheme(raw.scheme)?,
        query_param: raw.query_param.map(query_param).transpose()?,
        cookie: raw.cookie.map(cookie).transpose()?,
    };
    if location.header.is_none() && location.query_param.is_none() && location.cookie.is_none() {
        return Err(ConfigError::new(
            "token",
            "at least one of header, query_param, cookie must be set",
        ));
    }
    Ok(location)
}

/// `token.header`: absent → the default, `null` → no header location.
fn token_header(raw: Option<Option<String>>) -> Result<Option<String>, ConfigError> {
    match raw {
        None => Ok(Some(TOKEN_HEADER.default.to_string())),
        Some(None) => Ok(None),
        Some(Some(h)) => HeaderName::parse(&h)
            .map(|h| Some(h.into_string()))
            .map_err(|m| ConfigError::new(TOKEN_HEADER.path, m)),
    }
}

/// `token.scheme`: absent → the default, `null` → the header holds the bare token.
fn token_scheme(raw: Option<Option<String>>) -> Result<Option<String>, ConfigError> {
    match raw {
        None => Ok(Some(TOKEN_SCHEME.default.to_string())),
        Some(None) => Ok(None),
        Some(Some(s)) if !s.is_empty() && s.len() <= 64 && s.bytes().all(is_tchar) => Ok(Some(s)),
        Some(Some(_)) => Err(ConfigError::new(
            TOKEN_SCHEME.path,
            "must be an auth-scheme token such as Bearer (null for none)",
        )),
    }
}

fn query_param(name: String) -> Result<String, ConfigError> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if !name.is_empty() && name.len() <= 256 && name.bytes().all(plain) {
        Ok(name)
    } else {
        Err(ConfigError::new(
            "token.query_param",
            "must be a parameter name of letters, digits, - . _ ~",
        ))
    }
}

fn cookie(name: String) -> Result<String, ConfigError> {
    if !name.is_empty() && name.len() <= 256 && name.bytes().all(is_tchar) {
        Ok(name)
    } else {
        Err(ConfigError::new(
            "token.cookie",
            "must be a cookie name (RFC 6265 token characters)",
        ))
    }
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

pub(super) fn claim_path(path: &str, field: &str) -> Result<ClaimPath, ConfigError> {
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

/// Headers Kong 3.9 sets on every proxied request with `proxy_set_header`
/// (kong/templates/nginx_kong.lua), over the client's and the filter's values. `host`,
/// `connection`, `upgrade` and `te` are reserved by [`HeaderName::parse`] already.
const KONG_PROXY_HEADERS: [&str; 9] = [
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-kong-request-id",
];

/// A header the filter sets: valid, never `authorization` (replaced or kept, never mapped) and
/// never one Kong sets itself.
fn owned_header(name: &str, field: &str) -> Result<HeaderName, ConfigError> {
    let h = HeaderName::parse(name).map_err(|m| ConfigError::new(field, m))?;
    if h.as_str() == "authorization" {
        return Err(ConfigError::new(
            field,
            "`authorization` cannot be set from claims or used as an owned header",
        ));
    }
    // Kong's value replaces the filter's: the upstream would never see what the filter set.
    if KONG_PROXY_HEADERS.contains(&h.as_str()) {
        return Err(ConfigError::new(
            field,
            format!("`{h}` is set by Kong on every proxied request, over the filter's value"),
        ));
    }
    // CGI-style upstreams read `x_user_id` and `x-user-id` as one variable, and a client's
    // `x_user_id` reaches the filter and the upstream (Kong sets `underscores_in_headers on`):
    // such a name could never be protected.
    if h.as_str().contains('_') {
        return Err(ConfigError::new(
            field,
            "must not contain `_` (use `-`: upstreams may read `_` and `-` alike)",
        ));
    }
    Ok(h)
}

/// `original_token_header`: absent → the default, `null` → the caller's token is dropped.
fn original_token_header(raw: Option<Option<String>>) -> Result<Option<HeaderName>, ConfigError> {
    let name = match raw {
        None => ORIGINAL_TOKEN_HEADER.default.to_string(),
        Some(None) => return Ok(None),
        Some(Some(h)) => h,
    };
    owned_header(&name, ORIGINAL_TOKEN_HEADER.path).map(Some)
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
    let named = owned_headers_in_blame_order(config);
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

/// Each owned header with the setting that owns it; a later one colliding with an earlier one
/// is the one reported.
fn owned_headers_in_blame_order(config: &FilterConfig) -> Vec<(&str, String)> {
    let forwarded = ORIGINAL_TOKEN_HEADER.default;
    let mut named: Vec<(&str, String)> = Vec::new();
    if config.google_id_token.is_some() {
        // The original token header may be x-forwarded-authorization itself (the default).
        if config
            .original_token_header
            .as_ref()
            .is_none_or(|h| h.as_str() != forwarded)
        {
            named.push((forwarded, "google_id_token".into()));
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
    named
}

fn jwks_cache(raw: Option<RawJwksCache>) -> Result<CachePolicy, ConfigError> {
    let raw = raw.unwrap_or_default();
    Ok(CachePolicy {
        ttl_secs: JWKS_TTL_SECONDS.resolve(raw.ttl_seconds)?,
        max_stale_secs: JWKS_MAX_STALE_SECONDS.resolve(raw.max_stale_seconds)?,
        unknown_kid_cooldown_secs: JWKS_UNKNOWN_KID_COOLDOWN_SECONDS
            .resolve(raw.unknown_kid_cooldown_seconds)?,
    })
}

fn namespace(raw: Option<String>) -> Result<String, ConfigError> {
    let ns = raw.unwrap_or_else(|| SHM_NAMESPACE.default.to_string());
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    if ns.is_empty() || ns.len() > MAX_NAMESPACE || !ns.bytes().all(allowed) {
        return Err(ConfigError::new(
            SHM_NAMESPACE.path,
            format!("must be 1..={MAX_NAMESPACE} characters of a-z, 0-9, _"),
        ));
    }
    Ok(ns)
}
