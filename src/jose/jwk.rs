//! One JSON Web Key (RFC 7517) parsed into a typed public key the signature module can use.
//!
//! Accepted: `RSA` (modulus 2048..=8192 bits, odd `e` ≥ 3, not a ROCA-fingerprinted modulus),
//! `EC` on `P-256`/`P-384` (point checked on the curve), `OKP` `Ed25519`. Keys meant for
//! something else (`use: enc`, `key_ops` without `verify`, an encryption `alg`, symmetric
//! `oct`, other `kty`/`crv`) are [`JwkError::Skipped`]: normal in a real JWKS, never an
//! attack. Private members (`d`, `p`, …) make the key invalid: a public key set must not carry
//! them. An `alg` in the JWK, when present, must belong to the key's family (`RS256` on an EC
//! key is [`JwkError::AlgorithmMismatch`]); an `alg` shaped like a JWS algorithm we do not
//! support skips the key; a value that is no JOSE algorithm at all (Azure AD v1's `SHA256`) is
//! ignored. Key members may be standard base64 with padding (see
//! [`b64::decode_key_material`]); the thumbprint always uses the canonical base64url form.

use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jose::alg::{Algorithm, KeyFamily};
use crate::jose::b64;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the cost of one verification).
pub const MAX_RSA_BITS: usize = 8192;

/// A public key in the form the signature backend wants (see [`crate::jose::signature`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA with its precomputed Montgomery constants ([`crate::jose::rsa_public`]).
    Rsa(crate::jose::rsa_public::RsaKey),
    /// P-256 with its comb table ([`crate::jose::ecdsa_comb`]).
    P256(crate::jose::ecdsa_comb::p256::Key),
    /// P-384 with its comb table ([`crate::jose::ecdsa_comb`]).
    P384(crate::jose::ecdsa_comb::p384::Key),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The algorithm family this key can verify.
    pub fn family(&self) -> KeyFamily {
        match self {
            PublicKey::Rsa(_) => KeyFamily::Rsa,
            PublicKey::P256(_) => KeyFamily::EcP256,
            PublicKey::P384(_) => KeyFamily::EcP384,
            PublicKey::Ed25519(_) => KeyFamily::Ed25519,
        }
    }
}

/// A usable verification key from a JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names a supported signature algorithm.
    pub alg: Option<Algorithm>,
    /// The JWK's `x5t` (SHA-1 certificate thumbprint, base64url) as published, if any.
    pub x5t: Option<String>,
    pub key: PublicKey,
    /// RFC 7638 SHA-256 thumbprint over the required members: the key's identity in caches.
    pub thumbprint: [u8; 32],
}

/// Why a JWK is not for us (skipping it is normal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// `use` is not `sig`, or `key_ops` lacks `verify`, or `alg` names an encryption algorithm.
    NotForSignatures,
    /// `kty: oct`: HMAC keys are never used.
    Symmetric,
    UnsupportedKeyType,
    /// EC or OKP curve other than P-256, P-384, Ed25519.
    UnsupportedCurve,
    /// `alg` names a signature algorithm the filter does not support (ES512, Ed448, …).
    UnsupportedAlgorithm,
}

/// Why a JWK was not turned into a [`Jwk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwkError {
    /// Not a signature-verification key we support; see [`SkipReason`].
    Skipped(SkipReason),
    /// The JWK is not a JSON object.
    NotAnObject,
    /// A member is missing, of the wrong type, or not strict base64url.
    Member(&'static str),
    /// Private-key members are present.
    PrivateKey,
    /// RSA modulus outside 2048..=8192 bits, even, or ROCA-fingerprinted.
    RsaModulus,
    /// RSA public exponent even, below 3, or too large.
    RsaExponent,
    /// EC coordinates of the wrong length or not on the curve; Ed25519 key not a valid point.
    InvalidKey,
    /// The JWK's `alg` belongs to another key family (or curve).
    AlgorithmMismatch,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NotForSignatures => "not a signature key (use/key_ops/alg)",
            SkipReason::Symmetric => "symmetric key (oct) is never used",
            SkipReason::UnsupportedKeyType => "unsupported kty",
            SkipReason::UnsupportedCurve => "unsupported curve",
            SkipReason::UnsupportedAlgorithm => "unsupported alg",
        })
    }
}

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwkError::Skipped(reason) => write!(f, "skipped: {reason}"),
            JwkError::NotAnObject => f.write_str("key is not a JSON object"),
            JwkError::Member(name) => write!(f, "missing or invalid member \"{name}\""),
            JwkError::PrivateKey => f.write_str("key carries private members"),
            JwkError::RsaModulus => f.write_str("RSA modulus refused (size, parity or ROCA)"),
            JwkError::RsaExponent => f.write_str("RSA exponent refused"),
            JwkError::InvalidKey => f.write_str("invalid public key"),
            JwkError::AlgorithmMismatch => f.write_str("alg does not match the key type"),
        }
    }
}

