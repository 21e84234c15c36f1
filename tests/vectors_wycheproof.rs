//! Wycheproof (C2SP/wycheproof, `../shared/vectors/wycheproof/`): JWS and JWK tests through the filter's
//! own verification path; raw ECDSA-P1363, Ed25519, RSA PKCS#1 v1.5 and RSA-PSS tests through
//! `jwk` + `signature`. Each test prints its counts and asserts them exactly, together with the
//! exact list of vectors decided differently from their label (see `docs/VECTOR_RESULTS.md`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::b64;
use cloudrun_oidc::jose::jwk::Jwk;
use cloudrun_oidc::jose::signature;
use common::{hex, jwk_from_spki_der, keyset_of, read_json, verify_jws, Tally};
use serde_json::{json, Value};

/// Every raw-signature file the tests below run.
const RAW_FILES: [&str; 19] = [
    "wycheproof/ecdsa_secp256r1_sha256_p1363_test.json",
    "wycheproof/ecdsa_secp384r1_sha384_p1363_test.json",
    "wycheproof/ed25519_test.json",
    "wycheproof/rsa_signature_2048_sha256_test.json",
    "wycheproof/rsa_signature_2048_sha384_test.json",
    "wycheproof/rsa_signature_2048_sha512_test.json",
    "wycheproof/rsa_signature_3072_sha256_test.json",
    "wycheproof/rsa_signature_3072_sha384_test.json",
    "wycheproof/rsa_signature_3072_sha512_test.json",
    "wycheproof/rsa_signature_4096_sha256_test.json",
    "wycheproof/rsa_signature_4096_sha384_test.json",
    "wycheproof/rsa_signature_4096_sha512_test.json",
    "wycheproof/rsa_pss_2048_sha256_mgf1_32_test.json",
    "wycheproof/rsa_pss_2048_sha384_mgf1_48_test.json",
    "wycheproof/rsa_pss_3072_sha256_mgf1_32_test.json",
    "wycheproof/rsa_pss_4096_sha256_mgf1_32_test.json",
    "wycheproof/rsa_pss_4096_sha384_mgf1_48_test.json",
    "wycheproof/rsa_pss_4096_sha512_mgf1_64_test.json",
    "wycheproof/rsa_pss_4096_sha512_mgf1_32_test.json",
];

/// In wasm32 these vectors run through the code path the shipped `.wasm` uses: the SIMD128
/// RSA dot product (`src/jose/rsa_public.rs`), as `.cargo/config.toml` builds every wasm32 target.
#[cfg(target_arch = "wasm32")]
#[test]
fn wasm_build_runs_the_simd128_rsa_path() {
    assert!(cloudrun_oidc::jose::rsa_public::SIMD128);
}

fn groups(doc: &Value) -> &Vec<Value> {
    doc["testGroups"].as_array().unwrap()
}

fn tests(group: &Value) -> &Vec<Value> {
    group["tests"].as_array().unwrap()
}

/// Runs every JWS of a Wycheproof JOSE file against its group's key set. Groups without a
/// public key set (HMAC) use their `private` set: it only holds `oct` keys, which are never
/// usable, so those tokens are refused.
fn run_jose_file(file: &str) -> Tally {
    let doc = read_json(file);
    let mut tally = Tally::default();
    for group in groups(&doc) {
        let keys = group
            .get("public")
            .or_else(|| group.get("private"))
            .cloned()
            .unwrap_or(Value::Null);
        let set = keyset_of(&keys);
        for t in tests(group) {
            let token = t["jws"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| t["jws"].to_string());
            let outcome = match &set {
                Ok(set) => verify_jws(&token, set).map_err(|e| format!("{e:?}")),
                Err(e) => Err(format!("key set: {e}")),
            };
            let label = t["result"].as_str().unwrap();
            if (label == "valid") != outcome.is_ok() {
                eprintln!(
                    "  tc{} {} ({}): {outcome:?}",
                    t["tcId"], t["comment"], label
                );
            }
            let accepted = outcome.is_ok();
            tally.record(
                t["tcId"].as_u64().unwrap(),
                t["result"].as_str().unwrap(),
                accepted,
            );
        }
    }
    tally
}

