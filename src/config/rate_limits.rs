//! `rate_limits`: each entry's name, budget, window, caller key and table size.

use super::kong_lists::List;
use super::raw::RawRateLimit;
use super::settings::{RATE_LIMIT_MAX_CALLERS, RATE_LIMIT_REQUESTS_MAX};
use super::validate::claim_path;
use super::ConfigError;
use crate::ratelimit::{CallerKey, RateLimit, Window, MAX_LIMITS, MAX_NAME_BYTES};

pub(super) fn rate_limits(raw: Option<List<RawRateLimit>>) -> Result<Vec<RateLimit>, ConfigError> {
    let List(raw) = raw.unwrap_or_default();
    if raw.len() > MAX_LIMITS {
        return Err(ConfigError::new(
            "rate_limits",
            format!("must have at most {MAX_LIMITS} entries"),
        ));
    }
    let mut out: Vec<RateLimit> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let limit = rate_limit(entry, i)?;
        if out.iter().any(|other| other.name == limit.name) {
            return Err(ConfigError::new(
                format!("rate_limits[{i}].name"),
                format!("`{}` names another limit of this route", limit.name),
            ));
        }
        out.push(limit);
    }
    Ok(out)
}

fn rate_limit(raw: RawRateLimit, i: usize) -> Result<RateLimit, ConfigError> {
    let field = |name: &str| format!("rate_limits[{i}].{name}");
    let name = raw
        .name
        .ok_or_else(|| ConfigError::new(field("name"), "is required"))?;
    if !is_limit_name(&name) {
        return Err(ConfigError::new(
            field("name"),
            format!("must be 1 to {MAX_NAME_BYTES} of a-z 0-9 _, starting with a letter"),
        ));
    }
    let requests = raw
        .requests
        .ok_or_else(|| ConfigError::new(field("requests"), "is required"))?;
    if !(1..=RATE_LIMIT_REQUESTS_MAX).contains(&requests) {
        return Err(ConfigError::new(
            field("requests"),
            format!("must be between 1 and {RATE_LIMIT_REQUESTS_MAX}"),
        ));
    }
    let window = raw
        .window
        .ok_or_else(|| ConfigError::new(field("window"), "is required"))?;
    let window = Window::parse(&window).ok_or_else(|| {
        ConfigError::new(field("window"), "must be one of second, minute, hour, day")
    })?;
    let key = match raw.key {
        None => CallerKey::IssuerSubject,
        Some(path) => CallerKey::Claim(claim_path(&path, &field("key"))?),
    };
    let max_callers = RATE_LIMIT_MAX_CALLERS
        .resolve_as(raw.max_callers)
        .map_err(|e| ConfigError::new(field("max_callers"), e.message))?;
    Ok(RateLimit {
        name,
        requests,
        window,
        key,
        max_callers,
    })
}

/// `[a-z][a-z0-9_]{0,31}`: safe in a metric name and as a structured-field string.
fn is_limit_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= MAX_NAME_BYTES
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
