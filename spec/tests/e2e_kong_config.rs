//! The filter's configuration as Kong hands it over, on both engines: Kong decodes kong.yml and
//! re-encodes an object `config` with lua-cjson (`spec/src/gateway/cjson.rs`: `/` as `\/`, `[]`
//! as `{}`, numbers with 14 significant digits, keys reordered), and Kong's `proxy_set_header`
//! lines replace a header of their names whatever the filter set, so configuration refuses
//! those names as header targets.

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::{Gateway, GatewayOpts};
use cloudrun_spec::testkit::mocks::MintRequest;
use cloudrun_spec::testkit::stack::{filter_meta, filter_wasm, start_gateway, Stack};
use serde_json::{json, Value};

/// A number with 14 significant digits survives cjson; one with 16 is rounded to 14.
const FOURTEEN_DIGITS: f64 = 0.123_456_789_012_34;
const SIXTEEN_DIGITS: f64 = 1.234_567_890_123_456;
/// [`SIXTEEN_DIGITS`] as Kong's `%.14g` writes it.
const ROUNDED: f64 = 1.234_567_890_123_5;

fn a_config_as_kongs_cjson_writes_it_is_accepted_and_enforced(engine: Engine) -> Result<()> {
    let stack = Stack::with_config(engine, |c| {
        c["required_scopes"] = json!([]);
        c["required_claims"] = json!({"score": [FOURTEEN_DIGITS, SIXTEEN_DIGITS]});
        c["claims_to_headers"] =
            json!({"sub": "x-user-id", "email": "x-user-email", "score": "x-score"});
    })?;
    if engine == Engine::Wasmx {
        // What nginx.conf hands the filter (backslashes doubled by nginx.conf's quoting).
        let conf = std::fs::read_to_string(stack.gateway.dir.join("nginx.conf"))?;
        for text in [
            r#""issuer":"http:\\/\\/"#,
            r#""required_scopes":{}"#,
            "[0.12345678901234,1.2345678901235]",
        ] {
            assert!(conf.contains(text), "{text} not in {conf}");
        }
    }
    let token = |score: f64| stack.mint(MintRequest::new("RS256").claim("score", score));
    // The issuer URL (`http:\/\/...`), the empty scope list (`{}`) and the 14-digit value read
    // as written: a token that meets them passes, with its claims mapped.
    let resp = stack.call(Some(&token(FOURTEEN_DIGITS)?))?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = stack.upstream_last()?.unwrap_or_default()["headers"].clone();
    assert_eq!(seen["x-user-id"], json!(["mock-user"]));
    assert_eq!(seen["x-score"], json!(["0.12345678901234"]));
    // Kong rounded the 16-digit value to 1.2345678901235: the claim as written no longer matches.
    let resp = stack.call(Some(&token(SIXTEEN_DIGITS)?))?;
    assert_eq!(resp.status, 403, "{}", resp.text());
    let resp = stack.call(Some(&token(ROUNDED)?))?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    stack.gateway.check_engine_log()
}

/// Header targets Kong's `proxy_set_header` lines would overwrite, one per setting.
fn kong_owned_targets() -> [(&'static str, Value, &'static str); 3] {
    [
        (
            "claims_to_headers",
            json!({"sub": "x-user-id", "email": "X-Forwarded-For"}),
            "claims_to_headers.email",
        ),
        ("claims_header", json!("X-Real-IP"), "claims_header"),
        (
            "original_token_header",
            json!("Via"),
            "original_token_header",
        ),
    ]
}

fn kong_owned_header_targets_are_refused_at_config(engine: Engine) -> Result<()> {
    // Kong's validation (meta.json) refuses the declarative config: the gateway does not start.
    let stack = Stack::with_config(engine, |_| {})?;
    for (field, value, _) in kong_owned_targets() {
        let mut config = stack.config.clone();
        config[field] = value;
        let err = match start_gateway(&config, stack.cloudrun.http_addr(), 1, engine) {
            Ok(_) => panic!("{field}: a gateway started with a Kong-owned target"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(field), "{field}: {err}");
    }
    Ok(())
}

fn kong_owned_header_targets_are_refused_by_the_filter_without_meta_json(
    engine: Engine,
) -> Result<()> {
    // A hybrid data plane skips meta.json: the filter's own validation refuses the config, and
    // every request is answered 500 without reaching the upstream.
    let stack = Stack::with_config(engine, |_| {})?;
    let token = stack.valid_token()?;
    for (field, value, named) in kong_owned_targets() {
        let mut config = stack.config.clone();
        config[field] = value;
        let gw = string_config_gateway(&config, stack.cloudrun.http_addr(), engine)?;
        let before = stack.upstream_requests()?;
        let auth = format!("Bearer {token}");
        let resp = gw.get("/orders", &[("authorization", &auth)])?;
        assert_eq!(resp.status, 500, "{field}: {}", resp.text());
        assert_eq!(stack.upstream_requests()?, before, "{field}: proxied");
        assert!(
            gw.count_log(&format!("{named}: `")) > 0,
            "{field}: the log names {named}: {:?}",
            gw.stderr_lines()
        );
        gw.check_engine_log()?;
    }
    Ok(())
}

/// A gateway whose route hands the filter `config` as a JSON string: no schema check.
fn string_config_gateway(config: &Value, upstream: &str, engine: Engine) -> Result<Gateway> {
    let text = Value::String(config.to_string()).to_string();
    let kong_yml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: orders\n    url: http://{upstream}\n    \
         routes:\n      - name: orders\n        paths: [\"/orders\"]\n        strip_path: false\n        \
         filter_chains:\n          - filters:\n              - name: cloudrun_oidc\n                \
         config: {text}\n"
    );
    Gateway::start(&GatewayOpts {
        kong_yml,
        filters: vec![("cloudrun_oidc".into(), filter_wasm()?, filter_meta())],
        workers: 1,
        shm_kv: vec!["cloudrun_oidc=12m".into()],
        lua_resolver: true,
        engine,
        ..GatewayOpts::default()
    })
}

engine_tests!(
    a_config_as_kongs_cjson_writes_it_is_accepted_and_enforced,
    kong_owned_header_targets_are_refused_at_config,
    kong_owned_header_targets_are_refused_by_the_filter_without_meta_json,
);
