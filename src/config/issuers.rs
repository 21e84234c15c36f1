//! Validation of `issuers[]`: each entry's issuer, audiences, algorithms, accepted token types,
//! where its keys come from (inline `jwks`, parsed here into a key set once; `jwks_url`; or
//! discovery) and `callout_host`.

use super::kong_lists::List;
use super::raw::RawIssuer;
use super::settings::{MAX_DOCUMENT_BYTES, MAX_ISSUERS, WELL_KNOWN_SUFFIX};
use super::validate::{short_string, url};
use super::{ConfigError, IssuerConfig, KeySource};
use crate::http::url::{parse_authority, HttpUrl};
use crate::jose::alg::Algorithm;
use crate::jose::jwk_set::KeySet;
use crate::jose::verifier::{token_type, IssuerRule};
use serde_json::Value;
use std::rc::Rc;

/// `issuers`: 1..=[`MAX_ISSUERS`] entries with distinct `issuer` strings.
pub(super) fn issuers(raw: Option<List<RawIssuer>>) -> Result<Vec<IssuerConfig>, ConfigError> {
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

/// One entry, at `at` (`issuers[0]`).
fn issuer(raw: RawIssuer, at: &str) -> Result<IssuerConfig, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let issuer = raw
        .issuer
        .ok_or_else(|| ConfigError::new(field("issuer"), "is required"))?;
    short_string(&issuer, &field("issuer"))?;
    let audiences = audiences(raw.audiences, at)?;
    let algorithms = algorithms(raw.algorithms, at)?;
    let inline_only = raw.jwks.is_some() && raw.jwks_url.is_none() && raw.discovery_url.is_none();
    let callout_upstream = callout_host(raw.callout_host, inline_only, at)?;
    let keys = key_source(&issuer, raw.jwks, raw.jwks_url, raw.discovery_url, at)?;
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

/// `audiences`: required, at least one, each a short string.
fn audiences(raw: Option<List<String>>, at: &str) -> Result<Vec<String>, ConfigError> {
    let field = format!("{at}.audiences");
    let audiences = raw
        .ok_or_else(|| ConfigError::new(&field, "is required"))?
        .0;
    if audiences.is_empty() {
        return Err(ConfigError::new(field, "must list at least one audience"));
    }
    for (j, aud) in audiences.iter().enumerate() {
        short_string(aud, &format!("{field}[{j}]"))?;
    }
    Ok(audiences)
}

/// `algorithms`: absent → [`Algorithm::ALL`]; else at least one known name, duplicates dropped.
fn algorithms(raw: Option<List<String>>, at: &str) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(List(names)) = raw else {
        return Ok(Algorithm::ALL.to_vec());
    };
    if names.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.algorithms"),
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
    Ok(algs)
}

/// At most one of `jwks`, `jwks_url`, `discovery_url`; none → discovery at the issuer's
/// well-known URL.
fn key_source(
    issuer: &str,
    jwks: Option<Value>,
    jwks_url: Option<String>,
    discovery_url: Option<String>,
    at: &str,
) -> Result<KeySource, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    match (jwks, jwks_url, discovery_url) {
        (Some(jwks), None, None) => Ok(KeySource::Inline(inline_jwks(jwks, &field("jwks"))?)),
        (None, Some(u), None) => Ok(KeySource::JwksUrl(url(&u, &field("jwks_url"))?)),
        (None, None, Some(u)) => Ok(KeySource::Discovery(url(&u, &field("discovery_url"))?)),
        (None, None, None) => well_known_discovery(issuer, &field("issuer")),
        _ => Err(ConfigError::new(
            at,
            "set at most one of jwks, jwks_url, discovery_url",
        )),
    }
}

/// `<issuer>/.well-known/openid-configuration`, without doubling a trailing slash.
fn well_known_discovery(issuer: &str, field: &str) -> Result<KeySource, ConfigError> {
    let base = issuer.trim_end_matches('/');
    HttpUrl::parse(&format!("{base}{WELL_KNOWN_SUFFIX}"))
        .map(KeySource::Discovery)
        .map_err(|e| {
            ConfigError::new(
                field,
                format!("is not an http(s) URL ({e}): set discovery_url, jwks_url or jwks"),
            )
        })
}

/// `callout_host`: `host[:port]`, and of no use when the keys are inline.
fn callout_host(
    raw: Option<String>,
    inline_keys: bool,
    at: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(host) = raw else {
        return Ok(None);
    };
    let field = format!("{at}.callout_host");
    if let Err(e) = parse_authority(&host) {
        return Err(ConfigError::new(field, format!("must be host[:port]: {e}")));
    }
    if inline_keys {
        return Err(ConfigError::new(
            field,
            "has no use with inline jwks (nothing is fetched)",
        ));
    }
    Ok(Some(host))
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
        if !is_media_type_name(&normal) {
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

/// An RFC 6838 restricted name: up to 127 characters, starting with a letter or digit.
fn is_media_type_name(name: &str) -> bool {
    let restricted = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
            )
    };
    name.len() <= 127
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(restricted)
}

/// Inline keys: an object, or a string holding one, with a non-empty `keys` array and at
/// least one usable key; parsed here once for every request of the route.
fn inline_jwks(value: Value, field: &str) -> Result<Rc<KeySet>, ConfigError> {
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
    if doc.to_string().len() > MAX_DOCUMENT_BYTES {
        return Err(ConfigError::new(field, "is too large"));
    }
    KeySet::from_value(&doc)
        .map(Rc::new)
        .map_err(|e| ConfigError::new(field, e.to_string()))
}
