//! Test-side JOSE: key generation, JWK export, JWS compact signing and verification with OpenSSL
//! (deliberately independent of the filter's RustCrypto code).

mod keys;
#[cfg(test)]
mod tests;

pub use keys::{hmac, KeyKind, PublicKey, SigningKey};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::hash::MessageDigest;
use serde_json::Value;

/// base64url without padding (RFC 7515 §2).
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url decoding: no padding, no other alphabet.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s)
        .with_context(|| format!("invalid base64url ({} chars)", s.len()))
}

/// The JWS algorithms the test side signs and verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` header value (case-sensitive, as RFC 7515 requires).
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// RS* or PS*.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
        )
    }

    /// PS* (RSASSA-PSS, MGF1 with the same hash, salt length = hash length).
    pub fn is_pss(self) -> bool {
        matches!(self, Alg::PS256 | Alg::PS384 | Alg::PS512)
    }

    pub(crate) fn digest(self) -> Option<MessageDigest> {
        match self {
            Alg::RS256 | Alg::PS256 | Alg::ES256 => Some(MessageDigest::sha256()),
            Alg::RS384 | Alg::PS384 | Alg::ES384 => Some(MessageDigest::sha384()),
            Alg::RS512 | Alg::PS512 => Some(MessageDigest::sha512()),
            Alg::EdDSA => None,
        }
    }
}

/// Signs a compact JWS over the JSON `header` and `payload` exactly as given (the caller sets `alg`,
/// `kid`, `typ`: tests may want them wrong).
pub fn sign_compact(key: &SigningKey, alg: Alg, header: &Value, payload: &Value) -> Result<String> {
    sign_compact_bytes(
        key,
        alg,
        &serde_json::to_vec(header)?,
        &serde_json::to_vec(payload)?,
    )
}

/// Signs a compact JWS over raw header and payload bytes.
pub fn sign_compact_bytes(
    key: &SigningKey,
    alg: Alg,
    header: &[u8],
    payload: &[u8],
) -> Result<String> {
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let sig = key.sign(alg, input.as_bytes())?;
    Ok(format!("{input}.{}", b64url(&sig)))
}

/// Signs a JWT with the usual header `{"alg", "kid", "typ": "JWT"}`.
pub fn sign_jwt(key: &SigningKey, alg: Alg, claims: &Value) -> Result<String> {
    let header = serde_json::json!({"alg": alg.name(), "kid": key.kid, "typ": "JWT"});
    sign_compact(key, alg, &header, claims)
}

/// A compact JWS split and decoded, signature not checked.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub header: Value,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    /// `BASE64URL(header) . BASE64URL(payload)`.
    pub signing_input: String,
}

impl Decoded {
    /// The payload parsed as a JSON object (JWT claims).
    pub fn claims(&self) -> Result<Value> {
        let v: Value = serde_json::from_slice(&self.payload).context("payload is not JSON")?;
        if !v.is_object() {
            bail!("payload is not a JSON object");
        }
        Ok(v)
    }

    /// The header's `alg`, `kid`.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
}

/// Splits and decodes a compact JWS without checking its signature.
pub fn decode(token: &str) -> Result<Decoded> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("a compact JWS has exactly three parts");
    };
    let header: Value = serde_json::from_slice(&b64url_decode(h)?).context("header is not JSON")?;
    if !header.is_object() {
        bail!("header is not a JSON object");
    }
    Ok(Decoded {
        header,
        payload: b64url_decode(p)?,
        signature: b64url_decode(s)?,
        signing_input: format!("{h}.{p}"),
    })
}

/// Verifies a compact JWS against a JWKS (`{"keys": [...]}`), accepting only `allowed` algorithms.
/// With a `kid`, only keys with that kid are tried; without one, every key of a fitting type.
/// Keys with `use` other than `sig` are skipped. Returns the decoded token.
pub fn verify_compact(token: &str, jwks: &Value, allowed: &[Alg]) -> Result<Decoded> {
    let decoded = decode(token)?;
    let alg_name = decoded.alg().context("no alg in header")?;
    let alg = Alg::parse(alg_name).with_context(|| format!("unsupported alg {alg_name:?}"))?;
    if !allowed.contains(&alg) {
        bail!("alg {alg_name} not allowed");
    }
    if decoded.header.get("crit").is_some() {
        bail!("crit header not supported");
    }
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .context("JWKS has no keys array")?;
    let kid = decoded.kid();
    let mut tried = 0;
    for jwk in keys {
        if kid.is_some() && jwk.get("kid").and_then(Value::as_str) != kid {
            continue;
        }
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        if jwk
            .get("alg")
            .and_then(Value::as_str)
            .is_some_and(|a| a != alg_name)
        {
            continue;
        }
        let Ok(key) = PublicKey::from_jwk(jwk) else {
            continue;
        };
        if !key.kind().supports(alg) {
            continue;
        }
        tried += 1;
        if key.verify(alg, decoded.signing_input.as_bytes(), &decoded.signature)? {
            return Ok(decoded);
        }
    }
    if tried == 0 {
        bail!("no key for kid {kid:?} and alg {alg_name}");
    }
    bail!("bad signature")
}

/// Verifies an RS256 compact JWS against a JWKS (what Cloud Run and Google's token endpoint do).
pub fn verify_rs256(token: &str, jwks: &Value) -> Result<Decoded> {
    verify_compact(token, jwks, &[Alg::RS256])
}

/// Verifies a compact JWS with one public key and algorithm (header `alg` must match).
pub fn verify_with_key(token: &str, key: &PublicKey, alg: Alg) -> Result<Decoded> {
    let decoded = decode(token)?;
    if decoded.alg() != Some(alg.name()) {
        bail!("alg is {:?}, expected {}", decoded.alg(), alg.name());
    }
    if !key.verify(alg, decoded.signing_input.as_bytes(), &decoded.signature)? {
        bail!("bad signature");
    }
    Ok(decoded)
}
