//! Keys for the test-side JOSE code: generation, JWK export/import, PEM, raw signing/verification.

use super::{b64url, b64url_decode, Alg};
use anyhow::{anyhow, bail, Context, Result};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::{Padding, Rsa, RsaPrivateKeyBuilder};
use openssl::sign::{RsaPssSaltlen, Signer, Verifier};
use serde_json::{json, Value};

/// The kind of an asymmetric key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this modulus size in bits.
    Rsa(u32),
    /// ECDSA on NIST P-256.
    P256,
    /// ECDSA on NIST P-384.
    P384,
    /// Ed25519 (EdDSA).
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can produce `alg` signatures.
    pub fn supports(self, alg: Alg) -> bool {
        match self {
            KeyKind::Rsa(_) => alg.is_rsa(),
            KeyKind::P256 => alg == Alg::ES256,
            KeyKind::P384 => alg == Alg::ES384,
            KeyKind::Ed25519 => alg == Alg::EdDSA,
        }
    }

    /// The algorithm advertised in this kind's JWK `alg` member by default.
    pub fn default_alg(self) -> Alg {
        match self {
            KeyKind::Rsa(_) => Alg::RS256,
            KeyKind::P256 => Alg::ES256,
            KeyKind::P384 => Alg::ES384,
            KeyKind::Ed25519 => Alg::EdDSA,
        }
    }

    fn ec_nid(self) -> Option<(Nid, usize, &'static str)> {
        match self {
            KeyKind::P256 => Some((Nid::X9_62_PRIME256V1, 32, "P-256")),
            KeyKind::P384 => Some((Nid::SECP384R1, 48, "P-384")),
            _ => None,
        }
    }
}

/// A private key with a `kid`, able to sign JWS.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    kind: KeyKind,
    pkey: PKey<Private>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {:?})", self.kid, self.kind)
    }
}

impl SigningKey {
    /// Generates a fresh key of `kind` named `kid`.
    pub fn generate(kind: KeyKind, kid: &str) -> Result<SigningKey> {
        let pkey = match kind {
            KeyKind::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits)?)?,
            KeyKind::P256 | KeyKind::P384 => {
                let (nid, _, _) = kind.ec_nid().context("ec")?;
                let group = EcGroup::from_curve_name(nid)?;
                PKey::from_ec_key(EcKey::generate(&group)?)?
            }
            KeyKind::Ed25519 => PKey::generate_ed25519()?,
        };
        Ok(SigningKey {
            kid: kid.to_string(),
            kind,
            pkey,
        })
    }

    /// A private key from a PKCS#8 (or traditional) PEM.
    pub fn from_pem(pem: &str, kid: &str) -> Result<SigningKey> {
        let pkey = PKey::private_key_from_pem(pem.as_bytes()).context("private key PEM")?;
        let kind = kind_of(&pkey)?;
        Ok(SigningKey {
            kid: kid.to_string(),
            kind,
            pkey,
        })
    }

    /// A private key from a private JWK (RSA with CRT members, EC, OKP Ed25519).
    pub fn from_jwk(jwk: &Value) -> Result<SigningKey> {
        let kid = jwk
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let member = |name: &str| -> Result<Vec<u8>> {
            let s = jwk
                .get(name)
                .and_then(Value::as_str)
                .with_context(|| format!("JWK has no {name}"))?;
            b64url_decode(s)
        };
        let bn = |name: &str| -> Result<BigNum> { Ok(BigNum::from_slice(&member(name)?)?) };
        let public = PublicKey::from_jwk(jwk)?;
        let pkey = match public.kind {
            KeyKind::Rsa(_) => {
                let rsa = RsaPrivateKeyBuilder::new(bn("n")?, bn("e")?, bn("d")?)?
                    .set_factors(bn("p")?, bn("q")?)?
                    .set_crt_params(bn("dp")?, bn("dq")?, bn("qi")?)?
                    .build();
                PKey::from_rsa(rsa)?
            }
            KeyKind::P256 | KeyKind::P384 => {
                let ec = public.pkey.ec_key()?;
                let d = bn("d")?;
                let key = EcKey::from_private_components(ec.group(), &d, ec.public_key())?;
                key.check_key()?;
                PKey::from_ec_key(key)?
            }
            KeyKind::Ed25519 => PKey::private_key_from_raw_bytes(&member("d")?, Id::ED25519)?,
        };
        Ok(SigningKey {
            kid,
            kind: public.kind,
            pkey,
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether this key can sign `alg`.
    pub fn supports(&self, alg: Alg) -> bool {
        self.kind.supports(alg)
    }

    /// The public half.
    pub fn public(&self) -> Result<PublicKey> {
        let der = self.pkey.public_key_to_der()?;
        Ok(PublicKey {
            kind: self.kind,
            pkey: PKey::public_key_from_der(&der)?,
        })
    }

    /// Public JWK with `kid`, `use: sig` and `alg` (this kind's default algorithm).
    pub fn public_jwk(&self) -> Value {
        self.public_jwk_for(Some(self.kind.default_alg()))
    }

    /// Public JWK with `kid`, `use: sig` and the given `alg` member (none when `None`).
    pub fn public_jwk_for(&self, alg: Option<Alg>) -> Value {
        let mut jwk = public_members(&self.pkey, self.kind).unwrap_or_else(|_| json!({}));
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), json!(self.kid));
            obj.insert("use".into(), json!("sig"));
            if let Some(alg) = alg {
                obj.insert("alg".into(), json!(alg.name()));
            }
        }
        jwk
    }

    /// The private key as a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn pkcs8_pem(&self) -> Result<String> {
        Ok(String::from_utf8(self.pkey.private_key_to_pem_pkcs8()?)?)
    }

    /// The public key as an SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_pem(&self) -> Result<String> {
        Ok(String::from_utf8(self.pkey.public_key_to_pem()?)?)
    }

    /// Signs `input` (the JWS signing input) and returns the JWS signature bytes.
    pub fn sign(&self, alg: Alg, input: &[u8]) -> Result<Vec<u8>> {
        if !self.supports(alg) {
            bail!(
                "key {} ({:?}) cannot sign {}",
                self.kid,
                self.kind,
                alg.name()
            );
        }
        if alg == Alg::EdDSA {
            let mut signer = Signer::new_without_digest(&self.pkey)?;
            return Ok(signer.sign_oneshot_to_vec(input)?);
        }
        let md = alg.digest().context("digest")?;
        let mut signer = Signer::new(md, &self.pkey)?;
        if alg.is_pss() {
            signer.set_rsa_padding(Padding::PKCS1_PSS)?;
            signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
            signer.set_rsa_mgf1_md(md)?;
        }
        signer.update(input)?;
        let sig = signer.sign_to_vec()?;
        match self.kind.ec_nid() {
            Some((_, len, _)) => {
                let der = EcdsaSig::from_der(&sig)?;
                let mut raw = der.r().to_vec_padded(len as i32)?;
                raw.extend(der.s().to_vec_padded(len as i32)?);
                Ok(raw)
            }
            None => Ok(sig),
        }
    }
}

