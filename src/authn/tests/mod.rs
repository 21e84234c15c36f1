//! The request flow and the background jobs through [`FakeHost`]: cold and warm requests, key
//! fetches and their failures, Google tokens (one callout and federated chains), the tick.

use super::*;
use crate::host::fake::FakeHost;
use crate::host::{CalloutRequest, CalloutResponse, CalloutToken};
use crate::jose::b64;
use crate::metrics::Metric;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{json, Value};

mod authorization;
mod isolation;
mod memory;
mod rate_limits;
mod security;

const ISSUER: &str = "https://idp.example/realms/prod";
const NOW: u64 = 1_800_000_000;

struct Idp {
    key: PKey<Private>,
}

impl Idp {
    fn new() -> Idp {
        let rsa = Rsa::generate(2048).unwrap();
        Idp {
            key: PKey::from_rsa(rsa).unwrap(),
        }
    }

    fn jwks(&self, kid: &str) -> Vec<u8> {
        let rsa = self.key.rsa().unwrap();
        json!({"keys": [{
            "kty": "RSA", "kid": kid, "use": "sig",
            "n": b64::encode(&rsa.n().to_vec()),
            "e": b64::encode(&rsa.e().to_vec()),
        }]})
        .to_string()
        .into_bytes()
    }

    fn token(&self, kid: &str, claims: Value) -> String {
        self.token_with_header(json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), claims)
    }

    /// A token with a chosen header (`typ`, `kid`, …), signed RS256 by the IdP's key; `claims`
    /// add to or replace the default ones.
    fn token_with_header(&self, header: Value, claims: Value) -> String {
        let mut all = json!({"iss": ISSUER, "aud": "orders-api", "sub": "ada", "exp": NOW + 300});
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        let input = format!(
            "{}.{}",
            b64::encode(header.to_string().as_bytes()),
            b64::encode(all.to_string().as_bytes())
        );
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).unwrap();
        signer.update(input.as_bytes()).unwrap();
        format!("{input}.{}", b64::encode(&signer.sign_to_vec().unwrap()))
    }
}

fn route(extra: Value) -> Route {
    let mut config = json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["orders-api"]}],
        "claims_to_headers": {"sub": "x-user-id"},
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    match RouteState::from_config(config.to_string().as_bytes()) {
        RouteState::Ready(route) => *route,
        RouteState::Invalid(why) => panic!("{why}"),
    }
}

fn start(
    host: &mut FakeHost,
    route: &Route,
    worker: &mut Worker,
    token: &str,
) -> (Option<Request>, Step) {
    let value = format!("Bearer {token}");
    let pairs: Vec<(&[u8], &[u8])> = vec![(b"authorization", value.as_bytes())];
    Request::start(&mut cx(host, route, worker), &pairs, None)
}

/// The scope of one callback.
fn cx<'a>(host: &'a mut FakeHost, route: &'a Route, worker: &'a mut Worker) -> Scope<'a> {
    Scope {
        host,
        route,
        worker,
    }
}

fn ok(body: &[u8]) -> CalloutResponse {
    CalloutResponse {
        status: Some(200),
        dispatch_status: None,
        body: body.to_vec(),
    }
}

fn failed(why: &str) -> CalloutResponse {
    CalloutResponse {
        status: None,
        dispatch_status: Some(why.into()),
        body: vec![],
    }
}

fn discovery() -> Vec<u8> {
    json!({"issuer": ISSUER, "jwks_uri": "https://idp.example/realms/prod/certs"})
        .to_string()
        .into_bytes()
}

fn last_callout(host: &FakeHost) -> (CalloutToken, CalloutRequest) {
    host.callouts.last().cloned().unwrap()
}

fn header<'a>(req: &'a CalloutRequest, name: &str) -> &'a str {
    req.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// A fresh IdP, the default route, one worker and a host at `NOW`.
fn setup() -> (Idp, Route, Worker, FakeHost) {
    (
        Idp::new(),
        route(json!({})),
        Worker::new(1),
        FakeHost::at(NOW),
    )
}

/// Warms the worker's keys with a cold request for a default `k1` token.
fn warm(host: &mut FakeHost, route: &Route, worker: &mut Worker, idp: &Idp) -> Step {
    cold(host, route, worker, idp, &idp.token("k1", json!({})))
}

