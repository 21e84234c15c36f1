//! Ticks: per root context per worker, and not waiting for the callouts of earlier ticks.

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(60);

/// (worker, root) of every `probe-seen on_tick` log line.
fn tickers(gw: &Gateway) -> BTreeSet<String> {
    gw.stderr_lines()
        .iter()
        .filter(|l| l.contains("probe-seen on_tick"))
        .map(|l| {
            let worker = l
                .split('#')
                .nth(1)
                .and_then(|r| r.split(':').next())
                .unwrap_or("?");
            let root = l
                .split("[\"probe\" #")
                .nth(1)
                .and_then(|r| r.split(']').next())
                .unwrap_or("?");
            format!("{worker}/{root}")
        })
        .collect()
}

#[test]
fn every_root_context_ticks_on_every_worker() -> R {
    let server = TestServer::start()?;
    let ticking = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 100}],
        "on_tick": [{"do": "mark", "value": "tick"}],
    });
    let yml = probe_routes_yml(
        &server.url(),
        &[("a", "/a", ticking.clone()), ("b", "/b", ticking)],
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(2))?;
    let want: BTreeSet<String> = ["0/1", "0/2", "1/1", "1/2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let deadline = std::time::Instant::now() + WAIT;
    while tickers(&gw) != want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tickers(&gw), want);
    Ok(())
}

#[test]
fn a_root_without_a_tick_period_does_not_tick() -> R {
    let server = TestServer::start()?;
    let yml = probe_routes_yml(
        &server.url(),
        &[
            (
                "a",
                "/a",
                json!({"on_configure": [{"do": "set_tick_period", "ms": 100}], "on_tick": [{"do": "mark", "value": "a"}]}),
            ),
            (
                "b",
                "/b",
                json!({"on_tick": [{"do": "mark", "value": "b"}]}),
            ),
        ],
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(1))?;
    assert!(gw.wait_for_log("probe-seen on_tick: mark=a", WAIT));
    // Wait for several ticks of root a, then check that b never ticked.
    let deadline = std::time::Instant::now() + WAIT;
    while gw.count_log("probe-seen on_tick: mark=a") < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.count_log("probe-seen on_tick: mark=a") >= 5);
    assert_eq!(gw.count_log("mark=b"), 0);
    Ok(())
}

#[test]
fn ticks_do_not_wait_for_earlier_tick_callouts() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 100}],
        "on_tick": [{"do": "dispatch", "upstream": server.addr, "timeout_ms": 120_000,
                     "headers": [[":method", "GET"], [":path", "/hang"]]}],
        "root_on_http_call_response": [{"do": "record_call"}],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    // Several callouts are in flight at once: none has answered, yet ticks go on.
    assert!(
        server.wait_for("/hang", 4, WAIT),
        "only {} tick callouts",
        server.requests_to("/hang").len()
    );
    assert_eq!(gw.count_log("probe-seen root_on_http_call_response"), 0);
    Ok(())
}

#[test]
fn tick_callouts_answer_to_the_root_context() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 200}],
        "on_tick": [{"do": "dispatch", "upstream": server.addr, "timeout_ms": 20_000,
                     "headers": [[":method", "GET"], [":path", "/from-tick"]]}],
        "root_on_http_call_response": [{"do": "record_call"}],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    assert!(
        gw.wait_for_log(
            "probe-seen root_on_http_call_response: call_status=200",
            WAIT
        ),
        "{:#?}",
        gw.stderr_lines()
    );
    Ok(())
}

#[test]
fn setting_the_tick_period_twice_traps() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 100}, {"do": "set_tick_period", "ms": 200}],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    assert!(gw.wait_for_log("tick_period already set", WAIT));
    Ok(())
}

#[test]
fn setting_the_tick_period_in_a_request_traps() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_request_headers": [{"do": "set_tick_period", "ms": 100}]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    assert_eq!(gw.get("/", &[])?.status, 500);
    assert!(gw.wait_for_log("can only set tick_period in root context", WAIT));
    Ok(())
}

#[test]
fn a_trap_in_a_tick_recreates_the_instance_and_ticks_go_on() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 100}],
        "on_tick": [{"do": "mark", "value": "tick"}, {"do": "trap"}],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    assert!(gw.wait_for_log("panicked at on_tick", WAIT));
    // Each trap destroys the instance; the next tick creates a new one (on_configure again).
    assert!(gw.wait_log_count("probe on_configure root #1", 3) >= 3);
    assert!(gw.instances_created(0, "probe")? >= 2);
    assert_eq!(gw.get("/", &[])?.status, 200);
    Ok(())
}

/// ngx_wasm_module keeps a root's tick timer outside the instance: after a trap, the old timer
/// keeps firing into the new instance, and a root that sets its period again in the new
/// instance's `on_configure` starts a second timer (ngx_proxy_wasm.c,
/// `ngx_proxy_wasm_create_context`; ngx_proxy_wasm_host.c, `set_tick_period`). Each trap adds one.
#[test]
fn a_root_that_arms_again_after_a_trap_gets_one_more_timer_per_trap() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [{"do": "set_tick_period", "ms": 200}],
        "on_tick": [{"do": "mark", "value": "tick"}],
        "on_request_headers": [{"do": "trap"}],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    assert_eq!(gw.wait_log_count("tick timer armed", 1), 1);
    for traps in 1..=3 {
        assert_eq!(gw.get("/", &[])?.status, 500);
        assert_eq!(
            gw.wait_log_count("tick timer armed", 1 + traps),
            1 + traps,
            "after {traps} traps"
        );
    }
    Ok(())
}

/// A root that only arms when it got `on_vm_start` (a new root, not one re-created after a
/// trap) never has a second timer: its old timer ticks into the new instance, or stops when a
/// tick re-created the instance (Kong then resets the root's period).
#[test]
fn a_root_that_does_not_arm_again_after_a_trap_never_gets_a_second_timer() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_vm_start": [{"do": "set_tick_period", "ms": 100}],
        "on_tick": [{"do": "mark", "value": "tick"}],
        "on_request_headers": [{"do": "trap"}],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(1),
    )?;
    assert_eq!(gw.wait_log_count("tick timer armed", 1), 1);
    for _ in 0..3 {
        assert_eq!(gw.get("/", &[])?.status, 500);
        // Give the old timer a few periods to fire into the new instance.
        std::thread::sleep(Duration::from_millis(350));
    }
    assert!(gw.count_log("instance trapped") >= 3);
    assert_eq!(gw.count_log("tick timer armed"), 1);
    Ok(())
}
