//! The draft-4 `config_schema` in `kong/cloudrun_oidc.meta.json` (what Kong checks at load time)
//! and the Rust parser (`FilterConfig::from_json`, what the filter enforces) agree on a corpus of
//! configurations: see `tests/config_corpus/README.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloudrun_oidc::config::{FilterConfig, Setting, SETTINGS};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn schema_doc() -> Value {
    let text = fs::read_to_string(root().join("kong/cloudrun_oidc.meta.json")).unwrap();
    let meta: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        meta.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["config_schema"],
        "meta.json holds config_schema only"
    );
    meta["config_schema"].clone()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft4::new(&schema_doc()).unwrap()
}

fn corpus(kind: &str) -> Vec<(String, Value)> {
    let dir = root().join("tests/config_corpus").join(kind);
    let mut out: Vec<(String, Value)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let doc: Value = serde_json::from_str(&fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, doc)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn schema_errors(v: &jsonschema::Validator, config: &Value) -> Vec<String> {
    v.iter_errors(config)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn parse(config: &Value) -> Result<FilterConfig, cloudrun_oidc::config::ConfigError> {
    FilterConfig::from_json(config.to_string().as_bytes())
}

/// What Kong DB-less sends for a configuration: every empty array becomes `{}`.
fn kong_db_less(v: &Value) -> Value {
    match v {
        Value::Array(items) if items.is_empty() => json!({}),
        Value::Array(items) => Value::Array(items.iter().map(kong_db_less).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), kong_db_less(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `issuers[0].algorithms[1]` → `/issuers/0/algorithms/1`; `(root)` → ``. Claim paths with
/// dots become deeper pointers, which only makes the parent check stricter for no real case.
fn field_pointer(field: &str) -> String {
    if field == "(root)" {
        return String::new();
    }
    let mut out = String::from("/");
    out.push_str(
        &field
            .replace("].", "/")
            .replace(['[', '.'], "/")
            .replace(']', ""),
    );
    out
}

#[test]
fn schema_is_valid_draft4() {
    let schema = schema_doc();
    assert_eq!(
        schema["$schema"],
        json!("http://json-schema.org/draft-04/schema#")
    );
    jsonschema::draft4::meta::validate(&schema).unwrap();
    validator();
}

#[test]
fn valid_corpus_is_accepted_by_both() {
    let v = validator();
    let cases = corpus("valid");
    assert!(cases.len() >= 10, "{} valid cases", cases.len());
    for (name, config) in cases {
        for (variant, config) in [
            ("as written", config.clone()),
            ("Kong DB-less", kong_db_less(&config)),
        ] {
            let errors = schema_errors(&v, &config);
            assert!(
                errors.is_empty(),
                "{name} ({variant}): schema refuses: {errors:?}"
            );
            if let Err(e) = parse(&config) {
                panic!("{name} ({variant}): parser refuses: {e}");
            }
        }
    }
}

#[test]
fn invalid_corpus_is_refused_by_both() {
    let v = validator();
    let cases = corpus("invalid");
    assert!(cases.len() >= 25, "{} invalid cases", cases.len());
    for (name, doc) in cases {
        let config = &doc["config"];
        let field = doc["field"].as_str().unwrap();
        assert!(doc["why"].is_string(), "{name}: say why");
        // The schema must refuse it at the field, one of its parents (`not`/`anyOf` rules report
        // at the object that holds them) or inside it, not somewhere unrelated.
        let pointer = field_pointer(field);
        let paths: Vec<String> = v
            .iter_errors(config)
            .map(|e| e.instance_path().to_string())
            .collect();
        assert!(
            !paths.is_empty(),
            "{name}: the schema accepts it ({})",
            doc["why"]
        );
        assert!(
            paths.iter().any(|p| pointer == *p
                || pointer.starts_with(&format!("{p}/"))
                || p.starts_with(&format!("{pointer}/"))),
            "{name}: the schema refuses it elsewhere: {paths:?}, expected on the path of {pointer}"
        );
        match parse(config) {
            Ok(_) => panic!("{name}: the parser accepts it ({})", doc["why"]),
            Err(e) => assert_eq!(e.field, field, "{name}: {e}"),
        }
    }
}

/// Rules draft 4 cannot state (or that the schema deliberately leaves to the filter): Kong
/// accepts these, the filter refuses them and answers 500 naming the field.
#[test]
fn parser_only_corpus_is_refused_by_the_parser_alone() {
    let v = validator();
    let cases = corpus("parser_only");
    assert!(!cases.is_empty());
    for (name, doc) in cases {
        let config = &doc["config"];
        let field = doc["field"].as_str().unwrap();
        let errors = schema_errors(&v, config);
        assert!(
            errors.is_empty(),
            "{name}: the schema now refuses it, move it to invalid/: {errors:?}"
        );
        match parse(config) {
            Ok(_) => panic!("{name}: the parser accepts it ({})", doc["why"]),
            Err(e) => assert_eq!(e.field, field, "{name}: {e}"),
        }
    }
}

#[test]
fn errors_never_quote_the_service_account_key() {
    for kind in ["invalid", "parser_only"] {
        for (name, doc) in corpus(kind) {
            let Err(e) = parse(&doc["config"]) else {
                continue;
            };
            let text = format!("{e} {e:?}");
            assert!(!text.contains("PRIVATE KEY"), "{name}: {text}");
            assert!(!text.contains("MII"), "{name}: {text}");
        }
    }
}

/// The schema's `default`s are the parser's defaults.
#[test]
fn schema_defaults_are_the_parser_defaults() {
    let schema = schema_doc();
    let p = &schema["properties"];
    let c = parse(&json!({"issuers": [{"issuer": "https://idp.example.com", "audiences": ["a"]}]}))
        .unwrap();
    assert_eq!(
        p["clock_skew_seconds"]["default"],
        json!(c.limits.clock_skew_secs)
    );
    assert_eq!(
        p["max_token_bytes"]["default"],
        json!(c.limits.max_token_bytes)
    );
    assert_eq!(
        p["callout_timeout_ms"]["default"],
        json!(c.callout_timeout_ms)
    );
    assert_eq!(p["shm_namespace"]["default"], json!(c.shm_namespace));
    assert_eq!(p["required_scopes"]["default"], json!(c.required_scopes));
    assert!(c.required_claims.is_empty() && p["required_claims"]["default"] == json!({}));
    assert!(c.claims_to_headers.is_empty() && p["claims_to_headers"]["default"] == json!({}));
    assert_eq!(p["claims_header"]["default"], Value::Null);
    assert!(c.claims_header.is_none());
    assert_eq!(
        p["original_token_header"]["default"],
        json!(c.original_token_header.as_ref().map(|h| h.as_str()))
    );
    let t = &p["token"]["properties"];
    assert_eq!(t["header"]["default"], json!(c.token.header));
    assert_eq!(t["scheme"]["default"], json!(c.token.scheme));
    assert_eq!(t["query_param"]["default"], json!(c.token.query_param));
    assert_eq!(t["cookie"]["default"], json!(c.token.cookie));
    assert_eq!(
        p["token"]["default"],
        json!({"header": c.token.header, "scheme": c.token.scheme, "query_param": null, "cookie": null})
    );
    let j = &p["jwks_cache"]["properties"];
    assert_eq!(j["ttl_seconds"]["default"], json!(c.jwks_cache.ttl_secs));
    assert_eq!(
        j["max_stale_seconds"]["default"],
        json!(c.jwks_cache.max_stale_secs)
    );
    assert_eq!(
        j["unknown_kid_cooldown_seconds"]["default"],
        json!(c.jwks_cache.unknown_kid_cooldown_secs)
    );
    let algs: Vec<&str> = c.issuers[0]
        .rule
        .algorithms
        .iter()
        .map(|a| a.name())
        .collect();
    assert_eq!(
        p["issuers"]["items"]["properties"]["algorithms"]["default"],
        json!(algs)
    );

    let g = &p["google_id_token"]["properties"];
    let c = parse(
        &json!({"issuers": [{"issuer": "https://idp.example.com", "audiences": ["a"]}],
        "google_id_token": {"audience": "https://x.a.run.app"}}),
    )
    .unwrap();
    let google = c.google_id_token.as_ref().unwrap();
    assert_eq!(
        g["refresh_before_expiry_seconds"]["default"],
        json!(google.refresh_before_expiry_secs)
    );
    match &google.source {
        cloudrun_oidc::config::GoogleSource::Metadata { host } => {
            assert_eq!(g["source"]["default"], json!("metadata"));
            assert_eq!(g["metadata_host"]["default"], json!(host));
        }
        other => panic!("default source: {other:?}"),
    }
    assert_eq!(
        g["token_url"]["default"],
        json!(cloudrun_oidc::config::DEFAULT_TOKEN_URL)
    );
}

/// Every field the schema describes is known to the parser, at every level: writing it with
/// its default value is accepted by both (the parser refuses unknown fields).
#[test]
fn every_schema_field_is_a_parser_field() {
    let schema = schema_doc();
    let v = validator();
    let base = || json!({"issuers": [{"issuer": "https://idp.example.com", "audiences": ["a"]}]});
    let sample = |prop: &Value| -> Value {
        if let Some(d) = prop.get("default") {
            return d.clone();
        }
        json!(null)
    };
    let mut checked = 0;
    for (key, prop) in schema["properties"].as_object().unwrap() {
        let mut config = base();
        if key != "issuers" {
            config[key] = sample(prop);
            if key == "google_id_token" {
                config[key] = json!({"audience": "https://x.a.run.app"});
            }
        }
        assert!(v.is_valid(&config), "schema: {key}");
        parse(&config).unwrap_or_else(|e| panic!("{key}: {e}"));
        checked += 1;
    }
    let nested = [
        ("token", json!({})),
        ("jwks_cache", json!({})),
        (
            "google_id_token",
            json!({"audience": "https://x.a.run.app"}),
        ),
    ];
    for (section, start) in nested {
        for (key, prop) in schema["properties"][section]["properties"]
            .as_object()
            .unwrap()
        {
            if matches!(
                key.as_str(),
                "service_account_key" | "token_url" | "external_account"
            ) {
                continue; // need another source; covered by the valid corpus
            }
            let mut config = base();
            config[section] = start.clone();
            config[section][key] = sample(prop);
            if key == "audience" {
                config[section][key] = json!("https://x.a.run.app");
            }
            assert!(v.is_valid(&config), "schema: {section}.{key}");
            parse(&config).unwrap_or_else(|e| panic!("{section}.{key}: {e}"));
            checked += 1;
        }
    }
    for (key, prop) in schema["properties"]["issuers"]["items"]["properties"]
        .as_object()
        .unwrap()
    {
        let mut config = base();
        if !matches!(key.as_str(), "issuer" | "audiences") {
            config["issuers"][0][key] = sample(prop);
        }
        assert!(v.is_valid(&config), "schema: issuers[0].{key}");
        parse(&config).unwrap_or_else(|e| panic!("issuers[0].{key}: {e}"));
        checked += 1;
    }
    assert!(checked >= 30, "{checked}");
}

/// The schema property at a setting's path (`jwks_cache.ttl_seconds`, `rate_limits[].max_callers`:
/// `[]` steps into the list's items, also when the list is one of an `anyOf`).
fn schema_property<'a>(schema: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(schema, |at, name| match name.strip_suffix("[]") {
            Some(list) => list_items(&at["properties"][list]),
            None => &at["properties"][name],
        })
}

/// The items of a list property: `items`, or those of the `anyOf` branch that is an array.
fn list_items(prop: &Value) -> &Value {
    if prop["items"].is_object() {
        return &prop["items"];
    }
    prop["anyOf"]
        .as_array()
        .and_then(|branches| branches.iter().find(|b| b["items"].is_object()))
        .map_or(&Value::Null, |b| &b["items"])
}

/// Every scalar `default` in the schema, by setting path (`issuers[].x` inside the issuer list).
fn scalar_defaults(node: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(properties) = node["properties"].as_object() {
        for (name, prop) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            if prop["default"].is_string() || prop["default"].is_number() {
                out.push(path.clone());
            }
            scalar_defaults(prop, &path, out);
            scalar_defaults(list_items(prop), &format!("{path}[]"), out);
        }
    }
}

/// The defaults-and-ranges table the parser uses (`config::SETTINGS`) is the schema's: the same
/// `default` for each entry, the same `minimum` and `maximum` for integers, and an entry for
/// every scalar default the schema states.
#[test]
fn settings_table_is_the_schema() {
    let schema = schema_doc();
    for setting in SETTINGS {
        let prop = schema_property(&schema, setting.path());
        match setting {
            Setting::Integer(s) => {
                assert_eq!(prop["type"], json!("integer"), "{}", s.path);
                assert_eq!(prop["default"], json!(s.default), "{}", s.path);
                assert_eq!(prop["minimum"], json!(s.min), "{}", s.path);
                assert_eq!(prop["maximum"], json!(s.max), "{}", s.path);
            }
            Setting::Text(s) => assert_eq!(prop["default"], json!(s.default), "{}", s.path),
        }
    }
    let mut stated = Vec::new();
    scalar_defaults(&schema, "", &mut stated);
    let mut listed: Vec<&str> = SETTINGS.iter().map(Setting::path).collect();
    stated.sort();
    listed.sort();
    assert_eq!(stated, listed, "schema defaults vs config::SETTINGS");
}
