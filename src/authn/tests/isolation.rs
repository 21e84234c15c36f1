//! Isolation between routes' configurations (SECURITY.md threat 14): every cache is keyed by
//! everything that decides its content. Route B below is the attacker's: its configuration
//! differs from route A's only in where (or as whom) it fetches, and it warms its caches
//! first; A must never use what B fetched, from the worker's copy or from shared data.

use super::*;
use crate::keys::cache::JwksEntry;

const ATTACKER: &str = "attacker.example:8443";
const JWKS_URL: &str = "https://idp.example/realms/prod/certs";
const RUN: &str = "https://run.example";

/// Runs a request for `token` on `route`, answering each callout with `answer`; returns the
/// final step and the upstreams this request called.
fn run(
    host: &mut FakeHost,
    route: &Route,
    worker: &mut Worker,
    token: &str,
    answer: &dyn Fn(&CalloutRequest) -> CalloutResponse,
) -> (Step, Vec<CalloutRequest>) {
    let before = host.callouts.len();
    let (request, mut step) = start(host, route, worker, token);
    if let Some(mut request) = request {
        while step == Step::Wait {
            let (t, call) = last_callout(host);
            step = request.on_callout(&mut cx(host, route, worker), t, &answer(&call));
        }
    }
    let calls = host.callouts[before..].iter().map(|(_, c)| c.clone());
    (step, calls.collect())
}

fn upstreams(calls: &[CalloutRequest]) -> Vec<&str> {
    calls.iter().map(|c| c.upstream.as_str()).collect()
}

/// An IdP's answers: its discovery document for a discovery path, else its JWKS.
fn serve(idp: &Idp) -> impl Fn(&CalloutRequest) -> CalloutResponse + '_ {
    |call| {
        if header(call, ":path").ends_with("/openid-configuration") {
            ok(&discovery())
        } else {
            ok(&idp.jwks("k1"))
        }
    }
}

/// B warms a worker and shared data with the attacker's keys (fetched through its own
/// `callout_host`); A must refuse the attacker's token on that worker (worker cache) and on
/// another one (shared data), fetch from its own IdP, and accept the IdP's tokens. B never
/// gets A's keys either.
fn keys_stay_apart(a: &Route, b: &Route) {
    let (idp, attacker) = (Idp::new(), Idp::new());
    let forged = attacker.token("k1", json!({"sub": "mallory"}));
    let genuine = idp.token("k1", json!({}));
    for through_shared_data in [false, true] {
        let mut host = FakeHost::at(NOW);
        let (mut first, mut second) = (Worker::new(1), Worker::new(2));
        let (step, calls) = run(&mut host, b, &mut first, &forged, &serve(&attacker));
        assert_eq!(
            allowed_user(&step),
            Some("mallory"),
            "B trusts its own host"
        );
        assert!(
            upstreams(&calls).iter().all(|u| *u == ATTACKER),
            "{calls:?}"
        );
        let worker = if through_shared_data {
            &mut second
        } else {
            &mut first
        };
        let (step, calls) = run(&mut host, a, worker, &forged, &serve(&idp));
        assert_eq!(
            allowed_user(&step),
            None,
            "A accepted the attacker's key (shared data: {through_shared_data}): {step:?}"
        );
        let called = upstreams(&calls);
        assert!(
            !called.is_empty() && called.iter().all(|u| *u == "idp.example:443"),
            "A fetches its own keys: {called:?}"
        );
        let (step, _) = run(&mut host, a, worker, &genuine, &serve(&idp));
        assert_eq!(allowed_user(&step), Some("ada"));
        let (step, _) = run(&mut host, b, &mut second, &genuine, &serve(&attacker));
        assert_eq!(allowed_user(&step), None, "B got A's keys: {step:?}");
    }
}

fn with_callout_host(mut issuer: Value, callout_host: Option<&str>) -> Route {
    if let Some(host) = callout_host {
        issuer["callout_host"] = json!(host);
    }
    route(json!({ "issuers": [issuer] }))
}

#[test]
fn a_jwks_url_fetched_through_another_callout_host_never_lends_its_keys() {
    let issuer = json!({"issuer": ISSUER, "audiences": ["orders-api"], "jwks_url": JWKS_URL});
    keys_stay_apart(
        &with_callout_host(issuer.clone(), None),
        &with_callout_host(issuer, Some(ATTACKER)),
    );
}

#[test]
fn a_discovery_url_fetched_through_another_callout_host_never_lends_its_keys() {
    let issuer = json!({"issuer": ISSUER, "audiences": ["orders-api"]});
    keys_stay_apart(
        &with_callout_host(issuer.clone(), None),
        &with_callout_host(issuer.clone(), Some(ATTACKER)),
    );
    // Two callout hosts, neither the URL's own: still apart.
    keys_stay_apart(
        &with_callout_host(issuer.clone(), Some("idp.example:443")),
        &with_callout_host(issuer, Some(ATTACKER)),
    );
}