#[test]
fn json_web_signature_test() {
    let tally = run_jose_file("wycheproof/json_web_signature_test.json");
    tally.assert(
        "json_web_signature_test",
        32,
        369,
        &[
            // HS256: HMAC is never supported (no `oct` key is ever usable, `HS*` is not an
            // algorithm the filter can represent).
            ("1", "valid"),
            ("348", "valid"),
            ("352", "valid"),
            ("357", "valid"),
            ("358", "valid"),
            ("359", "valid"),
            ("376", "valid"),
            ("377", "valid"),
            // HS256 and, independently, a `?` inside a segment: refused by strict base64url.
            ("372", "valid"),
            ("373", "valid"),
            // RFC 7520 Figure 20: a PS384 token checked with a JWK whose `alg` is PS256; the
            // filter honours the JWK's `alg` (RFC 7517 §4.4) → KeyAlgorithmMismatch.
            ("346", "valid"),
            ("350", "valid"),
            // RFC 7520 Figure 27: ES512 / P-521 is not supported.
            ("347", "valid"),
            ("351", "valid"),
        ],
    );
}

#[test]
fn json_web_key_test() {
    let tally = run_jose_file("wycheproof/json_web_key_test.json");
    // The four `valid` cases are HS256/384/512 with `oct` keys: HMAC is never supported.
    tally.assert(
        "json_web_key_test",
        1,
        25,
        &[
            ("2", "valid"),
            ("13", "valid"),
            ("14", "valid"),
            ("15", "valid"),
        ],
    );
}

/// The public key of a raw-signature group: its JWK, or (when Wycheproof gives none) one
/// built from the DER (`common::jwk_from_spki_der`, pure Rust so this also runs in wasm).
fn group_jwk(group: &Value) -> Value {
    if let Some(jwk) = group.get("publicKeyJwk") {
        return jwk.clone();
    }
    let der = hex(group["publicKeyDer"].as_str().unwrap());
    jwk_from_spki_der(&der).unwrap_or_else(|| panic!("unexpected key {}", group["publicKeyDer"]))
}

/// The key conversion of `group_jwk` gives what OpenSSL reads from the same DER, for every
/// group of every raw-signature file (native only: OpenSSL is not built for wasm).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn der_keys_convert_as_openssl_does() {
    fn openssl_jwk(der: &[u8]) -> Value {
        let pkey = openssl::pkey::PKey::public_key_from_der(der).unwrap();
        if let Ok(rsa) = pkey.rsa() {
            return json!({"kty":"RSA","n":b64::encode(&rsa.n().to_vec()),"e":b64::encode(&rsa.e().to_vec())});
        }
        if pkey.id() == openssl::pkey::Id::ED25519 {
            return json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(&pkey.raw_public_key().unwrap())});
        }
        let ec = pkey.ec_key().unwrap();
        let group_ = ec.group();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (
            openssl::bn::BigNum::new().unwrap(),
            openssl::bn::BigNum::new().unwrap(),
        );
        ec.public_key()
            .affine_coordinates(group_, &mut x, &mut y, &mut ctx)
            .unwrap();
        let (crv, len) = match group_.curve_name() {
            Some(openssl::nid::Nid::X9_62_PRIME256V1) => ("P-256", 32),
            Some(openssl::nid::Nid::SECP384R1) => ("P-384", 48),
            other => panic!("unexpected curve {other:?}"),
        };
        json!({"kty":"EC","crv":crv,"x":b64::encode(&x.to_vec_padded(len).unwrap()),"y":b64::encode(&y.to_vec_padded(len).unwrap())})
    }
    let mut checked = 0;
    for file in RAW_FILES {
        for group in groups(&read_json(file)) {
            let der = hex(group["publicKeyDer"].as_str().unwrap());
            assert_eq!(jwk_from_spki_der(&der), Some(openssl_jwk(&der)), "{file}");
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked} keys");
}