/// A public key able to verify JWS signatures.
#[derive(Clone)]
pub struct PublicKey {
    kind: KeyKind,
    pkey: PKey<Public>,
}

impl PublicKey {
    /// A public key from a JWK (`kty` RSA, EC P-256/P-384, OKP Ed25519). Private members are ignored.
    pub fn from_jwk(jwk: &Value) -> Result<PublicKey> {
        let member = |name: &str| -> Result<Vec<u8>> {
            let s = jwk
                .get(name)
                .and_then(Value::as_str)
                .with_context(|| format!("JWK has no {name}"))?;
            b64url_decode(s)
        };
        let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
        match kty {
            "RSA" => {
                let n = BigNum::from_slice(&member("n")?)?;
                let bits = n.num_bits() as u32;
                let rsa = Rsa::from_public_components(n, BigNum::from_slice(&member("e")?)?)?;
                Ok(PublicKey {
                    kind: KeyKind::Rsa(bits),
                    pkey: PKey::from_rsa(rsa)?,
                })
            }
            "EC" => {
                let kind = match jwk.get("crv").and_then(Value::as_str) {
                    Some("P-256") => KeyKind::P256,
                    Some("P-384") => KeyKind::P384,
                    other => bail!("unsupported EC curve {other:?}"),
                };
                let (nid, len, _) = kind.ec_nid().context("ec")?;
                let (x, y) = (member("x")?, member("y")?);
                if x.len() != len || y.len() != len {
                    bail!("EC coordinates must be {len} bytes");
                }
                let group = EcGroup::from_curve_name(nid)?;
                let ec = EcKey::from_public_key_affine_coordinates(
                    &group,
                    &*BigNum::from_slice(&x)?,
                    &*BigNum::from_slice(&y)?,
                )?;
                ec.check_key()?;
                Ok(PublicKey {
                    kind,
                    pkey: PKey::from_ec_key(ec)?,
                })
            }
            "OKP" => {
                if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                    bail!("unsupported OKP curve");
                }
                let pkey = PKey::public_key_from_raw_bytes(&member("x")?, Id::ED25519)?;
                Ok(PublicKey {
                    kind: KeyKind::Ed25519,
                    pkey,
                })
            }
            other => bail!("unsupported kty {other:?}"),
        }
    }

    /// A public key from an SPKI PEM.
    pub fn from_pem(pem: &str) -> Result<PublicKey> {
        let pkey = PKey::public_key_from_pem(pem.as_bytes()).context("public key PEM")?;
        Ok(PublicKey {
            kind: kind_of(&pkey)?,
            pkey,
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Public JWK members (no kid/use/alg).
    pub fn jwk(&self) -> Result<Value> {
        public_members(&self.pkey, self.kind)
    }

    /// Checks a JWS signature over `input`. `Ok(false)` for a wrong signature.
    pub fn verify(&self, alg: Alg, input: &[u8], sig: &[u8]) -> Result<bool> {
        if !self.kind.supports(alg) {
            bail!("{:?} key cannot verify {}", self.kind, alg.name());
        }
        if alg == Alg::EdDSA {
            let mut verifier = Verifier::new_without_digest(&self.pkey)?;
            return Ok(verifier.verify_oneshot(sig, input).unwrap_or(false));
        }
        let md = alg.digest().context("digest")?;
        let der;
        let sig = match self.kind.ec_nid() {
            Some((_, len, _)) => {
                if sig.len() != 2 * len {
                    return Ok(false);
                }
                let (r, s) = sig.split_at(len);
                let ecdsa = EcdsaSig::from_private_components(
                    BigNum::from_slice(r)?,
                    BigNum::from_slice(s)?,
                )?;
                der = ecdsa.to_der()?;
                der.as_slice()
            }
            None => sig,
        };
        let mut verifier = Verifier::new(md, &self.pkey)?;
        if alg.is_pss() {
            verifier.set_rsa_padding(Padding::PKCS1_PSS)?;
            verifier.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
            verifier.set_rsa_mgf1_md(md)?;
        }
        verifier.update(input)?;
        Ok(verifier.verify(sig).unwrap_or(false))
    }
}

fn kind_of<T: HasPublic>(pkey: &PKeyRef<T>) -> Result<KeyKind> {
    match pkey.id() {
        Id::RSA => Ok(KeyKind::Rsa(pkey.bits())),
        Id::ED25519 => Ok(KeyKind::Ed25519),
        Id::EC => match pkey.ec_key()?.group().curve_name() {
            Some(Nid::X9_62_PRIME256V1) => Ok(KeyKind::P256),
            Some(Nid::SECP384R1) => Ok(KeyKind::P384),
            other => bail!("unsupported curve {other:?}"),
        },
        other => Err(anyhow!("unsupported key type {other:?}")),
    }
}

fn public_members<T: HasPublic>(pkey: &PKeyRef<T>, kind: KeyKind) -> Result<Value> {
    match kind {
        KeyKind::Rsa(_) => {
            let rsa = pkey.rsa()?;
            Ok(
                json!({"kty": "RSA", "n": b64url(&rsa.n().to_vec()), "e": b64url(&rsa.e().to_vec())}),
            )
        }
        KeyKind::P256 | KeyKind::P384 => {
            let (_, len, crv) = kind.ec_nid().context("ec")?;
            let ec = pkey.ec_key()?;
            let (mut x, mut y, mut ctx) = (BigNum::new()?, BigNum::new()?, BigNumContext::new()?);
            ec.public_key()
                .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
            Ok(json!({
                "kty": "EC",
                "crv": crv,
                "x": b64url(&x.to_vec_padded(len as i32)?),
                "y": b64url(&y.to_vec_padded(len as i32)?),
            }))
        }
        KeyKind::Ed25519 => {
            Ok(json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&pkey.raw_public_key()?)}))
        }
    }
}

/// HMAC for `alg: HS256/384/512` tokens (used only to build attack tokens).
pub fn hmac(bits: u32, key: &[u8], input: &[u8]) -> Result<Vec<u8>> {
    let md = match bits {
        256 => MessageDigest::sha256(),
        384 => MessageDigest::sha384(),
        512 => MessageDigest::sha512(),
        _ => bail!("HS{bits} is not an algorithm"),
    };
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(md, &pkey)?;
    signer.update(input)?;
    Ok(signer.sign_to_vec()?)
}
