//! Attack and negative corpora (`../shared/vectors/attacks/`): jwt_tool output, golang-jwt, PyJWT and
//! psychic-signature regressions, lua-resty-jwt-verification and nginx-auth-jwt token sets.
//! Every attack token must be refused; the corpora's own valid tokens are accepted where the
//! filter supports their algorithm (the others are documented differences).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::b64;
use cloudrun_oidc::jose::jwk_set::KeySet;
use cloudrun_oidc::jose::verifier::{precheck, verify_signature, IssuerRule, Limits};
use cloudrun_oidc::jose::TokenError;
use common::{jwk_from_pem, keyset_of, read_bytes, read_json, verify_jws, Tally};
use serde_json::{json, Value};

const LIMITS: Limits = Limits {
    max_token_bytes: 8192,
    clock_skew_secs: 60,
};

/// The PEM keys of the lua-resty-jwt-verification vectors convert (pure Rust,
/// `common::jwk_from_pem`, so this file also runs in wasm) to what OpenSSL reads from them, or
/// to nothing for key types the filter never uses (secp256k1, P-521, Ed448). Native only.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn pem_keys_convert_as_openssl_does() {
    fn openssl_jwk(pem: &str) -> Option<Value> {
        let pkey = openssl::pkey::PKey::public_key_from_pem(pem.as_bytes()).ok()?;
        if let Ok(rsa) = pkey.rsa() {
            return Some(
                json!({"kty":"RSA","n":b64::encode(&rsa.n().to_vec()),"e":b64::encode(&rsa.e().to_vec())}),
            );
        }
        if pkey.id() == openssl::pkey::Id::ED25519 {
            return Some(
                json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(&pkey.raw_public_key().ok()?)}),
            );
        }
        let ec = pkey.ec_key().ok()?;
        let (crv, len) = match ec.group().curve_name()? {
            openssl::nid::Nid::X9_62_PRIME256V1 => ("P-256", 32),
            openssl::nid::Nid::SECP384R1 => ("P-384", 48),
            _ => return None,
        };
        let mut ctx = openssl::bn::BigNumContext::new().ok()?;
        let (mut x, mut y) = (
            openssl::bn::BigNum::new().ok()?,
            openssl::bn::BigNum::new().ok()?,
        );
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
            .ok()?;
        Some(
            json!({"kty":"EC","crv":crv,"x":b64::encode(&x.to_vec_padded(len).ok()?),"y":b64::encode(&y.to_vec_padded(len).ok()?)}),
        )
    }
    let doc = read_json("attacks/lua-resty-jwt-verification/jws-vectors.json");
    let (mut converted, mut skipped) = (0, 0);
    for v in doc["vectors"].as_array().unwrap() {
        let key = v.get("key").and_then(Value::as_str).unwrap_or("");
        if !key.starts_with("-----BEGIN PUBLIC KEY-----") {
            continue;
        }
        let ours = jwk_from_pem(key);
        assert_eq!(ours, openssl_jwk(key), "{}", v["title"]);
        match ours {
            Some(_) => converted += 1,
            None => skipped += 1,
        }
    }
    assert!(
        converted > 5 && skipped > 0,
        "{converted} converted, {skipped} skipped"
    );
}

#[test]
fn jwt_tool_attacks_are_all_refused() {
    let doc = read_json("attacks/jwt_tool-generated/attacks.json");
    let keys = KeySet::parse(&read_bytes("idp/node-oidc-provider/samples/jwks.json")).unwrap();
    let issuer = "http://127.0.0.1:3000";
    let rules = [IssuerRule {
        issuer: issuer.into(),
        audiences: vec!["urn:test:rs256".into(), "urn:test:es256".into()],
        algorithms: Algorithm::ALL.to_vec(),
        token_types: Vec::new(),
    }];
    let now = 1_795_382_100;
    // The untouched base tokens verify: the refusals below are due to the attacks.
    for base in doc["base_tokens"].as_object().unwrap().values() {
        let pre = precheck(base.as_str().unwrap(), &rules, &LIMITS, now).unwrap();
        verify_signature(pre, &keys).unwrap();
    }
    let mut refused = 0;
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for case in doc["cases"].as_array().unwrap() {
        for token in case["tokens"].as_array().unwrap() {
            let token = token.as_str().unwrap();
            let outcome =
                precheck(token, &rules, &LIMITS, now).and_then(|pre| verify_signature(pre, &keys));
            let err = outcome
                .err()
                .unwrap_or_else(|| panic!("{} accepted", case["name"]));
            *reasons
                .entry(format!("{}: {err:?}", case["name"].as_str().unwrap()))
                .or_default() += 1;
            refused += 1;
        }
    }
    eprintln!("jwt_tool: accepted 0 refused {refused}: {reasons:#?}");
    assert_eq!(refused, 20);
}

