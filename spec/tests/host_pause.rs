//! Pause and resume: a request waits for its filter's callouts and resumes by itself after the
//! last one; a local response cancels the callouts still pending.

use cloudrun_spec::testkit::gateway::*;
use serde_json::{json, Value};
use std::time::Duration;

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(60);

fn get(upstream: &str, path: &str, timeout_ms: u64) -> Value {
    json!({"do": "dispatch", "upstream": upstream, "timeout_ms": timeout_ms,
           "headers": [[":method", "GET"], [":path", path]]})
}

#[test]
fn a_paused_request_resumes_after_its_last_callout() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "pause": true,
        "on_request_headers": [get(&server.addr, "/delay/300", 20_000), get(&server.addr, "/quick", 20_000)],
        "on_http_call_response": [{"do": "record_call"}],
    });
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = probe_seen(&resp);
    // Both call responses were delivered before the request went upstream (no explicit resume).
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("call_response="))
            .count(),
        2,
        "{seen:?}"
    );
    assert_eq!(server.requests_to("/front").len(), 1);
    assert!(!seen.iter().any(|s| s.starts_with("resume=")));
    Ok(())
}

#[test]
fn a_continued_request_still_waits_for_pending_callouts() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "pause": false,
        "on_request_headers": [get(&server.addr, "/delay/300", 20_000)],
        "on_http_call_response": [{"do": "set_header", "name": "x-after-call", "value": "yes"}],
    });
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    assert_eq!(gw.get("/front", &[])?.status, 200);
    let front = server.requests_to("/front");
    assert_eq!(front.len(), 1);
    // The header set in on_http_call_response reached the upstream: the request had waited.
    assert_eq!(front[0].header("x-after-call"), Some("yes"));
    Ok(())
}

#[test]
fn a_local_response_from_a_call_response_cancels_pending_calls() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "pause": true,
        "on_request_headers": [get(&server.addr, "/hang", 120_000), get(&server.addr, "/quick", 20_000)],
        "on_http_call_response": [{"do": "respond", "status": 403, "body": "denied"}],
    });
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.text(), "denied");
    // The hanging call was cancelled: the gateway closed its connection long before its timeout.
    assert!(server.wait_hangs_closed(1, WAIT));
    assert!(server.requests_to("/front").is_empty());
    // Only one call response was delivered (the probe reports its records in two headers).
    let seen = probe_seen(&resp);
    let calls: std::collections::BTreeSet<&String> = seen
        .iter()
        .filter(|s| s.starts_with("call_response="))
        .collect();
    assert_eq!(calls.len(), 1, "{seen:?}");
    Ok(())
}

#[test]
fn a_local_response_in_request_headers_cancels_calls_dispatched_before_it() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_request_headers": [get(&server.addr, "/hang", 120_000), {"do": "respond", "status": 401}],
        "on_http_call_response": [{"do": "mark", "value": "should-not-run"}],
    });
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 401);
    // The call was cancelled before it connected, or its connection was closed.
    assert!(server.requests_to("/hang").is_empty() || server.wait_hangs_closed(1, WAIT));
    assert!(!probe_seen(&resp)
        .iter()
        .any(|s| s.contains("should-not-run")));
    assert!(server.requests_to("/front").is_empty());
    Ok(())
}

#[test]
fn a_client_that_goes_away_cancels_the_pending_calls() -> R {
    let server = TestServer::start()?;
    let config =
        json!({"pause": true, "on_request_headers": [get(&server.addr, "/hang", 120_000)]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    let err = cloudrun_spec::testkit::http::get_timeout(
        &gw.url("/front"),
        &[],
        Duration::from_millis(500),
    );
    assert!(err.is_err());
    assert!(server.wait_for("/hang", 1, WAIT));
    assert!(
        server.wait_hangs_closed(1, WAIT),
        "the gateway kept the callout of a gone client"
    );
    assert!(server.requests_to("/front").is_empty());
    Ok(())
}
