//! Real IdP artefacts (`../shared/vectors/idp/`): real Google and Azure AD v1 tokens at a pinned clock,
//! node-oidc-provider tokens for every algorithm, and every discovery/JWKS snapshot parsed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use cloudrun_oidc::http::url::Scheme;
use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::jwk_set::KeySet;
use cloudrun_oidc::jose::verifier::{
    precheck, verify_signature, IssuerRule, Limits, VerifiedToken,
};
use cloudrun_oidc::jose::TokenError;
use cloudrun_oidc::keys::discovery;
use common::{read_bytes, read_json, vector_path};
use serde_json::Value;

const LIMITS: Limits = Limits {
    max_token_bytes: 8192,
    clock_skew_secs: 60,
};

fn rule(issuer: &str, audiences: &[&str]) -> IssuerRule {
    IssuerRule {
        issuer: issuer.to_string(),
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        algorithms: Algorithm::ALL.to_vec(),
        token_types: Vec::new(),
    }
}

fn verify(
    token: &str,
    rules: &[IssuerRule],
    keys: &KeySet,
    now: i64,
) -> Result<VerifiedToken, TokenError> {
    verify_signature(precheck(token, rules, &LIMITS, now)?, keys)
}

fn keyset(doc: &Value) -> KeySet {
    KeySet::parse(doc.to_string().as_bytes()).unwrap()
}

#[test]
fn real_google_id_tokens_verify_at_pinned_clock() {
    let doc = read_json("idp/real-tokens/google-id-tokens-2025.json");
    let keys = keyset(&doc["jwks"]);
    let mut accepted = 0;
    for t in doc["tokens"].as_array().unwrap() {
        let token = t["jwt"].as_str().unwrap();
        let payload = &t["payload"];
        let rules = [rule(
            "https://accounts.google.com",
            &[payload["aud"].as_str().unwrap()],
        )];
        let iat = payload["iat"].as_i64().unwrap();
        let exp = payload["exp"].as_i64().unwrap();
        let v = verify(token, &rules, &keys, iat + 1).unwrap();
        assert_eq!(v.kid.as_deref(), t["kid"].as_str());
        assert_eq!(v.sub.as_deref(), Some("113282815992720230663"));
        assert_eq!(v.exp, exp);
        assert_eq!(Value::Object(v.claims), *payload);
        accepted += 1;
        // The same token outside its lifetime, for another audience, or with rotated keys.
        assert_eq!(
            verify(token, &rules, &keys, exp + 61).err(),
            Some(TokenError::Expired)
        );
        let other = [rule("https://accounts.google.com", &["someone-else"])];
        assert_eq!(
            verify(token, &other, &keys, iat).err(),
            Some(TokenError::WrongAudience)
        );
        let rotated = keyset(&read_json("idp/wellknown-snapshots/google.jwks.json"));
        assert_eq!(
            verify(token, &rules, &rotated, iat).err(),
            Some(TokenError::UnknownKey)
        );
    }
    eprintln!("google real id tokens: accepted {accepted} of 2");
    assert_eq!(accepted, 2);
}

#[test]
fn real_azure_ad_v1_tokens_verify_by_x5t_without_kid() {
    let doc = read_json("idp/real-tokens/azuread-v1-2014.json");
    // The fixture's key: standard base64 with padding, `alg: "SHA256"` (both tolerated).
    let keys = keyset(&doc["jwks"]);
    let mut accepted = 0;
    for t in doc["tokens"].as_array().unwrap() {
        let token = t["jwt"].as_str().unwrap();
        let expected = t["expected"].as_str().unwrap();
        let field = |name: &str| {
            expected
                .split("; ")
                .find_map(|part| part.strip_prefix(&format!("{name} ")))
                .unwrap()
                .to_string()
        };
        let (iss, aud) = (field("iss"), field("aud"));
        let nbf: i64 = field("nbf").split(' ').next().unwrap().parse().unwrap();
        let rules = [rule(&iss, &[&aud])];
        let v = verify(token, &rules, &keys, nbf + 10).unwrap();
        assert_eq!(v.kid, None, "Azure AD v1 tokens carry x5t, not kid");
        accepted += 1;
    }
    eprintln!("azure ad v1 real tokens: accepted {accepted} of 2");
    assert_eq!(accepted, 2);
}

