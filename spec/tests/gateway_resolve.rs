//! `--resolve`: `HOST=IP` and `HOST:PORT=IP:PORT` for upstreams and request-context callouts;
//! tick callouts use them only with `--lua-resolver` (Kong's `wasm{}` resolver reads no hosts file).

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;
use std::time::Duration;

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(60);

fn dispatch(upstream: &str, path: &str, authority: &str) -> serde_json::Value {
    json!({"do": "dispatch", "upstream": upstream, "timeout_ms": 20000,
           "headers": [[":method", "GET"], [":path", path], [":authority", authority]]})
}

#[test]
fn host_port_mapping_sends_upstream_traffic_to_the_mapped_address() -> R {
    let server = TestServer::start()?;
    let yml = probe_kong_yml("http://upstream-svc:9000/base", &json!({}));
    let gw = Gateway::start(
        &GatewayOpts::with_probe(yml)?
            .resolve(&format!("upstream-svc:9000=127.0.0.1:{}", server.port())),
    )?;
    let resp = gw.get("/x?q=1", &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-test-server"), Some("yes"));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "/base/x?q=1");
    // Only the connection goes elsewhere: Host still names the service.
    assert_eq!(reqs[0].header("host"), Some("upstream-svc:9000"));
    Ok(())
}

#[test]
fn host_port_mapping_applies_to_request_callouts_and_keeps_authority() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_request_headers": [dispatch("mock-idp:9000", "/realms/demo/jwks", "mock-idp:9000")],
        "on_http_call_response": [{"do": "record_call"}],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(
        &GatewayOpts::with_probe(yml)?
            .resolve(&format!("mock-idp:9000=127.0.0.1:{}", server.port())),
    )?;
    let resp = gw.get("/", &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = probe_seen(&resp);
    assert_eq!(
        seen_value(&seen, "call_status").as_deref(),
        Some("200"),
        "{seen:?}"
    );
    let calls = server.requests_to("/realms/demo/jwks");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header("host"), Some("mock-idp:9000"));
    Ok(())
}

#[test]
fn host_mapping_keeps_the_port() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_request_headers": [dispatch(&format!("idp.test:{}", server.port()), "/h", "idp.test")],
        "on_http_call_response": [{"do": "record_call"}],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.resolve("idp.test=127.0.0.1"))?;
    let resp = gw.get("/", &[])?;
    let seen = probe_seen(&resp);
    assert_eq!(
        seen_value(&seen, "call_status").as_deref(),
        Some("200"),
        "{seen:?}"
    );
    assert_eq!(server.requests_to("/h").len(), 1);
    Ok(())
}

#[test]
fn a_host_port_entry_does_not_map_other_ports() -> R {
    let server = TestServer::start()?;
    // mock-idp:9001 is not mapped (only :9000 is) and does not resolve.
    let config = json!({
        "on_request_headers": [dispatch("mock-idp.invalid:9001", "/x", "mock-idp.invalid")],
        "on_http_call_response": [{"do": "record_call"}],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.resolve(&format!(
        "mock-idp.invalid:9000=127.0.0.1:{}",
        server.port()
    )))?;
    let resp = gw.get("/", &[])?;
    let seen = probe_seen(&resp);
    assert_eq!(
        seen_value(&seen, "call_dispatch_status").as_deref(),
        Some("resolver failure"),
        "{seen:?}"
    );
    assert!(server.requests_to("/x").is_empty());
    Ok(())
}

fn tick_yml(server: &TestServer) -> String {
    let config = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 200}],
        "on_tick": [dispatch("tick-target:9000", "/tick", "tick-target")],
        "root_on_http_call_response": [{"do": "record_call"}],
    });
    probe_kong_yml(&server.url(), &config)
}

#[test]
fn tick_callouts_ignore_resolve_entries_without_lua_resolver() -> R {
    let server = TestServer::start()?;
    let gw = Gateway::start(
        &GatewayOpts::with_probe(tick_yml(&server))?
            .workers(1)
            .resolve(&format!("tick-target:9000=127.0.0.1:{}", server.port())),
    )?;
    assert!(
        gw.wait_for_log("call_dispatch_status=resolver failure", WAIT),
        "{:#?}",
        gw.stderr_lines()
    );
    assert!(server.requests_to("/tick").is_empty());
    Ok(())
}

#[test]
fn tick_callouts_use_resolve_entries_with_lua_resolver() -> R {
    let server = TestServer::start()?;
    let gw = Gateway::start(
        &GatewayOpts::with_probe(tick_yml(&server))?
            .workers(1)
            .lua_resolver()
            .resolve(&format!("tick-target:9000=127.0.0.1:{}", server.port())),
    )?;
    assert!(server.wait_for("/tick", 1, WAIT));
    assert!(
        gw.wait_for_log("call_status=200", WAIT),
        "{:#?}",
        gw.stderr_lines()
    );
    assert_eq!(
        server.requests_to("/tick")[0].header("host"),
        Some("tick-target")
    );
    Ok(())
}

#[test]
fn malformed_resolve_entries_refuse_to_start() -> R {
    for bad in ["nohost", "x=notanip", "x=1.2.3.4:80", "x:0=1.2.3.4:80"] {
        let yml = probe_kong_yml("http://127.0.0.1:9", &json!({}));
        let err = Gateway::start_failure(&GatewayOpts::with_probe(yml)?.resolve(bad))?;
        assert!(err.contains("--resolve"), "{bad}: {err}");
    }
    Ok(())
}
