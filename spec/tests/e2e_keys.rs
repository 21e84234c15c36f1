//! Keys end to end: discovery and JWKS fetched through callouts, shared by workers, refetched on
//! rotation, bounded under an unknown-`kid` flood, and served stale (or refused with 503) while
//! the IdP is down.

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::{Gateway, GatewayOpts};
use cloudrun_spec::testkit::http;
use cloudrun_spec::testkit::mocks::{CloudRun, CloudRunOptions, IdpOptions, MintRequest, MockIdp};
use cloudrun_spec::testkit::stack::{
    eventually, filter_meta, filter_wasm, Stack, StackOptions, AUDIENCE,
};
use serde_json::json;
use std::time::Duration;

fn two_workers_share_one_fetch(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    // Background work waits until a request has proven the shared-data zone (a missing zone
    // traps on any access): ticks fetch nothing before the first request.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        stack.idp.counter("jwks")?,
        0,
        "a tick fetched before any request"
    );
    let token = stack.valid_token()?;
    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let resp = stack.call(Some(&token))?;
        assert_eq!(resp.status, 200, "{}", resp.text());
        workers.insert(resp.header("x-spec-worker").unwrap_or_default().to_string());
    }
    assert_eq!(workers.len(), 2, "requests reached both workers");
    assert_eq!(
        stack.idp.counter("jwks")?,
        1,
        "one JWKS fetch for both workers"
    );
    assert_eq!(stack.idp.counter("discovery")?, 1);
    Ok(())
}

fn inline_jwks_fetches_nothing(engine: Engine) -> Result<()> {
    let stack = Stack::start(StackOptions {
        engine,
        config: Box::new(|c, _| {
            c["issuers"][0]["jwks"] = json!({});
        }),
        ..StackOptions::default()
    });
    // `{}` is not a JWKS: the filter must refuse it (500 on every request), never crash.
    if let Ok(stack) = stack {
        let token = stack.valid_token()?;
        assert_eq!(stack.call(Some(&token))?.status, 500);
    }
    let idp = MockIdp::start(IdpOptions::default())?;
    let jwks = idp.jwks()?;
    let stack = Stack::start(StackOptions {
        engine,
        config: Box::new(move |c, _| {
            c["issuers"][0]["jwks"] = jwks;
        }),
        ..StackOptions::default()
    })?;
    // Tokens signed by the first IdP's keys, carrying this stack's issuer.
    let token = idp.mint(
        &MintRequest::new("ES256")
            .claim("iss", stack.idp.issuer())
            .claim("aud", AUDIENCE),
    )?;
    assert_eq!(stack.call(Some(&token))?.status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        stack.idp.counter("jwks")? + stack.idp.counter("discovery")?,
        0
    );
    Ok(())
}

fn rotation_new_kid_is_fetched_and_retired_key_refused(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    let old = stack.valid_token()?;
    assert_eq!(stack.call(Some(&old))?.status, 200);
    let kids = stack.idp.rotate(true)?;
    let new_rsa = kids
        .iter()
        .find(|k| k.starts_with("rsa"))
        .cloned()
        .unwrap_or_default();
    let new = stack.mint(MintRequest::new("RS256").kid(&new_rsa))?;
    let resp = stack.call(Some(&new))?;
    assert_eq!(resp.status, 200, "new kid after rotation: {}", resp.text());
    // The old key left the JWKS: its token (even cached) is refused on the worker that refetched.
    let mut refused = false;
    for _ in 0..4 {
        let resp = stack.call(Some(&old))?;
        assert!(resp.status == 200 || resp.status == 401);
        refused |= resp.status == 401;
    }
    assert!(
        refused,
        "a token of a retired key was still accepted everywhere"
    );
    // Every worker's tick (1 s) adopts the refetched set, even one fetched in the same second
    // as its own: after that, no worker accepts the retired key, cached or not.
    std::thread::sleep(Duration::from_millis(2500));
    for _ in 0..6 {
        let resp = stack.call(Some(&old))?;
        assert_eq!(
            resp.status,
            401,
            "retired key accepted after a tick: {}",
            resp.text()
        );
    }
    Ok(())
}

fn unknown_kid_flood_keeps_jwks_fetches_bounded(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    assert_eq!(stack.call(Some(&stack.valid_token()?))?.status, 200);
    let before = stack.idp.counter("jwks")?;
    for i in 0..40 {
        let token = stack.mint(MintRequest::new("RS256").header("kid", format!("nope-{i}")))?;
        let resp = stack.call(Some(&token))?;
        assert_eq!(resp.status, 401, "unknown kid {i}");
    }
    let after = stack.idp.counter("jwks")?;
    // One refetch per cooldown (30 s) across both workers; a background refresh may add one.
    assert!(
        after - before <= 2,
        "{} JWKS fetches for 40 unknown kids",
        after - before
    );
    assert_eq!(stack.upstream_requests()?, 1);
    Ok(())
}