/// Raw signature files: `msg`/`sig` in hex against the group's key under `alg`. The JWK's own
/// `alg` (Wycheproof labels some keys) is dropped so the file's algorithm decides.
fn run_raw_file(file: &str, alg: Algorithm) -> Tally {
    let doc = read_json(file);
    let mut tally = Tally::default();
    for group in groups(&doc) {
        let mut jwk = group_jwk(group);
        jwk.as_object_mut().unwrap().remove("alg");
        let key = Jwk::from_value(&jwk);
        for t in tests(group) {
            let accepted = match &key {
                Ok(key) => signature::verify(
                    alg,
                    &key.key,
                    &hex(t["msg"].as_str().unwrap()),
                    &hex(t["sig"].as_str().unwrap()),
                ),
                Err(_) => false,
            };
            tally.record(
                t["tcId"].as_u64().unwrap(),
                t["result"].as_str().unwrap(),
                accepted,
            );
        }
    }
    tally
}

#[test]
fn ecdsa_p256_p1363() {
    let tally = run_raw_file(
        "wycheproof/ecdsa_secp256r1_sha256_p1363_test.json",
        Algorithm::Es256,
    );
    tally.assert("ecdsa_secp256r1_sha256_p1363", 173, 89, &[]);
}

#[test]
fn ecdsa_p384_p1363() {
    let tally = run_raw_file(
        "wycheproof/ecdsa_secp384r1_sha384_p1363_test.json",
        Algorithm::Es384,
    );
    tally.assert("ecdsa_secp384r1_sha384_p1363", 193, 87, &[]);
}

#[test]
fn ed25519() {
    let tally = run_raw_file("wycheproof/ed25519_test.json", Algorithm::EdDsa);
    tally.assert("ed25519", 88, 63, &[]);
}

#[test]
fn rsa_pkcs1v15() {
    let mut total = Tally::default();
    for (bits, hash, alg) in [
        (2048, 256, Algorithm::Rs256),
        (2048, 384, Algorithm::Rs384),
        (2048, 512, Algorithm::Rs512),
        (3072, 256, Algorithm::Rs256),
        (3072, 384, Algorithm::Rs384),
        (3072, 512, Algorithm::Rs512),
        (4096, 256, Algorithm::Rs256),
        (4096, 384, Algorithm::Rs384),
        (4096, 512, Algorithm::Rs512),
    ] {
        let name = format!("rsa_signature_{bits}_sha{hash}");
        let tally = run_raw_file(&format!("wycheproof/{name}_test.json"), alg);
        tally.report(&name);
        total.accepted += tally.accepted;
        total.refused += tally.refused;
        total.acceptable += tally.acceptable;
        for (id, label) in tally.differences {
            total.differences.insert(format!("{name}#{id}"), label);
        }
    }
    // 9 `acceptable` vectors (one per file) are refused; the rest follow the labels.
    assert_eq!(total.acceptable, 9);
    total.assert("rsa_signature (all 9 files)", 68, 2262, &[]);
}

#[test]
fn rsa_pss_with_hash_length_salt() {
    let mut total = Tally::default();
    for (name, alg) in [
        ("rsa_pss_2048_sha256_mgf1_32", Algorithm::Ps256),
        ("rsa_pss_2048_sha384_mgf1_48", Algorithm::Ps384),
        ("rsa_pss_3072_sha256_mgf1_32", Algorithm::Ps256),
        ("rsa_pss_4096_sha256_mgf1_32", Algorithm::Ps256),
        ("rsa_pss_4096_sha384_mgf1_48", Algorithm::Ps384),
        ("rsa_pss_4096_sha512_mgf1_64", Algorithm::Ps512),
    ] {
        let tally = run_raw_file(&format!("wycheproof/{name}_test.json"), alg);
        tally.report(name);
        total.accepted += tally.accepted;
        total.refused += tally.refused;
        total.acceptable += tally.acceptable;
        for (id, label) in tally.differences {
            total.differences.insert(format!("{name}#{id}"), label);
        }
    }
    total.assert("rsa_pss mgf1_<hashlen> (6 files)", 511, 274, &[]);
}

#[test]
fn rsa_pss_sha512_with_32_byte_salt_is_all_refused() {
    let tally = run_raw_file(
        "wycheproof/rsa_pss_4096_sha512_mgf1_32_test.json",
        Algorithm::Ps512,
    );
    tally.report("rsa_pss_4096_sha512_mgf1_32");
    assert_eq!(
        tally.accepted, 0,
        "PS512 requires a 64-byte salt (RFC 7518 §3.5)"
    );
    assert_eq!(tally.refused, 177);
}
