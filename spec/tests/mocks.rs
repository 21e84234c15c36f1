//! End-to-end tests of the mock binaries (`mock-idp`, `mock-google`, `cloudrun`) over real HTTP,
//! checked with the test-side JOSE code.

use cloudrun_spec::jose::{self, Alg};
use cloudrun_spec::testkit::http::{self, HttpError};
use cloudrun_spec::testkit::mocks::*;
use serde_json::{json, Value};
use std::time::Duration;

type R = anyhow::Result<()>;

fn idp() -> MockIdp {
    MockIdp::start(IdpOptions::default()).unwrap()
}

fn google() -> MockGoogle {
    MockGoogle::start(GoogleOptions::default()).unwrap()
}

fn claims(token: &str) -> Value {
    jose::decode(token).unwrap().claims().unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn every_binary_answers_help() {
    for bin in ["mock-idp", "mock-google", "mock-aws", "cloudrun"] {
        let out = std::process::Command::new(cloudrun_spec::testkit::bin_path(bin).unwrap())
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--listen") && text.contains("--control-listen"),
            "{bin}: {text}"
        );
    }
}

#[test]
fn idp_serves_discovery_and_jwks_under_the_issuer_path_and_mints_every_alg() -> R {
    let issuer = "http://mock-idp:9000/realms/demo";
    let idp = MockIdp::start(IdpOptions {
        issuer: Some(issuer.into()),
        ..Default::default()
    })?;
    assert_eq!(idp.issuer(), issuer);
    let disc = idp.discovery()?;
    assert_eq!(disc["issuer"], issuer);
    assert_eq!(disc["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(disc["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(idp.kids()?, ["rsa-1", "ec256-1", "ec384-1", "ed25519-1"]);
    let jwks = idp.jwks()?;
    for alg in Alg::ALL {
        let token = idp.mint(&MintRequest::new(alg.name()))?;
        let verified = jose::verify_compact(&token, &jwks, &[alg])?;
        let c = verified.claims()?;
        assert_eq!(c["iss"], issuer, "{alg:?}");
        assert!(c["sub"].is_string());
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
        assert_eq!(verified.header["typ"], "JWT");
        let want_kid = match alg {
            Alg::ES256 => "ec256-1",
            Alg::ES384 => "ec384-1",
            Alg::EdDSA => "ed25519-1",
            _ => "rsa-1",
        };
        assert_eq!(verified.kid(), Some(want_kid));
    }
    // Overrides: replace and remove claims and header members.
    let token = idp.mint(
        &MintRequest::new("ES256")
            .claim("aud", json!(["orders-api", "x"]))
            .claim("scope", "orders.read")
            .without_claim("sub")
            .header("typ", Value::Null)
            .header("cty", "text"),
    )?;
    let d = jose::verify_compact(&token, &jwks, &[Alg::ES256])?;
    let c = d.claims()?;
    assert_eq!(c["aud"], json!(["orders-api", "x"]));
    assert!(c.get("sub").is_none());
    assert!(d.header.get("typ").is_none());
    assert_eq!(d.header["cty"], "text");
    // A header alg that differs from the signing alg is signed as asked (for alg-confusion tests).
    let lying = idp.mint(&MintRequest::new("RS256").header("alg", "PS256"))?;
    assert!(jose::verify_compact(&lying, &jwks, &Alg::ALL).is_err());
    // alg none and HS256 key confusion.
    let none = idp.mint(&MintRequest::new("none"))?;
    assert!(none.ends_with('.') && jose::decode(&none)?.alg() == Some("none"));
    let hs = idp.mint(&MintRequest::new("HS256"))?;
    assert_eq!(jose::decode(&hs)?.signature.len(), 32);
    assert!(jose::verify_compact(&hs, &jwks, &Alg::ALL).is_err());
    // Unknown kid, incompatible kid.
    assert!(idp.mint(&MintRequest::new("RS256").kid("nope")).is_err());
    assert!(idp.mint(&MintRequest::new("ES256").kid("rsa-1")).is_err());
    let c = idp.counters()?;
    assert_eq!((c["discovery"], c["jwks"], c["token"]), (1, 2, 0));
    Ok(())
}

#[test]
fn idp_attacker_tokens_carry_real_kids_but_fail_verification() -> R {
    let idp = idp();
    let jwks = idp.jwks()?;
    for alg in [Alg::RS256, Alg::PS384, Alg::ES256, Alg::ES384, Alg::EdDSA] {
        let token = idp.mint(&MintRequest::new(alg.name()).attacker())?;
        let d = jose::decode(&token)?;
        assert!(idp.kids()?.contains(&d.kid().unwrap().to_string()));
        assert!(
            jose::verify_compact(&token, &jwks, &[alg]).is_err(),
            "{alg:?}"
        );
    }
    Ok(())
}

#[test]
fn idp_rotation_and_removal_change_the_jwks() -> R {
    let idp = idp();
    let new = idp.rotate(false)?;
    assert_eq!(new, ["rsa-2", "ec256-2", "ec384-2", "ed25519-2"]);
    let kids = idp.kids()?;
    assert_eq!(kids.len(), 8);
    assert_eq!(&kids[..4], &new[..]);
    // New tokens use the new keys; old keys still verify old tokens.
    let token = idp.mint(&MintRequest::new("RS256"))?;
    assert_eq!(jose::decode(&token)?.kid(), Some("rsa-2"));
    let old = idp.mint(&MintRequest::new("ES256").kid("ec256-1"))?;
    jose::verify_compact(&old, &idp.jwks()?, &[Alg::ES256])?;
    let newer = idp.rotate(true)?;
    assert_eq!(idp.kids()?, newer);
    // Retired keys can still sign (explicit kid), but are not published.
    let retired = idp.mint(&MintRequest::new("ES256").kid("ec256-1"))?;
    assert!(jose::verify_compact(&retired, &idp.jwks()?, &[Alg::ES256]).is_err());
    idp.remove_key("rsa-3")?;
    assert!(!idp.kids()?.contains(&"rsa-3".to_string()));
    assert_eq!(idp.kids()?.len(), 3);
    assert!(idp.remove_key("rsa-3").is_err());
    assert!(idp.remove_key("nope").is_err());
    // No published RSA key left: minting RS256 falls back to an unpublished one.
    let t = idp.mint(&MintRequest::new("RS256"))?;
    assert!(jose::verify_rs256(&t, &idp.jwks()?).is_err());
    Ok(())
}

#[test]
fn idp_token_endpoint_does_client_credentials() -> R {
    let idp = MockIdp::start(IdpOptions {
        client: Some(("orders-client".into(), "s3cr3t".into())),
        token_audience: Some("orders-api".into()),
        ..Default::default()
    })?;
    let resp = idp.client_credentials("orders-client", "s3cr3t", Some("orders.read"))?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json()?;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let token = body["access_token"].as_str().unwrap();
    let c = jose::verify_rs256(token, &idp.jwks()?)?.claims()?;
    assert_eq!(c["iss"], idp.issuer());
    assert_eq!(c["sub"], "orders-client");
    assert_eq!(c["aud"], "orders-api");
    assert_eq!(c["scope"], "orders.read");
    assert_eq!(c["realm_access"]["roles"], json!(["user"]));
    assert!(c["exp"].as_i64() > c["iat"].as_i64());
    // client_secret_post works too.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "orders-client"),
        ("client_secret", "s3cr3t"),
    ];
    assert_eq!(http::post_form(&idp.token_url(), &form, &[])?.status, 200);
    // Wrong secret, wrong grant.
    let bad = idp.client_credentials("orders-client", "nope", None)?;
    assert_eq!(
        (bad.status, bad.json()?["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let grant = http::post_form(&idp.token_url(), &[("grant_type", "password")], &[])?;
    assert_eq!(
        (grant.status, grant.json()?["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    assert_eq!(idp.counter("token")?, 4);
    Ok(())
}

#[test]
fn idp_connection_faults_and_recovery() -> R {
    let idp = idp();
    let url = idp.jwks_url();
    assert_eq!(http::get(&url, &[])?.status, 200);
    // refuse: nothing listens; controls still answer; clearing re-binds the same port.
    idp.fault("refuse")?;
    assert!(matches!(http::get(&url, &[]), Err(HttpError::Refused)));
    assert_eq!(idp.counter("jwks")?, 1);
    idp.clear_fault()?;
    assert_eq!(http::get(&url, &[])?.status, 200);
    // reset: accepted, closed without an answer.
    idp.fault("reset")?;
    assert!(matches!(http::get(&url, &[]), Err(HttpError::Closed(_))));
    // hang: no answer within the client's timeout.
    idp.fault("hang")?;
    let r = http::get_timeout(&url, &[], Duration::from_secs(2));
    assert!(matches!(r, Err(HttpError::Timeout)), "{r:?}");
    idp.clear_fault()?;
    assert_eq!(http::get(&url, &[])?.status, 200);
    // Faulted requests that reached the endpoint are counted.
    assert_eq!(idp.counter("jwks")?, 5);
    idp.reset_counters()?;
    assert_eq!(idp.counters()?.values().sum::<u64>(), 0);
    // refuse cannot be limited; unknown faults are refused.
    assert!(idp.fault_only("refuse", &["jwks"]).is_err());
    assert!(idp.fault("explode").is_err());
    assert!(idp.fault_only("hang", &["certs"]).is_err());
    Ok(())
}

#[test]
fn idp_body_faults() -> R {
    let idp = idp();
    let url = idp.jwks_url();
    let normal = http::get(&url, &[])?;
    idp.fault("status500")?;
    assert_eq!(http::get(&url, &[])?.status, 500);
    idp.fault("garbage")?;
    let g = http::get(&url, &[])?;
    assert!(g.status == 200 && g.json().is_err());
    idp.fault("truncated")?;
    let t = http::get(&url, &[])?;
    assert!(t.status == 200 && t.json().is_err() && !t.body.is_empty());
    assert!(normal.body.starts_with(&t.body));
    idp.fault("huge")?;
    let h = http::get(&url, &[])?;
    assert!(h.status == 200 && h.body.len() >= 5 * 1024 * 1024);
    // Discovery under huge/truncated too (every endpoint without "only").
    assert!(http::get(&idp.discovery_url(), &[])?.body.len() >= 5 * 1024 * 1024);
    idp.clear_fault()?;
    assert_eq!(http::get(&url, &[])?.body, normal.body);
    Ok(())
}

#[test]
fn idp_key_faults_and_only() -> R {
    let idp = idp();
    let token = idp.mint(&MintRequest::new("RS256"))?;
    idp.fault("many_keys")?;
    let many = idp.jwks()?;
    let keys = many["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 10_000);
    assert_eq!(keys[0]["kid"], "rsa-1");
    jose::verify_rs256(&token, &many)?;
    idp.fault("wrong_type_keys")?;
    let wrong = idp.jwks()?;
    let wrong_keys = wrong["keys"].as_array().unwrap();
    assert!(!wrong_keys.is_empty());
    assert!(wrong_keys.iter().all(|k| k["use"] != "sig"));
    assert!(wrong_keys.iter().any(|k| k["kid"] == "rsa-1"));
    assert!(jose::verify_compact(&token, &wrong, &Alg::ALL).is_err());
    idp.fault("discovery_elsewhere")?;
    let d = idp.discovery()?;
    assert_ne!(d["issuer"], idp.issuer());
    assert!(!d["jwks_uri"].as_str().unwrap().contains(idp.http_addr()));
    // "only" limits a fault to some endpoints.
    idp.fault_only("status500", &["jwks"])?;
    assert_eq!(http::get(&idp.jwks_url(), &[])?.status, 500);
    assert_eq!(http::get(&idp.discovery_url(), &[])?.status, 200);
    idp.fault_only("hang", &["discovery"])?;
    assert_eq!(http::get(&idp.jwks_url(), &[])?.status, 200);
    let r = http::get_timeout(&idp.discovery_url(), &[], Duration::from_secs(2));
    assert!(matches!(r, Err(HttpError::Timeout)), "{r:?}");
    idp.clear_fault()?;
    assert_eq!(idp.discovery()?["issuer"], idp.issuer());
    Ok(())
}

#[test]
fn google_metadata_identity_follows_gce_header_rules() -> R {
    let g = google();
    let url = g.identity_url("https://svc-abc.a.run.app", false);
    assert_eq!(http::get(&url, &[])?.status, 403);
    assert_eq!(
        http::get(&url, &[("Metadata-Flavor", "google-ish")])?.status,
        403
    );
    let xff = http::get(
        &url,
        &[
            ("Metadata-Flavor", "Google"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    )?;
    assert_eq!(xff.status, 403);
    let no_aud = g.url(cloudrun_spec::mocks::google::IDENTITY_PATH);
    assert_eq!(
        http::get(&no_aud, &[("Metadata-Flavor", "Google")])?.status,
        400
    );
    let ok = g.identity("https://svc-abc.a.run.app", false)?;
    assert_eq!(ok.status, 200);
    assert!(ok.header("content-type").unwrap().starts_with("text/html"));
    let certs = g.certs()?;
    let d = jose::verify_rs256(&ok.text(), &certs)?;
    let c = d.claims()?;
    assert_eq!(c["iss"], "https://accounts.google.com");
    assert_eq!(c["aud"], "https://svc-abc.a.run.app");
    assert!(c["sub"].is_string() && c["azp"].is_string());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert!(c.get("email").is_none());
    let full = claims(&g.identity("https://svc-abc.a.run.app", true)?.text());
    assert_eq!(
        (full["email"].as_str(), full["email_verified"].as_bool()),
        (Some(g.client_email()), Some(true))
    );
    g.set_token_ttl(60)?;
    let short = claims(&g.identity("x", false)?.text());
    assert_eq!(
        short["exp"].as_i64().unwrap() - short["iat"].as_i64().unwrap(),
        60
    );
    let c = g.counters()?;
    assert_eq!((c["identity"], c["certs"], c["token"]), (7, 1, 0));
    Ok(())
}

#[test]
fn google_service_account_flow() -> R {
    let dir = std::env::temp_dir().join(format!("mock-google-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("sa.json");
    let g = MockGoogle::start(GoogleOptions {
        sa_key_out: Some(key_file.clone()),
        ..Default::default()
    })?;
    let sa: Value = serde_json::from_str(&std::fs::read_to_string(&key_file)?)?;
    assert_eq!(sa, g.sa_key_json()?);
    assert_eq!(sa["type"], "service_account");
    assert!(sa["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(sa["client_email"], g.client_email());
    assert_eq!(sa["token_uri"], g.token_url());
    assert_eq!(sa["private_key_id"].as_str().unwrap().len(), 40);
    for field in ["project_id", "client_id"] {
        assert!(sa[field].is_string(), "{field}");
    }
    let audience = "https://orders-abc123-uc.a.run.app";
    let resp = g.exchange(&g.sa_assertion(audience, &json!({}))?)?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let id_token = resp.json()?["id_token"].as_str().unwrap().to_string();
    let c = jose::verify_rs256(&id_token, &g.certs()?)?.claims()?;
    assert_eq!(
        (c["aud"].as_str(), c["iss"].as_str()),
        (Some(audience), Some("https://accounts.google.com"))
    );
    assert_eq!(c["email"], g.client_email());
    // Refusals.
    let now = cloudrun_spec::mocks::common::now();
    let cases = [
        (
            "wrong aud",
            g.sa_assertion(
                audience,
                &json!({"aud": "https://oauth2.googleapis.com/token"}),
            )?,
        ),
        (
            "wrong iss",
            g.sa_assertion(
                audience,
                &json!({"iss": "someone@else.iam.gserviceaccount.com"}),
            )?,
        ),
        (
            "expired",
            g.sa_assertion(audience, &json!({"iat": now - 7200, "exp": now - 3600}))?,
        ),
        (
            "too long",
            g.sa_assertion(audience, &json!({"exp": now + 7200}))?,
        ),
        (
            "no target_audience",
            g.sa_assertion(audience, &json!({"target_audience": null}))?,
        ),
        ("no exp", g.sa_assertion(audience, &json!({"exp": null}))?),
    ];
    for (what, assertion) in cases {
        assert_eq!(g.exchange(&assertion)?.status, 400, "{what}");
    }
    // Wrong signature: another RSA key with the same kid.
    let other = jose::SigningKey::generate(
        jose::KeyKind::Rsa(2048),
        sa["private_key_id"].as_str().unwrap(),
    )?;
    let forged = jose::sign_jwt(
        &other,
        Alg::RS256,
        &claims(&g.sa_assertion(audience, &json!({}))?),
    )?;
    let r = g.exchange(&forged)?;
    assert_eq!(
        (r.status, r.json()?["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let form = [("grant_type", "client_credentials"), ("assertion", "x")];
    assert_eq!(
        http::post_form(&g.token_endpoint(), &form, &[])?.status,
        400
    );
    assert_eq!(g.counter("token")?, 9);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn google_token_url_is_compared_as_configured() -> R {
    let g = MockGoogle::start(GoogleOptions {
        token_url: Some("https://oauth2.googleapis.com/token".into()),
        ..Default::default()
    })?;
    assert_eq!(g.token_url(), "https://oauth2.googleapis.com/token");
    assert_eq!(
        g.sa_key_json()?["token_uri"],
        "https://oauth2.googleapis.com/token"
    );
    assert_eq!(g.exchange(&g.sa_assertion("aud", &json!({}))?)?.status, 200);
    let local = format!("http://{}/token", g.http_addr());
    assert_eq!(
        g.exchange(&g.sa_assertion("aud", &json!({ "aud": local }))?)?
            .status,
        400
    );
    Ok(())
}

#[test]
fn google_faults() -> R {
    let g = google();
    g.fault_only("status500", &["certs"])?;
    assert_eq!(http::get(&g.certs_url(), &[])?.status, 500);
    assert_eq!(g.identity("a", false)?.status, 200);
    g.fault_only("garbage", &["identity"])?;
    assert!(jose::decode(&g.identity("a", false)?.text()).is_err());
    g.fault("refuse")?;
    assert!(matches!(g.identity("a", false), Err(HttpError::Refused)));
    g.fault("reset")?;
    assert!(matches!(g.exchange("x"), Err(HttpError::Closed(_))));
    g.clear_fault()?;
    assert_eq!(g.identity("a", false)?.status, 200);
    Ok(())
}

#[test]
fn cloudrun_accepts_google_tokens_for_its_audience_and_echoes() -> R {
    let g = google();
    let cr = CloudRun::start(CloudRunOptions {
        google_jwks: Some(g.certs_url()),
        ..Default::default()
    })?;
    assert_eq!(cr.audience(), format!("http://{}", cr.http_addr()));
    assert!(cr.last()?.is_none());
    let token = g.identity(cr.audience(), true)?.text();
    let auth = bearer(&token);
    let headers = [
        ("Authorization", auth.as_str()),
        ("X-Test", "a"),
        ("x-test", "b"),
    ];
    let resp = http::request(
        "POST",
        &cr.url("/orders/7?x=1&y=2"),
        &headers,
        b"hello",
        http::DEFAULT_TIMEOUT,
    )?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.json()?;
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str()),
        (Some("POST"), Some("/orders/7"))
    );
    assert_eq!(
        (echo["query"].as_str(), echo["uri"].as_str()),
        (Some("x=1&y=2"), Some("/orders/7?x=1&y=2"))
    );
    assert_eq!(echo["headers"]["x-test"], json!(["a", "b"]));
    assert_eq!(echo["headers"]["authorization"], json!([auth]));
    assert_eq!(echo["body"], "hello");
    let last = cr.last()?.unwrap();
    assert_eq!(
        (last["status"].as_i64(), last["path"].as_str()),
        (Some(200), Some("/orders/7"))
    );
    // A service-account-flow token for its audience is accepted too.
    let sa = g
        .exchange(&g.sa_assertion(cr.audience(), &json!({}))?)?
        .json()?;
    let sa_auth = bearer(sa["id_token"].as_str().unwrap());
    assert_eq!(
        http::get(&cr.url("/"), &[("Authorization", sa_auth.as_str())])?.status,
        200
    );
    // After Google rotates its key, cloudrun refetches the JWKS for the unknown kid.
    g.rotate(true)?;
    let rotated = bearer(&g.identity(cr.audience(), false)?.text());
    assert_eq!(
        http::get(&cr.url("/"), &[("Authorization", rotated.as_str())])?.status,
        200
    );
    let c = cr.counters()?;
    assert_eq!((c["requests"], c["accepted"]), (3, 3));
    assert_eq!(g.counter("certs")?, 2);
    Ok(())
}

#[test]
fn cloudrun_refuses_what_cloud_run_iam_would() -> R {
    let g = google();
    let cr = CloudRun::start(CloudRunOptions {
        google_jwks: Some(g.certs_url()),
        ..Default::default()
    })?;
    let aud = cr.audience().to_string();
    let now = cloudrun_spec::mocks::common::now();
    let mint = |req: MintRequest| g.mint(&req.claim("aud", aud.as_str())).unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing token", None),
        (
            "wrong aud",
            Some(g.identity("https://other.a.run.app", false)?.text()),
        ),
        (
            "expired",
            Some(mint(
                MintRequest::new("RS256")
                    .claim("iat", now - 7200)
                    .claim("exp", now - 3600),
            )),
        ),
        (
            "bad signature",
            Some(mint(MintRequest::new("RS256").attacker())),
        ),
        (
            "wrong iss",
            Some(mint(
                MintRequest::new("RS256").claim("iss", "https://evil.example"),
            )),
        ),
        ("alg none", Some(mint(MintRequest::new("none")))),
        ("not a jwt", Some("abc.def".to_string())),
    ];
    for (what, token) in &cases {
        let auth = token.as_deref().map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let resp = http::get(&cr.url("/x"), &headers)?;
        assert_eq!(resp.status, 403, "{what}: {}", resp.text());
        assert!(
            resp.json()?["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{what}"
        );
        assert_eq!(cr.last()?.unwrap()["status"], 403);
    }
    // A minted token with the right claims passes.
    let good = bearer(&mint(MintRequest::new("RS256")));
    assert_eq!(
        http::get(&cr.url("/x"), &[("Authorization", good.as_str())])?.status,
        200
    );
    let c = cr.counters()?;
    assert_eq!((c["requests"], c["accepted"]), (cases.len() as u64 + 1, 1));
    Ok(())
}

#[test]
fn cloudrun_no_auth_and_faults() -> R {
    let cr = CloudRun::start(CloudRunOptions {
        no_auth: true,
        ..Default::default()
    })?;
    let resp = http::get(&cr.url("/anything"), &[])?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()?["path"], "/anything");
    cr.fault("status500")?;
    assert_eq!(http::get(&cr.url("/"), &[])?.status, 500);
    cr.fault("refuse")?;
    assert!(matches!(
        http::get(&cr.url("/"), &[]),
        Err(HttpError::Refused)
    ));
    cr.clear_fault()?;
    assert_eq!(http::get(&cr.url("/"), &[])?.status, 200);
    let c = cr.counters()?;
    assert_eq!((c["requests"], c["accepted"]), (3, 3));
    Ok(())
}