/// Members that only a private key (or a symmetric key) has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// JWE `alg` values (RFC 7518 §4): a key published for them is an encryption key.
fn is_encryption_alg(name: &str) -> bool {
    matches!(
        name,
        "RSA1_5" | "RSA-OAEP" | "RSA-OAEP-256" | "RSA-OAEP-384" | "RSA-OAEP-512" | "dir"
    ) || name.starts_with("ECDH-ES")
        || name.starts_with("A128")
        || name.starts_with("A192")
        || name.starts_with("A256")
        || name.starts_with("PBES2")
}

/// Names shaped like JWS signature algorithms (`HS*`, `RS*`, `PS*`, `ES*`, `Ed*`, `none`, …):
/// a key labelled with one we do not support is skipped rather than used for another.
fn is_signature_alg_name(name: &str) -> bool {
    ["HS", "RS", "PS", "ES", "Ed", "ML-DSA", "SLH-DSA"]
        .iter()
        .any(|p| name.starts_with(p))
        || name == "none"
}

impl Jwk {
    /// Parses one member of a JWKS `keys` array.
    pub fn from_value(value: &Value) -> Result<Jwk, JwkError> {
        let obj = value.as_object().ok_or(JwkError::NotAnObject)?;
        let kty = string(obj, "kty")?.ok_or(JwkError::Member("kty"))?;
        let kid = string(obj, "kid")?;
        let x5t = string(obj, "x5t")?;
        check_usage(obj)?;
        let alg = match string(obj, "alg")? {
            None => None,
            Some(name) => match Algorithm::from_name(&name) {
                Some(a) => Some(a),
                None if is_encryption_alg(&name) => {
                    return Err(JwkError::Skipped(SkipReason::NotForSignatures))
                }
                None if kty == "oct" => return Err(JwkError::Skipped(SkipReason::Symmetric)),
                None if is_signature_alg_name(&name) => {
                    return Err(JwkError::Skipped(SkipReason::UnsupportedAlgorithm))
                }
                // Not a JOSE algorithm at all (Azure AD v1 keys said "SHA256"): ignored, as if
                // absent; the key family still decides what the key can verify.
                None => None,
            },
        };
        let (key, thumb_json) = match kty.as_str() {
            "oct" => return Err(JwkError::Skipped(SkipReason::Symmetric)),
            "RSA" => {
                refuse_private(obj)?;
                rsa_key(obj)?
            }
            "EC" => {
                refuse_private(obj)?;
                ec_key(obj)?
            }
            "OKP" => {
                refuse_private(obj)?;
                okp_key(obj)?
            }
            _ => return Err(JwkError::Skipped(SkipReason::UnsupportedKeyType)),
        };
        if let Some(a) = alg {
            if a.key_family() != key.family() {
                return Err(JwkError::AlgorithmMismatch);
            }
        }
        Ok(Jwk {
            kid,
            alg,
            x5t,
            key,
            thumbprint: Sha256::digest(thumb_json.as_bytes()).into(),
        })
    }
}

fn string(obj: &Map<String, Value>, name: &'static str) -> Result<Option<String>, JwkError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwkError::Member(name)),
    }
}

/// A required key-material member, decoded (see [`b64::decode_key_material`]), and its
/// canonical base64url form for the RFC 7638 thumbprint.
fn b64_member(obj: &Map<String, Value>, name: &'static str) -> Result<(String, Vec<u8>), JwkError> {
    let text = obj
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::Member(name))?;
    let bytes = b64::decode_key_material(text.as_bytes()).ok_or(JwkError::Member(name))?;
    Ok((b64::encode(&bytes), bytes))
}

