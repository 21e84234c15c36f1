//! The security review's findings end to end (SECURITY.md threats 11–17): each test shows the
//! behaviour across the Kong stand-in that the review found missing.

use anyhow::Result;
use cloudrun_spec::testkit::mocks::MintRequest;
use cloudrun_spec::testkit::stack::{eventually, Stack, StackOptions};
use serde_json::json;
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
