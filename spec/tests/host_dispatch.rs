//! `dispatch_http_call` with Kong's rules: where it may be called, the `host[:port]` argument,
//! required pseudo-headers, `:authority` → Host, `:scheme https` → TLS, the per-call timeout, and
//! failures reported as `on_http_call_response(token, 0, 0, 0)` with `:dispatch_status`.

use cloudrun_spec::testkit::gateway::*;
use serde_json::{json, Value};
use std::time::Duration;

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(60);

fn call(upstream: &str, headers: Value, timeout_ms: u64) -> Value {
    json!({"do": "dispatch", "upstream": upstream, "headers": headers, "timeout_ms": timeout_ms})
}

fn get(upstream: &str, path: &str) -> Value {
    call(
        upstream,
        json!([[":method", "GET"], [":path", path]]),
        20_000,
    )
}

/// A gateway whose route dispatches `action` in on_request_headers and records the call response.
fn gateway(server: &TestServer, action: Value) -> anyhow::Result<Gateway> {
    gateway_opts(server, action, |o| o)
}

fn gateway_opts(
    server: &TestServer,
    action: Value,
    f: impl FnOnce(GatewayOpts) -> GatewayOpts,
) -> anyhow::Result<Gateway> {
    let config = json!({
        "on_request_headers": [action],
        "on_http_call_response": [{"do": "record_call"}],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    Gateway::start(&f(GatewayOpts::with_probe(yml)?))
}

#[test]
fn a_callout_reaches_its_target_with_host_and_connection_close() -> R {
    let server = TestServer::start()?;
    let action = call(
        &server.addr,
        json!([[":method", "POST"], [":path", "/cb?x=1"], ["x-custom", "v"]]),
        20_000,
    );
    let mut action = action;
    action["body"] = json!("payload");
    let gw = gateway(&server, action)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = probe_seen(&resp);
    assert_eq!(
        seen_value(&seen, "call_status").as_deref(),
        Some("200"),
        "{seen:?}"
    );
    assert_eq!(
        seen_value(&seen, "call_dispatch_status").as_deref(),
        Some("ok"),
        "Kong's engine says ok on success"
    );
    assert!(seen_value(&seen, "call_body")
        .unwrap_or_default()
        .contains("\"target\":\"/cb?x=1\""));
    let calls = server.requests_to("/cb");
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.method, "POST");
    assert_eq!(c.body, b"payload");
    assert_eq!(c.header("x-custom"), Some("v"));
    // Without :authority, Host is the first argument.
    assert_eq!(c.header("host"), Some(server.addr.as_str()));
    assert_eq!(c.header("connection"), Some("close"));
    // And the request then went upstream.
    assert_eq!(server.requests_to("/front").len(), 1);
    Ok(())
}

#[test]
fn authority_sets_the_host_header() -> R {
    let server = TestServer::start()?;
    let action = call(
        &server.addr,
        json!([
            [":method", "GET"],
            [":path", "/a"],
            [":authority", "idp.example:9000"],
            ["host", "ignored"]
        ]),
        20_000,
    );
    let gw = gateway(&server, action)?;
    assert_eq!(gw.get("/", &[])?.status, 200);
    let calls = server.requests_to("/a");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header("host"), Some("idp.example:9000"));
    assert_eq!(
        calls[0].headers.iter().filter(|(k, _)| k == "host").count(),
        1
    );
    Ok(())
}

#[test]
fn the_call_response_carries_token_header_count_and_body_size() -> R {
    let server = TestServer::start()?;
    let gw = gateway(&server, get(&server.addr, "/sz"))?;
    let seen = probe_seen(&gw.get("/", &[])?);
    let token = seen_value(&seen, "dispatch").unwrap_or_default();
    let token = token.strip_prefix("ok:").unwrap_or("?").to_string();
    let resp = seen_value(&seen, "call_response").unwrap_or_default();
    let parts: Vec<&str> = resp.split(':').collect();
    assert_eq!(parts.len(), 3, "{seen:?}");
    assert_eq!(parts[0], token);
    // 4 headers (content-type, x-test-server, content-length, connection); the engine does not
    // count :status and :dispatch_status.
    assert_eq!(parts[1], "4", "{seen:?}");
    let body = seen_value(&seen, "call_body").unwrap_or_default();
    assert_eq!(parts[2], body.len().to_string());
    Ok(())
}

