//! Unit tests of the test-side JOSE code: round trips per algorithm and public vectors.

use super::*;
use serde_json::json;

fn vector(path: &str) -> Value {
    let file = crate::testkit::vectors_dir().join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap()
}

fn key_for(alg: Alg) -> SigningKey {
    let kind = match alg {
        Alg::ES256 => KeyKind::P256,
        Alg::ES384 => KeyKind::P384,
        Alg::EdDSA => KeyKind::Ed25519,
        _ => KeyKind::Rsa(2048),
    };
    SigningKey::generate(kind, &format!("k-{}", alg.name())).unwrap()
}

#[test]
fn base64url_is_strict() {
    assert_eq!(b64url(b"\xfb\xff"), "-_8");
    assert_eq!(b64url_decode("-_8").unwrap(), b"\xfb\xff");
    assert!(b64url_decode("-_8=").is_err());
    assert!(b64url_decode("+/8").is_err());
}

#[test]
fn every_algorithm_round_trips_through_a_jwks() {
    for alg in Alg::ALL {
        let key = key_for(alg);
        let claims = json!({"sub": "alice", "n": 1});
        let token = sign_jwt(&key, alg, &claims).unwrap();
        let jwks = json!({"keys": [key.public_jwk_for(Some(alg))]});
        let decoded = verify_compact(&token, &jwks, &Alg::ALL).unwrap();
        assert_eq!(decoded.claims().unwrap(), claims, "{alg:?}");
        assert_eq!(decoded.kid(), Some(key.kid.as_str()));
        // Another key with the same kid does not verify it.
        let other = SigningKey::generate(key.kind(), &key.kid).unwrap();
        let wrong = json!({"keys": [other.public_jwk_for(Some(alg))]});
        assert!(
            verify_compact(&token, &wrong, &Alg::ALL).is_err(),
            "{alg:?}"
        );
        // A flipped signature bit fails.
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(verify_compact(std::str::from_utf8(&bad).unwrap(), &jwks, &Alg::ALL).is_err());
        // Not in the allowed list.
        let others: Vec<Alg> = Alg::ALL.into_iter().filter(|a| *a != alg).collect();
        assert!(verify_compact(&token, &jwks, &others).is_err());
    }
}

#[test]
fn signature_sizes_follow_rfc7518() {
    for (alg, len) in [
        (Alg::ES256, 64),
        (Alg::ES384, 96),
        (Alg::EdDSA, 64),
        (Alg::PS512, 256),
    ] {
        let key = key_for(alg);
        let token = sign_jwt(&key, alg, &json!({})).unwrap();
        assert_eq!(decode(&token).unwrap().signature.len(), len, "{alg:?}");
    }
    for bits in [3072, 4096] {
        let key = SigningKey::generate(KeyKind::Rsa(bits), "big").unwrap();
        for alg in [Alg::RS512, Alg::PS384] {
            let token = sign_jwt(&key, alg, &json!({})).unwrap();
            assert_eq!(decode(&token).unwrap().signature.len(), bits as usize / 8);
            verify_compact(&token, &json!({"keys": [key.public_jwk_for(None)]}), &[alg]).unwrap();
        }
    }
}