/// Runs a cold request through discovery and JWKS; returns its final step.
fn cold(host: &mut FakeHost, route: &Route, worker: &mut Worker, idp: &Idp, token: &str) -> Step {
    cold_request(host, route, worker, idp, token).1
}

fn cold_request(
    host: &mut FakeHost,
    route: &Route,
    worker: &mut Worker,
    idp: &Idp,
    token: &str,
) -> (Request, Step) {
    let (request, step) = start(host, route, worker, token);
    assert_eq!(step, Step::Wait);
    let mut request = request.unwrap();
    let (t1, discovery_call) = last_callout(host);
    assert_eq!(discovery_call.upstream, "idp.example:443");
    assert_eq!(
        header(&discovery_call, ":path"),
        "/realms/prod/.well-known/openid-configuration"
    );
    assert_eq!(header(&discovery_call, ":scheme"), "https");
    let step = request.on_callout(&mut cx(host, route, worker), t1, &ok(&discovery()));
    assert_eq!(step, Step::Wait);
    let (t2, jwks_call) = last_callout(host);
    assert_eq!(header(&jwks_call, ":path"), "/realms/prod/certs");
    let step = request.on_callout(&mut cx(host, route, worker), t2, &ok(&idp.jwks("k1")));
    (request, step)
}

/// The IdP rotates to a new key `k9` (the old ones leave its JWKS): a token of `sub` "new" makes
/// `worker` refetch, answered with the new JWKS. Returns that request's final step.
fn rotate_to_k9(host: &mut FakeHost, route: &Route, worker: &mut Worker) -> Step {
    let rotated = Idp::new();
    let (request, _) = start(
        host,
        route,
        worker,
        &rotated.token("k9", json!({"sub": "new"})),
    );
    let (t, _) = last_callout(host);
    request
        .unwrap()
        .on_callout(&mut cx(host, route, worker), t, &ok(&rotated.jwks("k9")))
}

fn allowed_user(step: &Step) -> Option<&str> {
    match step {
        Step::Allow(edits) => edits
            .iter()
            .find(|(n, _)| &**n == "x-user-id")
            .map(|(_, v)| &**v),
        _ => None,
    }
}

#[test]
fn cold_request_discovers_fetches_keys_then_allows() {
    let (idp, route, mut worker, mut host) = setup();
    let step = warm(&mut host, &route, &mut worker, &idp);
    assert_eq!(allowed_user(&step), Some("ada"));
    assert_eq!(host.callouts.len(), 2);
    assert_eq!(host.metric(Metric::JwksFetches), 1);
    assert_eq!(host.metric(Metric::Allowed), 1);
}

