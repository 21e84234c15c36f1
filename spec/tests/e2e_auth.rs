//! The behaviour table of docs/DESIGN.md, end to end: mock IdP → gateway running the release
//! `cloudrun_oidc.wasm` → Cloud Run stand-in. Each test asserts the status, the challenge, and
//! what the upstream saw (nothing, for a refused request).

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::http::Response;
use cloudrun_spec::testkit::mocks::MintRequest;
use cloudrun_spec::testkit::stack::{Stack, StackOptions};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn assert_invalid_token(resp: &Response, why: &str) {
    assert_eq!(resp.status, 401, "{why}: {}", resp.text());
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"cloudrun_oidc\", error=\"invalid_token\""),
        "{why}: challenge {challenge:?}"
    );
}

fn upstream_header(stack: &Stack, name: &str) -> Result<Option<String>> {
    let last = stack.upstream_last()?.unwrap_or_default();
    Ok(last["headers"][name][0].as_str().map(str::to_string))
}

fn forwards_valid_token_with_identity_headers(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    let token = stack.mint(MintRequest::new("RS256").claim("email", "ada@example.com"))?;
    let resp = stack.call(Some(&token))?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        upstream_header(&stack, "x-user-id")?.as_deref(),
        Some("mock-user")
    );
    assert_eq!(
        upstream_header(&stack, "x-user-email")?.as_deref(),
        Some("ada@example.com")
    );
    // Without google_id_token the caller's Authorization passes unchanged.
    assert_eq!(
        upstream_header(&stack, "authorization")?,
        Some(format!("Bearer {token}"))
    );
    Ok(())
}

fn accepts_every_supported_algorithm(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        let token = stack.mint(MintRequest::new(alg))?;
        let resp = stack.call(Some(&token))?;
        assert_eq!(resp.status, 200, "{alg}: {}", resp.text());
    }
    assert_eq!(stack.upstream_requests()?, 9);
    Ok(())
}

fn refuses_missing_token_with_bare_challenge(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    let resp = stack.call(None)?;
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer realm=\"cloudrun_oidc\"")
    );
    let resp = stack.call_with(None, &[("authorization", "Basic dXNlcjpwdw==")])?;
    assert_eq!(resp.status, 401);
    assert_eq!(stack.upstream_requests()?, 0);
    assert_eq!(stack.metric("denied_missing_token")?, 2);
    Ok(())
}

fn refuses_every_invalid_token_with_invalid_token_challenge(engine: Engine) -> Result<()> {
    // A token header over 8 KB never reaches a filter on Kong's engine (nginx answers 400, see
    // engine_facts.rs): the size limit is tested below it.
    let stack = Stack::with_config(engine, |c| c["max_token_bytes"] = json!(4096))?;
    let t = now();
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            stack.mint(MintRequest::new("RS256").claim("exp", t - 3600))?,
        ),
        (
            "no exp",
            stack.mint(MintRequest::new("RS256").without_claim("exp"))?,
        ),
        (
            "not yet valid",
            stack.mint(MintRequest::new("ES256").claim("nbf", t + 3600))?,
        ),
        (
            "wrong audience",
            stack.mint(MintRequest::new("RS256").claim("aud", "other-api"))?,
        ),
        (
            "unknown issuer",
            stack.mint(MintRequest::new("RS256").claim("iss", "https://evil.example"))?,
        ),
        (
            "forged signature",
            stack.mint(MintRequest::new("RS256").attacker())?,
        ),
        (
            "forged ES256",
            stack.mint(MintRequest::new("ES256").attacker())?,
        ),
        (
            "forged EdDSA",
            stack.mint(MintRequest::new("EdDSA").attacker())?,
        ),
        ("alg none", stack.mint(MintRequest::new("none"))?),
        (
            "HS256 key confusion",
            stack.mint(MintRequest::new("HS256").kid("rsa-1"))?,
        ),
        (
            "crit header",
            stack.mint(MintRequest::new("RS256").header("crit", json!(["exp"])))?,
        ),
        (
            "alg swapped in header",
            stack.mint(MintRequest::new("RS256").header("alg", "PS256"))?,
        ),
        ("garbage", "not.a.jwt".to_string()),
        ("two segments", "eyJhbGciOiJSUzI1NiJ9.e30".to_string()),
        (
            "oversized",
            format!("{}.{}.{}", "a".repeat(3000), "b".repeat(2000), "c"),
        ),
    ];
    for (why, token) in &cases {
        let resp = stack.call(Some(token))?;
        assert_invalid_token(&resp, why);
    }
    assert_eq!(
        stack.upstream_requests()?,
        0,
        "a refused request reached Cloud Run"
    );
    Ok(())
}

fn refuses_unmet_scopes_and_claims_with_insufficient_scope(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |c| {
        c["required_scopes"] = json!(["orders.read"]);
        c["required_claims"] = json!({"realm_access.roles": ["orders-admin"]});
    })?;
    let roles = json!({"roles": ["orders-admin", "user"]});
    let ok = stack.mint(
        MintRequest::new("RS256")
            .claim("scope", "openid orders.read")
            .claim("realm_access", roles.clone()),
    )?;
    assert_eq!(stack.call(Some(&ok))?.status, 200);
    let no_scope = stack.mint(
        MintRequest::new("RS256")
            .claim("scope", "openid")
            .claim("realm_access", roles),
    )?;
    let no_role = stack.mint(
        MintRequest::new("RS256")
            .claim("scope", "orders.read")
            .claim("realm_access", json!({"roles": ["user"]})),
    )?;
    for (why, token) in [("scope", no_scope), ("role", no_role)] {
        let resp = stack.call(Some(&token))?;
        assert_eq!(resp.status, 403, "{why}");
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{why}: {challenge}"
        );
    }
    assert_eq!(stack.upstream_requests()?, 1);
    Ok(())
}

