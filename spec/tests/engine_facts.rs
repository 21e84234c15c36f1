//! What Kong's engine (nginx + ngx_wasm_module) does that a filter must live with, measured with
//! the probe filter on both engines. Where the stand-in can copy the engine, the same assertions
//! hold on both; where it cannot (a worker crash), each engine's own outcome is asserted. The
//! filter's design follows from these: a client's header cannot be taken out of a request
//! (`e2e_headers.rs`), a root context never starts a callout from a call answer
//! (`authn::RootJobs`), and a refusal after a callout that sent a body has no body
//! (`authn::Request::may_refuse_with_body`). spec/README.md lists them with the other
//! differences.

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A gateway running the probe on `/` with `config`, one worker, upstream `server`.
fn probe(engine: Engine, server: &TestServer, config: &Value) -> Result<Gateway> {
    let yml = probe_kong_yml(&server.url(), config);
    Gateway::start(&GatewayOpts::with_probe(yml)?.workers(1).engine(engine))
}

/// Every value the upstream received for `name` in its last request.
fn upstream_values(server: &TestServer, name: &str) -> Vec<String> {
    server
        .requests()
        .last()
        .map(|r| {
            r.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn a_removed_request_header_still_reaches_the_upstream(engine: Engine) -> Result<()> {
    let server = TestServer::start()?;
    let gw = probe(
        engine,
        &server,
        &json!({"on_request_headers": [
            {"do": "count_headers"},
            {"do": "remove_header", "name": "x-forged"},
            {"do": "count_headers"},
            {"do": "get_header", "name": "x-forged"},
        ]}),
    )?;
    let resp = gw.get("/x", &[("X-Forged", "mallory")])?;
    assert_eq!(resp.status, 200);
    let seen = probe_seen(&resp);
    assert_eq!(seen_value(&seen, "remove").as_deref(), Some("Ok"));
    let counts: Vec<usize> = seen
        .iter()
        .filter_map(|s| s.strip_prefix("headers=")?.parse().ok())
        .collect();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts[1] + 1, counts[0], "gone from the pairs: {seen:?}");
    assert_eq!(
        seen_value(&seen, "header_x-forged").as_deref(),
        Some("mallory"),
        "still found by name"
    );
    assert_eq!(
        upstream_values(&server, "x-forged"),
        vec!["mallory"],
        "but nginx proxies it"
    );
    Ok(())
}

fn replacing_a_header_rewrites_its_first_copy_and_a_second_copy_survives(
    engine: Engine,
) -> Result<()> {
    let server = TestServer::start()?;
    let gw = probe(
        engine,
        &server,
        &json!({"on_request_headers": [
            {"do": "set_header", "name": "x-once", "value": "filter"},
            {"do": "set_header", "name": "x-twice", "value": "filter"},
            {"do": "set_header", "name": "x-new", "value": "filter"},
        ]}),
    )?;
    let resp = gw.get(
        "/x",
        &[
            ("x-once", "client"),
            ("x-twice", "client-1"),
            ("X-Twice", "client-2"),
        ],
    )?;
    assert_eq!(resp.status, 200);
    assert_eq!(upstream_values(&server, "x-once"), vec!["filter"]);
    assert_eq!(
        upstream_values(&server, "x-twice"),
        vec!["filter", "client-2"],
        "the second copy is marked deleted and still sent"
    );
    assert_eq!(upstream_values(&server, "x-new"), vec!["filter"]);
    Ok(())
}

fn filters_see_100_header_pairs_but_every_header_by_name(engine: Engine) -> Result<()> {
    let server = TestServer::start()?;
    let gw = probe(
        engine,
        &server,
        &json!({"on_request_headers": [
            {"do": "count_headers"},
            {"do": "get_header", "name": "x-last"},
        ]}),
    )?;
    let names: Vec<String> = (0..120).map(|i| format!("x-fill-{i}")).collect();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    headers.push(("x-last", "after 120"));
    let resp = gw.get("/x", &headers)?;
    let seen = probe_seen(&resp);
    assert_eq!(
        seen_value(&seen, "headers").as_deref(),
        Some("100"),
        "{seen:?}"
    );
    let total: usize = seen_value(&seen, "num_headers")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        total > 121,
        "on_request_headers gets the whole count: {seen:?}"
    );
    assert_eq!(
        seen_value(&seen, "header_x-last").as_deref(),
        Some("after 120")
    );
    Ok(())
}

fn request_maps_list_pseudo_headers_and_run_past_their_buffer_from_100_short_headers(
    engine: Engine,
) -> Result<()> {
    // The pairs list `:path`, `:method`, `:scheme`, `:authority` before the headers and stop at
    // 100; when the headers the writer drops for them are shorter than they are, the buffer
    // handed over is shorter than the map written and the SDK's reader of the pairs panics
    // (500). Two-byte names; the client adds Host first and Connection last.
    let server = TestServer::start()?;
    let gw = probe(
        engine,
        &server,
        &json!({"on_request_headers": [{"do": "count_headers"}]}),
    )?;
    let names: Vec<String> = (0..99u8)
        .map(|i| format!("{}{}", (b'a' + i / 10) as char, i % 10))
        .collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    for (total, pairs) in [(95, "99"), (97, "100")] {
        let resp = gw.get("/x", &headers[..total - 2])?;
        assert_eq!(resp.status, 200, "{total} headers");
        let seen = probe_seen(&resp);
        assert_eq!(
            seen_value(&seen, "headers").as_deref(),
            Some(pairs),
            "{total} headers: {seen:?}"
        );
    }
    // From 100 headers on the pseudo-headers the writer adds (`:authority` is the server name
    // and port) outweigh any such short headers; at 98 and 99 it depends on that name's length.
    for total in [100, 101] {
        let resp = gw.get("/x", &headers[..total - 2])?;
        assert_eq!(resp.status, 500, "{total} headers");
    }
    Ok(())
}

fn nginx_refuses_duplicated_authorization_and_long_header_lines(engine: Engine) -> Result<()> {
    let server = TestServer::start()?;
    let gw = probe(
        engine,
        &server,
        &json!({"on_request_headers": [{"do": "mark", "value": "ran"}]}),
    )?;
    let long = "b".repeat(9000);
    let big = "b".repeat(7000);
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "two Authorization",
            vec![("authorization", "Bearer a"), ("Authorization", "Bearer b")],
        ),
        ("two Host", vec![("host", "a"), ("Host", "b")]),
        ("a 9 KB header line", vec![("x-big", &long)]),
        (
            "40 KB of headers",
            vec![
                ("x-1", &big),
                ("x-2", &big),
                ("x-3", &big),
                ("x-4", &big),
                ("x-5", &big),
            ],
        ),
    ];
    for (what, headers) in cases {
        let resp = gw.get("/x", &headers)?;
        assert_eq!(resp.status, 400, "{what}");
        assert!(probe_seen(&resp).is_empty(), "{what}: a filter ran");
    }
    assert!(
        server.requests().is_empty(),
        "a refused request was proxied"
    );
    // Other headers may come twice: the filter sees both.
    let resp = gw.get("/x", &[("x-dup", "1"), ("X-Dup", "2")])?;
    assert_eq!(resp.status, 200);
    assert_eq!(upstream_values(&server, "x-dup").len(), 2);
    Ok(())
}

