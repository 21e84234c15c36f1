//! Traps: a trap in a request step answers 500 and destroys the instance (in-instance state lost,
//! `on_configure` run again, counted at `/__status`); a trap in `on_http_call_response` lets the
//! request through (fail-open, as Kong does) and is logged loudly; `on_configure` returning false
//! makes the gateway proxy without the filter.

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;
use std::time::Duration;

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(60);

fn counting_gateway(server: &TestServer) -> anyhow::Result<Gateway> {
    let config = json!({"on_request_headers": [
        {"do": "trap_if_header", "name": "x-trap"},
        {"do": "static_incr"},
    ]});
    Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1))
}

fn statics(gw: &Gateway) -> anyhow::Result<String> {
    let resp = gw.get("/ok", &[])?;
    assert_eq!(resp.status, 200);
    Ok(seen_value(&probe_seen(&resp), "static").unwrap_or_default())
}

#[test]
fn a_trap_in_request_headers_answers_500_and_does_not_go_upstream() -> R {
    let server = TestServer::start()?;
    let gw = counting_gateway(&server)?;
    let resp = gw.get("/boom", &[("x-trap", "1")])?;
    assert_eq!(resp.status, 500);
    assert!(
        resp.text().contains("An unexpected error occurred"),
        "{}",
        resp.text()
    );
    assert!(server.requests_to("/boom").is_empty());
    assert!(gw.wait_for_log("panicked at on_request_headers", WAIT));
    Ok(())
}

#[test]
fn a_trap_destroys_the_instance_and_the_next_request_gets_a_fresh_one() -> R {
    let server = TestServer::start()?;
    let gw = counting_gateway(&server)?;
    assert_eq!(statics(&gw)?, "1");
    assert_eq!(statics(&gw)?, "2");
    assert_eq!(gw.instances_created(0, "probe")?, 1);
    assert_eq!(gw.wait_log_count("probe on_configure root #1", 1), 1);
    assert_eq!(gw.get("/boom", &[("x-trap", "1")])?.status, 500);
    // In-instance state is gone: the static counter starts over.
    assert_eq!(statics(&gw)?, "1");
    assert_eq!(gw.instances_created(0, "probe")?, 2);
    // on_configure ran again, on_vm_start did not.
    assert_eq!(gw.wait_log_count("probe on_configure root #1", 2), 2);
    assert_eq!(gw.wait_log_count("probe on_vm_start root #1", 1), 1);
    Ok(())
}

#[test]
fn a_trap_in_a_call_response_lets_the_request_through_and_logs_loudly() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_request_headers": [{"do": "dispatch", "upstream": server.addr, "timeout_ms": 20_000,
                                "headers": [[":method", "GET"], [":path", "/idp"]]}],
        "on_http_call_response": [{"do": "trap"}],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(server.requests_to("/front").len(), 1);
    assert!(gw.wait_for_log("panicked at on_http_call_response", WAIT));
    assert!(
        gw.wait_for_log("fail-open", WAIT),
        "{:#?}",
        gw.stderr_lines()
    );
    let loud = gw
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("fail-open"))
        .unwrap_or_default();
    assert!(
        loud.contains("[error]") && loud.contains("WITHOUT"),
        "{:#?}",
        gw.stderr_lines()
    );
    // The instance was destroyed; the next request gets a new one.
    assert_eq!(gw.get("/front", &[])?.status, 200);
    assert_eq!(gw.instances_created(0, "probe")?, 2);
    Ok(())
}

#[test]
fn a_trap_in_response_headers_answers_500() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_response_headers": [{"do": "trap"}]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    assert_eq!(gw.get("/x", &[])?.status, 500);
    Ok(())
}

#[test]
fn a_trap_on_one_route_resets_state_shared_with_other_routes() -> R {
    let server = TestServer::start()?;
    let yml = probe_routes_yml(
        &server.url(),
        &[
            (
                "count",
                "/count",
                json!({"on_request_headers": [{"do": "static_incr"}]}),
            ),
            (
                "boom",
                "/boom",
                json!({"on_request_headers": [{"do": "trap"}]}),
            ),
        ],
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(1))?;
    let c = |gw: &Gateway| -> anyhow::Result<String> {
        Ok(seen_value(&probe_seen(&gw.get("/count", &[])?), "static").unwrap_or_default())
    };
    assert_eq!(c(&gw)?, "1");
    assert_eq!(c(&gw)?, "2");
    assert_eq!(gw.get("/boom", &[])?.status, 500);
    assert_eq!(c(&gw)?, "1");
    // Both roots were configured again.
    assert_eq!(gw.wait_log_count("probe on_configure root #1", 2), 2);
    assert_eq!(gw.wait_log_count("probe on_configure root #2", 2), 2);
    Ok(())
}

#[test]
fn on_configure_false_proxies_without_the_filter() -> R {
    let server = TestServer::start()?;
    let config = json!({"configure_result": false, "on_request_headers": [{"do": "respond", "status": 403}]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 200);
    assert_eq!(server.requests_to("/front").len(), 1);
    assert!(gw.wait_for_log("failed to configure", WAIT));
    Ok(())
}

#[test]
fn a_trap_in_on_configure_proxies_without_the_filter() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_configure": [{"do": "trap"}], "on_request_headers": [{"do": "respond", "status": 403}]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    assert_eq!(gw.get("/front", &[])?.status, 200);
    assert!(gw.wait_for_log("panicked at on_configure", WAIT));
    Ok(())
}