#[test]
fn callout_tokens_are_unique() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_request_headers": [get(&server.addr, "/t1"), get(&server.addr, "/t2")],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?)?;
    let mut tokens = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let seen = probe_seen(&gw.get("/", &[])?);
        for s in seen.iter().filter(|s| s.starts_with("dispatch=ok:")) {
            assert!(tokens.insert(s.clone()), "token reused: {s}");
        }
    }
    assert_eq!(tokens.len(), 6);
    Ok(())
}

fn assert_trap_500(server: &TestServer, action: Value, log: &str) -> R {
    let gw = gateway(server, action)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(gw.wait_for_log(log, WAIT), "{:#?}", gw.stderr_lines());
    assert!(gw.wait_for_log("panicked at on_request_headers", WAIT));
    assert!(server.requests_to("/front").is_empty());
    Ok(())
}

#[test]
fn a_url_instead_of_host_port_traps_with_500() -> R {
    let server = TestServer::start()?;
    let action = get(&format!("http://{}", server.addr), "/x");
    assert_trap_500(
        &server,
        action,
        "dispatch failed: tcp socket - invalid host",
    )
}

#[test]
fn a_bad_port_traps_with_500() -> R {
    let server = TestServer::start()?;
    assert_trap_500(
        &server,
        get("127.0.0.1:notaport", "/x"),
        "dispatch failed: tcp socket - invalid port",
    )?;
    assert_trap_500(
        &server,
        get("", "/x"),
        "dispatch failed: tcp socket - no host",
    )
}

#[test]
fn a_missing_method_traps_with_500() -> R {
    let server = TestServer::start()?;
    let action = call(&server.addr, json!([[":path", "/x"]]), 1000);
    assert_trap_500(&server, action, "no :method")
}

#[test]
fn a_missing_path_traps_with_500() -> R {
    let server = TestServer::start()?;
    let action = call(&server.addr, json!([[":method", "GET"]]), 1000);
    assert_trap_500(&server, action, "no :path")
}

fn root_dispatch_traps(hook: &str) -> R {
    let server = TestServer::start()?;
    let config = json!({
        hook: [get(&server.addr, "/from-root")],
        "on_request_headers": [{"do": "mark", "value": "ran"}],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(1))?;
    assert!(
        gw.wait_for_log(&format!("panicked at {hook}"), WAIT),
        "{:#?}",
        gw.stderr_lines()
    );
    assert!(gw.wait_for_log("can only send HTTP dispatch during", WAIT));
    // Kong proxies without a filter that failed to start (fail-open).
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 200);
    assert!(probe_seen(&resp).is_empty(), "{:?}", probe_seen(&resp));
    assert_eq!(server.requests_to("/front").len(), 1);
    assert!(server.requests_to("/from-root").is_empty());
    Ok(())
}

#[test]
fn dispatch_from_on_configure_traps() -> R {
    root_dispatch_traps("on_configure")
}

#[test]
fn dispatch_from_on_vm_start_traps() -> R {
    root_dispatch_traps("on_vm_start")
}

#[test]
fn dispatch_from_response_headers_traps() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_response_headers": [get(&server.addr, "/late")]});
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 500);
    assert!(gw.wait_for_log("panicked at on_response_headers", WAIT));
    assert!(server.requests_to("/late").is_empty());
    Ok(())
}