#[test]
fn warm_requests_need_no_callout_and_repeats_hit_the_cache() {
    let (idp, route, mut worker, mut host) = setup();
    let token = idp.token("k1", json!({}));
    cold(&mut host, &route, &mut worker, &idp, &token);
    let (_, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(allowed_user(&step), Some("ada"));
    assert_eq!(host.metric(Metric::TokenCacheHits), 1);
    let other = idp.token("k1", json!({"sub": "bob"}));
    let (_, step) = start(&mut host, &route, &mut worker, &other);
    assert_eq!(allowed_user(&step), Some("bob"));
    assert_eq!(
        host.callouts.len(),
        2,
        "no new callout once keys are cached"
    );
}

#[test]
fn another_worker_adopts_keys_from_shared_data() {
    let (idp, route, mut host) = (Idp::new(), route(json!({})), FakeHost::at(NOW));
    cold(
        &mut host,
        &route,
        &mut Worker::new(1),
        &idp,
        &idp.token("k1", json!({})),
    );
    let mut second = Worker::new(2);
    let (_, step) = start(&mut host, &route, &mut second, &idp.token("k1", json!({})));
    assert_eq!(allowed_user(&step), Some("ada"));
    assert_eq!(host.callouts.len(), 2);
}

#[test]
fn a_rotation_refetched_in_the_same_second_reaches_the_other_worker() {
    let (idp, route, mut host) = (Idp::new(), route(json!({})), FakeHost::at(NOW));
    let (mut first, mut second) = (Worker::new(1), Worker::new(2));
    let old = idp.token("k1", json!({}));
    cold(&mut host, &route, &mut first, &idp, &old);
    let (_, step) = start(&mut host, &route, &mut second, &old);
    assert_eq!(
        allowed_user(&step),
        Some("ada"),
        "the second worker caches k1's grant"
    );
    // Still at NOW: the first worker refetches for a new kid, and k1 leaves the JWKS.
    let step = rotate_to_k9(&mut host, &route, &mut first);
    assert_eq!(allowed_user(&step), Some("new"));
    // Half a second later, same whole second: the second worker's tick adopts the new set.
    host.now_ms += 500;
    RootJobs::default().tick(&mut cx(&mut host, &route, &mut second));
    let (_, step) = start(&mut host, &route, &mut second, &old);
    assert_eq!(
        step,
        Step::Deny(AuthError::UnknownKey),
        "k1 retired everywhere"
    );
}

#[test]
fn failed_cold_fetch_is_503_and_backs_off() {
    let (idp, route, mut worker, mut host) = setup();
    let token = idp.token("k1", json!({}));
    let (request, _) = start(&mut host, &route, &mut worker, &token);
    let (t1, _) = last_callout(&host);
    let step = request.unwrap().on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t1,
        &failed("timeout"),
    );
    assert_eq!(step, Step::Deny(AuthError::KeysUnavailable));
    assert!(host.logged("timeout"));
    assert_eq!(host.metric(Metric::JwksFetchFailures), 1);
    let (_, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(step, Step::Deny(AuthError::KeysUnavailable));
    assert_eq!(host.callouts.len(), 1, "no new fetch during the back-off");
    host.advance_secs(6);
    let (_, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(step, Step::Wait);
    assert_eq!(host.callouts.len(), 2);
}

/// `idp`'s JWKS padded with `fillers` encryption keys of ~1 KiB each (skipped by the filter).
fn padded_jwks(idp: &Idp, kid: &str, fillers: usize) -> Vec<u8> {
    let mut jwks: Value = serde_json::from_slice(&idp.jwks(kid)).unwrap();
    let keys = jwks["keys"].as_array_mut().unwrap();
    for i in 0..fillers {
        keys.push(
            json!({"kty": "RSA", "use": "enc", "kid": format!("enc-{i}"),
            "n": "A".repeat(1000), "e": "AQAB"}),
        );
    }
    jwks.to_string().into_bytes()
}

fn jwks_entries_shared(host: &FakeHost) -> usize {
    host.shared
        .keys()
        .filter(|k| k.starts_with("cloudrun_oidc/jwks/"))
        .count()
}

#[test]
fn a_jwks_too_large_to_share_is_kept_by_the_worker_and_never_written() {
    let (idp, route, mut worker, mut host) = setup();
    let big = padded_jwks(&idp, "k1", 70);
    assert!(big.len() > crate::host::MAX_SHARED_VALUE_BYTES);
    let token = idp.token("k1", json!({}));
    let (request, _) = start(&mut host, &route, &mut worker, &token);
    let mut request = request.unwrap();
    let (t1, _) = last_callout(&host);
    request.on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t1,
        &ok(&discovery()),
    );
    let (t2, _) = last_callout(&host);
    let step = request.on_callout(&mut cx(&mut host, &route, &mut worker), t2, &ok(&big));
    assert_eq!(allowed_user(&step), Some("ada"));
    assert_eq!(
        jwks_entries_shared(&host),
        0,
        "nothing over the bound is written"
    );
    assert!(host.logged("too large for shared data"));
    // The worker keeps using its copy; another worker fetches its own.
    let (_, step) = start(
        &mut host,
        &route,
        &mut worker,
        &idp.token("k1", json!({"sub": "bob"})),
    );
    assert_eq!(allowed_user(&step), Some("bob"));
    assert_eq!(host.callouts.len(), 2);
    let mut other = Worker::new(2);
    let (_, step) = start(&mut host, &route, &mut other, &token);
    assert_eq!(step, Step::Wait, "the other worker fetches for itself");
    // A JWKS within the bound is shared as before, padded to the bound.
    let (idp, route, mut worker, mut host) = setup();
    warm(&mut host, &route, &mut worker, &idp);
    assert_eq!(jwks_entries_shared(&host), 1);
    assert!(host
        .shared
        .values()
        .all(|(v, _)| v.len() <= crate::host::MAX_SHARED_VALUE_BYTES));
}

#[test]
fn keys_are_kept_and_a_failure_backs_off_when_shared_data_refuses_every_write() {
    let (idp, route, mut worker, mut host) = setup();
    host.refuse_shared_writes = true;
    let token = idp.token("k1", json!({}));
    assert_eq!(
        allowed_user(&cold(&mut host, &route, &mut worker, &idp, &token)),
        Some("ada")
    );
    let (idp, route, mut worker, mut host) = setup();
    host.refuse_shared_writes = true;
    let token = idp.token("k1", json!({}));
    let (request, _) = start(&mut host, &route, &mut worker, &token);
    let (t1, _) = last_callout(&host);
    let step = request.unwrap().on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t1,
        &failed("timeout"),
    );
    assert_eq!(step, Step::Deny(AuthError::KeysUnavailable));
    let (_, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(step, Step::Deny(AuthError::KeysUnavailable));
    assert_eq!(host.callouts.len(), 1, "the back-off holds in the worker");
    host.advance_secs(6);
    let (_, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(step, Step::Wait);
}

#[test]
fn non_200_and_garbage_answers_fail_closed() {
    for response in [
        CalloutResponse {
            status: Some(500),
            dispatch_status: None,
            body: discovery(),
        },
        ok(b"<html>"),
        ok(b"{\"issuer\": \"https://elsewhere\", \"jwks_uri\": \"https://elsewhere/k\"}"),
        CalloutResponse::default(),
    ] {
        let (idp, route, mut worker, mut host) = setup();
        let (request, _) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
        let (t1, _) = last_callout(&host);
        let step =
            request
                .unwrap()
                .on_callout(&mut cx(&mut host, &route, &mut worker), t1, &response);
        assert_eq!(step, Step::Deny(AuthError::KeysUnavailable), "{response:?}");
    }
}

#[test]
fn stale_keys_are_used_when_the_refresh_fails() {
    let (idp, route, mut worker, mut host) = setup();
    warm(&mut host, &route, &mut worker, &idp);
    host.advance_secs(700);
    let token = idp.token("k1", json!({"sub": "late", "exp": NOW + 1000}));
    let (request, step) = start(&mut host, &route, &mut worker, &token);
    assert_eq!(step, Step::Wait, "past the TTL the request refreshes");
    let (t, call) = last_callout(&host);
    assert_eq!(
        header(&call, ":path"),
        "/realms/prod/certs",
        "known jwks_uri reused"
    );
    let mut request = request.unwrap();
    let step = request.on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t,
        &failed("broken connection"),
    );
    // The failed URI came from discovery: the fetch asks discovery again (it may have moved).
    assert_eq!(step, Step::Wait);
    let (t, call) = last_callout(&host);
    assert_eq!(
        header(&call, ":path"),
        "/realms/prod/.well-known/openid-configuration"
    );
    let step = request.on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t,
        &failed("broken connection"),
    );
    assert_eq!(allowed_user(&step), Some("late"));
}