#[test]
fn jwk_export_has_rfc7517_members() {
    let rsa = SigningKey::generate(KeyKind::Rsa(2048), "r")
        .unwrap()
        .public_jwk();
    assert_eq!(
        (rsa["kty"].as_str(), rsa["e"].as_str(), rsa["alg"].as_str()),
        (Some("RSA"), Some("AQAB"), Some("RS256"))
    );
    assert_eq!(
        b64url_decode(rsa["n"].as_str().unwrap()).unwrap().len(),
        256
    );
    assert_eq!(
        (rsa["kid"].as_str(), rsa["use"].as_str()),
        (Some("r"), Some("sig"))
    );
    assert!(rsa.get("d").is_none());
    let ec = SigningKey::generate(KeyKind::P384, "e")
        .unwrap()
        .public_jwk();
    assert_eq!(
        (ec["crv"].as_str(), ec["alg"].as_str()),
        (Some("P-384"), Some("ES384"))
    );
    assert_eq!(b64url_decode(ec["x"].as_str().unwrap()).unwrap().len(), 48);
    let ed = SigningKey::generate(KeyKind::Ed25519, "d")
        .unwrap()
        .public_jwk();
    assert_eq!(
        (ed["kty"].as_str(), ed["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert_eq!(b64url_decode(ed["x"].as_str().unwrap()).unwrap().len(), 32);
}

#[test]
fn pem_export_round_trips() {
    let key = SigningKey::generate(KeyKind::Rsa(2048), "sa").unwrap();
    let pem = key.pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let back = SigningKey::from_pem(&pem, "sa").unwrap();
    let token = sign_jwt(&back, Alg::RS256, &json!({"a": 1})).unwrap();
    verify_rs256(&token, &json!({"keys": [key.public_jwk()]})).unwrap();
    let public = PublicKey::from_pem(&key.public_pem().unwrap()).unwrap();
    verify_with_key(&token, &public, Alg::RS256).unwrap();
}

#[test]
fn jose_cookbook_rs256_verifies_and_is_reproduced() {
    let v = vector("rfc/jose-cookbook/jws/4_1.rsa_v15_signature.json");
    let compact = v["output"]["compact"].as_str().unwrap();
    let jwk = &v["input"]["key"];
    let public = json!({"keys": [{"kty": "RSA", "kid": jwk["kid"], "n": jwk["n"], "e": jwk["e"]}]});
    let decoded = verify_rs256(compact, &public).unwrap();
    assert_eq!(
        decoded.payload,
        v["input"]["payload"].as_str().unwrap().as_bytes()
    );
    // RS256 is deterministic: signing the same input with the private JWK gives the same token.
    let key = SigningKey::from_jwk(jwk).unwrap();
    let sig = key
        .sign(Alg::RS256, decoded.signing_input.as_bytes())
        .unwrap();
    assert_eq!(b64url(&sig), v["signing"]["sig"].as_str().unwrap());
    // A tampered payload does not verify.
    let parts: Vec<&str> = compact.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(b"It's a safe business"),
        parts[2]
    );
    assert!(verify_rs256(&tampered, &public).is_err());
}

#[test]
fn jose_cookbook_ps384_verifies() {
    let v = vector("rfc/jose-cookbook/jws/4_2.rsa-pss_signature.json");
    let compact = v["output"]["compact"].as_str().unwrap();
    let jwk = &v["input"]["key"];
    let public = json!({"keys": [{"kty": "RSA", "kid": jwk["kid"], "n": jwk["n"], "e": jwk["e"]}]});
    verify_compact(compact, &public, &[Alg::PS384]).unwrap();
    assert!(verify_rs256(compact, &public).is_err());
}

#[test]
fn rfc7515_appendix_a_rs256_and_es256_verify() {
    let v = vector("rfc/rfc7515-appendix-A.json");
    for case in v["vectors"].as_array().unwrap() {
        let alg = match case["alg"].as_str().and_then(Alg::parse) {
            Some(alg) => alg,
            None => continue, // HS256, ES512 and none are out of scope
        };
        let jwks = json!({"keys": [case["public_jwk"]]});
        let compact = case["compact"].as_str().unwrap();
        verify_compact(compact, &jwks, &[alg])
            .unwrap_or_else(|e| panic!("{}: {e}", case["section"]));
        let key = SigningKey::from_jwk(&case["jwk"]).unwrap();
        let again = sign_compact_bytes(
            &key,
            alg,
            case["protected_header_utf8"].as_str().unwrap().as_bytes(),
            case["payload_utf8"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        verify_compact(&again, &jwks, &[alg]).unwrap();
        if alg == Alg::RS256 {
            assert_eq!(again, compact);
        }
    }
}

#[test]
fn keys_refuse_algorithms_of_other_types() {
    let ec = SigningKey::generate(KeyKind::P256, "e").unwrap();
    assert!(ec.sign(Alg::RS256, b"x").is_err());
    assert!(ec.sign(Alg::ES384, b"x").is_err());
    let token = sign_jwt(&ec, Alg::ES256, &json!({})).unwrap();
    // alg RS256 in a header over an EC key: no key fits.
    let mut d = decode(&token).unwrap();
    d.header["alg"] = json!("RS256");
    let forged = format!(
        "{}.{}.{}",
        b64url(d.header.to_string().as_bytes()),
        b64url(&d.payload),
        b64url(&d.signature)
    );
    assert!(verify_compact(
        &forged,
        &json!({"keys": [ec.public_jwk_for(None)]}),
        &Alg::ALL
    )
    .is_err());
    assert_eq!(hmac(256, b"k", b"x").unwrap().len(), 32);
}