#[test]
fn a_dispatch_from_a_call_response_is_allowed() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_request_headers": [get(&server.addr, "/first")],
        "on_first_http_call_response": [get(&server.addr, "/second")],
        "on_http_call_response": [{"do": "record_call"}],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?)?;
    let resp = gw.get("/front", &[])?;
    assert_eq!(resp.status, 200);
    assert!(server.wait_for("/second", 1, WAIT));
    assert_eq!(server.requests_to("/first").len(), 1);
    // The request went upstream only after the chained call finished.
    let seen = probe_seen(&resp);
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("call_response="))
            .count(),
        2,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "call_status=200").count(),
        2,
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn https_uses_tls_with_sni_from_authority() -> R {
    let tls = TestServer::start_tls()?;
    let upstream = TestServer::start()?;
    let ca =
        std::env::temp_dir().join(format!("spec-ca-{}-{}.pem", std::process::id(), tls.port()));
    std::fs::write(&ca, tls.ca_pem.clone().unwrap_or_default())?;
    let action = call(
        &format!("tls.test:{}", tls.port()),
        json!([
            [":method", "GET"],
            [":path", "/secure"],
            [":authority", "tls.test"],
            [":scheme", "https"]
        ]),
        20_000,
    );
    let gw = gateway_opts(&upstream, action, |o| {
        o.resolve("tls.test=127.0.0.1").ca_file(ca.clone())
    })?;
    let seen = probe_seen(&gw.get("/", &[])?);
    let _ = std::fs::remove_file(&ca);
    assert_eq!(
        seen_value(&seen, "call_status").as_deref(),
        Some("200"),
        "{seen:?}"
    );
    let calls = tls.requests_to("/secure");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header("host"), Some("tls.test"));
    Ok(())
}

#[test]
fn https_with_an_untrusted_certificate_is_a_tls_handshake_failure() -> R {
    let tls = TestServer::start_tls()?;
    let upstream = TestServer::start()?;
    let action = call(
        &format!("tls.test:{}", tls.port()),
        json!([
            [":method", "GET"],
            [":path", "/secure"],
            [":authority", "tls.test"],
            [":scheme", "https"]
        ]),
        20_000,
    );
    // No --ca-file: the system CAs do not know the test CA.
    let gw = gateway_opts(&upstream, action, |o| o.resolve("tls.test=127.0.0.1"))?;
    let seen = probe_seen(&gw.get("/", &[])?);
    assert_eq!(
        seen_value(&seen, "call_dispatch_status").as_deref(),
        Some("tls handshake failure"),
        "{seen:?}"
    );
    assert!(tls.requests_to("/secure").is_empty());
    Ok(())
}

#[test]
fn https_to_an_ip_address_fails_for_lack_of_sni() -> R {
    let tls = TestServer::start_tls()?;
    let upstream = TestServer::start()?;
    let action = call(
        &tls.addr,
        json!([
            [":method", "GET"],
            [":path", "/secure"],
            [":scheme", "https"]
        ]),
        20_000,
    );
    let gw = gateway(&upstream, action)?;
    let seen = probe_seen(&gw.get("/", &[])?);
    assert_eq!(
        seen_value(&seen, "call_dispatch_status").as_deref(),
        Some("tls handshake failure"),
        "{seen:?}"
    );
    Ok(())
}

fn failure(seen: &[String]) -> (Option<String>, Option<String>, Option<String>) {
    (
        seen_value(seen, "call_status"),
        seen_value(seen, "call_dispatch_status"),
        seen_value(seen, "call_response").map(|r| {
            r.split_once(':')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or(r)
        }),
    )
}

#[test]
fn the_timeout_argument_bounds_the_call() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        call(
            &server.addr,
            json!([[":method", "GET"], [":path", "/hang"]]),
            300,
        ),
    )?;
    let resp = gw.get("/front", &[])?;
    // The filter did not answer itself: the request goes on (the filter must answer 503 itself).
    assert_eq!(resp.status, 200);
    let seen = probe_seen(&resp);
    assert_eq!(
        failure(&seen),
        (Some("-".into()), Some("timeout".into()), Some("0:0".into())),
        "{seen:?}"
    );
    assert_eq!(server.requests_to("/hang").len(), 1);
    Ok(())
}

