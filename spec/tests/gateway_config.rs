//! kong.yml filter configuration checks done at start, like Kong's: `config` as a string, or as
//! an object validated against `<name>.meta.json`'s draft-4 `config_schema`; filter names.

use cloudrun_spec::testkit::gateway::*;
use serde_json::json;

type R = anyhow::Result<()>;

const META: &str = r#"{"config_schema": {"type": "object", "properties": {"on_request_headers": {"type": "array"}, "level": {"type": "integer", "minimum": 1}}, "required": ["level"], "additionalProperties": false}}"#;

fn object_yml(upstream: &str, config: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: {upstream}\n    routes:\n      - name: r\n        paths: [/]\n        filter_chains:\n          - filters:\n              - name: probe\n                config:\n{config}\n"
    )
}

#[test]
fn an_object_config_is_validated_and_json_encoded_for_the_filter() -> R {
    let server = TestServer::start()?;
    let y = object_yml(
        &server.url(),
        "                  level: 3\n                  on_request_headers:\n                    - do: mark\n                      value: from-object",
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(y)?.meta("probe", META))?;
    let seen = probe_seen(&gw.get("/", &[])?);
    assert_eq!(
        seen_value(&seen, "mark").as_deref(),
        Some("from-object"),
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn an_invalid_object_config_refuses_to_start_with_kongs_error_path() -> R {
    let y = object_yml("http://127.0.0.1:9", "                  level: 0");
    let err = Gateway::start_failure(&GatewayOpts::with_probe(y)?.meta("probe", META))?;
    assert!(err.contains("filters.1.config"), "{err}");
    assert!(err.contains("level"), "{err}");
    let y = object_yml("http://127.0.0.1:9", "                  other: 1");
    let err = Gateway::start_failure(&GatewayOpts::with_probe(y)?.meta("probe", META))?;
    assert!(err.contains("filters.1.config"), "{err}");
    Ok(())
}

#[test]
fn an_object_config_without_meta_json_refuses_to_start() -> R {
    let y = object_yml("http://127.0.0.1:9", "                  level: 3");
    let err = Gateway::start_failure(&GatewayOpts::with_probe(y)?)?;
    assert!(
        err.contains("filters.1.config") && err.contains("string"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_string_config_is_passed_as_is() -> R {
    let server = TestServer::start()?;
    let y = probe_kong_yml(
        &server.url(),
        &json!({"on_request_headers": [{"do": "mark", "value": "from-string"}]}),
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(y)?)?;
    assert_eq!(
        seen_value(&probe_seen(&gw.get("/", &[])?), "mark").as_deref(),
        Some("from-string")
    );
    Ok(())
}

#[test]
fn an_unknown_filter_refuses_to_start() -> R {
    let y = "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    routes:\n      - name: r\n        paths: [/]\n        filter_chains:\n          - filters:\n              - name: nosuch\n                config: \"\"\n";
    let err = Gateway::start_failure(&GatewayOpts::with_probe(y)?)?;
    assert!(
        err.contains("filters.1.name: no such filter: nosuch"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_filter_named_like_a_plugin_refuses_to_start() -> R {
    let y = probe_kong_yml("http://127.0.0.1:9", &json!({}));
    let mut opts = GatewayOpts::with_probe(y)?;
    opts.filters.push(("jwt".into(), probe_wasm()?, None));
    let err = Gateway::start_failure(&opts)?;
    assert!(err.contains("\"jwt\"") && err.contains("plugin"), "{err}");
    Ok(())
}

#[test]
fn a_filter_name_with_a_dash_refuses_to_start() -> R {
    let y = probe_kong_yml("http://127.0.0.1:9", &json!({}));
    let mut opts = GatewayOpts::with_probe(y)?;
    opts.filters.push(("my-filter".into(), probe_wasm()?, None));
    let err = Gateway::start_failure(&opts)?;
    assert!(err.contains("invalid filter name \"my-filter\""), "{err}");
    Ok(())
}

#[test]
fn a_wrong_format_version_refuses_to_start() -> R {
    let y = "_format_version: \"1.1\"\nservices: []\n";
    let err = Gateway::start_failure(&GatewayOpts::with_probe(y)?)?;
    assert!(err.contains("_format_version"), "{err}");
    Ok(())
}

#[test]
fn gateway_answers_help() -> R {
    let out = std::process::Command::new(cloudrun_spec::testkit::bin_path("gateway")?)
        .arg("--help")
        .output()?;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--filters",
        "--listen",
        "--workers",
        "--shm-kv",
        "--resolve",
        "--lua-resolver",
    ] {
        assert!(text.contains(flag), "{flag}: {text}");
    }
    Ok(())
}