/// `use` must be `sig` when present; `key_ops` must contain `verify` when present.
fn check_usage(obj: &Map<String, Value>) -> Result<(), JwkError> {
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(_)) => return Err(JwkError::Skipped(SkipReason::NotForSignatures)),
        Some(_) => return Err(JwkError::Member("use")),
    }
    match obj.get("key_ops") {
        None => Ok(()),
        Some(Value::Array(ops)) => {
            if ops.iter().any(|op| !op.is_string()) {
                return Err(JwkError::Member("key_ops"));
            }
            if ops.iter().any(|op| op.as_str() == Some("verify")) {
                Ok(())
            } else {
                Err(JwkError::Skipped(SkipReason::NotForSignatures))
            }
        }
        Some(_) => Err(JwkError::Member("key_ops")),
    }
}

fn refuse_private(obj: &Map<String, Value>) -> Result<(), JwkError> {
    if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
        Err(JwkError::PrivateKey)
    } else {
        Ok(())
    }
}

fn rsa_key(obj: &Map<String, Value>) -> Result<(PublicKey, String), JwkError> {
    let (n_text, n_bytes) = b64_member(obj, "n")?;
    let (e_text, e_bytes) = b64_member(obj, "e")?;
    let n = rsa::BigUint::from_bytes_be(&n_bytes);
    let e = rsa::BigUint::from_bytes_be(&e_bytes);
    let bits = n.bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits)
        || n_bytes.last().is_none_or(|b| b & 1 == 0)
        || is_roca_modulus(&n_bytes)
    {
        return Err(JwkError::RsaModulus);
    }
    if e_bytes.last().is_none_or(|b| b & 1 == 0) || e < rsa::BigUint::from(3u32) {
        return Err(JwkError::RsaExponent);
    }
    // Odd, at least 3 and below 2^33 (the bounds the `rsa` crate applied before).
    let e = e_bytes
        .iter()
        .try_fold(0u64, |acc, &b| {
            acc.checked_mul(256).map(|v| v | u64::from(b))
        })
        .ok_or(JwkError::RsaExponent)?;
    let key = crate::jose::rsa_public::RsaKey::new(&n, e).map_err(|_| JwkError::RsaExponent)?;
    let thumb = format!(r#"{{"e":"{e_text}","kty":"RSA","n":"{n_text}"}}"#);
    Ok((PublicKey::Rsa(key), thumb))
}

fn ec_key(obj: &Map<String, Value>) -> Result<(PublicKey, String), JwkError> {
    let crv = string(obj, "crv")?.ok_or(JwkError::Member("crv"))?;
    let (x_text, x) = b64_member(obj, "x")?;
    let (y_text, y) = b64_member(obj, "y")?;
    let key = match crv.as_str() {
        "P-256" => {
            if x.len() != 32 || y.len() != 32 {
                return Err(JwkError::InvalidKey);
            }
            PublicKey::P256(
                crate::jose::ecdsa_comb::p256::Key::from_sec1_bytes(&uncompressed_point(&x, &y))
                    .ok_or(JwkError::InvalidKey)?,
            )
        }
        "P-384" => {
            if x.len() != 48 || y.len() != 48 {
                return Err(JwkError::InvalidKey);
            }
            PublicKey::P384(
                crate::jose::ecdsa_comb::p384::Key::from_sec1_bytes(&uncompressed_point(&x, &y))
                    .ok_or(JwkError::InvalidKey)?,
            )
        }
        _ => return Err(JwkError::Skipped(SkipReason::UnsupportedCurve)),
    };
    let thumb = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x_text}","y":"{y_text}"}}"#);
    Ok((key, thumb))
}

/// SEC1 uncompressed encoding `04 ‖ x ‖ y` (lengths already checked by the caller).
fn uncompressed_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut sec1 = Vec::with_capacity(1 + x.len() + y.len());
    sec1.push(0x04);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    sec1
}