#[test]
fn a_connection_closed_without_answer_has_no_status_and_dispatch_status_ok() -> R {
    // What Kong's engine reports (engine_facts.rs::callout_outcomes_read_as_on_the_engine).
    let server = TestServer::start()?;
    let gw = gateway(&server, get(&server.addr, "/close"))?;
    let seen = probe_seen(&gw.get("/front", &[])?);
    assert_eq!(
        failure(&seen),
        (Some("-".into()), Some("ok".into()), Some("0:0".into())),
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn a_refused_connection_is_a_broken_connection() -> R {
    let server = TestServer::start()?;
    let closed = cloudrun_spec::testkit::listeners::ClosedPort::new()?;
    let addr = closed.addr.to_string();
    let gw = gateway(&server, get(&addr, "/x"))?;
    let seen = probe_seen(&gw.get("/front", &[])?);
    assert_eq!(
        failure(&seen),
        (
            Some("-".into()),
            Some("broken connection".into()),
            Some("0:0".into())
        ),
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn an_unknown_name_is_a_resolver_failure() -> R {
    let server = TestServer::start()?;
    let gw = gateway(&server, get("no-such-host.invalid:80", "/x"))?;
    let seen = probe_seen(&gw.get("/front", &[])?);
    assert_eq!(
        failure(&seen),
        (
            Some("-".into()),
            Some("resolver failure".into()),
            Some("0:0".into())
        ),
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn a_response_head_over_8_kb_is_a_reader_failure() -> R {
    // Kong's engine keeps the status line's code (engine_facts.rs).
    let server = TestServer::start()?;
    let gw = gateway(&server, get(&server.addr, "/big-head"))?;
    let seen = probe_seen(&gw.get("/front", &[])?);
    assert_eq!(
        failure(&seen),
        (
            Some("200".into()),
            Some("reader failure".into()),
            Some("0:0".into())
        ),
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn a_chunked_response_body_is_decoded() -> R {
    let server = TestServer::start()?;
    let gw = gateway(&server, get(&server.addr, "/chunked"))?;
    let seen = probe_seen(&gw.get("/front", &[])?);
    assert_eq!(
        seen_value(&seen, "call_status").as_deref(),
        Some("200"),
        "{seen:?}"
    );
    assert_eq!(
        seen_value(&seen, "call_body").as_deref(),
        Some("hello world")
    );
    Ok(())
}

#[test]
fn a_dispatch_from_request_body_is_allowed_and_waited_for() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_request_body": [get(&server.addr, "/from-body")],
        "on_http_call_response": [{"do": "record_call"}],
    });
    let yml = probe_kong_yml(&server.url(), &config);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?)?;
    let resp = gw.post("/front", b"payload")?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = probe_seen(&resp);
    assert_eq!(seen_value(&seen, "body").as_deref(), Some("7"));
    assert_eq!(
        seen_value(&seen, "call_status").as_deref(),
        Some("200"),
        "{seen:?}"
    );
    assert_eq!(server.requests_to("/from-body").len(), 1);
    assert_eq!(server.requests_to("/front")[0].body, b"payload");
    Ok(())
}

#[test]
fn a_unix_socket_target_is_reached() -> R {
    let server = TestServer::start()?;
    let path = std::env::temp_dir().join(format!(
        "spec-unix-{}-{}.sock",
        std::process::id(),
        server.port()
    ));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    let seen_req = std::thread::spawn(move || -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while cloudrun_spec::http1::parse_request(&got)?.is_none() {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nunix")?;
        Ok(String::from_utf8_lossy(&got).into_owned())
    });
    let target = format!("unix:{}", path.display());
    let gw = gateway(&server, get(&target, "/over-unix"))?;
    let seen = probe_seen(&gw.get("/front", &[])?);
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        seen_value(&seen, "call_status").as_deref(),
        Some("200"),
        "{seen:?}"
    );
    assert_eq!(seen_value(&seen, "call_body").as_deref(), Some("unix"));
    let req = seen_req
        .join()
        .map_err(|_| anyhow::anyhow!("unix server panicked"))??;
    assert!(req.starts_with("GET /over-unix HTTP/1.1\r\n"), "{req}");
    Ok(())
}