#[test]
fn node_oidc_provider_tokens_verify_for_every_algorithm() {
    let doc = read_json("idp/node-oidc-provider/samples/tokens.json");
    let keys = KeySet::parse(&read_bytes("idp/node-oidc-provider/samples/jwks.json")).unwrap();
    let issuer = doc["issuer"].as_str().unwrap();
    let now = doc["generated_at"].as_i64().unwrap() + 60;
    let mut per_alg: BTreeMap<String, usize> = BTreeMap::new();
    for kind in ["access_tokens", "id_tokens"] {
        for (name, token) in doc[kind].as_object().unwrap() {
            let token = token.as_str().unwrap();
            let audiences = [format!("urn:test:{name}"), format!("web-{name}")];
            let rules = [rule(issuer, &[&audiences[0], &audiences[1]])];
            let v = verify(token, &rules, &keys, now)
                .unwrap_or_else(|e| panic!("{kind} {name}: {e:?}"));
            *per_alg.entry(v.alg.name().to_string()).or_default() += 1;
        }
    }
    eprintln!("node-oidc-provider: accepted {per_alg:?}");
    assert_eq!(per_alg.values().sum::<usize>(), 18);
    assert_eq!(per_alg.len(), 9, "all nine algorithms");
    // Its discovery document points at a plain-http JWKS (allowed).
    let body = read_bytes("idp/node-oidc-provider/samples/openid-configuration.json");
    let uri = discovery::jwks_uri(&body, issuer).unwrap();
    assert_eq!(uri.scheme, Scheme::Http);
    assert_eq!(uri.to_string(), "http://127.0.0.1:3000/jwks");
}

