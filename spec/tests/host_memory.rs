//! Guest memory is bounds-checked: a host call with out-of-bounds pointers or lengths traps the
//! instance (500) instead of crashing or exhausting the gateway.

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;
use std::time::Duration;

type R = anyhow::Result<()>;

fn check(action: &str) -> R {
    let server = TestServer::start()?;
    let yml = probe_routes_yml(
        &server.url(),
        &[
            (
                "bad",
                "/bad",
                json!({"on_request_headers": [{"do": action}]}),
            ),
            (
                "ok",
                "/ok",
                json!({"on_request_headers": [{"do": "mark", "value": "alive"}]}),
            ),
        ],
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(1))?;
    let resp = gw.get("/bad", &[])?;
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        gw.wait_for_log("invalid memory access", Duration::from_secs(30)),
        "{:#?}",
        gw.stderr_lines()
    );
    // The gateway lives on, with a new instance.
    let ok = gw.get("/ok", &[])?;
    assert_eq!(
        seen_value(&probe_seen(&ok), "mark").as_deref(),
        Some("alive")
    );
    assert_eq!(gw.instances_created(0, "probe")?, 2);
    Ok(())
}

#[test]
fn an_out_of_bounds_pointer_traps() -> R {
    check("bad_pointer")
}

#[test]
fn an_out_of_bounds_length_traps_without_allocating_it() -> R {
    check("huge_random")
}