fn underscored_header_names_reach_the_filter_and_the_upstream(engine: Engine) -> Result<()> {
    // Kong sets `underscores_in_headers on` (plain nginx drops such names before any filter).
    let server = TestServer::start()?;
    let gw = probe(
        engine,
        &server,
        &json!({"on_request_headers": [{"do": "get_header", "name": "x_user_id"}]}),
    )?;
    let resp = gw.get("/x", &[("x_user_id", "admin")])?;
    assert_eq!(resp.status, 200);
    assert_eq!(
        seen_value(&probe_seen(&resp), "header_x_user_id").as_deref(),
        Some("admin")
    );
    assert_eq!(upstream_values(&server, "x_user_id"), vec!["admin"]);
    Ok(())
}

/// Every header Kong's `proxy_set_header` lines set but `Host` and the hop-by-hop ones (the
/// stand-in's list: this fact checks it against the engine).
fn kong_set() -> Vec<&'static str> {
    cloudrun_spec::gateway::proxy::KONG_SET_HEADERS
        .into_iter()
        .filter(|name| !matches!(*name, "host" | "te" | "upgrade" | "connection"))
        .collect()
}

fn kongs_proxy_headers_replace_the_clients_and_the_filters(engine: Engine) -> Result<()> {
    // The filter sets each of Kong's names (and one of its own); the client sends them too.
    let kong_set = kong_set();
    let mut actions: Vec<Value> = kong_set
        .iter()
        .map(|name| json!({"do": "set_header", "name": name, "value": "from-filter"}))
        .collect();
    actions.push(json!({"do": "set_header", "name": "x-filter-own", "value": "from-filter"}));
    let server = TestServer::start()?;
    let gw = probe(engine, &server, &json!({"on_request_headers": actions}))?;
    let client: Vec<(&str, &str)> = kong_set.iter().map(|name| (*name, "from-client")).collect();
    let resp = gw.get("/x/y?q=1", &client)?;
    assert_eq!(resp.status, 200);
    let one = |name: &str| -> String {
        let values = upstream_values(&server, name);
        assert!(values.len() <= 1, "{name}: {values:?}");
        values.into_iter().next().unwrap_or_default()
    };
    // Kong's values, made from what the client sent before the filter ran (no trusted IPs:
    // the client's forwarded proto, host, port, path and prefix are not believed).
    assert_eq!(one("via"), "from-client, 1.1 kong/3.9.3");
    assert_eq!(one("x-forwarded-for"), "from-client, 127.0.0.1");
    assert_eq!(one("x-forwarded-proto"), "http");
    assert_eq!(one("x-forwarded-host"), "127.0.0.1");
    assert_eq!(
        one("x-forwarded-port"),
        gw.http.rsplit(':').next().unwrap_or("")
    );
    assert_eq!(one("x-forwarded-path"), "/x/y");
    assert_eq!(
        one("x-forwarded-prefix"),
        "",
        "the route `/` strips no prefix"
    );
    assert_eq!(one("x-real-ip"), "127.0.0.1");
    let id = one("x-kong-request-id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
    assert_eq!(one("connection"), "keep-alive");
    // The filter's own header passes.
    assert_eq!(one("x-filter-own"), "from-filter");
    Ok(())
}

fn call(server: &TestServer, path: &str) -> Value {
    json!({"do": "dispatch", "upstream": server.addr,
           "headers": [[":method", "GET"], [":path", path], [":authority", "probe.test"]]})
}

fn a_request_context_may_start_a_callout_from_a_call_answer(engine: Engine) -> Result<()> {
    // What the filter does for a cold request: discovery, then JWKS from the answer, then resume.
    let server = TestServer::start()?;
    let gw = probe(
        engine,
        &server,
        &json!({"pause": true,
                "on_request_headers": [call(&server, "/first")],
                "on_http_call_response_1": [call(&server, "/second")],
                "on_http_call_response_2": [{"do": "resume"}]}),
    )?;
    for _ in 0..20 {
        assert_eq!(gw.get("/x", &[])?.status, 200);
    }
    assert_eq!(server.requests_to("/first").len(), 20);
    assert_eq!(server.requests_to("/second").len(), 20);
    gw.check_engine_log()
}

fn a_root_context_starting_a_callout_from_a_call_answer_crashes_the_engine(
    engine: Engine,
) -> Result<()> {
    let server = TestServer::start()?;
    let mut gw = probe(
        engine,
        &server,
        &json!({"on_configure": [{"do": "set_tick_period", "ms": 200}],
                "on_tick": [call(&server, "/tick")],
                "root_on_http_call_response": [call(&server, "/chained")]}),
    )?;
    gw.crash_expected = true;
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.check_engine_log().is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = gw.stderr_lines();
    match engine {
        // The chained call gets the connection the answered one released, which the engine
        // then tears down under it: SIGSEGV in ngx_http_proxy_wasm_dispatch_request.
        Engine::Wasmx => assert!(
            log.iter().any(|l| l.contains("exited on signal 11")),
            "no crash: {log:?}"
        ),
        Engine::StandIn => assert!(
            log.iter()
                .any(|l| l.contains("[alert]") && l.contains("crashes Kong's engine")),
            "no alert: {log:?}"
        ),
    }
    assert!(
        server.requests_to("/chained").is_empty(),
        "the chained call went out"
    );
    Ok(())
}

fn callout_outcomes_read_as_on_the_engine(engine: Engine) -> Result<()> {
    // (target, path, expected `:status`, expected `:dispatch_status`): what a filter reads.
    let server = TestServer::start()?;
    let closed = cloudrun_spec::testkit::listeners::ClosedPort::new()?;
    let refused = closed.addr.to_string();
    let cases = [
        ("answered", server.addr.as_str(), "/ok", "200", "ok"),
        ("refused", refused.as_str(), "/ok", "-", "broken connection"),
        (
            "closed unanswered",
            server.addr.as_str(),
            "/close",
            "-",
            "ok",
        ),
        ("hanging", server.addr.as_str(), "/hang", "-", "timeout"),
        (
            "9 KB head",
            server.addr.as_str(),
            "/big-head",
            "200",
            "reader failure",
        ),
        ("chunked", server.addr.as_str(), "/chunked", "200", "ok"),
    ];
    for (what, target, path, status, dispatch_status) in cases {
        let mut call = call(&server, path);
        call["upstream"] = json!(target);
        call["timeout_ms"] = json!(700);
        let gw = probe(
            engine,
            &server,
            &json!({"pause": true, "on_request_headers": [call],
                    "on_http_call_response": [{"do": "record_call"},
                                              {"do": "respond", "status": 299}]}),
        )?;
        let seen = probe_seen(&gw.get("/x", &[])?);
        assert_eq!(
            seen_value(&seen, "call_status").as_deref(),
            Some(status),
            "{what}"
        );
        assert_eq!(
            seen_value(&seen, "call_dispatch_status").as_deref(),
            Some(dispatch_status),
            "{what}"
        );
    }
    Ok(())
}

fn a_local_response_body_after_an_unanswered_callout_with_a_body_crashes_the_engine(
    engine: Engine,
) -> Result<()> {
    // A POST whose peer closes without answering, then a refusal: without a body it is safe
    // (what the filter does after any callout that sent a body), with one no longer than the
    // POST's body (its buffer is reused unreset) the worker dies.
    let server = TestServer::start()?;
    let form = format!("grant_type=x&assertion={}", "y".repeat(100));
    let post = json!({"do": "dispatch", "upstream": server.addr, "body": form,
                      "headers": [[":method", "POST"], [":path", "/close"], [":authority", "x"]]});
    let refuse = |body: &str| json!({"do": "respond", "status": 503, "body": body});
    let record = json!({"do": "record_call"});
    let gw = probe(
        engine,
        &server,
        &json!({"pause": true, "on_request_headers": [post.clone()],
                "on_http_call_response": [record.clone(), refuse("")]}),
    )?;
    for _ in 0..5 {
        assert_eq!(gw.get("/x", &[])?.status, 503);
    }
    gw.check_engine_log()?;
    drop(gw);
    let mut gw = probe(
        engine,
        &server,
        &json!({"pause": true, "on_request_headers": [post],
                "on_http_call_response": [record, refuse("{\"message\":\"x\"}")]}),
    )?;
    gw.crash_expected = true;
    let _ = gw.get("/x", &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.check_engine_log().is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = gw.stderr_lines();
    // The engine's alert; this debug build then aborts on an assertion (signal 6).
    let marker = match engine {
        Engine::Wasmx => "zero size buf in writer",
        Engine::StandIn => "crashes Kong's engine",
    };
    assert!(log.iter().any(|l| l.contains(marker)), "{log:?}");
    Ok(())
}

/// The first argument of `dispatch_http_call` goes through nginx's `ngx_parse_url`: what it
/// refuses traps the request (500, the engine's message in the log), what it takes is called,
/// even where Rust's readers would refuse it (`0127.0.0.1`). `unix:` in any case names a socket
/// path, relative ones too. spec/README.md, "Dispatch targets".
fn dispatch_targets_parse_as_on_the_engine(engine: Engine) -> Result<()> {
    let server = TestServer::start()?;
    let port = server.port();
    let refused = [
        ("[.]".to_string(), "invalid IPv6 address"),
        ("[:]".to_string(), "invalid IPv6 address"),
        (format!("[1.2.3.4]:{port}"), "invalid IPv6 address"),
        ("[12345::]".to_string(), "invalid IPv6 address"),
        ("[1:2:3:4:5:6:7::]".to_string(), "invalid IPv6 address"),
        (format!("[::1]x:{port}"), "invalid host"),
        (format!("127.0.0.1:{port}/x"), "invalid host"),
        ("127.0.0.1:0".to_string(), "invalid port"),
        ("unix:".to_string(), "no path in the unix domain socket"),
    ];
    let reached = [format!("127.0.0.1:{port}"), format!("0127.0.0.1:{port}")];
    // A relative socket path nobody listens on: a failed call, not a trap.
    let not_listening = ["unix:80", "UNIX:80"];
    let route = |i: usize, target: &str| {
        let mut call = call(&server, &format!("/t{i}"));
        call["upstream"] = json!(target);
        call["timeout_ms"] = json!(2000);
        json!({"pause": true, "on_request_headers": [call],
               "on_http_call_response": [{"do": "record_call"}, {"do": "respond", "status": 299}]})
    };
    let targets: Vec<String> = refused
        .iter()
        .map(|(t, _)| t.clone())
        .chain(reached.iter().cloned())
        .chain(not_listening.iter().map(|t| t.to_string()))
        .collect();
    let names: Vec<String> = (0..targets.len()).map(|i| format!("t{i}")).collect();
    let paths: Vec<String> = (0..targets.len()).map(|i| format!("/t{i}")).collect();
    let routes: Vec<(&str, &str, Value)> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (names[i].as_str(), paths[i].as_str(), route(i, t)))
        .collect();
    let yml = probe_routes_yml(&server.url(), &routes);
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(1).engine(engine))?;
    for (i, (target, message)) in refused.iter().enumerate() {
        let resp = gw.get(&format!("/t{i}"), &[])?;
        assert_eq!(resp.status, 500, "{target} was not refused");
        let needle = format!("dispatch failed: tcp socket - {message}");
        let so_far = refused
            .iter()
            .take(i + 1)
            .filter(|(_, m)| m == message)
            .count();
        assert!(
            gw.wait_log_count(&needle, so_far) >= so_far,
            "{target}: no {needle:?} in {:#?}",
            gw.stderr_lines()
        );
        assert!(server.requests_to(&format!("/t{i}")).is_empty(), "{target}");
    }
    for (j, target) in reached.iter().enumerate() {
        let i = refused.len() + j;
        let seen = probe_seen(&gw.get(&format!("/t{i}"), &[])?);
        assert_eq!(
            seen_value(&seen, "call_status").as_deref(),
            Some("200"),
            "{target}"
        );
        assert_eq!(server.requests_to(&format!("/t{i}")).len(), 1, "{target}");
    }
    for (j, target) in not_listening.iter().enumerate() {
        let i = refused.len() + reached.len() + j;
        let resp = gw.get(&format!("/t{i}"), &[])?;
        assert_eq!(resp.status, 299, "{target} trapped");
        assert_eq!(
            seen_value(&probe_seen(&resp), "call_status").as_deref(),
            Some("-"),
            "{target}"
        );
    }
    Ok(())
}

engine_tests!(
    dispatch_targets_parse_as_on_the_engine,
    callout_outcomes_read_as_on_the_engine,
    a_local_response_body_after_an_unanswered_callout_with_a_body_crashes_the_engine,
    a_removed_request_header_still_reaches_the_upstream,
    replacing_a_header_rewrites_its_first_copy_and_a_second_copy_survives,
    filters_see_100_header_pairs_but_every_header_by_name,
    request_maps_list_pseudo_headers_and_run_past_their_buffer_from_100_short_headers,
    nginx_refuses_duplicated_authorization_and_long_header_lines,
    underscored_header_names_reach_the_filter_and_the_upstream,
    kongs_proxy_headers_replace_the_clients_and_the_filters,
    a_request_context_may_start_a_callout_from_a_call_answer,
    a_root_context_starting_a_callout_from_a_call_answer_crashes_the_engine,
);
