//! Shared helpers for the vector tests: loading files from the public test data
//! (`../shared/vectors`, beside the repository; never copied into it), running a compact JWS
//! through the filter's own modules, and counting outcomes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::jwk_set::KeySet;
use cloudrun_oidc::jose::TokenError;
use cloudrun_oidc::jose::{jwt, signature};
use serde_json::{json, Value};

/// The public test data: `VECTORS_DIR` when set, else `../shared/vectors` beside the repository
/// (spelled without `..`, so that the same path resolves inside a WASI preopen). A missing
/// directory fails the test that needs it, saying where it looked: CI always has `../shared`.
pub fn vectors_dir() -> PathBuf {
    let dir = match std::env::var_os("VECTORS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the repository has a parent directory")
            .join("shared/vectors"),
    };
    assert!(
        dir.join("README.md").is_file(),
        "the public test data is not at {} (../shared/vectors beside the repository, or \
         VECTORS_DIR): the vector tests read it there",
        dir.display()
    );
    dir
}

/// `<vectors>/<rel>`: see [`vectors_dir`].
pub fn vector_path(rel: &str) -> PathBuf {
    vectors_dir().join(rel)
}

pub fn read_json(rel: &str) -> Value {
    let path = vector_path(rel);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn read_bytes(rel: &str) -> Vec<u8> {
    let path = vector_path(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A public JWK for a DER `SubjectPublicKeyInfo`: RSA (also `id-RSASSA-PSS`), P-256, P-384 or
/// Ed25519, members taken as encoded (the filter's own `jwk` module judges them). `None` for
/// other keys (secp256k1, P-521, Ed448, X25519, …) and for bytes that are no SPKI. Pure Rust, so
/// that the vector tests also run in wasm32 (`spec/tests/wasm_vectors.rs`); natively it is
/// checked against OpenSSL (`vectors_wycheproof::der_keys_convert_as_openssl_does`,
/// `vectors_attacks::pem_keys_convert_as_openssl_does`).
pub fn jwk_from_spki_der(der: &[u8]) -> Option<Value> {
    use cloudrun_oidc::jose::b64;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use rsa::pkcs8::der::asn1::ObjectIdentifier;
    use rsa::pkcs8::der::Decode;
    use rsa::pkcs8::spki::SubjectPublicKeyInfoRef;
    const RSA: &str = "1.2.840.113549.1.1.1";
    const RSA_PSS: &str = "1.2.840.113549.1.1.10";
    const EC: &str = "1.2.840.10045.2.1";
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    const ED25519: &str = "1.3.101.112";
    let spki = SubjectPublicKeyInfoRef::from_der(der).ok()?;
    let key = spki.subject_public_key.as_bytes()?;
    let oid = spki.algorithm.oid.to_string();
    match oid.as_str() {
        RSA | RSA_PSS => {
            let rsa = rsa::pkcs1::RsaPublicKey::from_der(key).ok()?;
            Some(json!({"kty": "RSA",
                "n": b64::encode(rsa.modulus.as_bytes()),
                "e": b64::encode(rsa.public_exponent.as_bytes())}))
        }
        EC => {
            let curve = spki
                .algorithm
                .parameters?
                .decode_as::<ObjectIdentifier>()
                .ok()?
                .to_string();
            let (crv, point) = match curve.as_str() {
                P256 => (
                    "P-256",
                    p256::PublicKey::from_sec1_bytes(key)
                        .ok()?
                        .to_encoded_point(false)
                        .as_bytes()
                        .to_vec(),
                ),
                P384 => (
                    "P-384",
                    p384::PublicKey::from_sec1_bytes(key)
                        .ok()?
                        .to_encoded_point(false)
                        .as_bytes()
                        .to_vec(),
                ),
                _ => return None,
            };
            // Uncompressed SEC1: 0x04 ‖ x ‖ y.
            let coords = point.get(1..)?;
            let (x, y) = coords.split_at(coords.len() / 2);
            Some(json!({"kty": "EC", "crv": crv, "x": b64::encode(x), "y": b64::encode(y)}))
        }
        ED25519 if key.len() == 32 => {
            Some(json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(key)}))
        }
        _ => None,
    }
}

/// [`jwk_from_spki_der`] for a PEM `PUBLIC KEY`.
pub fn jwk_from_pem(pem: &str) -> Option<Value> {
    use base64::Engine;
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")?
        .strip_suffix("-----END PUBLIC KEY-----")?;
    let text: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    jwk_from_spki_der(&der)
}

/// A key set from one JWK or from a JWKS document.
pub fn keyset_of(jwk_or_set: &Value) -> Result<KeySet, String> {
    let doc = if jwk_or_set.get("keys").is_some() {
        jwk_or_set.clone()
    } else {
        json!({ "keys": [jwk_or_set] })
    };
    KeySet::parse(doc.to_string().as_bytes()).map_err(|e| e.to_string())
}

/// Runs a compact JWS through the filter's verification path, minus the claim checks (many
/// vectors have non-JSON payloads): `jwt::parse_jws` → `crit` refused → `alg` supported →
/// `KeySet::select` → `signature::verify`. `Ok(())` means accepted.
pub fn verify_jws(token: &str, keys: &KeySet) -> Result<(), TokenError> {
    let jws = jwt::parse_jws(token)?;
    let header = &jws.unverified_header;
    if header.has_crit {
        return Err(TokenError::CriticalHeader);
    }
    let alg = Algorithm::from_name(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
    let key = keys.select(header.kid.as_deref(), header.x5t.as_deref(), alg)?;
    if signature::verify(alg, &key.key, jws.signing_input, &jws.signature) {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// Outcome counts of one vector file, compared against its labels.
#[derive(Default, Debug, PartialEq, Eq, Clone)]
pub struct Tally {
    pub accepted: usize,
    pub refused: usize,
    /// Labelled valid but refused, or labelled invalid but accepted: test id → label.
    pub differences: BTreeMap<String, String>,
    /// Labelled `acceptable` (either outcome is allowed).
    pub acceptable: usize,
}

impl Tally {
    /// Records one outcome against its label (`valid`, `invalid`, `acceptable`).
    pub fn record(&mut self, id: impl ToString, label: &str, accepted: bool) {
        if accepted {
            self.accepted += 1;
        } else {
            self.refused += 1;
        }
        match (label, accepted) {
            ("valid", false) | ("invalid", true) => {
                self.differences.insert(id.to_string(), label.to_string());
            }
            ("acceptable", _) => self.acceptable += 1,
            ("valid", true) | ("invalid", false) => {}
            (other, _) => panic!("unknown label {other}"),
        }
    }

    pub fn report(&self, name: &str) {
        eprintln!(
            "{name}: accepted {} refused {} (acceptable-labelled {}) documented differences {}: {:?}",
            self.accepted,
            self.refused,
            self.acceptable,
            self.differences.len(),
            self.differences
        );
    }

    /// Asserts the exact counts and the exact set of documented differences.
    pub fn assert(
        &self,
        name: &str,
        accepted: usize,
        refused: usize,
        differences: &[(&str, &str)],
    ) {
        self.report(name);
        let expected: BTreeMap<String, String> = differences
            .iter()
            .map(|(id, label)| (id.to_string(), label.to_string()))
            .collect();
        assert_eq!(
            self.differences, expected,
            "{name}: differences from the labels"
        );
        assert_eq!(
            (self.accepted, self.refused),
            (accepted, refused),
            "{name}: accepted/refused"
        );
    }
}
