//! RFC examples (`../shared/vectors/rfc/`): RFC 7515 Appendix A and E, the RFC 7520 JOSE cookbook (JWS
//! and JWK chapters, RFC 7797) and RFC 8037 A.4 (Ed25519), each run through the filter's own
//! verification path with the public half of the example key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloudrun_oidc::jose::jwk::{Jwk, JwkError, SkipReason};
use cloudrun_oidc::jose::jwt;
use cloudrun_oidc::jose::TokenError;
use common::{keyset_of, read_json, verify_jws};
use serde_json::Value;

/// The public half of an example key (the cookbook publishes private keys).
fn public_half(key: &Value) -> Value {
    let mut key = key.clone();
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        key.as_object_mut().unwrap().remove(private);
    }
    key
}

/// Outcome of one example: accepted, or the refusal (as text, for the assertion messages).
fn outcome(token: &str, key: Option<&Value>) -> Result<(), String> {
    // The token is parsed before any key is looked at.
    jwt::parse_jws(token).map_err(|e| format!("{e:?}"))?;
    let Some(key) = key else {
        // No public key (HMAC or unsecured example): an unrelated real key set stands in.
        let set = keyset_of(&read_json("idp/wellknown-snapshots/google.jwks.json")).unwrap();
        return verify_jws(token, &set).map_err(|e| format!("{e:?}"));
    };
    let set = keyset_of(&public_half(key)).map_err(|e| format!("key set: {e}"))?;
    verify_jws(token, &set).map_err(|e| format!("{e:?}"))
}

struct Counts {
    accepted: usize,
    refused: usize,
}

fn expect(counts: &mut Counts, name: &str, got: Result<(), String>, want: Result<(), &str>) {
    eprintln!("  {name}: {got:?}");
    match (&got, want) {
        (Ok(()), Ok(())) => counts.accepted += 1,
        (Err(e), Err(w)) => {
            assert!(e.contains(w), "{name}: refused as {e}, expected {w}");
            counts.refused += 1;
        }
        _ => panic!("{name}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn rfc7515_appendix_a_and_e() {
    let doc = read_json("rfc/rfc7515-appendix-A.json");
    let mut counts = Counts {
        accepted: 0,
        refused: 0,
    };
    for v in doc["vectors"].as_array().unwrap() {
        let section = v["section"].as_str().unwrap();
        let token = v
            .get("compact")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v["serialized"].to_string());
        let key = v.get("public_jwk").filter(|k| !k.is_null());
        let want = match section {
            s if s.ends_with("A.2") || s.ends_with("A.3") => Ok(()),
            // HS256 (documented difference: HMAC never supported).
            s if s.ends_with("A.1") => Err("AlgorithmNotAllowed"),
            // ES512 / P-521 (documented difference: unsupported).
            s if s.ends_with("A.4") => Err("no usable signature key"),
            s if s.contains("A.5") => Err("AlgorithmNotAllowed"),
            // JSON serializations (documented difference: compact only).
            s if s.contains("A.6") || s.contains("A.7") => Err("Malformed"),
            s if s.contains("Appendix E") => Err("CriticalHeader"),
            other => panic!("unexpected section {other}"),
        };
        expect(&mut counts, section, outcome(&token, key), want);
    }
    eprintln!("rfc7515 appendix A/E: accepted {} refused {} (documented differences: A.1 HS256, A.4 ES512, A.6/A.7 JSON serialization)", counts.accepted, counts.refused);
    assert_eq!((counts.accepted, counts.refused), (2, 6));
}

#[test]
fn rfc7520_cookbook_signatures() {
    let mut counts = Counts {
        accepted: 0,
        refused: 0,
    };
    for (file, compact_want) in [
        ("jws/4_1.rsa_v15_signature.json", Ok(())),
        ("jws/4_2.rsa-pss_signature.json", Ok(())),
        (
            "jws/4_3.ecdsa_signature.json",
            Err("no usable signature key"),
        ),
        (
            "jws/4_4.hmac-sha2_integrity_protection.json",
            Err("no usable signature key"),
        ),
        (
            "jws/4_5.signature_with_detached_content.json",
            Err("no usable signature key"),
        ),
        ("jws/4_6.protecting_specific_header_fields.json", Err("")),
        ("jws/4_7.protecting_content_only.json", Err("")),
        ("jws/4_8.multiple_signatures.json", Err("")),
        // The unencoded payload `$.02` adds a fourth segment.
        ("rfc7797/hmac-sha2_b64_false.json", Err("Malformed")),
        ("rfc7797/4.2.hmac-sha2_b64_false.json", Err("")),
        ("curve25519/jws.json", Ok(())),
    ] {
        let doc = read_json(&format!("rfc/jose-cookbook/{file}"));
        let key = match &doc["input"]["key"] {
            Value::Array(keys) => keys.first().cloned(),
            k => Some(k.clone()),
        };
        if let Some(compact) = doc["output"].get("compact").and_then(Value::as_str) {
            expect(
                &mut counts,
                &format!("{file} compact"),
                outcome(compact, key.as_ref()),
                compact_want,
            );
        }
        // JSON serializations are never accepted (documented difference: compact only).
        for form in ["json", "json_flat"] {
            if let Some(json) = doc["output"].get(form) {
                expect(
                    &mut counts,
                    &format!("{file} {form}"),
                    outcome(&json.to_string(), key.as_ref()),
                    Err("Malformed"),
                );
            }
        }
    }
    eprintln!(
        "rfc7520 cookbook + rfc7797 + rfc8037: accepted {} refused {}",
        counts.accepted, counts.refused
    );
    assert_eq!((counts.accepted, counts.refused), (3, 25));
}

#[test]
fn rfc7520_cookbook_keys() {
    let ec = read_json("rfc/jose-cookbook/jwk/3_1.ec_public_key.json");
    assert_eq!(
        Jwk::from_value(&ec).err(),
        Some(JwkError::Skipped(SkipReason::UnsupportedCurve)),
        "P-521"
    );
    let rsa = read_json("rfc/jose-cookbook/jwk/3_3.rsa_public_key.json");
    let k = Jwk::from_value(&rsa).unwrap();
    assert_eq!(k.kid.as_deref(), Some("bilbo.baggins@hobbiton.example"));
    let rsa_private = read_json("rfc/jose-cookbook/jwk/3_4.rsa_private_key.json");
    assert_eq!(
        Jwk::from_value(&rsa_private).err(),
        Some(JwkError::PrivateKey)
    );
    assert_eq!(
        Jwk::from_value(&public_half(&rsa_private))
            .unwrap()
            .thumbprint,
        k.thumbprint
    );
    for f in [
        "3_5.symmetric_key_mac_computation.json",
        "3_6.symmetric_key_encryption.json",
    ] {
        let oct = read_json(&format!("rfc/jose-cookbook/jwk/{f}"));
        assert!(
            matches!(Jwk::from_value(&oct), Err(JwkError::Skipped(_))),
            "{f}"
        );
    }
}

#[test]
fn hs256_examples_are_refused_before_any_key() {
    // A.1 and the cookbook HMAC example against a real RSA key set: the algorithm is refused.
    let doc = read_json("rfc/rfc7515-appendix-A.json");
    let a1 = doc["vectors"][0]["compact"].as_str().unwrap();
    let set = keyset_of(&read_json("idp/wellknown-snapshots/google.jwks.json")).unwrap();
    assert_eq!(
        verify_jws(a1, &set).err(),
        Some(TokenError::AlgorithmNotAllowed)
    );
}