fn idp_down_cold_gives_503_then_recovers(engine: Engine) -> Result<()> {
    let stack = Stack::start(StackOptions {
        engine,
        config: Box::new(|c, _| c["callout_timeout_ms"] = json!(1000)),
        idp_args: vec![],
        ..StackOptions::default()
    })?;
    stack.idp.fault("status500")?;
    let token = stack.valid_token()?;
    let resp = stack.call(Some(&token))?;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.header("retry-after").is_some());
    assert_eq!(stack.upstream_requests()?, 0);
    stack.idp.clear_fault()?;
    assert!(eventually(Duration::from_secs(20), || Ok(stack
        .call(Some(&token))?
        .status
        == 200))?);
    Ok(())
}

fn idp_down_warm_keeps_serving_cached_keys(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |_| {})?;
    assert_eq!(stack.call(Some(&stack.valid_token()?))?.status, 200);
    assert_eq!(stack.call(Some(&stack.valid_token()?))?.status, 200);
    stack.idp.fault("refuse")?;
    for alg in ["RS256", "ES256", "EdDSA", "ES384"] {
        let token = stack.mint(MintRequest::new(alg))?;
        let resp = stack.call(Some(&token))?;
        assert_eq!(
            resp.status,
            200,
            "{alg} while the IdP is down: {}",
            resp.text()
        );
    }
    Ok(())
}

fn idp_faults_never_let_a_request_through(engine: Engine) -> Result<()> {
    for fault in [
        "refuse",
        "reset",
        "hang",
        "status500",
        "garbage",
        "truncated",
        "huge",
        "many_keys",
        "wrong_type_keys",
        "discovery_elsewhere",
    ] {
        let stack = Stack::start(StackOptions {
            engine,
            workers: 1,
            config: Box::new(|c, _| c["callout_timeout_ms"] = json!(1000)),
            ..StackOptions::default()
        })?;
        stack.idp.fault(fault)?;
        let token = stack.valid_token()?;
        let resp = stack.call(Some(&token))?;
        assert_eq!(resp.status, 503, "{fault}: {}", resp.text());
        assert_eq!(stack.upstream_requests()?, 0, "{fault}");
        stack.idp.clear_fault()?;
        assert!(
            eventually(Duration::from_secs(20), || Ok(stack
                .call(Some(&token))?
                .status
                == 200))?,
            "{fault}: no recovery"
        );
    }
    Ok(())
}

fn two_routes_with_different_issuers_on_one_gateway(engine: Engine) -> Result<()> {
    let a = MockIdp::start(IdpOptions {
        issuer: None,
        ..IdpOptions::default()
    })?;
    let b = MockIdp::start(IdpOptions::default())?;
    let upstream = CloudRun::start(CloudRunOptions::no_auth())?;
    let config = |idp: &MockIdp, aud: &str| {
        json!({"issuers": [{"issuer": idp.issuer(), "audiences": [aud]}]}).to_string()
    };
    let route = |name: &str, config: String| {
        let config = if filter_meta().is_some() {
            config
        } else {
            serde_json::to_string(&config).unwrap_or_default()
        };
        format!(
            "      - name: {name}\n        paths: [\"/{name}\"]\n        filter_chains:\n          - filters:\n              - name: cloudrun_oidc\n                config: {config}\n"
        )
    };
    let kong_yml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: http://{}\n    routes:\n{}{}",
        upstream.http_addr(),
        route("alpha", config(&a, "alpha-api")),
        route("beta", config(&b, "beta-api")),
    );
    let gateway = Gateway::start(&GatewayOpts {
        kong_yml,
        filters: vec![("cloudrun_oidc".into(), filter_wasm()?, filter_meta())],
        shm_kv: vec!["cloudrun_oidc=12m".into()],
        engine,
        ..GatewayOpts::default()
    })?;
    let ta = a.mint(&MintRequest::new("RS256").claim("aud", "alpha-api"))?;
    let tb = b.mint(&MintRequest::new("ES256").claim("aud", "beta-api"))?;
    let call = |path: &str, token: &str| -> Result<u16> {
        Ok(http::get(
            &gateway.url(path),
            &[("authorization", &format!("Bearer {token}"))],
        )?
        .status)
    };
    assert_eq!(call("/alpha", &ta)?, 200);
    assert_eq!(call("/beta", &tb)?, 200);
    assert_eq!(call("/alpha", &tb)?, 401, "beta's token on alpha");
    assert_eq!(call("/beta", &ta)?, 401, "alpha's token on beta");
    Ok(())
}

engine_tests!(
    two_workers_share_one_fetch,
    inline_jwks_fetches_nothing,
    rotation_new_kid_is_fetched_and_retired_key_refused,
    unknown_kid_flood_keeps_jwks_fetches_bounded,
    idp_down_cold_gives_503_then_recovers,
    idp_down_warm_keeps_serving_cached_keys,
    idp_faults_never_let_a_request_through,
    two_routes_with_different_issuers_on_one_gateway,
);