#[test]
fn golang_jwt_vectors() {
    let doc = read_json("attacks/golang-jwt/golang-jwt-vectors.json");
    let mut tally = Tally::default();
    for (i, v) in doc["vectors"].as_array().unwrap().iter().enumerate() {
        let jwk = v["public_key_pem"].as_str().map(|pem| {
            let name = pem.trim_start_matches("test/");
            let file = match name {
                "sample_key.pub" => "sample_key.jwk.json".to_string(),
                other => other.replace(".pem", ".jwk.json"),
            };
            read_json(&format!("attacks/golang-jwt/keys/{file}"))
        });
        let accepted = match jwk.as_ref().map(keyset_of) {
            Some(Ok(set)) => verify_jws(v["token"].as_str().unwrap(), &set).is_ok(),
            _ => false,
        };
        let label = if v["valid"].as_bool().unwrap() {
            "valid"
        } else {
            "invalid"
        };
        tally.record(
            format!(
                "{i} {} {}",
                v["alg"].as_str().unwrap(),
                v["name"].as_str().unwrap()
            ),
            label,
            accepted,
        );
    }
    tally.assert(
        "golang-jwt",
        5,
        16,
        &[
            // `alg: "ED25519"`: not a registered name (names are case-sensitive, RFC 7515
            // §4.1.1; the registered ones are `EdDSA` and `Ed25519`).
            ("12 EdDSA Basic Ed25519", "valid"),
            // PSS with the maximum salt length, not the hash length: refused under RFC 7518
            // §3.5 (golang-jwt uses PSSSaltLengthAuto; the vectors say rfc7518_strict_valid=false).
            ("4 PS256 Basic PS256", "valid"),
            ("5 PS384 Basic PS384", "valid"),
            ("6 PS512 Basic PS512", "valid"),
            // ES512 / P-521 is not supported.
            ("10 ES512 Basic ES512", "valid"),
            // HMAC is never supported.
            ("14 HS256 web sample", "valid"),
            ("15 HS384 HS384", "valid"),
            ("16 HS512 HS512", "valid"),
            // `alg: none` is never accepted (golang-jwt accepts it only with an opt-in key).
            ("18 none Basic", "valid"),
        ],
    );
}

/// The key inside an OpenSSH public key line (`ssh-ed25519` or `ecdsa-sha2-nistp256`).
fn jwk_from_openssh(line: &str) -> Value {
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(line.split(' ').nth(1).unwrap())
        .unwrap();
    let mut fields = Vec::new();
    let mut rest = blob.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        fields.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    match fields[0].as_slice() {
        b"ssh-ed25519" => json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(&fields[1])}),
        b"ecdsa-sha2-nistp256" => {
            let point = &fields[2];
            json!({"kty":"EC","crv":"P-256","x":b64::encode(&point[1..33]),"y":b64::encode(&point[33..65])})
        }
        other => panic!("unexpected key type {other:?}"),
    }
}

#[test]
fn library_regressions() {
    let doc = read_json("attacks/library-regressions.json");
    let entries = doc["entries"].as_array().unwrap();
    let mut tally = Tally::default();
    // PyJWT CVE-2022-29217: HS256 MACed with the OpenSSH public key text.
    let pyjwt = &entries[0];
    for (i, v) in pyjwt["vectors"].as_array().unwrap().iter().enumerate() {
        let jwk = jwk_from_openssh(pyjwt["keys"][v["key"].as_str().unwrap()].as_str().unwrap());
        let set = keyset_of(&jwk).unwrap();
        let outcome = verify_jws(v["token"].as_str().unwrap(), &set);
        let label = if v["expected"].as_str().unwrap().starts_with("valid") {
            "valid"
        } else {
            "invalid"
        };
        if label == "invalid" {
            assert_eq!(outcome, Err(TokenError::AlgorithmNotAllowed));
        }
        tally.record(format!("pyjwt {i}"), label, outcome.is_ok());
    }
    // CVE-2022-21449: DER SEQUENCE{0,0} as an ES256 signature, against a real P-256 key.
    let psychic = entries[1]["vectors"][0]["token"].as_str().unwrap();
    let p256 = keyset_of(&read_json("attacks/golang-jwt/keys/ec256-public.jwk.json")).unwrap();
    assert_eq!(verify_jws(psychic, &p256), Err(TokenError::BadSignature));
    tally.record("psychic", "invalid", verify_jws(psychic, &p256).is_ok());
    tally.assert("library-regressions", 2, 3, &[]);
}