fn okp_key(obj: &Map<String, Value>) -> Result<(PublicKey, String), JwkError> {
    let crv = string(obj, "crv")?.ok_or(JwkError::Member("crv"))?;
    if crv != "Ed25519" {
        return Err(JwkError::Skipped(SkipReason::UnsupportedCurve));
    }
    let (x_text, x) = b64_member(obj, "x")?;
    let x: [u8; 32] = x.try_into().map_err(|_| JwkError::InvalidKey)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| JwkError::InvalidKey)?;
    if key.is_weak() {
        return Err(JwkError::InvalidKey);
    }
    let thumb = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x_text}"}}"#);
    Ok((PublicKey::Ed25519(key), thumb))
}

/// The ROCA fingerprint (CVE-2017-15361, Nemec et al., CCS 2017): moduli generated by the
/// vulnerable Infineon library satisfy `n mod p ∈ ⟨65537⟩ (mod p)` for every small prime `p`
/// below. A properly generated modulus passes all of them with negligible probability.
fn is_roca_modulus(n_be: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n_be
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        let generator = 65537 % p;
        // Walk the cyclic subgroup generated by 65537 mod p (at most p - 1 steps).
        let mut element = 1u32;
        for _ in 0..p {
            if element == residue {
                return true;
            }
            element = element * generator % p;
            if element == 1 {
                break;
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use serde_json::json;

    pub(crate) fn rsa_jwk(bits: u32, exponent: u32) -> Value {
        let e = BigNum::from_u32(exponent).unwrap();
        let rsa = Rsa::generate_with_e(bits, &e).unwrap();
        json!({"kty":"RSA","n":b64::encode(&rsa.n().to_vec()),"e":b64::encode(&rsa.e().to_vec())})
    }

    fn ec_jwk(nid: Nid, crv: &str) -> Value {
        let group = EcGroup::from_curve_name(nid).unwrap();
        let key = EcKey::generate(&group).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let mut x = BigNum::new().unwrap();
        let mut y = BigNum::new().unwrap();
        key.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let len = if crv == "P-256" { 32 } else { 48 };
        json!({"kty":"EC","crv":crv,
            "x":b64::encode(&x.to_vec_padded(len).unwrap()),
            "y":b64::encode(&y.to_vec_padded(len).unwrap())})
    }

    fn ed_jwk() -> Value {
        let key = PKey::generate_ed25519().unwrap();
        json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(&key.raw_public_key().unwrap())})
    }

    fn with(mut v: Value, name: &str, member: Value) -> Value {
        v.as_object_mut().unwrap().insert(name.to_string(), member);
        v
    }

    #[test]
    fn accepts_rsa_2048_with_kid_and_alg() {
        let v = with(
            with(rsa_jwk(2048, 65537), "kid", json!("k1")),
            "alg",
            json!("RS256"),
        );
        let k = Jwk::from_value(&v).unwrap();
        assert_eq!(k.kid.as_deref(), Some("k1"));
        assert_eq!(k.alg, Some(Algorithm::Rs256));
        assert_eq!(k.key.family(), KeyFamily::Rsa);
    }

    #[test]
    fn refuses_rsa_1024() {
        assert_eq!(
            Jwk::from_value(&rsa_jwk(1024, 65537)).err(),
            Some(JwkError::RsaModulus)
        );
    }

    #[test]
    fn refuses_rsa_exponent_one_and_even() {
        let mut v = rsa_jwk(2048, 65537);
        v["e"] = json!("AQ");
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::RsaExponent));
        v["e"] = json!(b64::encode(&[0x01, 0x00, 0x00]));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::RsaExponent));
        v["e"] = json!("");
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::RsaExponent));
    }

    #[test]
    fn accepts_rsa_exponent_three() {
        assert!(Jwk::from_value(&rsa_jwk(2048, 3)).is_ok());
    }

    #[test]
    fn refuses_even_modulus() {
        let mut v = rsa_jwk(2048, 65537);
        let mut n = b64::decode(v["n"].as_str().unwrap().as_bytes()).unwrap();
        *n.last_mut().unwrap() &= 0xfe;
        v["n"] = json!(b64::encode(&n));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::RsaModulus));
    }

    #[test]
    fn refuses_rsa_over_8192_bits() {
        let mut v = rsa_jwk(2048, 65537);
        let mut n = vec![0xffu8; 1025];
        *n.last_mut().unwrap() = 0xfb;
        v["n"] = json!(b64::encode(&n));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::RsaModulus));
    }

    #[test]
    fn accepts_p256_p384_and_ed25519() {
        let k = Jwk::from_value(&ec_jwk(Nid::X9_62_PRIME256V1, "P-256")).unwrap();
        assert_eq!(k.key.family(), KeyFamily::EcP256);
        let k = Jwk::from_value(&ec_jwk(Nid::SECP384R1, "P-384")).unwrap();
        assert_eq!(k.key.family(), KeyFamily::EcP384);
        let k = Jwk::from_value(&ed_jwk()).unwrap();
        assert_eq!(k.key.family(), KeyFamily::Ed25519);
    }

    #[test]
    fn refuses_point_off_the_curve() {
        let mut v = ec_jwk(Nid::X9_62_PRIME256V1, "P-256");
        let mut y = b64::decode(v["y"].as_str().unwrap().as_bytes()).unwrap();
        *y.last_mut().unwrap() ^= 1;
        v["y"] = json!(b64::encode(&y));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::InvalidKey));
    }

    #[test]
    fn refuses_coordinates_of_wrong_length() {
        let v = ec_jwk(Nid::X9_62_PRIME256V1, "P-256");
        let mut short = v.clone();
        let x = b64::decode(v["x"].as_str().unwrap().as_bytes()).unwrap();
        short["x"] = json!(b64::encode(&x[1..]));
        assert_eq!(Jwk::from_value(&short).err(), Some(JwkError::InvalidKey));
        // A P-256 key labelled P-384.
        let relabelled = with(v, "crv", json!("P-384"));
        assert_eq!(
            Jwk::from_value(&relabelled).err(),
            Some(JwkError::InvalidKey)
        );
    }

    #[test]
    fn refuses_alg_of_another_family() {
        let v = with(rsa_jwk(2048, 65537), "alg", json!("ES256"));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::AlgorithmMismatch));
        let v = with(
            ec_jwk(Nid::X9_62_PRIME256V1, "P-256"),
            "alg",
            json!("ES384"),
        );
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::AlgorithmMismatch));
        // An algorithm we do not implement at all: the key is skipped, never used.
        let v = with(
            ec_jwk(Nid::X9_62_PRIME256V1, "P-256"),
            "alg",
            json!("ES521"),
        );
        assert_eq!(
            Jwk::from_value(&v).err(),
            Some(JwkError::Skipped(SkipReason::UnsupportedAlgorithm))
        );
        let v = with(ed_jwk(), "alg", json!("RS256"));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::AlgorithmMismatch));
    }

    #[test]
    fn skips_encryption_keys() {
        let skipped = Err(JwkError::Skipped(SkipReason::NotForSignatures));
        let v = with(rsa_jwk(2048, 65537), "use", json!("enc"));
        assert_eq!(Jwk::from_value(&v), skipped);
        let v = with(
            rsa_jwk(2048, 65537),
            "key_ops",
            json!(["encrypt", "wrapKey"]),
        );
        assert_eq!(Jwk::from_value(&v), skipped);
        let v = with(rsa_jwk(2048, 65537), "alg", json!("RSA-OAEP"));
        assert_eq!(Jwk::from_value(&v), skipped);
        let v = with(
            ec_jwk(Nid::X9_62_PRIME256V1, "P-256"),
            "alg",
            json!("ECDH-ES+A128KW"),
        );
        assert_eq!(Jwk::from_value(&v), skipped);
        let v = with(rsa_jwk(2048, 65537), "key_ops", json!(["verify"]));
        assert!(Jwk::from_value(&v).is_ok());
        let v = with(rsa_jwk(2048, 65537), "use", json!("sig"));
        assert!(Jwk::from_value(&v).is_ok());
    }

    #[test]
    fn skips_symmetric_and_unsupported_keys() {
        let oct = json!({"kty":"oct","k":"AAAA","alg":"HS256"});
        assert_eq!(
            Jwk::from_value(&oct).err(),
            Some(JwkError::Skipped(SkipReason::Symmetric))
        );
        let p521 = json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"});
        assert_eq!(
            Jwk::from_value(&p521).err(),
            Some(JwkError::Skipped(SkipReason::UnsupportedCurve))
        );
        let ed448 = json!({"kty":"OKP","crv":"Ed448","x":"AA"});
        assert_eq!(
            Jwk::from_value(&ed448).err(),
            Some(JwkError::Skipped(SkipReason::UnsupportedCurve))
        );
        let x25519 = json!({"kty":"OKP","crv":"X25519","x":"AA"});
        assert_eq!(
            Jwk::from_value(&x25519).err(),
            Some(JwkError::Skipped(SkipReason::UnsupportedCurve))
        );
        let other = json!({"kty":"AKP","alg":"ML-DSA-44"});
        assert!(matches!(Jwk::from_value(&other), Err(JwkError::Skipped(_))));
    }

    #[test]
    fn accepts_standard_base64_key_members_with_the_same_thumbprint() {
        let url = rsa_jwk(2048, 65537);
        let n = b64::decode(url["n"].as_str().unwrap().as_bytes()).unwrap();
        let standard = base64::engine::general_purpose::STANDARD;
        let mut std_form = url.clone();
        std_form["n"] = json!(base64::Engine::encode(&standard, &n));
        std_form["e"] = json!("AQAB");
        let a = Jwk::from_value(&url).unwrap();
        let b = Jwk::from_value(&std_form).unwrap();
        assert_eq!(a.thumbprint, b.thumbprint);
        assert_eq!(a.key, b.key);
    }

    #[test]
    fn ignores_alg_that_is_no_jose_algorithm() {
        let v = with(rsa_jwk(2048, 65537), "alg", json!("SHA256"));
        let k = Jwk::from_value(&v).unwrap();
        assert_eq!(k.alg, None);
        for unsupported in ["ES512", "HS256", "Ed448", "none", "RS1"] {
            let v = with(rsa_jwk(2048, 65537), "alg", json!(unsupported));
            assert!(
                matches!(Jwk::from_value(&v), Err(JwkError::Skipped(_))),
                "{unsupported}"
            );
        }
    }

    #[test]
    fn refuses_private_keys() {
        let v = with(rsa_jwk(2048, 65537), "d", json!("AQAB"));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::PrivateKey));
    }

    #[test]
    fn refuses_members_of_wrong_type_or_encoding() {
        let v = with(rsa_jwk(2048, 65537), "kid", json!(7));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::Member("kid")));
        let mut v = rsa_jwk(2048, 65537);
        v["n"] = json!(format!("{} ", v["n"].as_str().unwrap()));
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::Member("n")));
        let v = json!({"kty":"RSA","e":"AQAB"});
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::Member("n")));
        assert_eq!(
            Jwk::from_value(&json!([])).err(),
            Some(JwkError::NotAnObject)
        );
        assert_eq!(
            Jwk::from_value(&json!({})).err(),
            Some(JwkError::Member("kty"))
        );
    }

    #[test]
    fn computes_rfc7638_thumbprint() {
        // RFC 7638 §3.1 example.
        let v = json!({"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"});
        let k = Jwk::from_value(&v).unwrap();
        assert_eq!(
            b64::encode(&k.thumbprint),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn detects_roca_fingerprint() {
        // Wycheproof json_web_key_test tc 7: a 2048-bit modulus from the vulnerable library.
        let n = "AanFpofbj7KjD4Lf-N2hVMKR7yewSyXhhbirIMTGpfYEhZ_lnt5UoK98DnKIgArXGTu3MaW_HhFw16HGaTDUHqPrId7fe4r11CqRw09yBFuW79V8sYIwHdzCaWflUI6auImYbVfoN9_nD5n8N8SY9DwXw7mwZM9wREPXoDPgOoIWl6q_MPsp7n0zs3Z5ZaiQWOOzl1S9OhwAfSiiOwz6efnXEaxuTEtPd7BjSx7NaFka8Dx9U7YqXy2RFj1O9PjyaDGuRh7YXsX3iMUSP_wSyHQg_c_qHRtKUsNSGCT7OZg0hzm2KphtjnayKJvC64vAbROBR4Ubg6Bxg9IQVZ-QYyE";
        let v = json!({"kty":"RSA","n":n,"e":"AQAB"});
        assert_eq!(Jwk::from_value(&v).err(), Some(JwkError::RsaModulus));
        // Random keys never match.
        for _ in 0..4 {
            assert!(Jwk::from_value(&rsa_jwk(2048, 65537)).is_ok());
        }
    }
}
