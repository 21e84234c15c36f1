//! An `Authorization` header the filter did not verify never reaches the upstream: the Google
//! token replaces it, or the request is refused (SECURITY.md threat 1).

use super::*;

/// A route reading the token from the `session` cookie, with `extra` config.
fn cookie_route(extra: Value) -> Route {
    let mut config = json!({"token": {"header": null, "cookie": "session"}});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    route(config)
}

fn start_with(
    host: &mut FakeHost,
    route: &Route,
    worker: &mut Worker,
    pairs: &[(&[u8], &[u8])],
) -> (Option<Request>, Step) {
    Request::start(&mut cx(host, route, worker), pairs, None)
}

#[test]
fn an_authorization_beside_a_cookie_token_is_refused_without_the_google_token() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = cookie_route(json!({}));
    let cookie = format!("session={}", idp.token("k1", json!({})));
    let forged = format!("Bearer {}", idp.token("k1", json!({"sub": "admin"})));
    for authorization in [forged.as_bytes(), b"Basic YWRtaW46YWRtaW4=", b"Bearer x"] {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b"cookie", cookie.as_bytes()),
            (b"Authorization", authorization),
        ];
        let (_, step) = start_with(&mut host, &route, &mut worker, &pairs);
        assert_eq!(step, Step::Deny(AuthError::UnverifiedAuthorization));
    }
    assert!(host.callouts.is_empty(), "refused before any key work");
    // The cookie alone goes on to verification.
    let pairs: Vec<(&[u8], &[u8])> = vec![(b"cookie", cookie.as_bytes())];
    let (_, step) = start_with(&mut host, &route, &mut worker, &pairs);
    assert_eq!(step, Step::Wait);
}

#[test]
fn a_verified_authorization_passes_and_another_scheme_beside_it_is_refused() {
    // Token read from `Authorization` and from a cookie: an `Authorization` of another scheme
    // held no candidate, so it was not verified.
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = route(json!({"token": {"header": "authorization", "cookie": "session"}}));
    let token = idp.token("k1", json!({}));
    let cookie = format!("session={token}");
    let pairs: Vec<(&[u8], &[u8])> = vec![
        (b"cookie", cookie.as_bytes()),
        (b"authorization", b"Basic YWRtaW46YWRtaW4="),
    ];
    let (_, step) = start_with(&mut host, &route, &mut worker, &pairs);
    assert_eq!(step, Step::Deny(AuthError::UnverifiedAuthorization));
    assert_eq!(
        cold(&mut host, &route, &mut worker, &idp, &token),
        step_allowing("ada")
    );
}

fn step_allowing(user: &str) -> Step {
    Step::Allow(vec![("x-user-id".into(), user.into())])
}

#[test]
fn the_google_token_replaces_an_unverified_authorization() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = cookie_route(json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["orders-api"],
                     "jwks": serde_json::from_slice::<Value>(&idp.jwks("k1")).unwrap()}],
        "google_id_token": {"audience": "https://run.example", "metadata_host": "metadata:8080"},
    }));
    let cookie = format!("session={}", idp.token("k1", json!({})));
    let pairs: Vec<(&[u8], &[u8])> = vec![
        (b"cookie", cookie.as_bytes()),
        (b"authorization", b"Bearer unverified"),
    ];
    let (request, step) = start_with(&mut host, &route, &mut worker, &pairs);
    assert_eq!(step, Step::Wait, "verified; minting");
    let (t, _) = last_callout(&host);
    let step = request.unwrap().on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t,
        &ok(&google_jwt(NOW + 3600)),
    );
    let Step::Allow(edits) = step else {
        panic!("{step:?}")
    };
    let google = String::from_utf8(google_jwt(NOW + 3600)).unwrap();
    assert!(edits.contains(&("authorization".into(), format!("Bearer {google}").into())));
    // With the token in x-serverless-authorization, `Authorization` would stay: refused.
    let route = cookie_route(json!({
        "google_id_token": {"audience": "https://run.example", "metadata_host": "metadata:8080",
                            "header": "x-serverless-authorization"},
    }));
    let (_, step) = start_with(&mut host, &route, &mut worker, &pairs);
    assert_eq!(step, Step::Deny(AuthError::UnverifiedAuthorization));
}
