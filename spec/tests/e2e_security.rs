//! The security review's findings end to end (SECURITY.md threats 11–17): each test shows the
//! behaviour across the Kong stand-in that the review found missing.

use anyhow::Result;
use cloudrun_spec::testkit::mocks::MintRequest;
use cloudrun_spec::testkit::stack::{eventually, Stack, StackOptions};
use serde_json::{json, Value};
use std::time::Duration;

fn stack_with(config: impl FnOnce(&mut Value) + 'static) -> Result<Stack> {
    Stack::start(StackOptions {
        config: Box::new(move |c, _| config(c)),
        ..StackOptions::default()
    })
}

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
#[test]
fn long_jwks_url_keeps_fetches_coordinated_across_workers() -> Result<()> {
    let stack = Stack::start(StackOptions {
        config: Box::new(|c, info| {
            let url = format!("http://{}/jwks?pad={}", info.idp_http, "p".repeat(1000));
            c["issuers"][0]["jwks_url"] = json!(url);
        }),
        ..StackOptions::default()
    })?;
    // The root ticks fetch before the first request: one worker holds the lease.
    assert!(eventually(Duration::from_secs(15), || Ok(stack
        .idp
        .counter("jwks")?
        >= 1))?);
    std::thread::sleep(Duration::from_millis(1500));
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
#[test]
fn moved_jwks_uri_is_rediscovered() -> Result<()> {
    let stack = stack_with(|_| {})?;
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

/// Item 4: a top-level claim spelled like a dotted path never stands in for the nested claim.
#[test]
fn dotted_top_level_claim_never_satisfies_a_nested_rule() -> Result<()> {
    let stack = stack_with(|c| {
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