#[test]
fn unknown_kid_refetches_once_per_cooldown() {
    let (idp, route, mut worker, mut host) = setup();
    warm(&mut host, &route, &mut worker, &idp);
    let (request, step) = start(&mut host, &route, &mut worker, &idp.token("k2", json!({})));
    assert_eq!(step, Step::Wait);
    let (t, _) = last_callout(&host);
    let step = request.unwrap().on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t,
        &ok(&idp.jwks("k1")),
    );
    assert_eq!(step, Step::Deny(AuthError::UnknownKey));
    let (_, step) = start(&mut host, &route, &mut worker, &idp.token("k3", json!({})));
    assert_eq!(step, Step::Deny(AuthError::UnknownKey));
    assert_eq!(host.callouts.len(), 3, "one refetch within the cooldown");
    host.advance_secs(31);
    let (_, step) = start(&mut host, &route, &mut worker, &idp.token("k4", json!({})));
    assert_eq!(step, Step::Wait);
}

#[test]
fn rotated_key_is_fetched_and_old_cache_entries_die() {
    let (idp, route, mut worker, mut host) = setup();
    let old = idp.token("k1", json!({}));
    cold(&mut host, &route, &mut worker, &idp, &old);
    let step = rotate_to_k9(&mut host, &route, &mut worker);
    assert_eq!(allowed_user(&step), Some("new"));
    let (_, step) = start(&mut host, &route, &mut worker, &old);
    assert_eq!(
        step,
        Step::Deny(AuthError::UnknownKey),
        "cached grant of a removed key"
    );
}

