//! Request and tick flows behind the security review (SECURITY.md threats 11–17): long shared
//! keys, a moved `jwks_uri`, key sources shared by routes of different issuers, explicit token
//! types and the Google token refresh rate. Helpers come from the parent `tests` module.

use super::*;

/// Answers the request's pending callout with `response`; returns the next step.
fn answer(
    host: &mut FakeHost,
    route: &Route,
    worker: &mut Worker,
    request: &mut Request,
    response: &CalloutResponse,
) -> Step {
    let (t, _) = last_callout(host);
    request.on_callout(host, route, worker, t, response)
}

// --- 2: shared-data keys of a ~1 KiB URL ------------------------------------------------------

#[test]
fn long_jwks_url_keeps_cross_worker_coordination() {
    let url = format!(
        "https://idp.example/realms/prod/certs?pad={}",
        "p".repeat(1000)
    );
    let route = route(json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["orders-api"], "jwks_url": url}]
    }));
    let (idp, mut first, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let (request, step) = start(&mut host, &route, &mut first, &idp.token("k1", json!({})));
    assert_eq!(step, Step::Wait);
    let step = answer(
        &mut host,
        &route,
        &mut first,
        &mut request.unwrap(),
        &ok(&idp.jwks("k1")),
    );
    assert_eq!(allowed_user(&step), Some("ada"));
    // The second worker adopts the shared keys instead of fetching.
    let mut second = Worker::new(2);
    let (_, step) = start(&mut host, &route, &mut second, &idp.token("k1", json!({})));
    assert_eq!(allowed_user(&step), Some("ada"));
    assert_eq!(host.callouts.len(), 1, "one fetch for both workers");
    // Five made-up kids spread over both workers: one refetch per cooldown.
    for i in 0..5 {
        let worker = if i % 2 == 0 { &mut first } else { &mut second };
        let token = idp.token(&format!("made-up-{i}"), json!({}));
        let (request, step) = start(&mut host, &route, worker, &token);
        let step = match step {
            Step::Wait => answer(
                &mut host,
                &route,
                worker,
                &mut request.unwrap(),
                &ok(&idp.jwks("k1")),
            ),
            other => other,
        };
        assert_eq!(step, Step::Deny(AuthError::UnknownKey), "made-up kid {i}");
    }
    assert_eq!(
        host.callouts.len(),
        2,
        "one cold fetch and one unknown-kid refetch"
    );
}
