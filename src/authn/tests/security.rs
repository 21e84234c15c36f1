//! Request and tick flows behind the security review (SECURITY.md threats 11–17): long shared
//! keys, a moved `jwks_uri`, key sources shared by routes of different issuers, explicit token
//! types and the Google token refresh rate. Helpers come from the parent `tests` module.

use super::*;

fn status(code: u16) -> CalloutResponse {
    CalloutResponse {
        status: Some(code),
        dispatch_status: None,
        body: b"not found".to_vec(),
    }
}

/// Answers the request's pending callout with `response`; returns the next step.
fn answer(
    host: &mut FakeHost,
    route: &Route,
    worker: &mut Worker,
    request: &mut Request,
    response: &CalloutResponse,
) -> Step {
    let (t, _) = last_callout(host);
    request.on_callout(&mut cx(host, route, worker), t, response)
}

fn last_path(host: &FakeHost) -> String {
    header(&last_callout(host).1, ":path").to_string()
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

// --- 3: a moved jwks_uri ----------------------------------------------------------------------

fn moved_discovery() -> Vec<u8> {
    json!({"issuer": ISSUER, "jwks_uri": "https://idp.example/realms/prod/keys-v2"})
        .to_string()
        .into_bytes()
}

#[test]
fn moved_jwks_uri_is_rediscovered_for_a_new_kid() {
    let (idp, route, mut worker, mut host) = setup();
    warm(&mut host, &route, &mut worker, &idp);
    // The IdP moves its keys (new key k2) to keys-v2; the old URL answers 404.
    let moved = Idp::new();
    let (request, step) = start(
        &mut host,
        &route,
        &mut worker,
        &moved.token("k2", json!({"sub": "new"})),
    );
    assert_eq!(step, Step::Wait, "unknown kid: refetch");
    let mut request = request.unwrap();
    assert_eq!(last_path(&host), "/realms/prod/certs");
    let step = answer(&mut host, &route, &mut worker, &mut request, &status(404));
    assert_eq!(
        step,
        Step::Wait,
        "a failed discovered URI sends the fetch back to discovery"
    );
    assert_eq!(
        last_path(&host),
        "/realms/prod/.well-known/openid-configuration"
    );
    let step = answer(
        &mut host,
        &route,
        &mut worker,
        &mut request,
        &ok(&moved_discovery()),
    );
    assert_eq!(step, Step::Wait);
    assert_eq!(last_path(&host), "/realms/prod/keys-v2");
    let step = answer(
        &mut host,
        &route,
        &mut worker,
        &mut request,
        &ok(&moved.jwks("k2")),
    );
    assert_eq!(allowed_user(&step), Some("new"));
    // Refreshes now go to the new URI.
    host.advance_secs(700);
    let (_, step) = start(
        &mut host,
        &route,
        &mut worker,
        &moved.token("k2", json!({"sub": "later", "exp": NOW + 1000})),
    );
    assert_eq!(step, Step::Wait);
    assert_eq!(last_path(&host), "/realms/prod/keys-v2");
}

#[test]
fn moved_jwks_uri_is_rediscovered_when_stale_keys_refresh() {
    let (idp, route, mut worker, mut host) = setup();
    let old = idp.token("k1", json!({"exp": NOW + 5000}));
    cold(&mut host, &route, &mut worker, &idp, &old);
    host.advance_secs(700);
    // Past the TTL a request refreshes from the known URI, which is gone.
    let late = idp.token("k1", json!({"sub": "late", "exp": NOW + 5000}));
    let (request, step) = start(&mut host, &route, &mut worker, &late);
    assert_eq!(step, Step::Wait);
    assert_eq!(last_path(&host), "/realms/prod/certs");
    let mut request = request.unwrap();
    let step = answer(&mut host, &route, &mut worker, &mut request, &status(404));
    assert_eq!(step, Step::Wait, "rediscovery, not the stale keys");
    let step = answer(
        &mut host,
        &route,
        &mut worker,
        &mut request,
        &ok(&moved_discovery()),
    );
    assert_eq!(step, Step::Wait);
    // The moved JWKS no longer publishes k1: its tokens stop passing at once.
    let rotated = Idp::new();
    let step = answer(
        &mut host,
        &route,
        &mut worker,
        &mut request,
        &ok(&rotated.jwks("k2")),
    );
    assert_eq!(step, Step::Deny(AuthError::UnknownKey));
    // The cached grant of the retired key dies with it (its kid is unknown now: one refetch).
    let (request, step) = start(&mut host, &route, &mut worker, &old);
    assert_eq!(step, Step::Wait);
    let step = answer(
        &mut host,
        &route,
        &mut worker,
        &mut request.unwrap(),
        &ok(&rotated.jwks("k2")),
    );
    assert_eq!(step, Step::Deny(AuthError::UnknownKey));
}

#[test]
fn rediscovery_is_rate_limited() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = route(json!({"jwks_cache": {"unknown_kid_cooldown_seconds": 0}}));
    warm(&mut host, &route, &mut worker, &idp);
    let unknown = |i: u32| idp.token(&format!("new-{i}"), json!({}));
    // The JWKS URL fails and discovery still names it: one rediscovery, then 401.
    let (request, _) = start(&mut host, &route, &mut worker, &unknown(1));
    let mut request = request.unwrap();
    answer(&mut host, &route, &mut worker, &mut request, &status(404));
    assert_eq!(
        last_path(&host),
        "/realms/prod/.well-known/openid-configuration"
    );
    answer(
        &mut host,
        &route,
        &mut worker,
        &mut request,
        &ok(&discovery()),
    );
    let step = answer(&mut host, &route, &mut worker, &mut request, &status(404));
    assert_eq!(step, Step::Deny(AuthError::UnknownKey));
    assert_eq!(host.callouts.len(), 5);
    // Right after: the refetch fails without another discovery.
    let (request, step) = start(&mut host, &route, &mut worker, &unknown(2));
    assert_eq!(step, Step::Wait);
    let step = answer(
        &mut host,
        &route,
        &mut worker,
        &mut request.unwrap(),
        &status(404),
    );
    assert_eq!(step, Step::Deny(AuthError::UnknownKey));
    assert_eq!(
        host.callouts.len(),
        6,
        "no second discovery within the back-off"
    );
    // After the back-off, discovery may run again.
    host.advance_secs(6);
    let (request, _) = start(&mut host, &route, &mut worker, &unknown(3));
    answer(
        &mut host,
        &route,
        &mut worker,
        &mut request.unwrap(),
        &status(404),
    );
    assert_eq!(
        last_path(&host),
        "/realms/prod/.well-known/openid-configuration"
    );
}

