//! Metrics: define / increment / record / get, summed over workers, readable at `GET /__metrics`
//! under Kong's Prometheus names (`pw_<filter>_<metric>`).

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;

type R = anyhow::Result<()>;

#[test]
fn counters_gauges_and_histograms_are_visible_at_admin_metrics() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [
            {"do": "define_metric", "kind": "counter", "name": "requests"},
            {"do": "define_metric", "kind": "gauge", "name": "level"},
            {"do": "define_metric", "kind": "histogram", "name": "latency_ms"},
        ],
        "on_request_headers": [
            {"do": "increment_metric", "name": "requests", "by": 1},
            {"do": "record_metric", "name": "level", "value": 42},
            {"do": "record_metric", "name": "latency_ms", "value": 5},
        ],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(2),
    )?;
    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let resp = gw.get("/", &[])?;
        let seen = probe_seen(&resp);
        assert_eq!(
            seen_value(&seen, "increment_metric").as_deref(),
            Some("Ok"),
            "{seen:?}"
        );
        assert_eq!(seen_value(&seen, "record_metric").as_deref(), Some("Ok"));
        workers.insert(resp.header("x-spec-worker").unwrap_or("?").to_string());
    }
    assert_eq!(workers.len(), 2);
    let m = gw.metrics()?;
    // Summed over both workers.
    assert_eq!(m["pw_probe_requests"], 4, "{m}");
    assert_eq!(m["pw_probe_level"], 42, "{m}");
    assert_eq!(m["pw_probe_latency_ms"]["count"], 4, "{m}");
    assert_eq!(m["pw_probe_latency_ms"]["sum"], 20, "{m}");
    Ok(())
}

#[test]
fn get_metric_reads_the_counter_summed_over_workers() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [{"do": "define_metric", "kind": "counter", "name": "hits"}],
        "on_request_headers": [
            {"do": "increment_metric", "name": "hits", "by": 2},
            {"do": "get_metric", "name": "hits"},
        ],
    });
    let gw = Gateway::start(
        &GatewayOpts::with_probe(probe_kong_yml(&server.url(), &config))?.workers(2),
    )?;
    let mut last = String::new();
    for _ in 0..3 {
        last = seen_value(&probe_seen(&gw.get("/", &[])?), "metric_hits").unwrap_or_default();
    }
    assert_eq!(last, "6");
    Ok(())
}

#[test]
fn a_counter_cannot_go_down_and_histograms_cannot_be_read() -> R {
    let server = TestServer::start()?;
    let config = json!({
        "on_configure": [
            {"do": "define_metric", "kind": "counter", "name": "c"},
            {"do": "define_metric", "kind": "histogram", "name": "h"},
        ],
        "on_request_headers": [
            {"do": "increment_metric", "name": "c", "by": -1},
            {"do": "get_metric", "name": "h"},
        ],
    });
    let gw = Gateway::start(&GatewayOpts::with_probe(probe_kong_yml(
        &server.url(),
        &config,
    ))?)?;
    let seen = probe_seen(&gw.get("/", &[])?);
    assert_eq!(
        seen_value(&seen, "increment_metric").as_deref(),
        Some("BadArgument"),
        "{seen:?}"
    );
    assert_eq!(
        seen_value(&seen, "metric_h").as_deref(),
        Some("BadArgument"),
        "{seen:?}"
    );
    assert_eq!(gw.metrics()?["pw_probe_c"], 0);
    Ok(())
}
