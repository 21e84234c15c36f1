//! Kong 3.9's second way to declare a filter: as a plugin of a route or a service
//! (`plugins: [{name: <filter>, config}]`), appended to the route's filter chain. Kong's rules
//! (`kong/runloop/wasm/plugins.lua`): a service or a route, never global, never a consumer; the
//! route's declaration wins over its service's, as for any plugin. The kong.yml reader is shared,
//! so the chains are checked on both engines.

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::*;
use serde_json::json;

fn mark(value: &str) -> String {
    yaml_string(&json!({"on_request_headers": [{"do": "mark", "value": value}]}).to_string())
}

/// The probe's `mark` records, in chain order.
fn marks(gw: &Gateway, path: &str) -> Result<Vec<String>> {
    let resp = gw.get(path, &[])?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    Ok(probe_seen(&resp)
        .into_iter()
        .filter_map(|s| s.strip_prefix("mark=").map(str::to_string))
        .collect())
}

fn filter_plugins_join_the_end_of_the_routes_chain(engine: Engine) -> Result<()> {
    let server = TestServer::start()?;
    let yml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: {url}\n    plugins:\n      - name: probe\n        config: {service}\n    routes:\n      - name: chained\n        paths: [/chained]\n        filter_chains:\n          - filters:\n              - name: probe\n                config: {chain}\n        plugins:\n          - name: probe\n            config: {route}\n      - name: inherits\n        paths: [/inherits]\n      - name: disabled\n        paths: [/disabled]\n        plugins:\n          - name: probe\n            enabled: false\n            config: {route}\n",
        url = server.url(),
        service = mark("service plugin"),
        chain = mark("route chain"),
        route = mark("route plugin"),
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.engine(engine))?;
    assert_eq!(
        marks(&gw, "/chained")?,
        vec!["route chain", "route plugin"],
        "the route's plugin overrides the service's and follows the chain"
    );
    assert_eq!(marks(&gw, "/inherits")?, vec!["service plugin"]);
    assert!(
        marks(&gw, "/disabled")?.is_empty(),
        "a disabled route plugin also hides the service's"
    );
    Ok(())
}

engine_tests!(filter_plugins_join_the_end_of_the_routes_chain);

#[test]
fn filter_plugins_are_never_global_nor_per_consumer() -> Result<()> {
    // Kong's own load-time checks; the stand-in's reader refuses the same files.
    let global =
        "_format_version: \"3.0\"\nplugins:\n  - name: probe\n    config: \"{}\"\nservices: []\n";
    let err = Gateway::start_failure(&GatewayOpts::with_probe(global)?)?;
    assert!(err.contains("cannot be global"), "{err}");
    let consumer = "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    routes:\n      - name: r\n        paths: [/]\n        plugins:\n          - name: probe\n            consumer: alice\n            config: \"{}\"\n";
    let err = Gateway::start_failure(&GatewayOpts::with_probe(consumer)?)?;
    assert!(err.contains("routes.1.plugins.1"), "{err}");
    assert!(err.contains("consumer"), "{err}");
    let unknown = "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    plugins:\n      - name: key-auth\n";
    let err = Gateway::start_failure(&GatewayOpts::with_probe(unknown)?)?;
    assert!(err.contains("services.1.plugins.1.name"), "{err}");
    Ok(())
}