// --- 6: a discovery URL named by routes of different issuers ---------------------------------

#[test]
fn discovered_keys_serve_only_the_issuer_the_document_names() {
    let a = route(json!({}));
    let b = route(json!({"issuers": [{
        "issuer": "https://other.example",
        "audiences": ["orders-api"],
        "discovery_url": "https://idp.example/realms/prod/.well-known/openid-configuration"
    }]}));
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    assert_eq!(
        allowed_user(&warm(&mut host, &a, &mut worker, &idp)),
        Some("ada")
    );
    // A token for B's issuer signed by A's IdP: B must check the document itself, warm or cold.
    let forged = idp.token(
        "k1",
        json!({"iss": "https://other.example", "sub": "mallory"}),
    );
    let (request, step) = start(&mut host, &b, &mut worker, &forged);
    assert_eq!(step, Step::Wait, "B never uses keys checked for A's issuer");
    let step = answer(
        &mut host,
        &b,
        &mut worker,
        &mut request.unwrap(),
        &ok(&discovery()),
    );
    assert_eq!(step, Step::Deny(AuthError::KeysUnavailable));
    // Another worker that only sees shared data agrees.
    let mut second = Worker::new(2);
    let (_, step) = start(&mut host, &b, &mut second, &forged);
    assert_eq!(allowed_user(&step), None, "{step:?}");
    // A keeps working on both.
    let (_, step) = start(&mut host, &a, &mut second, &idp.token("k1", json!({})));
    assert_eq!(allowed_user(&step), Some("ada"));
}