fn refuses_client_copies_of_owned_headers(engine: Engine) -> Result<()> {
    // Every route shape is in e2e_headers.rs; this is the behaviour table's row.
    let stack = Stack::with_config(engine, |c| {
        c["claims_header"] = json!("x-jwt-claims");
    })?;
    let token = stack.valid_token()?;
    for spoofed in [
        ("x-user-id", "admin"),
        ("X-User-Email", "root@example.com"),
        ("x-jwt-claims", "e30"),
    ] {
        let resp = stack.call_with(Some(&token), &[spoofed])?;
        assert_eq!(resp.status, 400, "{spoofed:?}: {}", resp.text());
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{spoofed:?}: {challenge}"
        );
    }
    assert_eq!(stack.upstream_requests()?, 0);
    assert_eq!(stack.metric("denied_invalid_request")?, 3);
    let resp = stack.call(Some(&token))?;
    assert_eq!(resp.status, 200);
    assert_eq!(
        upstream_header(&stack, "x-user-id")?.as_deref(),
        Some("mock-user")
    );
    let claims = upstream_header(&stack, "x-jwt-claims")?.unwrap_or_default();
    assert!(claims.len() > 20, "claims header {claims:?}");
    Ok(())
}

fn invalid_configuration_refuses_every_request_with_500(engine: Engine) -> Result<()> {
    // Schema-valid but unusable: inline keys of a type the filter cannot use.
    let stack = Stack::with_config(engine, |c| {
        c["issuers"][0]["jwks"] = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]});
    })?;
    let token = stack.valid_token()?;
    let resp = stack.call(Some(&token))?;
    assert_eq!(resp.status, 500);
    assert_eq!(stack.call(None)?.status, 500);
    assert_eq!(stack.upstream_requests()?, 0);
    // The log comes through a pipe read by a thread: wait for the line rather than race it.
    assert!(stack
        .gateway
        .wait_for_log("issuers[0].jwks", std::time::Duration::from_secs(30)));
    Ok(())
}

fn repeated_token_is_served_from_the_verified_token_cache(engine: Engine) -> Result<()> {
    let stack = Stack::start(StackOptions {
        engine,
        workers: 1,
        ..StackOptions::default()
    })?;
    let token = stack.valid_token()?;
    for _ in 0..5 {
        assert_eq!(stack.call(Some(&token))?.status, 200);
    }
    assert_eq!(stack.metric("token_cache_hits")?, 4);
    assert_eq!(stack.metric("allowed")?, 5);
    Ok(())
}

fn token_in_query_or_cookie_when_configured(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |c| {
        c["token"] = json!({"header": "authorization", "scheme": "Bearer", "query_param": "access_token", "cookie": "session"});
    })?;
    let token = stack.valid_token()?;
    let url = stack.gateway.url(&format!("/orders?access_token={token}"));
    let resp = cloudrun_spec::testkit::http::get(&url, &[])?;
    assert_eq!(resp.status, 200, "query");
    let cookie = format!("theme=dark; session={token}");
    let resp = stack.call_with(None, &[("cookie", &cookie)])?;
    assert_eq!(resp.status, 200, "cookie");
    let other = stack.mint(MintRequest::new("ES256"))?;
    let resp = stack.call_with(Some(&token), &[("cookie", &format!("session={other}"))])?;
    assert_invalid_token(&resp, "two different tokens");
    Ok(())
}

fn every_metric_is_exported_from_the_start(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    assert_eq!(stack.call(Some(&stack.valid_token()?))?.status, 200);
    let metrics = stack.gateway.metrics()?;
    for name in [
        "allowed",
        "token_cache_hits",
        "jwks_fetches",
        "jwks_fetch_failures",
        "google_token_mints",
        "google_token_mint_failures",
        "denied_missing_token",
        "denied_signature",
        "denied_expired",
        "denied_audience",
        "denied_keys_unavailable",
    ] {
        let key = format!("pw_cloudrun_oidc_{name}");
        assert!(metrics.get(&key).is_some(), "{key} missing from {metrics}");
    }
    assert_eq!(stack.metric("allowed")?, 1);
    assert_eq!(stack.metric("denied_signature")?, 0);
    Ok(())
}

engine_tests!(
    forwards_valid_token_with_identity_headers,
    accepts_every_supported_algorithm,
    refuses_missing_token_with_bare_challenge,
    refuses_every_invalid_token_with_invalid_token_challenge,
    refuses_unmet_scopes_and_claims_with_insufficient_scope,
    refuses_client_copies_of_owned_headers,
    invalid_configuration_refuses_every_request_with_500,
    repeated_token_is_served_from_the_verified_token_cache,
    token_in_query_or_cookie_when_configured,
    every_metric_is_exported_from_the_start,
);