#[test]
fn the_worker_keeps_each_namespaces_keys_apart() {
    let (idp, mut worker, mut host) = (Idp::new(), Worker::new(1), FakeHost::at(NOW));
    let a = route(json!({"shm_namespace": "one"}));
    let b = route(json!({"shm_namespace": "two"}));
    let token = idp.token("k1", json!({}));
    let (step, calls) = run(&mut host, &b, &mut worker, &token, &serve(&idp));
    assert_eq!((allowed_user(&step), calls.len()), (Some("ada"), 2));
    // Same source, other namespace: the worker's copy is keyed by the namespaced key, so A
    // reads its own zone and fetches.
    let (step, calls) = run(&mut host, &a, &mut worker, &token, &serve(&idp));
    assert_eq!((allowed_user(&step), calls.len()), (Some("ada"), 2));
    assert!(host.shared.keys().any(|k| k.starts_with("one/jwks/")));
}

#[test]
fn shared_keys_of_the_earlier_key_format_are_never_read() {
    let (idp, attacker) = (Idp::new(), Idp::new());
    let a = with_callout_host(
        json!({"issuer": ISSUER, "audiences": ["orders-api"], "jwks_url": JWKS_URL}),
        None,
    );
    let old_key = format!("cloudrun_oidc/jwks/jwks:{JWKS_URL}");
    let entry = JwksEntry {
        fetched_at: NOW,
        jwks_uri: JWKS_URL.to_string(),
        jwks_json: attacker.jwks("k1"),
    };
    let mut host = FakeHost::at(NOW);
    let value =
        crate::host::shared::encode(&old_key, &entry.encode(), crate::host::shared::Width::Full)
            .expect("a small key set fits");
    // Under its own key, and in the new key's slot (as a CRC32 collision would put it).
    let new_key = a.sources[0].shared.entry.clone();
    assert_ne!(new_key, old_key);
    host.shared.insert(old_key, (value.clone(), 1));
    host.shared.insert(new_key, (value, 2));
    let forged = attacker.token("k1", json!({"sub": "mallory"}));
    let (step, calls) = run(&mut host, &a, &mut Worker::new(1), &forged, &serve(&idp));
    assert_eq!(allowed_user(&step), None, "{step:?}");
    assert_eq!(upstreams(&calls), ["idp.example:443"]);
}

// --- Google ID tokens -------------------------------------------------------------------------

/// A Google ID token told apart by its subject.
fn id_token(who: &str) -> String {
    let payload =
        json!({"iss": "https://accounts.google.com", "aud": RUN, "sub": who, "exp": NOW + 3600});
    format!(
        "{}.{}.c2ln",
        b64::encode(br#"{"alg":"RS256"}"#),
        b64::encode(payload.to_string().as_bytes())
    )
}

/// The `Authorization` an allowed request forwards.
fn forwarded(step: &Step) -> Option<&str> {
    match step {
        Step::Allow(edits) => edits
            .iter()
            .find(|(n, _)| &**n == "authorization")
            .map(|(_, v)| &**v),
        _ => None,
    }
}

/// A route with inline caller keys (no key fetch) and `google_id_token`.
fn google_route(idp: &Idp, google: Value) -> Route {
    let jwks: Value = serde_json::from_slice(&idp.jwks("k1")).unwrap();
    route(json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["orders-api"], "jwks": jwks}],
        "google_id_token": google,
    }))
}

/// B mints its token first; A, on that worker and on another one, must mint its own and
/// forward it, never B's.
fn google_tokens_stay_apart(
    idp: &Idp,
    a: (&Route, &dyn Fn(&CalloutRequest) -> CalloutResponse),
    b: (&Route, &dyn Fn(&CalloutRequest) -> CalloutResponse),
) {
    let caller = idp.token("k1", json!({}));
    for through_shared_data in [false, true] {
        let mut host = FakeHost::at(NOW);
        let (mut first, mut second) = (Worker::new(1), Worker::new(2));
        let (step, _) = run(&mut host, b.0, &mut first, &caller, b.1);
        let b_token = format!("Bearer {}", id_token("b"));
        assert_eq!(forwarded(&step), Some(b_token.as_str()));
        let worker = if through_shared_data {
            &mut second
        } else {
            &mut first
        };
        let (step, calls) = run(&mut host, a.0, worker, &caller, a.1);
        assert!(
            !calls.is_empty(),
            "A minted nothing (shared data: {through_shared_data})"
        );
        let a_token = format!("Bearer {}", id_token("a"));
        assert_eq!(forwarded(&step), Some(a_token.as_str()), "{step:?}");
    }
}

