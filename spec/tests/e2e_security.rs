//! The security review's findings end to end (SECURITY.md threats 11–17): each test shows the
//! behaviour across the Kong stand-in that the review found missing.

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::{Gateway, GatewayOpts};
use cloudrun_spec::testkit::http;
use cloudrun_spec::testkit::mocks::{CloudRun, CloudRunOptions, IdpOptions, MintRequest, MockIdp};
use cloudrun_spec::testkit::stack::{filter_meta, filter_wasm, GoogleMode, Stack, StackOptions};
use serde_json::{json, Value};
use std::time::Duration;

/// Calls until both workers answered `token` with 200 (connections alternate between them).
fn warm_both_workers(stack: &Stack, token: &str) -> Result<()> {
    for _ in 0..4 {
        let resp = stack.call(Some(token))?;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    Ok(())
}

/// Item 2: a `jwks_url` near 1 KiB makes every shared-data key of its source long. Workers must
/// still share one fetch lease, one unknown-`kid` cooldown and the keys themselves.
fn long_jwks_url_keeps_fetches_coordinated_across_workers(engine: Engine) -> Result<()> {
    let stack = Stack::start(StackOptions {
        engine,
        config: Box::new(|c, info| {
            let url = format!("http://{}/jwks?pad={}", info.idp_http, "p".repeat(1000));
            c["issuers"][0]["jwks_url"] = json!(url);
        }),
        ..StackOptions::default()
    })?;
    // Ticks fetch nothing before a request has proven the zone; the first request fetches, the
    // other worker reads the keys from shared data.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        stack.idp.counter("jwks")?,
        0,
        "a tick fetched before any request"
    );
    warm_both_workers(&stack, &stack.valid_token()?)?;
    for i in 0..5 {
        let token = stack.mint(MintRequest::new("RS256").header("kid", format!("made-up-{i}")))?;
        assert_eq!(stack.call(Some(&token))?.status, 401, "made-up kid {i}");
    }
    let fetches = stack.idp.counter("jwks")?;
    assert!(
        fetches <= 2,
        "{fetches} JWKS fetches: one shared fetch and one unknown-kid refetch expected"
    );
    Ok(())
}

/// Item 3: the IdP moves its JWKS (discovery names a new `jwks_uri`, the old one answers 404)
/// and rotates its keys: tokens of the new key pass, tokens of the retired key stop passing.
fn moved_jwks_uri_is_rediscovered(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    let old = stack.valid_token()?;
    warm_both_workers(&stack, &old)?;
    // Workers adopt shared keys fetched in a later second than their own (1 s resolution).
    std::thread::sleep(Duration::from_millis(1100));
    stack.idp.fault("jwks_moved")?;
    let kids = stack.idp.rotate(true)?;
    let new_rsa = kids
        .iter()
        .find(|k| k.starts_with("rsa"))
        .cloned()
        .unwrap_or_default();
    let new = stack.mint(MintRequest::new("RS256").kid(&new_rsa))?;
    let resp = stack.call(Some(&new))?;
    assert_eq!(resp.status, 200, "new key after the move: {}", resp.text());
    assert!(stack.idp.counter("discovery")? >= 2, "no rediscovery");
    // The other worker adopts the keys from shared data (it re-reads them once a second).
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..2 {
        let resp = stack.call(Some(&new))?;
        assert_eq!(resp.status, 200, "new key, both workers: {}", resp.text());
    }
    let mut refused = false;
    for _ in 0..4 {
        let status = stack.call(Some(&old))?.status;
        assert!(status == 200 || status == 401, "{status}");
        refused |= status == 401;
    }
    assert!(refused, "the retired key still passes everywhere");
    Ok(())
}

/// Item 6: route `beta` names `alpha`'s discovery URL for another issuer. Whether or not alpha
/// warmed the worker, beta never verifies with keys found for alpha's issuer.
fn discovery_of_another_issuer_never_lends_its_keys(engine: Engine) -> Result<()> {
    let idp = MockIdp::start(IdpOptions::default())?;
    let upstream = CloudRun::start(CloudRunOptions::no_auth())?;
    let other = "http://other.example/realms/beta";
    let alpha = json!({"issuers": [{"issuer": idp.issuer(), "audiences": ["alpha-api"]}]});
    let beta = json!({"issuers": [{"issuer": other, "audiences": ["beta-api"],
        "discovery_url": idp.discovery_url()}]});
    let route = |name: &str, config: &Value| {
        let config = if filter_meta().is_some() {
            config.to_string()
        } else {
            serde_json::to_string(&config.to_string()).unwrap_or_default()
        };
        format!(
            "      - name: {name}\n        paths: [\"/{name}\"]\n        filter_chains:\n          - filters:\n              - name: cloudrun_oidc\n                config: {config}\n"
        )
    };
    let kong_yml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: http://{}\n    routes:\n{}{}",
        upstream.http_addr(),
        route("alpha", &alpha),
        route("beta", &beta),
    );
    let gateway = Gateway::start(&GatewayOpts {
        kong_yml,
        filters: vec![("cloudrun_oidc".into(), filter_wasm()?, filter_meta())],
        shm_kv: vec!["cloudrun_oidc=12m".into()],
        engine,
        ..GatewayOpts::default()
    })?;
    let call = |path: &str, token: &str| -> Result<u16> {
        Ok(http::get(
            &gateway.url(path),
            &[("authorization", &format!("Bearer {token}"))],
        )?
        .status)
    };
    let alpha_token = idp.mint(&MintRequest::new("RS256").claim("aud", "alpha-api"))?;
    for _ in 0..4 {
        assert_eq!(call("/alpha", &alpha_token)?, 200);
    }
    // Signed by alpha's IdP, claiming beta's issuer.
    let forged = idp.mint(
        &MintRequest::new("RS256")
            .claim("iss", other)
            .claim("aud", "beta-api"),
    )?;
    for _ in 0..4 {
        let status = call("/beta", &forged)?;
        assert_eq!(
            status, 503,
            "beta verified with keys checked for alpha's issuer"
        );
    }
    assert_eq!(
        upstream.counter("requests")?,
        4,
        "only alpha's calls went upstream"
    );
    Ok(())
}

