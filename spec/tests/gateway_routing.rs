//! kong.yml routing: services with nested routes, path prefixes (longest wins), `strip_path`,
//! service paths, and filter chains on services and routes (the service's chain first).

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;

type R = anyhow::Result<()>;

fn yml(body: &str) -> String {
    format!("_format_version: \"3.0\"\n{body}")
}

#[test]
fn the_longest_matching_prefix_wins() -> R {
    let a = TestServer::start()?;
    let b = TestServer::start()?;
    let y = yml(&format!(
        "services:\n  - name: a\n    url: {}\n    routes:\n      - name: short\n        paths: [/api]\n        strip_path: false\n  - name: b\n    url: {}\n    routes:\n      - name: long\n        paths: [/api/v2]\n        strip_path: false\n",
        a.url(),
        b.url()
    ));
    let gw = Gateway::start(&GatewayOpts::with_probe(y)?)?;
    assert_eq!(gw.get("/api/v2/x", &[])?.status, 200);
    assert_eq!(gw.get("/api/v1/x", &[])?.status, 200);
    assert_eq!(gw.get("/api", &[])?.status, 200);
    assert_eq!(
        b.requests()
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>(),
        ["/api/v2/x"]
    );
    assert_eq!(
        a.requests()
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>(),
        ["/api/v1/x", "/api"]
    );
    Ok(())
}

#[test]
fn no_matching_route_is_404() -> R {
    let a = TestServer::start()?;
    let y = yml(&format!(
        "services:\n  - name: a\n    url: {}\n    routes:\n      - name: r\n        paths: [/only]\n",
        a.url()
    ));
    let gw = Gateway::start(&GatewayOpts::with_probe(y)?)?;
    let resp = gw.get("/other", &[])?;
    assert_eq!(resp.status, 404);
    assert!(resp.text().contains("no Route matched"), "{}", resp.text());
    assert!(a.requests().is_empty());
    Ok(())
}

#[test]
fn strip_path_defaults_to_true_and_joins_the_service_path() -> R {
    let a = TestServer::start()?;
    let y = yml(&format!(
        "services:\n  - name: a\n    url: {}/base\n    routes:\n      - name: strip\n        paths: [/s]\n      - name: keep\n        paths: [/k]\n        strip_path: false\n",
        a.url()
    ));
    let gw = Gateway::start(&GatewayOpts::with_probe(y)?)?;
    gw.get("/s/x?q=1", &[])?;
    gw.get("/k/x?q=1", &[])?;
    gw.get("/s", &[])?;
    let targets: Vec<String> = a.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/base/x?q=1", "/base/k/x?q=1", "/base"]);
    Ok(())
}

#[test]
fn the_service_chain_runs_before_the_route_chain() -> R {
    let a = TestServer::start()?;
    let svc = json!({"on_request_headers": [{"do": "append_header", "name": "x-order", "value": "service"}, {"do": "mark", "value": "service"}]});
    let route = json!({"on_request_headers": [{"do": "append_header", "name": "x-order", "value": "route"}, {"do": "mark", "value": "route"}]});
    let y = yml(&format!(
        "services:\n  - name: a\n    url: {}\n    filter_chains:\n      - filters:\n          - name: probe\n            config: {}\n    routes:\n      - name: r\n        paths: [/]\n        filter_chains:\n          - filters:\n              - name: probe\n                config: {}\n      - name: bare\n        paths: [/bare]\n",
        a.url(),
        yaml_string(&svc.to_string()),
        yaml_string(&route.to_string())
    ));
    let gw = Gateway::start(&GatewayOpts::with_probe(y)?)?;
    let resp = gw.get("/x", &[])?;
    assert_eq!(resp.status, 200);
    assert_eq!(
        a.requests_to("/x")[0].header("x-order"),
        Some("service,route")
    );
    let marks: Vec<String> = probe_seen(&resp)
        .into_iter()
        .filter(|s| s.starts_with("mark="))
        .collect();
    assert_eq!(marks, ["mark=service", "mark=route"]);
    // A route without its own chain still runs the service's.
    gw.get("/bare", &[])?;
    let reqs = a.requests();
    assert_eq!(reqs.len(), 2);
    // strip_path (default true) sends `/` upstream.
    assert_eq!(reqs[1].target, "/");
    assert_eq!(reqs[1].header("x-order"), Some("service"));
    Ok(())
}

#[test]
fn disabled_chains_and_filters_do_not_run() -> R {
    let a = TestServer::start()?;
    let mark = |v: &str| {
        yaml_string(
            &json!({"on_request_headers": [{"do": "append_header", "name": "x-ran", "value": v}]})
                .to_string(),
        )
    };
    let y = yml(&format!(
        "services:\n  - name: a\n    url: {}\n    routes:\n      - name: off-chain\n        paths: [/off-chain]\n        filter_chains:\n          - enabled: false\n            filters:\n              - name: probe\n                config: {}\n      - name: off-filter\n        paths: [/off-filter]\n        filter_chains:\n          - name: mixed\n            filters:\n              - name: probe\n                enabled: false\n                config: {}\n              - name: probe\n                config: {}\n",
        a.url(),
        mark("chain"),
        mark("disabled-filter"),
        mark("enabled-filter")
    ));
    let gw = Gateway::start(&GatewayOpts::with_probe(y)?)?;
    assert_eq!(gw.get("/off-chain", &[])?.status, 200);
    assert_eq!(gw.get("/off-filter", &[])?.status, 200);
    let reqs = a.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("x-ran"), None);
    assert_eq!(reqs[1].header("x-ran"), Some("enabled-filter"));
    Ok(())
}
