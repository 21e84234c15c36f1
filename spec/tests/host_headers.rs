//! Request headers as Kong hands them to filters: at most 100 pairs; edits reach the upstream.

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;

type R = anyhow::Result<()>;

#[test]
fn get_http_request_headers_returns_at_most_100_pairs() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_request_headers": [{"do": "count_headers"}]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    // Headers long enough that the engine's map stays whole (shorter ones past the 96th make
    // it run past its buffer: `engine_facts.rs::request_maps_list_pseudo_headers_and_run_past_their_buffer_from_100_short_headers`).
    let names: Vec<String> = (0..150).map(|i| format!("x-header-{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let resp = gw.get("/many", &headers)?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        seen_value(&probe_seen(&resp), "headers").as_deref(),
        Some("100")
    );
    // The upstream still gets every header.
    let up = server.requests_to("/many");
    assert_eq!(up.len(), 1);
    assert!(up[0].header("x-header-149").is_some());
    // A few headers: all of them (the client adds Host and Connection).
    let few = gw.get("/few", &[("x-a", "1"), ("x-b", "2")])?;
    let n: usize = seen_value(&probe_seen(&few), "headers")
        .unwrap_or_default()
        .parse()?;
    assert!((3..10).contains(&n), "{n}");
    Ok(())
}

#[test]
fn headers_set_by_the_filter_reach_the_upstream() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_request_headers": [{"do": "set_header", "name": "x-set", "value": "by-filter"}]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    assert_eq!(gw.get("/h", &[("x-set", "by-client")])?.status, 200);
    let up = server.requests_to("/h");
    assert_eq!(up[0].header("x-set"), Some("by-filter"));
    assert_eq!(
        up[0].headers.iter().filter(|(k, _)| k == "x-set").count(),
        1
    );
    Ok(())
}
