//! The rate-limit step of a request: after its token is verified and the route's rules pass,
//! before a Google token is minted for it. Each limit counts the request for its caller
//! ([`crate::ratelimit::counter`]); the first limit whose budget is spent refuses it with 429,
//! and the limits that had already counted it take it back.

use super::route::Grant;
use super::Scope;
use crate::metrics::{LimitName, Metric};
use crate::ratelimit::counter::{Table, Taken};
use crate::ratelimit::{headers, Caller, RateLimit};
use std::rc::Rc;

/// A response header the filter sets: a fixed name, and its value.
pub type ResponseHeader = (&'static str, Rc<str>);

/// Unmetered requests are logged at most this often per worker (ms).
const FAULT_LOG_EVERY_MS: u64 = 1_000;

/// One of the route's limits, ready to count.
#[derive(Debug)]
pub struct RouteLimit {
    pub limit: RateLimit,
    pub table: Table,
    pub metric: Option<Metric>,
}

impl RouteLimit {
    pub fn new(limit: &RateLimit, namespace: &str) -> RouteLimit {
        RouteLimit {
            table: Table::new(limit, namespace),
            metric: LimitName::new(&limit.name).map(Metric::RateLimitedBy),
            limit: limit.clone(),
        }
    }
}

/// A caller as one limit counts it: who, and the two slots it may sit in (kept with the grant,
/// so a cached token formats no key).
#[derive(Clone, Debug)]
pub struct RateKey {
    pub caller: Caller,
    pub slots: [String; 2],
}

impl RateKey {
    pub fn held_bytes(&self) -> usize {
        self.caller.label.len() + self.slots.iter().map(String::len).sum::<usize>()
    }
}

/// A request the limits refused: the answer's headers and the log line's context.
pub struct Limited {
    pub headers: Vec<ResponseHeader>,
    pub context: String,
}

/// Counts the request against every limit of the route. `Ok`: the headers for the answer
/// (none without limits, or when `rate_limit_headers` is off).
pub fn meter(cx: &mut Scope<'_>, grant: &Grant) -> Result<Vec<ResponseHeader>, Limited> {
    let route = cx.route;
    if route.limits.is_empty() {
        return Ok(Vec::new());
    }
    let now = cx.host.now_secs();
    // The `RateLimit` field's text, built only when the answer will carry it.
    let mut state = route.config.rate_limit_headers.then(String::new);
    for (i, (limit, key)) in route.limits.iter().zip(&grant.rate_keys).enumerate() {
        let rule = &limit.limit;
        let reset = rule.window.reset_after(now);
        match limit
            .table
            .take(cx.host, &key.slots, &key.caller, rule, now)
        {
            Taken::Counted { remaining } => {
                if let Some(state) = &mut state {
                    headers::push_state(state, &rule.name, remaining, reset);
                }
            }
            Taken::Limited => {
                give_back(cx, grant, i, now);
                if let Some(metric) = limit.metric {
                    cx.host.count(metric);
                }
                return Err(limited(&route.limit_policy, rule, key, reset));
            }
            Taken::Unmetered(fault) => {
                cx.host.count(Metric::RateLimitUnmetered);
                let now_ms = cx.host.now_ms();
                let worker = &mut *cx.worker;
                if now_ms.saturating_sub(worker.rate_limit_fault_logged_ms) >= FAULT_LOG_EVERY_MS {
                    worker.rate_limit_fault_logged_ms = now_ms;
                    log::warn!(
                        "rate limit {:?}: request admitted uncounted for {}: {}",
                        rule.name,
                        key.caller.label,
                        fault.describe()
                    );
                }
            }
        }
    }
    Ok(match state {
        Some(state) => vec![
            (headers::POLICY, route.limit_policy.clone()),
            (headers::STATE, Rc::from(state)),
        ],
        None => Vec::new(),
    })
}

/// Takes the request back from the limits before `refused_by` that counted it.
fn give_back(cx: &mut Scope<'_>, grant: &Grant, refused_by: usize, now: u64) {
    let route = cx.route;
    for (limit, key) in route.limits.iter().zip(&grant.rate_keys).take(refused_by) {
        limit
            .table
            .give_back(cx.host, &key.slots, &key.caller, &limit.limit, now);
    }
}

/// The refusal: `Retry-After` and the rate-limit fields always (`rate_limit_headers` only
/// concerns answers that passed).
fn limited(policy: &Rc<str>, rule: &RateLimit, key: &RateKey, reset: u64) -> Limited {
    let mut state = String::new();
    headers::push_state(&mut state, &rule.name, 0, reset);
    let headers = vec![
        (headers::RETRY_AFTER, Rc::from(reset.to_string())),
        (headers::POLICY, policy.clone()),
        (headers::STATE, Rc::from(state)),
    ];
    Limited {
        headers,
        context: format!(
            ": {:?} ({} per {}) for {}; retry in {reset} s",
            rule.name,
            rule.requests,
            rule.window.name(),
            key.caller.label
        ),
    }
}