#[test]
fn answer_to_another_callout_is_refused() {
    let (idp, route, mut worker, mut host) = setup();
    let (request, _) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
    let step = request.unwrap().on_callout(
        &mut cx(&mut host, &route, &mut worker),
        999,
        &ok(&discovery()),
    );
    assert_eq!(step, Step::Deny(AuthError::Internal));
}

#[test]
fn refusals_before_any_key_work_need_no_callout() {
    let (idp, route, mut worker, mut host) = setup();
    let cases = [
        (
            idp.token("k1", json!({"exp": NOW - 600})),
            AuthError::Expired,
        ),
        (
            idp.token("k1", json!({"aud": "other"})),
            AuthError::WrongAudience,
        ),
        (
            idp.token("k1", json!({"iss": "https://evil"})),
            AuthError::UnknownIssuer,
        ),
    ];
    for (token, error) in cases {
        let (_, step) = start(&mut host, &route, &mut worker, &token);
        assert_eq!(step, Step::Deny(error));
    }
    let (_, step) = start(&mut host, &route, &mut worker, "");
    assert_eq!(step, Step::Deny(AuthError::Malformed));
    assert!(host.callouts.is_empty());
    assert!(
        !host.logs.borrow().iter().any(|(_, l)| l.contains("eyJ")),
        "a token was logged"
    );
}

#[test]
fn policy_and_claim_rules_give_403() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let route = route(json!({"required_scopes": ["orders.read"]}));
    cold(
        &mut host,
        &route,
        &mut worker,
        &idp,
        &idp.token("k1", json!({"scope": "orders.read"})),
    );
    let (_, step) = start(
        &mut host,
        &route,
        &mut worker,
        &idp.token("k1", json!({"scope": "x"})),
    );
    assert_eq!(step, Step::Deny(AuthError::InsufficientScope));
}

#[test]
fn client_copies_of_owned_headers_refuse_the_request_before_any_key_work() {
    let (idp, route, mut worker, mut host) = setup();
    let token = idp.token("k1", json!({}));
    for forged in ["X-User-Id", "x_user_id", "X-Forwarded-Authorization"] {
        let value = format!("Bearer {token}");
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b"authorization", value.as_bytes()),
            (forged.as_bytes(), b"mallory"),
        ];
        let (request, step) = Request::start(&mut cx(&mut host, &route, &mut worker), &pairs, None);
        assert!(request.is_none(), "{forged}");
        assert_eq!(step, Step::Deny(AuthError::ForgedHeader), "{forged}");
    }
    assert!(host.callouts.is_empty());
    assert!(host
        .logs
        .borrow()
        .iter()
        .any(|(_, l)| l.contains("the client sent `x-user-id`")));
}

