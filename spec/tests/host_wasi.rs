//! WASI preview1 as ngx_wasi provides it: clocks, `random_get`, no environment or arguments,
//! stdout/stderr into the error log; an import the host does not implement traps when called.

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type R = anyhow::Result<()>;

#[test]
fn wasi_clocks_random_env_and_args_work() -> R {
    let server = TestServer::start()?;
    let yml = probe_kong_yml(
        &server.url(),
        &json!({"on_request_headers": [{"do": "wasi"}]}),
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.log_level("info"))?;
    let resp = gw.get("/", &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = probe_seen(&resp);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let t: u64 = seen_value(&seen, "wasi_realtime")
        .unwrap_or_default()
        .parse()?;
    assert!(
        t + 3600 > now && t < now + 3600,
        "realtime clock {t} vs {now}"
    );
    assert_eq!(seen_value(&seen, "wasi_monotonic").as_deref(), Some("true"));
    let random = seen_value(&seen, "wasi_random").unwrap_or_default();
    // errno 0 twice, two different draws, not all zeros.
    assert!(random.starts_with("0:0:true:"), "{random}");
    assert_ne!(random, format!("0:0:true:{}", "0".repeat(32)));
    assert_eq!(seen_value(&seen, "wasi_env").as_deref(), Some("0"));
    assert_eq!(seen_value(&seen, "wasi_args").as_deref(), Some("0"));
    Ok(())
}

#[test]
fn wasi_stdout_and_stderr_go_to_the_error_log() -> R {
    let server = TestServer::start()?;
    let yml = probe_kong_yml(
        &server.url(),
        &json!({"on_request_headers": [{"do": "wasi"}]}),
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.log_level("info"))?;
    assert_eq!(gw.get("/", &[])?.status, 200);
    assert!(gw.wait_for_log("probe stderr line", Duration::from_secs(30)));
    assert!(gw.wait_for_log("probe stdout line", Duration::from_secs(30)));
    let lines = gw.stderr_lines();
    let err = lines
        .iter()
        .find(|l| l.contains("probe stderr line"))
        .cloned()
        .unwrap_or_default();
    let out = lines
        .iter()
        .find(|l| l.contains("probe stdout line"))
        .cloned()
        .unwrap_or_default();
    assert!(
        err.contains("[error]") && err.contains("[proxy-wasm][\"probe\""),
        "{err}"
    );
    assert!(out.contains("[info]"), "{out}");
    Ok(())
}

#[test]
fn an_unimplemented_wasi_import_loads_but_traps_when_called() -> R {
    let server = TestServer::start()?;
    let yml = probe_kong_yml(
        &server.url(),
        &json!({"on_request_headers": [{"do": "wasi_nyi"}]}),
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?)?;
    let resp = gw.get("/", &[])?;
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(gw.wait_for_log("NYI - wasi fd_filestat_get", Duration::from_secs(30)));
    assert!(server.requests().is_empty());
    Ok(())
}