/// Every `*.json` file under `../shared/vectors/idp/<dir>` whose name matches `filter`.
fn files(dir: &str, filter: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(vector_path(&format!("idp/{dir}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && filter(n))
        .map(|n| format!("idp/{dir}/{n}"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_discovery_snapshot_yields_its_jwks_uri() {
    let mut outcomes: BTreeMap<String, String> = BTreeMap::new();
    let mut docs = files("wellknown-snapshots", |n| {
        n.ends_with(".openid-configuration.json")
    });
    docs.extend(files("dockyard-openid_connect-fixtures", |n| {
        n.ends_with("discovery_document.json")
    }));
    docs.extend(files("ms-identitymodel-tests", |n| {
        n.contains("Metadata") || n.contains("openid-configuration")
    }));
    docs.push("idp/node-oidc-provider/samples/openid-configuration.json".into());
    for path in &docs {
        let body = read_bytes(path);
        let text = String::from_utf8_lossy(body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&body))
            .into_owned();
        let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let doc_issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        // The configured issuer: the document's own, or a concrete tenant for Entra templates.
        let expected = doc_issuer.replace("{tenantid}", "9188040d-6c67-4c5b-b112-36a304b66dad");
        let outcome = match discovery::jwks_uri(&body, &expected) {
            Ok(uri) => format!("ok {}", uri.scheme.as_str()),
            Err(e) => format!("error: {e}"),
        };
        outcomes.insert(path.clone(), outcome);
    }
    for (path, outcome) in &outcomes {
        eprintln!("  {path}: {outcome}");
    }
    let ok = outcomes.values().filter(|o| o.starts_with("ok")).count();
    eprintln!(
        "discovery documents: {ok} of {} yield a jwks_uri",
        outcomes.len()
    );
    // Every real document yields its jwks_uri (3 of them plain http: keycloak and vault
    // fixtures, node-oidc-provider). The refusals are Microsoft's unit-test fixtures, whose
    // `jwks_uri` is a relative file name or absent.
    let refused: Vec<(&str, &str)> = outcomes
        .iter()
        .filter(|(_, o)| !o.starts_with("ok"))
        .map(|(p, o)| (p.as_str(), o.as_str()))
        .collect();
    let mut expected = vec![
        (
            "idp/ms-identitymodel-tests/IssuerMetadata.json",
            "error: discovery document has no jwks_uri",
        ),
        (
            "idp/ms-identitymodel-tests/IssuerMetadata2.json",
            "error: discovery document has no jwks_uri",
        ),
    ];
    for f in [
        "OpenIdConnectMetadata.json",
        "OpenIdConnectMetadata2.json",
        "OpenIdConnectMetadataBadBase64Data.json",
        "OpenIdConnectMetadataBadRsaDataMissingComponent.json",
        "OpenIdConnectMetadataBadX509Data.json",
        "OpenIdConnectMetadataEnd2End.json",
        "OpenIdConnectMetadataEnd2EndAcrValuesLast.json",
        "OpenIdConnectMetadataEnd2EndEC.json",
        "OpenIdConnectMetadataJsonWebKeySetBadUri.json",
        "OpenIdConnectMetadataUnrecognizedKty.json",
    ] {
        expected.push((
            Box::leak(format!("idp/ms-identitymodel-tests/{f}").into_boxed_str()),
            "error: jwks_uri refused: scheme must be http or https",
        ));
    }
    expected.sort();
    assert_eq!(refused, expected);
    assert_eq!(outcomes.values().filter(|o| *o == "ok http").count(), 3);
    assert_eq!((ok, outcomes.len()), (30, 42));
}

#[test]
fn every_jwks_snapshot_parses() {
    let mut outcomes: BTreeMap<String, String> = BTreeMap::new();
    let mut sets = files("wellknown-snapshots", |n| n.ends_with(".jwks.json"));
    sets.extend(files("dockyard-openid_connect-fixtures", |n| {
        n.ends_with("jwks.json")
    }));
    sets.extend(files("ms-identitymodel-tests", |n| {
        n.contains("JWKS") || n.starts_with("JsonWebKeySet") || n == "ValidJson.json"
    }));
    sets.extend(files("fastcrypto-zklogin-jwks", |_| true));
    sets.push("idp/node-oidc-provider/samples/jwks.json".into());
    for path in &sets {
        let outcome = match KeySet::parse(&read_bytes(path)) {
            Ok(set) => format!("{} usable, {} skipped", set.len(), set.skipped().len()),
            Err(e) => format!("error: {e}"),
        };
        outcomes.insert(path.clone(), outcome);
    }
    for (path, outcome) in &outcomes {
        eprintln!("  {path}: {outcome}");
    }
    let ok = outcomes
        .values()
        .filter(|o| !o.starts_with("error"))
        .count();
    eprintln!("JWKS documents: {ok} of {} parse", outcomes.len());
    // Every real IdP snapshot parses. The refused documents are deliberate negative fixtures.
    let refused: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.starts_with("error"))
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(
        refused,
        [
            // Private keys (`d`) with a duplicate kid.
            "idp/dockyard-openid_connect-fixtures/jwks.jwks.json",
            // kty RSA with alg ES256 and `use: "wrong usage"`.
            "idp/fastcrypto-zklogin-jwks/bad_jwk_bytes.json",
            // `Kty` capitalised; RSA keys without `n` or `e`.
            "idp/ms-identitymodel-tests/JsonWebKeySetBadRsaDataMissingComponent.json",
            // Only `x5c`: keys are taken from `n`/`e` only, certificates are never parsed.
            "idp/ms-identitymodel-tests/JsonWebKeySetSingleX509Data.json",
            // `key_ops: ["signing"]` (no `verify`) and an `oct` key.
            "idp/ms-identitymodel-tests/JsonWebKeySetUnrecognizedKty.json",
            // 1024-bit RSA moduli.
            "idp/ms-identitymodel-tests/ValidJson.json",
        ]
    );
    for (path, outcome) in &outcomes {
        if path.contains("wellknown-snapshots") || path.contains("node-oidc-provider") {
            assert!(!outcome.starts_with("error"), "{path}: {outcome}");
        }
    }
    assert_eq!((ok, outcomes.len()), (39, 45));
}

#[test]
fn every_jwks_in_rotation_histories_parses() {
    for file in ["google.jwks-history.json", "entra-common.jwks-history.json"] {
        let history = read_json(&format!("idp/wellknown-snapshots/{file}"));
        let entries = history
            .as_array()
            .cloned()
            .unwrap_or_else(|| history["history"].as_array().cloned().unwrap_or_default());
        let mut kids = std::collections::BTreeSet::new();
        for entry in &entries {
            let set = keyset(&entry["jwks"]);
            kids.extend(set.kids().map(str::to_string));
        }
        eprintln!(
            "{file}: {} JWKS, {} distinct kids",
            entries.len(),
            kids.len()
        );
        assert!(!entries.is_empty());
    }
}
