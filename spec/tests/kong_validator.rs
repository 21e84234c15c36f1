//! Kong's configuration check, without Kong's Lua: `kong/cloudrun_oidc.meta.json` must be a valid
//! draft-4 schema, and every configuration we ship or document is validated against it the way
//! Kong 3.9 does ([`KongSchema`]: lua-resty-ljsonschema's two behaviours that matter here, an
//! empty table valid as `[]` or `{}` and `pattern` matched as a PCRE, unanchored). The same check
//! guards the Kong stand-in's kong.yml loading. Kong loads the schema, accepts every valid
//! configuration (the corpus of `tests/config_corpus/` and the three routes of `kong/kong.yml`),
//! and refuses every invalid one with a message that names the field at fault.
//! `tests/config_schema_parity.rs` (root crate) checks the same corpus against the filter's parser.

use anyhow::{Context, Result};
use cloudrun_spec::gateway::schema::KongSchema;
use cloudrun_spec::testkit::repo_root;
use serde_json::{json, Value};
use std::fs;

fn meta_schema() -> Result<Value> {
    let path = repo_root().join("kong/cloudrun_oidc.meta.json");
    let meta: Value = serde_json::from_str(&fs::read_to_string(&path)?)
        .with_context(|| path.display().to_string())?;
    meta.get("config_schema")
        .cloned()
        .context("meta.json has no config_schema")
}

fn kong() -> Result<KongSchema> {
    KongSchema::new(&meta_schema()?)
}

fn corpus(kind: &str) -> Result<Vec<(String, Value)>> {
    let dir = repo_root().join("tests/config_corpus").join(kind);
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path
                .file_stem()
                .context("no file name")?
                .to_string_lossy()
                .into_owned();
            let doc = serde_json::from_str(&fs::read_to_string(&path)?)
                .with_context(|| path.display().to_string())?;
            out.push((name, doc));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    anyhow::ensure!(
        out.len() >= 10,
        "{}: only {} files",
        dir.display(),
        out.len()
    );
    Ok(out)
}

/// What Kong DB-less hands the validator: every empty array becomes `{}`.
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

/// The names an operator must read in Kong's message for an invalid corpus file: its
/// `kong_names`, or else the last segment of its `field` (`issuers[0].audiences[0]` → `audiences`).
fn names_to_read(doc: &Value) -> Vec<String> {
    if let Some(names) = doc.get("kong_names").and_then(Value::as_array) {
        return names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
    }
    let field = doc["field"].as_str().unwrap_or_default();
    if field == "(root)" || field.is_empty() {
        return Vec::new();
    }
    let last = field.rsplit('.').next().unwrap_or(field);
    vec![last.split('[').next().unwrap_or(last).to_string()]
}

#[test]
fn meta_json_is_a_valid_draft4_schema() -> Result<()> {
    let schema = meta_schema()?;
    jsonschema::draft4::meta::validate(&schema)
        .map_err(|e| anyhow::anyhow!("not a draft-4 schema: {e}"))?;
    // And a schema that is not one is told apart.
    let broken = json!({"type": "object", "properties": {"issuers": {"type": "list"}}});
    assert!(KongSchema::new(&broken).is_err());
    Ok(())
}