/// Item 4: a top-level claim spelled like a dotted path never stands in for the nested claim.
fn dotted_top_level_claim_never_satisfies_a_nested_rule(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |c| {
        c["required_claims"] = json!({"realm_access.roles": ["admin"]});
        c["claims_to_headers"]["realm_access.roles"] = json!("x-user-roles");
    })?;
    let admin =
        stack.mint(MintRequest::new("RS256").claim("realm_access", json!({"roles": ["admin"]})))?;
    assert_eq!(stack.call(Some(&admin))?.status, 200);
    let spoofed = stack.mint(
        MintRequest::new("RS256")
            .claim("realm_access", json!({"roles": ["user"]}))
            .claim("realm_access.roles", json!(["admin"])),
    )?;
    let resp = stack.call(Some(&spoofed))?;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(stack.upstream_requests()?, 1);
    Ok(())
}

/// Item 8: `token_types` pins the JOSE header's `typ` (RFC 8725 §3.11, RFC 9068 §4).
fn token_types_refuse_tokens_of_another_type(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |c| {
        c["issuers"][0]["token_types"] = json!(["at+jwt"])
    })?;
    let access = stack.mint(MintRequest::new("RS256").header("typ", "application/at+jwt"))?;
    assert_eq!(stack.call(Some(&access))?.status, 200);
    let id_token = stack.mint(MintRequest::new("RS256").header("typ", "JWT"))?;
    let resp = stack.call(Some(&id_token))?;
    assert_eq!(resp.status, 401);
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("type"),
        "{challenge}"
    );
    assert_eq!(stack.upstream_requests()?, 1);
    Ok(())
}

/// Item 9: when the host's clock call fails, nothing is verified against a made-up time:
/// requests are refused (500, logged), even a token whose `exp` is absurdly far away.
/// Stand-in only: failing the host's clock on demand is fault injection inside the host.
#[test]
fn clock_failure_refuses_requests() -> Result<()> {
    let stack = Stack::with_config(Engine::StandIn, |_| {})?;
    let far = stack.mint(MintRequest::new("RS256").claim("exp", 100_000_000_000_000_000u64))?;
    let valid = stack.valid_token()?;
    warm_both_workers(&stack, &valid)?;
    let fault = |name: &str| -> Result<()> {
        let resp = http::post_json(
            &format!("http://{}/__fault", stack.gateway.admin),
            &json!({"fault": name}),
            &[],
        )?;
        assert_eq!(resp.status, 200, "{}", resp.text());
        Ok(())
    };
    fault("clock")?;
    for token in [&far, &valid, &far, &valid] {
        let resp = stack.call(Some(token))?;
        assert_eq!(resp.status, 500, "clock failed: {}", resp.text());
    }
    assert!(
        stack.gateway.wait_log_count("reading the clock failed", 4) >= 4,
        "no log line names the clock"
    );
    fault("none")?;
    assert_eq!(stack.call(Some(&valid))?.status, 200);
    assert_eq!(stack.upstream_requests()?, 5);
    Ok(())
}

/// Item 10: with `refresh_before_expiry_seconds` close to the token's lifetime (300 s before a
/// 301 s token: due a second after each mint), the background refresh still waits for half of
/// the token's life instead of minting on every tick.
fn google_refresh_close_to_the_lifetime_does_not_storm(engine: Engine) -> Result<()> {
    let stack = Stack::start(StackOptions {
        engine,
        google: GoogleMode::Metadata,
        google_token_ttl: Some(301),
        config: Box::new(|c, _| c["google_id_token"]["refresh_before_expiry_seconds"] = json!(300)),
        ..StackOptions::default()
    })?;
    let google = stack
        .google
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no mock google"))?;
    assert_eq!(stack.call(Some(&stack.valid_token()?))?.status, 200);
    std::thread::sleep(Duration::from_secs(10));
    let mints = google.counter("identity")?;
    // The first mint, and at most one more by a request racing the first tick.
    assert!(mints <= 2, "{mints} mints in 10 s for a 301 s token");
    Ok(())
}

engine_tests!(
    long_jwks_url_keeps_fetches_coordinated_across_workers,
    moved_jwks_uri_is_rediscovered,
    discovery_of_another_issuer_never_lends_its_keys,
    dotted_top_level_claim_never_satisfies_a_nested_rule,
    token_types_refuse_tokens_of_another_type,
    google_refresh_close_to_the_lifetime_does_not_storm,
);