// --- 8: explicit token types ------------------------------------------------------------------

fn typed_route(types: Value) -> Route {
    route(json!({"issuers": [{
        "issuer": ISSUER,
        "audiences": ["orders-api"],
        "token_types": types
    }]}))
}

#[test]
fn token_types_pin_the_header_typ() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = typed_route(json!(["at+jwt"]));
    let typed = |typ: Value| {
        let mut header = json!({"alg": "RS256", "kid": "k1"});
        if !typ.is_null() {
            header["typ"] = typ;
        }
        idp.token_with_header(header, json!({}))
    };
    assert_eq!(
        allowed_user(&cold(
            &mut host,
            &route,
            &mut worker,
            &idp,
            &typed(json!("at+jwt"))
        )),
        Some("ada")
    );
    for typ in ["AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
        let (_, step) = start(&mut host, &route, &mut worker, &typed(json!(typ)));
        assert_eq!(allowed_user(&step), Some("ada"), "{typ}");
    }
    // An ID token (typ JWT), no typ, or a type merely containing the name: 401 invalid_token.
    for typ in [
        json!("JWT"),
        Value::Null,
        json!("at+jwt2"),
        json!("xapplication/at+jwt"),
    ] {
        let (_, step) = start(&mut host, &route, &mut worker, &typed(typ.clone()));
        let Step::Deny(error) = step else {
            panic!("{typ}: {step:?}")
        };
        let rejection = error.rejection();
        assert_eq!(rejection.status, 401, "{typ}");
        let challenge = rejection.www_authenticate.unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains("type"), "{challenge}");
    }
}

#[test]
fn configured_token_types_may_carry_the_media_type_prefix() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let typed = typed_route(json!(["application/JWT", "at+jwt"]));
    let token = idp.token_with_header(
        json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
        json!({}),
    );
    assert_eq!(
        allowed_user(&cold(&mut host, &typed, &mut worker, &idp, &token)),
        Some("ada")
    );
    // Without token_types nothing is checked (as before).
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let plain = route(json!({}));
    let token = idp.token_with_header(
        json!({"alg": "RS256", "kid": "k1", "typ": "anything"}),
        json!({}),
    );
    assert_eq!(
        allowed_user(&cold(&mut host, &plain, &mut worker, &idp, &token)),
        Some("ada")
    );
}

// --- 10: Google token refresh rate ------------------------------------------------------------

#[test]
fn google_refresh_waits_for_half_the_token_lifetime() {
    let route = route(json!({"google_id_token": {
        "audience": "https://run.example",
        "metadata_host": "metadata:8080",
        "refresh_before_expiry_seconds": 300
    }}));
    let (mut worker, mut host, mut jobs) = (Worker::new(1), FakeHost::at(NOW), RootJobs::default());
    let mut answered = 0;
    // 15 ticks a second apart; every mint is answered with a token living 303 s.
    for _ in 0..15 {
        jobs.tick(&mut cx(&mut host, &route, &mut worker));
        let mints: Vec<CalloutToken> = host
            .callouts
            .iter()
            .filter(|(_, c)| c.upstream == "metadata:8080")
            .map(|(t, _)| *t)
            .collect();
        for t in mints.into_iter().skip(answered) {
            let token = google_jwt(host.now_secs() + 303);
            jobs.on_callout(&mut cx(&mut host, &route, &mut worker), t, &ok(&token));
            answered += 1;
        }
        host.advance_secs(1);
    }
    assert_eq!(answered, 1, "one mint in 15 s for a 303 s token");
    // Half-way through its life (151 s after it was obtained) the refresh starts.
    host.advance_secs(151 - 15);
    jobs.tick(&mut cx(&mut host, &route, &mut worker));
    let mints = host
        .callouts
        .iter()
        .filter(|(_, c)| c.upstream == "metadata:8080")
        .count();
    assert_eq!(mints, 2, "refresh at half-life");
}
