//! Kong's own validator (lua-resty-ljsonschema 1.2.0, vendored in `tests/kong_validator/`, run
//! with LuaJIT) on `kong/cloudrun_oidc.meta.json` and the configuration corpus
//! (`tests/config_corpus/`): Kong loads the schema, accepts every valid configuration, and refuses
//! every invalid one with a message that names the field at fault. `tests/config_schema_parity.rs`
//! checks the same corpus with a Rust draft-4 validator and the filter's parser.
//!
//! Needs `luajit`, `lua-cjson` and `lua-rex-pcre2` (Debian packages; `make setup` installs them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn corpus(kind: &str) -> Vec<(String, Value)> {
    let dir = root().join("tests/config_corpus").join(kind);
    let mut out: Vec<(String, Value)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (
                name,
                serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What Kong said about one configuration.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    Refused(String),
    /// The validator raised a Lua error: Kong fails the configuration load, naming nothing.
    Crashed(String),
}

/// Runs Kong's validator on the schema and `configs`; one verdict per config, in order.
fn kong_validate(configs: &[Value]) -> Vec<Verdict> {
    static RUN: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kong-validator-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = dir.join(format!("{i}.json"));
            fs::write(&path, c.to_string()).unwrap();
            path
        })
        .collect();
    let output = Command::new("luajit")
        .arg(root().join("tests/kong_validator/kong-validate.lua"))
        .arg(root().join("kong/cloudrun_oidc.meta.json"))
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("luajit: {e}: install luajit lua-cjson lua-rex-pcre2 (`make setup` does)")
        });
    let _ = fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "Kong refuses the schema: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<Verdict> = stdout
        .lines()
        .map(|line| {
            let (_, said) = line.split_once(".json: ").unwrap();
            if said == "ok" {
                Verdict::Ok
            } else if let Some(why) = said.strip_prefix("refused: ") {
                Verdict::Refused(why.to_string())
            } else {
                Verdict::Crashed(said.to_string())
            }
        })
        .collect();
    assert_eq!(verdicts.len(), configs.len(), "{stdout}");
    verdicts
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
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
    }
    let field = doc["field"].as_str().unwrap();
    if field == "(root)" {
        return Vec::new();
    }
    let last = field.rsplit('.').next().unwrap_or(field);
    vec![last.split('[').next().unwrap_or(last).to_string()]
}

#[test]
fn kong_accepts_the_schema_and_every_valid_config() {
    let cases = corpus("valid");
    let configs: Vec<Value> = cases
        .iter()
        .flat_map(|(_, c)| [c.clone(), kong_db_less(c)])
        .collect();
    let verdicts = kong_validate(&configs);
    let wrong: Vec<String> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != Verdict::Ok)
        .map(|(i, v)| {
            format!(
                "{} ({}): {v:?}",
                cases[i / 2].0,
                ["as written", "DB-less"][i % 2]
            )
        })
        .collect();
    assert!(wrong.is_empty(), "Kong refuses valid configs: {wrong:#?}");
}

#[test]
fn kong_refuses_every_invalid_config_naming_the_field() {
    let cases = corpus("invalid");
    let configs: Vec<Value> = cases.iter().map(|(_, d)| d["config"].clone()).collect();
    let verdicts = kong_validate(&configs);
    let mut wrong = Vec::new();
    for ((name, doc), verdict) in cases.iter().zip(&verdicts) {
        match verdict {
            Verdict::Refused(message) => {
                for needle in names_to_read(doc) {
                    if !message.contains(&needle) {
                        wrong.push(format!("{name}: message does not name {needle}: {message}"));
                    }
                }
            }
            other => wrong.push(format!("{name}: {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The parser-only rules are beyond the schema: Kong accepts these (the filter refuses them).
#[test]
fn kong_accepts_the_parser_only_configs() {
    let cases = corpus("parser_only");
    let configs: Vec<Value> = cases.iter().map(|(_, d)| d["config"].clone()).collect();
    for ((name, _), verdict) in cases.iter().zip(kong_validate(&configs)) {
        assert_eq!(verdict, Verdict::Ok, "{name}");
    }
}

/// The cases the review named, spelled out: what the operator reads.
#[test]
fn kong_names_the_missing_or_misplaced_google_setting() {
    let base = json!({"issuers": [{"issuer": "https://idp.example.com", "audiences": ["a"]}]});
    let with = |google: Value| {
        let mut c = base.clone();
        c["google_id_token"] = google;
        c
    };
    let key = json!({"private_key": "-----BEGIN PRIVATE KEY-----\n...", "private_key_id": "k",
        "client_email": "sa@p.iam.gserviceaccount.com"});
    let cases = [
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
    let configs: Vec<Value> = cases.iter().map(|(c, _)| c.clone()).collect();
    for ((config, field), verdict) in cases.iter().zip(kong_validate(&configs)) {
        match verdict {
            Verdict::Refused(message) => assert!(message.contains(field), "{field}: {message}"),
            other => panic!("{config}: {other:?}"),
        }
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
    for verdict in kong_validate(&good) {
        assert_eq!(verdict, Verdict::Ok);
    }
}