#[test]
fn kong_accepts_every_valid_config_as_written_and_db_less() -> Result<()> {
    let kong = kong()?;
    let mut wrong = Vec::new();
    for (name, config) in corpus("valid")? {
        for (how, form) in [
            ("as written", config.clone()),
            ("DB-less", kong_db_less(&config)),
        ] {
            let errors = kong.errors(&form);
            if !errors.is_empty() {
                wrong.push(format!("{name} ({how}): {errors:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "Kong refuses valid configs: {wrong:#?}");
    Ok(())
}

#[test]
fn kong_accepts_the_three_routes_of_kong_yml() -> Result<()> {
    let kong = kong()?;
    let text = fs::read_to_string(repo_root().join("kong/kong.yml"))?;
    let doc: Value = serde_yaml::from_str(&text)?;
    let mut configs = Vec::new();
    for service in doc["services"].as_array().context("services")? {
        for route in service["routes"].as_array().into_iter().flatten() {
            let name = route["name"].as_str().unwrap_or("?").to_string();
            for chain in route["filter_chains"].as_array().into_iter().flatten() {
                for filter in chain["filters"].as_array().into_iter().flatten() {
                    if filter["name"] == "cloudrun_oidc" {
                        configs.push((name.clone(), filter["config"].clone()));
                    }
                }
            }
            for plugin in route["plugins"].as_array().into_iter().flatten() {
                if plugin["name"] == "cloudrun_oidc" {
                    configs.push((name.clone(), plugin["config"].clone()));
                }
            }
        }
    }
    assert_eq!(
        configs.len(),
        3,
        "kong.yml declares the filter on three routes"
    );
    for (route, config) in configs {
        assert!(config.is_object(), "{route}: config is an object");
        let errors = kong.errors(&config);
        assert!(errors.is_empty(), "{route}: Kong refuses it: {errors:?}");
    }
    Ok(())
}

#[test]
fn kong_refuses_every_invalid_config_naming_the_field() -> Result<()> {
    let kong = kong()?;
    let mut wrong = Vec::new();
    for (name, doc) in corpus("invalid")? {
        let errors = kong.errors(&doc["config"]);
        if errors.is_empty() {
            wrong.push(format!("{name}: accepted"));
            continue;
        }
        let message = errors.join("; ");
        for needle in names_to_read(&doc) {
            if !message.contains(&needle) {
                wrong.push(format!("{name}: message does not name {needle}: {message}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    Ok(())
}

/// The parser-only rules are beyond the schema: Kong accepts these (the filter refuses them).
#[test]
fn kong_accepts_the_parser_only_configs() -> Result<()> {
    let kong = kong()?;
    for (name, doc) in corpus("parser_only")? {
        let errors = kong.errors(&doc["config"]);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    Ok(())
}

/// The cases a review named, spelled out: what the operator reads.
#[test]
fn kong_names_the_missing_or_misplaced_google_setting() -> Result<()> {
    let kong = kong()?;
    let base = json!({"issuers": [{"issuer": "https://idp.example.com", "audiences": ["a"]}]});
    let with = |google: Value| {
        let mut c = base.clone();
        c["google_id_token"] = google;
        c
    };
    let key = json!({"private_key": "-----BEGIN PRIVATE KEY-----\n...", "private_key_id": "k",
        "client_email": "sa@p.iam.gserviceaccount.com"});
    let refused = [
        (
            with(json!({"audience": "https://x.a.run.app", "source": "service_account"})),
            "service_account_key",
        ),
        (
            with(json!({"audience": "https://x.a.run.app", "service_account_key": key})),
            "service_account_key",
        ),
        (
            with(json!({"audience": "https://x.a.run.app", "token_url": "https://t/token"})),
            "token_url",
        ),
        (
            with(
                json!({"audience": "https://x.a.run.app", "source": "service_account",
                "service_account_key": key, "metadata_host": "169.254.169.254"}),
            ),
            "metadata_host",
        ),
    ];
    for (config, field) in &refused {
        let message = kong.errors(config).join("; ");
        assert!(message.contains(field), "{field}: {message:?}");
    }
    // The same settings, well placed, pass.
    let good = [
        with(
            json!({"audience": "https://x.a.run.app", "source": "service_account",
            "service_account_key": key, "token_url": "https://t/token"}),
        ),
        with(
            json!({"audience": "https://x.a.run.app", "source": "service_account",
            "service_account_key": key.to_string()}),
        ),
        with(json!({"audience": "https://x.a.run.app", "metadata_host": "169.254.169.254"})),
    ];
    for config in &good {
        assert_eq!(kong.errors(config), Vec::<String>::new(), "{config}");
    }
    Ok(())
}

/// Kong's empty table: `{}` where a list is expected and `[]` where an object is expected both
/// pass, but an empty list still fails `minItems`, whichever way it is written.
#[test]
fn an_empty_table_is_an_array_or_an_object_as_in_kong() -> Result<()> {
    let kong = kong()?;
    let issuer = json!({"issuer": "https://idp.example.com", "audiences": ["a"]});
    let ok = [
        json!({"issuers": [issuer], "required_scopes": {}}),
        json!({"issuers": [issuer], "required_scopes": []}),
        json!({"issuers": [issuer], "required_claims": []}),
        json!({"issuers": [issuer], "claims_to_headers": []}),
    ];
    for config in &ok {
        assert_eq!(kong.errors(config), Vec::<String>::new(), "{config}");
    }
    for audiences in [json!([]), json!({})] {
        let config =
            json!({"issuers": [{"issuer": "https://idp.example.com", "audiences": audiences}]});
        let message = kong.errors(&config).join("; ");
        assert!(message.contains("audiences"), "{config}: {message:?}");
    }
    Ok(())
}

/// Kong matches `pattern` with PCRE, unanchored: `$` also matches before a final newline, so
/// Kong lets `"cloudrun_oidc\n"` through `^[a-z0-9_]+$`. The filter's own parser must refuse
/// what the schema cannot (`tests/config_schema_parity.rs` holds it to that).
#[test]
fn patterns_are_matched_as_pcre_does() -> Result<()> {
    let kong = kong()?;
    let issuer = json!({"issuer": "https://idp.example.com", "audiences": ["a"]});
    let namespace = |ns: &str| json!({"issuers": [issuer], "shm_namespace": ns});
    assert!(kong.errors(&namespace("cloudrun_oidc")).is_empty());
    assert!(
        kong.errors(&namespace("cloudrun_oidc\n")).is_empty(),
        "PCRE's $ before a final newline"
    );
    assert!(!kong.errors(&namespace("cloudrun-oidc")).is_empty());
    assert!(!kong.errors(&namespace("a\nb")).is_empty());
    let parsed = cloudrun_oidc::config::FilterConfig::from_json(
        namespace("cloudrun_oidc\n").to_string().as_bytes(),
    );
    assert!(
        parsed.is_err(),
        "the filter refuses what Kong's pattern lets through"
    );
    Ok(())
}
