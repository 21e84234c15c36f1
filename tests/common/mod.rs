//! Shared helpers for the vector tests: loading files from `vectors/`, running a compact JWS
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

use cloudrun_oidc::alg::Algorithm;
use cloudrun_oidc::jwks::KeySet;
use cloudrun_oidc::reject::AuthError;
use cloudrun_oidc::{jwt, signature};
use serde_json::{json, Value};

/// `vectors/<rel>` of this repository.
pub fn vector_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("vectors")
        .join(rel)
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
pub fn verify_jws(token: &str, keys: &KeySet) -> Result<(), AuthError> {
    let jws = jwt::parse_jws(token)?;
    let header = &jws.unverified_header;
    if header.has_crit {
        return Err(AuthError::CriticalHeader);
    }
    let alg = Algorithm::from_name(&header.alg).ok_or(AuthError::AlgorithmNotAllowed)?;
    let key = keys.select(header.kid.as_deref(), header.x5t.as_deref(), alg)?;
    if signature::verify(alg, &key.key, jws.signing_input, &jws.signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
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
