//! Rate limits in the request flow: counted after verification only, 429 with the IETF fields,
//! the fields on allowed answers, callers apart, limits given back, a token without the key 403.

use super::*;
use crate::reject::AuthError;

/// A route with inline keys of `idp` and `limits`.
fn limited_route(idp: &Idp, limits: Value, extra: Value) -> Route {
    let mut config = json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["orders-api"],
                     "jwks": serde_json::from_slice::<Value>(&idp.jwks("k1")).unwrap()}],
        "rate_limits": limits,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    route(config)
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .response_headers()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| &**v)
}

#[test]
fn the_budget_is_spent_then_429_with_retry_after_and_the_fields() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = limited_route(
        &idp,
        json!([{"name": "per_minute", "requests": 2, "window": "minute"}]),
        json!({}),
    );
    let token = idp.token("k1", json!({}));
    let reset = 60 - NOW % 60;
    for left in [1, 0] {
        let (request, step) = start(&mut host, &route, &mut worker, &token);
        assert!(matches!(step, Step::Allow(_)), "{step:?}");
        let request = request.unwrap();
        assert_eq!(
            header(&request, "ratelimit-policy"),
            Some("\"per_minute\";q=2;w=60")
        );
        assert_eq!(
            header(&request, "ratelimit"),
            Some(&*format!("\"per_minute\";r={left};t={reset}"))
        );
    }
    let (request, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(step, Step::Deny(AuthError::RateLimited));
    let request = request.unwrap();
    assert_eq!(header(&request, "retry-after"), Some(&*reset.to_string()));
    assert_eq!(
        header(&request, "ratelimit"),
        Some(&*format!("\"per_minute\";r=0;t={reset}"))
    );
    assert_eq!(host.metric(Metric::RateLimited), 1);
    assert_eq!(
        host.metric(Metric::RateLimitedBy(
            crate::metrics::LimitName::new("per_minute").unwrap()
        )),
        1
    );
    assert!(host.logged("\"per_minute\" (2 per minute) for sub=\"ada\""));
    // The next minute serves again.
    host.advance_secs(reset);
    let (_, step) = start(&mut host, &route, &mut worker, &token);
    assert!(matches!(step, Step::Allow(_)), "{step:?}");
}

#[test]
fn refused_and_forged_tokens_never_spend_the_callers_budget() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let forger = Idp::new();
    let route = limited_route(
        &idp,
        json!([{"name": "per_hour", "requests": 1, "window": "hour"}]),
        json!({}),
    );
    let refused = [
        forger.token("k1", json!({})),
        idp.token("k1", json!({"exp": NOW - 3_600})),
        idp.token("k1", json!({"aud": "other"})),
    ];
    for token in &refused {
        let (_, step) = start(&mut host, &route, &mut worker, token);
        assert!(
            matches!(step, Step::Deny(e) if e != AuthError::RateLimited),
            "{step:?}"
        );
    }
    assert!(host.shared.is_empty(), "nothing counted for refused tokens");
    let (_, step) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
    assert!(matches!(step, Step::Allow(_)), "{step:?}");
}

#[test]
fn callers_are_apart_and_a_token_without_the_key_is_refused_403() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = limited_route(
        &idp,
        json!([{"name": "per_client", "requests": 1, "window": "day", "key": "client_id"}]),
        json!({}),
    );
    let a = idp.token("k1", json!({"client_id": "partner-a"}));
    let b = idp.token("k1", json!({"client_id": "partner-b"}));
    assert!(matches!(
        start(&mut host, &route, &mut worker, &a).1,
        Step::Allow(_)
    ));
    assert_eq!(
        start(&mut host, &route, &mut worker, &a).1,
        Step::Deny(AuthError::RateLimited)
    );
    assert!(matches!(
        start(&mut host, &route, &mut worker, &b).1,
        Step::Allow(_)
    ));
    // Another subject of partner-a is still partner-a.
    let a2 = idp.token("k1", json!({"client_id": "partner-a", "sub": "bob"}));
    assert_eq!(
        start(&mut host, &route, &mut worker, &a2).1,
        Step::Deny(AuthError::RateLimited)
    );
    let keyless = idp.token("k1", json!({}));
    assert_eq!(
        start(&mut host, &route, &mut worker, &keyless).1,
        Step::Deny(AuthError::NoRateLimitKey)
    );
}

#[test]
fn a_request_refused_by_a_later_limit_is_given_back_to_the_earlier_ones() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = limited_route(
        &idp,
        json!([{"name": "per_day", "requests": 10, "window": "day"},
               {"name": "per_second", "requests": 1, "window": "second"}]),
        json!({}),
    );
    let token = idp.token("k1", json!({}));
    let (request, step) = start(&mut host, &route, &mut worker, &token);
    assert!(matches!(step, Step::Allow(_)));
    assert!(header(&request.unwrap(), "ratelimit")
        .unwrap()
        .starts_with("\"per_day\";r=9;"));
    for _ in 0..3 {
        assert_eq!(
            start(&mut host, &route, &mut worker, &token).1,
            Step::Deny(AuthError::RateLimited)
        );
    }
    host.advance_secs(1);
    let (request, _) = start(&mut host, &route, &mut worker, &token);
    assert!(
        header(&request.unwrap(), "ratelimit")
            .unwrap()
            .starts_with("\"per_day\";r=8;"),
        "the three refused requests were given back"
    );
}

#[test]
fn fields_on_allowed_answers_can_be_turned_off_but_a_429_keeps_them() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = limited_route(
        &idp,
        json!([{"name": "per_minute", "requests": 1, "window": "minute"}]),
        json!({"rate_limit_headers": false}),
    );
    let token = idp.token("k1", json!({}));
    let (request, _) = start(&mut host, &route, &mut worker, &token);
    assert!(request.unwrap().response_headers().is_empty());
    let (request, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(step, Step::Deny(AuthError::RateLimited));
    let request = request.unwrap();
    assert!(header(&request, "retry-after").is_some());
    assert!(header(&request, "ratelimit-policy").is_some());
}

#[test]
fn a_route_without_limits_writes_nothing_and_sets_no_fields() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = limited_route(&idp, json!([]), json!({}));
    let (request, step) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
    assert!(matches!(step, Step::Allow(_)));
    assert!(request.unwrap().response_headers().is_empty());
    assert_eq!(host.shared_writes, 0);
}

#[test]
fn a_counter_that_cannot_be_written_admits_the_verified_caller_uncounted() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = limited_route(
        &idp,
        json!([{"name": "per_minute", "requests": 1, "window": "minute"}]),
        json!({}),
    );
    host.refuse_shared_writes = true;
    let token = idp.token("k1", json!({}));
    for _ in 0..3 {
        assert!(matches!(
            start(&mut host, &route, &mut worker, &token).1,
            Step::Allow(_)
        ));
    }
    assert_eq!(host.metric(Metric::RateLimitUnmetered), 3);
    // A forged token is still refused: faults concern counting, never verification.
    let forged = Idp::new().token("k1", json!({}));
    assert_eq!(
        start(&mut host, &route, &mut worker, &forged).1,
        Step::Deny(AuthError::BadSignature)
    );
}
