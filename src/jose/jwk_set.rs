//! A JSON Web Key Set (RFC 7517 §5): parsing with caps, and choosing the key for a token.
//!
//! Decisions:
//! - Caps before parsing: at most [`MAX_JWKS_BYTES`] of JSON (a leading UTF-8 BOM is ignored), at most [`MAX_KEYS`] entries in
//!   `keys` (more is an error, not a truncation: a partial set would pick keys arbitrarily).
//! - Keys that are not usable signature keys (encryption keys, `oct`, unsupported types or
//!   curves) and keys that are invalid (short RSA, bad points, private members, bad base64url)
//!   are **skipped, not fatal**: one odd key must not take an IdP's whole set down. They are
//!   listed in [`KeySet::skipped`] for the log. A set with no usable key is
//!   [`JwksError::NoUsableKeys`].
//! - **Duplicate `kid`s**: entries with the same `kid` and the same key (RFC 7638 thumbprint)
//!   collapse into one. Entries with the same `kid` and different keys make that `kid`
//!   ambiguous: a token naming it gets [`TokenError::UnknownKey`] (never "try each"), while
//!   the other keys of the set stay usable.
//! - Key choice: with a `kid`, exactly that key, whose family and (if published) `alg` must
//!   fit the token's `alg`, else [`TokenError::KeyAlgorithmMismatch`]. Without a `kid`, the
//!   keys that fit the algorithm; when the token has an `x5t` and keys publish `x5t`, those
//!   matching it; exactly one candidate must remain, else [`TokenError::UnknownKey`].

use std::fmt;

use serde_json::Value;

use crate::jose::alg::Algorithm;
use crate::jose::jwk::{Jwk, JwkError};
use crate::jose::TokenError;

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Most entries accepted in `keys` (usable or not).
pub const MAX_KEYS: usize = 100;

/// Why a JWKS document was refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwksError {
    /// More than [`MAX_JWKS_BYTES`].
    TooLarge,
    /// Not valid JSON.
    NotJson,
    /// Not an object with a `keys` array.
    NotAKeySet,
    /// More than [`MAX_KEYS`] entries in `keys`.
    TooManyKeys,
    /// No entry is a usable signature-verification key.
    NoUsableKeys,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge => write!(f, "JWKS larger than {MAX_JWKS_BYTES} bytes"),
            JwksError::NotJson => f.write_str("JWKS is not valid JSON"),
            JwksError::NotAKeySet => f.write_str("JWKS is not an object with a \"keys\" array"),
            JwksError::TooManyKeys => write!(f, "JWKS has more than {MAX_KEYS} keys"),
            JwksError::NoUsableKeys => f.write_str("JWKS has no usable signature key"),
        }
    }
}

/// A key of the document that is not in the set, and why (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in `keys`.
    pub index: usize,
    /// The entry's `kid` when it was a string.
    pub kid: Option<String>,
    pub reason: JwkError,
}

/// The usable keys of one JWKS document. Immutable once parsed.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: Vec<Jwk>,
    /// `kid`s published with different keys: never selected.
    ambiguous_kids: Vec<String>,
    skipped: Vec<SkippedKey>,
}

impl KeySet {
    /// Parses a JWKS document (see the module notes for what is skipped and refused).
    pub fn parse(json: &[u8]) -> Result<KeySet, JwksError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let doc: Value = serde_json::from_slice(strip_bom(json)).map_err(|_| JwksError::NotJson)?;
        KeySet::from_value(&doc)
    }

    /// Builds a set from an already parsed document (inline `jwks` in the configuration).
    pub fn from_value(doc: &Value) -> Result<KeySet, JwksError> {
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAKeySet)?;
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut keys: Vec<Jwk> = Vec::new();
        let mut ambiguous_kids: Vec<String> = Vec::new();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let jwk = match Jwk::from_value(entry) {
                Ok(jwk) => jwk,
                Err(reason) => {
                    skipped.push(SkippedKey {
                        index,
                        kid: entry.get("kid").and_then(Value::as_str).map(str::to_string),
                        reason,
                    });
                    continue;
                }
            };
            if let Some(kid) = &jwk.kid {
                if let Some(existing) = keys.iter().find(|k| k.kid.as_ref() == Some(kid)) {
                    if existing.thumbprint != jwk.thumbprint || existing.alg != jwk.alg {
                        if !ambiguous_kids.contains(kid) {
                            ambiguous_kids.push(kid.clone());
                        }
                        keys.push(jwk);
                    }
                    continue;
                }
            }
            keys.push(jwk);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(KeySet {
            keys,
            ambiguous_kids,
            skipped,
        })
    }

    /// The key for a token with this `kid` (or none) and `alg`. See [`KeySet::select`].
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Jwk, TokenError> {
        self.select(kid, None, alg)
    }

    /// The key for a token: by `kid` when present; otherwise by algorithm, narrowed by `x5t`
    /// when the token and keys carry one; exactly one key must fit.
    pub fn select(
        &self,
        kid: Option<&str>,
        x5t: Option<&str>,
        alg: Algorithm,
    ) -> Result<&Jwk, TokenError> {
        let fits = |k: &&Jwk| k.key.family() == alg.key_family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => {
                if self.ambiguous_kids.iter().any(|a| a == kid) {
                    return Err(TokenError::UnknownKey);
                }
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or(TokenError::UnknownKey)?;
                if fits(&key) {
                    Ok(key)
                } else {
                    Err(TokenError::KeyAlgorithmMismatch)
                }
            }
            None => {
                let by_x5t = x5t.map(|t| {
                    self.keys
                        .iter()
                        .filter(fits)
                        .filter(|k| k.x5t.as_deref() == Some(t))
                        .collect::<Vec<_>>()
                });
                let candidates = match by_x5t {
                    Some(found) if !found.is_empty() => found,
                    _ => self.keys.iter().filter(fits).collect(),
                };
                match candidates.as_slice() {
                    [one] => Ok(one),
                    _ => Err(TokenError::UnknownKey),
                }
            }
        }
    }

    /// Whether a key with this RFC 7638 thumbprint is in the set (verified-token cache check).
    pub fn contains_thumbprint(&self, thumbprint: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| &k.thumbprint == thumbprint)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a set has at least one key (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys, in document order (keys without `kid` are not listed).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// The usable keys, in document order.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Entries left out, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }
}

