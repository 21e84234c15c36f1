//! Properties a request context reads (`request.*`, `source.address`, `kong.route_name`,
//! `kong.service_name`), and their absence outside a request (ticks).

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;
use std::time::Duration;

type R = anyhow::Result<()>;

fn prop(path: &str) -> serde_json::Value {
    json!({"do": "property", "path": path})
}

#[test]
fn request_and_kong_properties_inside_a_request() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_request_headers": [
        prop("request.path"), prop("request.method"), prop("request.headers.x-thing"),
        prop("request.query"), prop("source.address"), prop("kong.route_name"),
        prop("kong.service_name"), prop("kong.route_id"), prop("no.such.property"),
    ]});
    let yml = probe_routes_yml(&server.url(), &[("orders-route", "/orders", config)]);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?)?;
    let resp = gw.request("POST", "/orders/1?x=y", &[("X-Thing", "abc")], b"body")?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = probe_seen(&resp);
    let v = |p: &str| seen_value(&seen, p);
    assert_eq!(v("request.path").as_deref(), Some("/orders/1?x=y"));
    assert_eq!(v("request.method").as_deref(), Some("POST"));
    assert_eq!(v("request.headers.x-thing").as_deref(), Some("abc"));
    assert_eq!(v("request.query").as_deref(), Some("x=y"));
    assert_eq!(v("source.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(v("kong.route_name").as_deref(), Some("orders-route"));
    assert_eq!(v("kong.service_name").as_deref(), Some("svc"));
    assert!(
        v("kong.route_id").is_some_and(|id| id.len() == 36),
        "{seen:?}"
    );
    assert_eq!(v("no.such.property").as_deref(), Some("NotFound"));
    Ok(())
}

#[test]
fn kong_properties_are_absent_in_ticks() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 100}],
        "on_tick": [prop("kong.route_name"), prop("kong.service_name"), prop("request.path")],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    assert!(gw.wait_for_log("probe-seen on_tick", Duration::from_secs(60)));
    let line = gw
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("probe-seen on_tick"))
        .unwrap_or_default();
    for p in ["kong.route_name", "kong.service_name", "request.path"] {
        let rec = line
            .split("; ")
            .find(|r| r.contains(&format!("{p}=")))
            .unwrap_or("");
        assert!(
            rec.ends_with("=InternalFailure") || rec.ends_with("=NotFound"),
            "{p}: {line}"
        );
    }
    assert!(!line.contains("=svc") && !line.contains("=r;"), "{line}");
    Ok(())
}
