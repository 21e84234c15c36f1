//! Proxying to the service: method, path, query, body and headers preserved; Kong's forwarding
//! headers added; upstream failures answered 502.

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;

type R = anyhow::Result<()>;

#[test]
fn method_path_query_body_and_headers_reach_the_upstream() -> R {
    let server = TestServer::start()?;
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &json!({}),
    ))?)?;
    let resp = gw.request(
        "PUT",
        "/items/7?a=1&b=two",
        &[("X-Custom", "v1"), ("Content-Type", "text/plain")],
        b"the body",
    )?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The upstream's answer comes back with its headers.
    assert_eq!(resp.header("x-test-server"), Some("yes"));
    assert!(
        resp.text().contains("\"target\":\"/items/7?a=1&b=two\""),
        "{}",
        resp.text()
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.target, "/items/7?a=1&b=two");
    assert_eq!(r.body, b"the body");
    assert_eq!(r.header("x-custom"), Some("v1"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("host"), Some(server.addr.as_str()));
    assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(r.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-path"), Some("/items/7"));
    Ok(())
}

#[test]
fn a_request_body_reaches_the_filter_and_the_upstream() -> R {
    let server = TestServer::start()?;
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &json!({}),
    ))?)?;
    let resp = gw.post("/p", b"12345")?;
    assert_eq!(seen_value(&probe_seen(&resp), "body").as_deref(), Some("5"));
    assert_eq!(server.requests_to("/p")[0].body, b"12345");
    Ok(())
}

#[test]
fn an_unreachable_upstream_is_502() -> R {
    let closed = cloudrun_spec::testkit::listeners::ClosedPort::new()?;
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &format!("http://{}", closed.addr),
        &json!({}),
    ))?)?;
    assert_eq!(gw.get("/", &[])?.status, 502);
    Ok(())
}

#[test]
fn a_local_response_does_not_go_upstream() -> R {
    let server = TestServer::start()?;
    let config = json!({"on_request_headers": [{"do": "respond", "status": 401, "body": "no", "headers": [["www-authenticate", "Bearer"]]}]});
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    let resp = gw.get("/", &[])?;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.text(), "no");
    assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
    assert!(server.requests().is_empty());
    Ok(())
}

#[test]
fn an_https_service_is_reached_over_tls_without_verification_like_kongs_default() -> R {
    let tls = TestServer::start_tls()?;
    let url = format!("https://tls.test:{}/base", tls.port());
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&url, &json!({})))?.resolve("tls.test=127.0.0.1"),
    )?;
    let resp = gw.get("/x", &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-test-server"), Some("yes"));
    let reqs = tls.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "/base/x");
    assert_eq!(
        reqs[0].header("host"),
        Some(format!("tls.test:{}", tls.port()).as_str())
    );
    Ok(())
}