/// RFC 8259 §8.1 lets parsers ignore a UTF-8 byte order mark; some servers send one.
fn strip_bom(json: &[u8]) -> &[u8] {
    json.strip_prefix(b"\xef\xbb\xbf").unwrap_or(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::jwk::SkipReason;
    use crate::jose::signature::tests::TestKey;
    use openssl::nid::Nid;
    use serde_json::json;

    fn with(mut v: Value, members: Value) -> Value {
        for (k, m) in members.as_object().unwrap() {
            v.as_object_mut().unwrap().insert(k.clone(), m.clone());
        }
        v
    }

    fn set(keys: Vec<Value>) -> Result<KeySet, JwksError> {
        KeySet::parse(
            serde_json::to_vec(&json!({ "keys": keys }))
                .unwrap()
                .as_slice(),
        )
    }

    #[test]
    fn finds_key_by_kid() {
        let a = TestKey::rsa(2048).jwk;
        let b = TestKey::ec(Nid::X9_62_PRIME256V1).jwk;
        let s = set(vec![
            with(a, json!({"kid":"a"})),
            with(b, json!({"kid":"b"})),
        ])
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.kids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            s.find(Some("a"), Algorithm::Rs256).unwrap().kid.as_deref(),
            Some("a")
        );
        assert_eq!(
            s.find(Some("a"), Algorithm::Ps512).unwrap().kid.as_deref(),
            Some("a")
        );
        assert_eq!(
            s.find(Some("b"), Algorithm::Es256).unwrap().kid.as_deref(),
            Some("b")
        );
    }

    #[test]
    fn unknown_kid_is_unknown_key() {
        let s = set(vec![with(TestKey::rsa(2048).jwk, json!({"kid":"a"}))]).unwrap();
        assert_eq!(
            s.find(Some("z"), Algorithm::Rs256).err(),
            Some(TokenError::UnknownKey)
        );
        assert_eq!(
            s.find(Some(""), Algorithm::Rs256).err(),
            Some(TokenError::UnknownKey)
        );
    }

    #[test]
    fn kid_of_another_family_is_a_mismatch() {
        let s = set(vec![
            with(TestKey::rsa(2048).jwk, json!({"kid":"r","alg":"RS256"})),
            with(TestKey::ec(Nid::X9_62_PRIME256V1).jwk, json!({"kid":"e"})),
        ])
        .unwrap();
        assert_eq!(
            s.find(Some("r"), Algorithm::Es256).err(),
            Some(TokenError::KeyAlgorithmMismatch)
        );
        assert_eq!(
            s.find(Some("e"), Algorithm::Es384).err(),
            Some(TokenError::KeyAlgorithmMismatch)
        );
        // The JWK pins RS256: PS256 with the same RSA key is refused (RFC 7517 §4.4).
        assert_eq!(
            s.find(Some("r"), Algorithm::Ps256).err(),
            Some(TokenError::KeyAlgorithmMismatch)
        );
    }

    #[test]
    fn without_kid_picks_the_only_fitting_key() {
        let s = set(vec![
            with(TestKey::rsa(2048).jwk, json!({"kid":"r"})),
            with(TestKey::ec(Nid::X9_62_PRIME256V1).jwk, json!({"kid":"e"})),
        ])
        .unwrap();
        assert_eq!(
            s.find(None, Algorithm::Es256).unwrap().kid.as_deref(),
            Some("e")
        );
        assert_eq!(
            s.find(None, Algorithm::Rs384).unwrap().kid.as_deref(),
            Some("r")
        );
        assert_eq!(
            s.find(None, Algorithm::EdDsa).err(),
            Some(TokenError::UnknownKey)
        );
    }

    #[test]
    fn without_kid_refuses_when_several_keys_fit() {
        let s = set(vec![TestKey::rsa(2048).jwk, TestKey::rsa(2048).jwk]).unwrap();
        assert_eq!(
            s.find(None, Algorithm::Rs256).err(),
            Some(TokenError::UnknownKey)
        );
    }

    #[test]
    fn without_kid_narrows_by_x5t() {
        let s = set(vec![
            with(TestKey::rsa(2048).jwk, json!({"kid":"one","x5t":"one"})),
            with(TestKey::rsa(2048).jwk, json!({"kid":"two","x5t":"two"})),
        ])
        .unwrap();
        let k = s.select(None, Some("two"), Algorithm::Rs256).unwrap();
        assert_eq!(k.kid.as_deref(), Some("two"));
        assert_eq!(
            s.select(None, Some("three"), Algorithm::Rs256).err(),
            Some(TokenError::UnknownKey)
        );
        assert_eq!(
            s.select(None, None, Algorithm::Rs256).err(),
            Some(TokenError::UnknownKey)
        );
    }

    #[test]
    fn conflicting_duplicate_kid_is_never_selected() {
        let s = set(vec![
            with(TestKey::rsa(2048).jwk, json!({"kid":"dup"})),
            with(TestKey::rsa(2048).jwk, json!({"kid":"dup"})),
            with(TestKey::rsa(2048).jwk, json!({"kid":"other"})),
        ])
        .unwrap();
        assert_eq!(
            s.find(Some("dup"), Algorithm::Rs256).err(),
            Some(TokenError::UnknownKey)
        );
        assert!(s.find(Some("other"), Algorithm::Rs256).is_ok());
    }

    #[test]
    fn identical_duplicate_kid_collapses() {
        let k = with(TestKey::rsa(2048).jwk, json!({"kid":"dup"}));
        let s = set(vec![k.clone(), k]).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.find(Some("dup"), Algorithm::Rs256).is_ok());
    }

    #[test]
    fn skips_unusable_keys_and_keeps_the_rest() {
        let s = set(vec![
            json!({"kty":"oct","k":"AAAA","kid":"h"}),
            with(TestKey::rsa(2048).jwk, json!({"kid":"enc","use":"enc"})),
            with(TestKey::rsa(1024).jwk, json!({"kid":"short"})),
            json!("not a key"),
            with(TestKey::ed25519().jwk, json!({"kid":"ed"})),
        ])
        .unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.find(Some("enc"), Algorithm::Rs256).is_err());
        let reasons: Vec<_> = s
            .skipped()
            .iter()
            .map(|k| (k.index, k.kid.clone(), k.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (
                    0,
                    Some("h".into()),
                    JwkError::Skipped(SkipReason::Symmetric)
                ),
                (
                    1,
                    Some("enc".into()),
                    JwkError::Skipped(SkipReason::NotForSignatures)
                ),
                (2, Some("short".into()), JwkError::RsaModulus),
                (3, None, JwkError::NotAnObject),
            ]
        );
    }

    #[test]
    fn refuses_set_without_usable_keys() {
        assert_eq!(set(vec![]).err(), Some(JwksError::NoUsableKeys));
        let enc = with(TestKey::rsa(2048).jwk, json!({"use":"enc"}));
        assert_eq!(set(vec![enc]).err(), Some(JwksError::NoUsableKeys));
    }

    #[test]
    fn refuses_oversized_document() {
        let mut big = br#"{"keys":[],"pad":""#.to_vec();
        big.resize(MAX_JWKS_BYTES + 1, b'a');
        assert_eq!(KeySet::parse(&big).err(), Some(JwksError::TooLarge));
    }

    #[test]
    fn refuses_too_many_keys() {
        let keys = vec![json!({"kty":"oct","k":"AA"}); MAX_KEYS + 1];
        assert_eq!(set(keys).err(), Some(JwksError::TooManyKeys));
    }

    #[test]
    fn ignores_a_utf8_byte_order_mark() {
        let doc = json!({"keys":[TestKey::ed25519().jwk]}).to_string();
        let mut with_bom = b"\xef\xbb\xbf".to_vec();
        with_bom.extend(doc.as_bytes());
        assert_eq!(KeySet::parse(&with_bom).unwrap().len(), 1);
    }

    #[test]
    fn refuses_non_jwks_documents() {
        assert_eq!(KeySet::parse(b"{").err(), Some(JwksError::NotJson));
        assert_eq!(KeySet::parse(b"[]").err(), Some(JwksError::NotAKeySet));
        assert_eq!(
            KeySet::parse(br#"{"keys":{}}"#).err(),
            Some(JwksError::NotAKeySet)
        );
        assert_eq!(KeySet::parse(b"").err(), Some(JwksError::NotJson));
    }

    #[test]
    fn knows_its_thumbprints() {
        let s = set(vec![TestKey::ed25519().jwk]).unwrap();
        let t = s.keys()[0].thumbprint;
        assert!(s.contains_thumbprint(&t));
        assert!(!s.contains_thumbprint(&[0; 32]));
    }

    #[test]
    fn display_names_no_key_material() {
        for e in [
            JwksError::TooLarge,
            JwksError::NotJson,
            JwksError::NotAKeySet,
            JwksError::TooManyKeys,
            JwksError::NoUsableKeys,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }
}