#[test]
fn invalid_configuration_names_the_field() {
    let state =
        RouteState::from_config(br#"{"issuers": [{"issuer": "https://a", "audiences": []}]}"#);
    match state {
        RouteState::Invalid(message) => {
            assert!(message.contains("issuers[0].audiences"), "{message}")
        }
        RouteState::Ready(_) => panic!("accepted"),
    }
    let inline = json!({"issuers": [{"issuer": ISSUER, "audiences": ["a"], "jwks": {"keys": [{"kty": "oct", "k": "AA"}]}}]});
    match RouteState::from_config(inline.to_string().as_bytes()) {
        RouteState::Invalid(message) => {
            assert!(message.contains("issuers[0].jwks"), "{message}")
        }
        RouteState::Ready(_) => panic!("accepted"),
    }
}

fn google_jwt(exp: u64) -> Vec<u8> {
    let payload =
        json!({"iss": "https://accounts.google.com", "aud": "https://run.example", "exp": exp});
    format!(
        "{}.{}.c2ln",
        b64::encode(br#"{"alg":"RS256"}"#),
        b64::encode(payload.to_string().as_bytes())
    )
    .into_bytes()
}

fn google_route() -> Route {
    route(
        json!({"google_id_token": {"audience": "https://run.example", "metadata_host": "metadata:8080"}}),
    )
}

#[test]
fn google_token_is_minted_once_and_forwarded() {
    let (idp, route, mut worker, mut host) = (
        Idp::new(),
        google_route(),
        Worker::new(1),
        FakeHost::at(NOW),
    );
    let caller = idp.token("k1", json!({}));
    let (mut request, step) = cold_request(&mut host, &route, &mut worker, &idp, &caller);
    assert_eq!(step, Step::Wait, "verified; now minting");
    let (t, mint) = last_callout(&host);
    assert_eq!(mint.upstream, "metadata:8080");
    assert_eq!(header(&mint, "metadata-flavor"), "Google");
    assert!(header(&mint, ":path").contains("audience=https%3A%2F%2Frun.example"));
    let step = request.on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t,
        &ok(&google_jwt(NOW + 3600)),
    );
    let Step::Allow(edits) = step else {
        panic!("{step:?}")
    };
    let google = String::from_utf8(google_jwt(NOW + 3600)).unwrap();
    assert!(edits.contains(&("authorization".into(), format!("Bearer {google}").into())));
    assert!(edits.contains(&(
        "x-forwarded-authorization".into(),
        format!("Bearer {caller}").into()
    )));
    let before = host.callouts.len();
    let (_, step) = start(&mut host, &route, &mut worker, &caller);
    assert!(matches!(step, Step::Allow(_)));
    assert_eq!(
        host.callouts.len(),
        before,
        "cached Google token, no callout"
    );
}

#[test]
fn google_mint_failure_is_503() {
    let (idp, route, mut worker, mut host) = (
        Idp::new(),
        google_route(),
        Worker::new(1),
        FakeHost::at(NOW),
    );
    let caller = idp.token("k1", json!({}));
    cold(&mut host, &route, &mut worker, &idp, &caller);
    for response in [
        failed("timeout"),
        ok(b"not a jwt"),
        ok(&google_jwt(NOW + 5)),
    ] {
        let (request, step) = start(&mut host, &route, &mut worker, &caller);
        assert_eq!(step, Step::Wait);
        let (t, _) = last_callout(&host);
        let step =
            request
                .unwrap()
                .on_callout(&mut cx(&mut host, &route, &mut worker), t, &response);
        assert_eq!(
            step,
            Step::Deny(AuthError::GoogleTokenUnavailable),
            "{response:?}"
        );
    }
    assert_eq!(host.metric(Metric::GoogleTokenMintFailures), 3);
}

#[test]
fn tick_prefetches_keys_once_across_workers_and_skips_overlap() {
    let (idp, route, mut host) = (Idp::new(), route(json!({})), FakeHost::at(NOW));
    let (mut first, mut second) = (Worker::new(1), Worker::new(2));
    let (mut jobs1, mut jobs2) = (RootJobs::default(), RootJobs::default());
    jobs1.tick(&mut cx(&mut host, &route, &mut first));
    assert_eq!(host.callouts.len(), 1);
    jobs1.tick(&mut cx(&mut host, &route, &mut first));
    jobs2.tick(&mut cx(&mut host, &route, &mut second));
    assert_eq!(
        host.callouts.len(),
        1,
        "overlapping tick and other worker wait for the lease"
    );
    let (t1, _) = last_callout(&host);
    jobs1.on_callout(
        &mut cx(&mut host, &route, &mut first),
        t1,
        &ok(&discovery()),
    );
    assert_eq!(
        host.callouts.len(),
        1,
        "a root context starts no callout from a call answer (it crashes Kong's engine)"
    );
    jobs2.tick(&mut cx(&mut host, &route, &mut second));
    assert_eq!(host.callouts.len(), 1, "the lease is still held");
    jobs1.tick(&mut cx(&mut host, &route, &mut first));
    let (t2, jwks_call) = last_callout(&host);
    assert_eq!(header(&jwks_call, ":path"), "/realms/prod/certs");
    jobs1.on_callout(
        &mut cx(&mut host, &route, &mut first),
        t2,
        &ok(&idp.jwks("k1")),
    );
    let (_, step) = start(&mut host, &route, &mut second, &idp.token("k1", json!({})));
    assert_eq!(
        allowed_user(&step),
        Some("ada"),
        "second worker uses the shared keys"
    );
    assert_eq!(host.callouts.len(), 2);
}

#[test]
fn tick_refreshes_google_token_ahead_of_expiry() {
    let (route, mut worker, mut host) = (google_route(), Worker::new(1), FakeHost::at(NOW));
    let mut jobs = RootJobs::default();
    // Keys are not configured reachable here: answer the key fetch with a failure.
    jobs.tick(&mut cx(&mut host, &route, &mut worker));
    let mint = host
        .callouts
        .iter()
        .find(|(_, c)| c.upstream == "metadata:8080")
        .cloned()
        .unwrap();
    jobs.on_callout(
        &mut cx(&mut host, &route, &mut worker),
        mint.0,
        &ok(&google_jwt(NOW + 3600)),
    );
    let count = host.callouts.len();
    host.advance_secs(1000);
    jobs.tick(&mut cx(&mut host, &route, &mut worker));
    assert_eq!(
        host.callouts
            .iter()
            .filter(|(_, c)| c.upstream == "metadata:8080")
            .count(),
        1,
        "not due yet"
    );
    host.advance_secs(2400);
    jobs.tick(&mut cx(&mut host, &route, &mut worker));
    assert!(host.callouts.len() > count);
    assert_eq!(
        host.callouts
            .iter()
            .filter(|(_, c)| c.upstream == "metadata:8080")
            .count(),
        2,
        "refresh 300 s ahead of expiry"
    );
}

/// A route minting its Google token through Workload Identity Federation with a URL
/// subject source; `jwks`: inline caller keys (no key fetch job in the tick).
fn federated_route(jwks: Option<Value>) -> Route {
    let mut issuer = json!({"issuer": ISSUER, "audiences": ["orders-api"]});
    if let Some(jwks) = jwks {
        issuer["jwks"] = jwks;
    }
    route(json!({
        "issuers": [issuer],
        "google_id_token": {
            "audience": "https://run.example",
            "source": "external_account",
            "external_account": {
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/idp",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": "http://sts.test/v1/token",
                "service_account_impersonation_url": "http://iam.test/v1/projects/-/serviceAccounts/kong@p.iam.gserviceaccount.com:generateAccessToken",
                "credential_source": {"url": "http://token.test/token"}
            }
        }
    }))
}

/// The answer each federation step's upstream gives when healthy.
fn federation_answer(call: &CalloutRequest) -> CalloutResponse {
    match call.upstream.as_str() {
        "token.test:80" => ok(b"subject.jwt.token"),
        "sts.test:80" => {
            ok(br#"{"access_token":"ya29.sts","token_type":"Bearer","expires_in":3600}"#)
        }
        "iam.test:80" => {
            let token = String::from_utf8(google_jwt(NOW + 3600)).unwrap();
            ok(json!({ "token": token }).to_string().as_bytes())
        }
        other => panic!("unexpected callout to {other}"),
    }
}

#[test]
fn federated_mint_chains_one_callout_at_a_time_then_forwards() {
    let (idp, route, mut worker, mut host) = (
        Idp::new(),
        federated_route(None),
        Worker::new(1),
        FakeHost::at(NOW),
    );
    let caller = idp.token("k1", json!({}));
    let (mut request, mut step) = cold_request(&mut host, &route, &mut worker, &idp, &caller);
    let mut upstreams = Vec::new();
    while step == Step::Wait {
        let before = host.callouts.len();
        let (t, call) = last_callout(&host);
        upstreams.push(call.upstream.clone());
        step = request.on_callout(
            &mut cx(&mut host, &route, &mut worker),
            t,
            &federation_answer(&call),
        );
        let started = host.callouts.len() - before;
        assert!(started <= 1, "{started} callouts started by one answer");
        assert_eq!(
            started == 1,
            step == Step::Wait,
            "waiting exactly when a callout is in flight"
        );
    }
    assert_eq!(upstreams, ["token.test:80", "sts.test:80", "iam.test:80"]);
    let Step::Allow(edits) = step else {
        panic!("{step:?}")
    };
    let google = String::from_utf8(google_jwt(NOW + 3600)).unwrap();
    assert!(edits.contains(&("authorization".into(), format!("Bearer {google}").into())));
    let before = host.callouts.len();
    let (_, step) = start(&mut host, &route, &mut worker, &caller);
    assert!(matches!(step, Step::Allow(_)));
    assert_eq!(host.callouts.len(), before, "cached: no callout");
}

#[test]
fn federated_step_failure_is_503_and_names_the_step() {
    let (idp, route, mut worker, mut host) = (
        Idp::new(),
        federated_route(None),
        Worker::new(1),
        FakeHost::at(NOW),
    );
    let caller = idp.token("k1", json!({}));
    let (mut request, _) = cold_request(&mut host, &route, &mut worker, &idp, &caller);
    let (t, call) = last_callout(&host);
    let step = request.on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t,
        &federation_answer(&call),
    );
    assert_eq!(step, Step::Wait);
    let (t, _) = last_callout(&host);
    let refused = CalloutResponse {
        status: Some(400),
        dispatch_status: None,
        body: br#"{"error":"invalid_grant"}"#.to_vec(),
    };
    let step = request.on_callout(&mut cx(&mut host, &route, &mut worker), t, &refused);
    assert_eq!(step, Step::Deny(AuthError::GoogleTokenUnavailable));
    assert!(host.logged("STS token exchange (token_url): HTTP status 400 (invalid_grant)"));
    assert_eq!(host.metric(Metric::GoogleTokenMintFailures), 1);
    assert!(!host.logged("subject.jwt.token"));
}

#[test]
fn federated_cold_mints_are_capped_at_one_per_worker() {
    let idp = Idp::new();
    let jwks: Value = serde_json::from_slice(&idp.jwks("k1")).unwrap();
    let (route, mut worker, mut host) = (
        federated_route(Some(jwks)),
        Worker::new(1),
        FakeHost::at(NOW),
    );
    let caller = idp.token("k1", json!({}));
    let (first, step) = start(&mut host, &route, &mut worker, &caller);
    assert_eq!(step, Step::Wait);
    assert_eq!(host.callouts.len(), 1);
    let (_, step) = start(&mut host, &route, &mut worker, &caller);
    assert_eq!(step, Step::Deny(AuthError::GoogleTokenUnavailable));
    assert_eq!(host.callouts.len(), 1, "no second chain in this worker");
    let mut first = first.unwrap();
    let mut step = Step::Wait;
    while step == Step::Wait {
        let (t, call) = last_callout(&host);
        step = first.on_callout(
            &mut cx(&mut host, &route, &mut worker),
            t,
            &federation_answer(&call),
        );
    }
    assert!(matches!(step, Step::Allow(_)));
}

#[test]
fn tick_runs_the_federated_chain_as_one_job() {
    let idp = Idp::new();
    let jwks: Value = serde_json::from_slice(&idp.jwks("k1")).unwrap();
    let (route, mut worker, mut host) = (
        federated_route(Some(jwks)),
        Worker::new(1),
        FakeHost::at(NOW),
    );
    let mut jobs = RootJobs::default();
    jobs.tick(&mut cx(&mut host, &route, &mut worker));
    assert_eq!(host.callouts.len(), 1);
    for _ in 0..3 {
        let (t, call) = last_callout(&host);
        let before = host.callouts.len();
        jobs.on_callout(
            &mut cx(&mut host, &route, &mut worker),
            t,
            &federation_answer(&call),
        );
        assert_eq!(
            host.callouts.len(),
            before,
            "a root context starts no callout from a call answer (it crashes Kong's engine)"
        );
        // The chain's next step (if any) starts here, and no second chain with it.
        jobs.tick(&mut cx(&mut host, &route, &mut worker));
        assert!(host.callouts.len() - before <= 1);
    }
    assert_eq!(
        host.callouts.len(),
        3,
        "ticks start no second chain meanwhile"
    );
    let (_, step) = start(&mut host, &route, &mut worker, &idp.token("k1", json!({})));
    assert!(matches!(step, Step::Allow(_)), "{step:?}");
    assert_eq!(host.callouts.len(), 3);
}