fn service_account(pem: &str, token_url: &str) -> Value {
    let key = json!({
        "type": "service_account", "private_key_id": "key-1", "private_key": pem,
        "client_email": "kong@project.iam.gserviceaccount.com",
    });
    json!({"audience": RUN, "source": "service_account", "service_account_key": key,
           "token_url": token_url})
}

fn pem() -> String {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap()
}

/// The token endpoint's answer: an ID token for `who`.
fn token_endpoint(who: &'static str) -> impl Fn(&CalloutRequest) -> CalloutResponse {
    move |_| ok(json!({ "id_token": id_token(who) }).to_string().as_bytes())
}

#[test]
fn a_service_accounts_token_is_keyed_by_its_key_material() {
    let idp = Idp::new();
    const GOOGLE: &str = "https://oauth2.googleapis.com/token";
    // Same client_email and private_key_id, another private key.
    let a = google_route(&idp, service_account(&pem(), GOOGLE));
    let b = google_route(&idp, service_account(&pem(), GOOGLE));
    google_tokens_stay_apart(&idp, (&a, &token_endpoint("a")), (&b, &token_endpoint("b")));
}

#[test]
fn a_service_accounts_token_is_keyed_by_its_token_url() {
    let (idp, pem) = (Idp::new(), pem());
    let a = google_route(
        &idp,
        service_account(&pem, "https://oauth2.googleapis.com/token"),
    );
    let b = google_route(
        &idp,
        service_account(&pem, "https://attacker.example/token"),
    );
    google_tokens_stay_apart(&idp, (&a, &token_endpoint("a")), (&b, &token_endpoint("b")));
}

/// A federated route whose URL subject source sends `headers`.
fn federated(idp: &Idp, headers: Value, audience: &str) -> Route {
    google_route(
        idp,
        json!({
            "audience": audience,
            "source": "external_account",
            "external_account": {
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/idp",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": "http://sts.test/v1/token",
                "service_account_impersonation_url": "http://iam.test/v1/projects/-/serviceAccounts/kong@p.iam.gserviceaccount.com:generateAccessToken",
                "credential_source": {"url": "http://token.test/token", "headers": headers}
            }
        }),
    )
}

/// Healthy federation answers whose IAM step mints an ID token for `who`.
fn federation_for(who: &'static str) -> impl Fn(&CalloutRequest) -> CalloutResponse {
    move |call| match call.upstream.as_str() {
        "iam.test:80" => ok(json!({ "token": id_token(who) }).to_string().as_bytes()),
        _ => federation_answer(call),
    }
}

const FULL_CHAIN: [&str; 3] = ["token.test:80", "sts.test:80", "iam.test:80"];

#[test]
fn federated_tokens_are_keyed_by_the_credential_source_headers() {
    let idp = Idp::new();
    let a = federated(&idp, json!({"x-tenant": "alice"}), RUN);
    let b = federated(&idp, json!({"x-tenant": "mallory"}), RUN);
    google_tokens_stay_apart(&idp, (&a, &federation_for("a")), (&b, &federation_for("b")));
}

#[test]
fn the_sts_token_is_keyed_by_the_credential_source_headers() {
    let idp = Idp::new();
    let caller = idp.token("k1", json!({}));
    let other_run = "https://other.example";
    // B and C share a federated identity; A differs only in a credential_source header. Their
    // Cloud Run audiences differ, so only the STS token could be shared.
    let a = federated(&idp, json!({"x-tenant": "alice"}), RUN);
    let b = federated(&idp, json!({"x-tenant": "mallory"}), other_run);
    let c = federated(&idp, json!({"x-tenant": "mallory"}), RUN);
    for through_shared_data in [false, true] {
        let mut host = FakeHost::at(NOW);
        let (mut first, mut second) = (Worker::new(1), Worker::new(2));
        let (step, calls) = run(&mut host, &b, &mut first, &caller, &federation_for("b"));
        assert!(forwarded(&step).is_some(), "{step:?}");
        assert_eq!(upstreams(&calls), FULL_CHAIN);
        let worker = if through_shared_data {
            &mut second
        } else {
            &mut first
        };
        // C reuses B's STS token: straight to IAM.
        let (step, calls) = run(&mut host, &c, worker, &caller, &federation_for("c"));
        assert!(forwarded(&step).is_some(), "{step:?}");
        assert_eq!(upstreams(&calls), ["iam.test:80"]);
        // A runs its own chain, its subject fetched with its own header.
        let (step, calls) = run(&mut host, &a, worker, &caller, &federation_for("a"));
        assert_eq!(
            upstreams(&calls),
            FULL_CHAIN,
            "shared data: {through_shared_data}"
        );
        assert_eq!(header(&calls[0], "x-tenant"), "alice");
        let a_token = format!("Bearer {}", id_token("a"));
        assert_eq!(forwarded(&step), Some(a_token.as_str()));
    }
}