#[test]
fn lua_resty_jwt_verification_vectors() {
    let doc = read_json("attacks/lua-resty-jwt-verification/jws-vectors.json");
    let mut tally = Tally::default();
    for v in doc["vectors"].as_array().unwrap() {
        let Some(token) = v.get("token").and_then(Value::as_str) else {
            continue;
        };
        let key = v.get("key").and_then(Value::as_str).unwrap_or("");
        let jwk = if key.starts_with("-----BEGIN PUBLIC KEY-----") {
            jwk_from_pem(key)
        } else {
            serde_json::from_str::<Value>(key)
                .ok()
                .filter(Value::is_object)
        };
        let accepted = match jwk.as_ref().map(keyset_of) {
            Some(Ok(set)) => verify_jws(token, &set).is_ok(),
            _ => false,
        };
        // Label: the independent signature check, where the vector has one.
        let label = match v.get("signature_valid_node_crypto") {
            Some(Value::Bool(true)) => "valid",
            _ => "invalid",
        };
        tally.record(
            format!(
                "{} {}",
                v["file"].as_str().unwrap(),
                v["title"].as_str().unwrap()
            ),
            label,
            accepted,
        );
    }
    let diffs: Vec<(String, String)> = tally
        .differences
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Every difference is a valid signature under an algorithm the filter never supports.
    for (id, label) in &diffs {
        assert_eq!(label, "valid", "{id}");
        assert!(
            [
                "HS256",
                "HS384",
                "HS512",
                "ES256K",
                "ES512",
                "Ed448",
                "verify-claims/",
                "verify-jws-format"
            ]
            .iter()
            .any(|a| id.contains(a)),
            "{id}"
        );
    }
    tally.report("lua-resty-jwt-verification");
    // 18 accepted: RS/PS/ES256/ES384/Ed25519 "ok" tests (PEM and JWK keys). 42 documented
    // differences: HS* (including every verify-claims test, all HS256-signed), ES256K,
    // ES512, Ed448.
    assert_eq!(
        (tally.accepted, tally.refused, tally.differences.len()),
        (18, 67, 42)
    );
}

#[test]
fn nginx_auth_jwt_tokens() {
    let doc = read_json("attacks/nginx-auth-jwt/tokens.json");
    let keys = KeySet::parse(&read_bytes("attacks/nginx-auth-jwt/data/jwks.json")).unwrap();
    let now = 1_700_000_000;
    let mut accepted = Vec::new();
    let mut refused = std::collections::BTreeMap::<String, String>::new();
    for (name, v) in doc["tokens"].as_object().unwrap() {
        let token = v["jwt"].as_str().unwrap();
        // The issuer and audience the token claims, configured: only signature and time decide.
        let n = name.trim_end_matches("_jwt").trim_start_matches("test");
        let n = n.split('_').next().unwrap_or("");
        let rules = [IssuerRule {
            issuer: format!("https://test{n}.issuer.example.com"),
            audiences: vec![format!("test{n}.audience.example.com")],
            algorithms: Algorithm::ALL.to_vec(),
            token_types: Vec::new(),
        }];
        match precheck(token, &rules, &LIMITS, now).and_then(|pre| verify_signature(pre, &keys)) {
            Ok(_) => accepted.push(name.clone()),
            Err(e) => {
                refused.insert(name.clone(), format!("{e:?}"));
            }
        }
    }
    eprintln!("nginx-auth-jwt: accepted {accepted:?}; refused {refused:#?}");
    // RS256/384/512 and ES256/384 with the corpus' keys; everything else is HS*, `none` or
    // ES512 (P-521), which the filter never accepts.
    assert_eq!(
        accepted,
        [
            "test4_jwt",
            "test5_jwt",
            "test6_jwt",
            "test7_jwt",
            "test8_jwt"
        ]
    );
    assert_eq!(
        refused.get("test0_jwt").map(String::as_str),
        Some("AlgorithmNotAllowed")
    );
    assert_eq!(
        refused.get("test9_jwt").map(String::as_str),
        Some("AlgorithmNotAllowed")
    );
    assert_eq!(refused.len(), 23);
}
