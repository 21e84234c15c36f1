//! The signature backend: one entry point, [`verify`], for every supported algorithm.
//!
//! All cryptography of token verification lives here, behind `verify` and the
//! [`PublicKey`] representation, so the backend can be swapped after measurement.
//! Backends: RSA in [`crate::jose::rsa_public`] (precomputed Montgomery constants, SIMD128 in
//! wasm); ECDSA in [`crate::jose::ecdsa_comb`] (affine comb tables, 32-bit field arithmetic of
//! [`crate::jose::ec_field`]; RustCrypto `p256`/`p384` for keys and scalars);
//! `ed25519-dalek` for Ed25519.
//!
//! - `RS*`: RSASSA-PKCS1-v1_5 with SHA-256/384/512 (RFC 7518 §3.3). The signature must be
//!   exactly the modulus length and numerically below the modulus.
//! - `PS*`: RSASSA-PSS, MGF1 with the same hash, salt length = hash length, strictly (RFC 7518
//!   §3.5): signatures with any other salt length are refused.
//! - `ES256`/`ES384`: raw `r‖s` (IEEE P1363, RFC 7518 §3.4), exactly 64/96 bytes, `0 < r, s <
//!   n`; DER signatures are refused. High-`s` signatures are valid ECDSA and accepted.
//! - `EdDSA`: Ed25519 with `verify_strict` (canonical `S`, no small-order `R` or key).

use sha2::{Sha256, Sha384, Sha512};

use crate::jose::alg::Algorithm;
use crate::jose::jwk::PublicKey;
use crate::jose::rsa_public::{self, SHA256_PREFIX, SHA384_PREFIX, SHA512_PREFIX};

/// Whether `signature` is a valid `alg` signature of `signing_input` under `key`. A key of the
/// wrong family for `alg` is simply `false` (the caller checks families first).
pub fn verify(alg: Algorithm, key: &PublicKey, signing_input: &[u8], signature: &[u8]) -> bool {
    match (alg, key) {
        (Algorithm::Rs256, PublicKey::Rsa(k)) => {
            rsa_public::verify_pkcs1v15::<Sha256>(k, SHA256_PREFIX, signing_input, signature)
        }
        (Algorithm::Rs384, PublicKey::Rsa(k)) => {
            rsa_public::verify_pkcs1v15::<Sha384>(k, SHA384_PREFIX, signing_input, signature)
        }
        (Algorithm::Rs512, PublicKey::Rsa(k)) => {
            rsa_public::verify_pkcs1v15::<Sha512>(k, SHA512_PREFIX, signing_input, signature)
        }
        (Algorithm::Ps256, PublicKey::Rsa(k)) => {
            rsa_public::verify_pss::<Sha256>(k, signing_input, signature)
        }
        (Algorithm::Ps384, PublicKey::Rsa(k)) => {
            rsa_public::verify_pss::<Sha384>(k, signing_input, signature)
        }
        (Algorithm::Ps512, PublicKey::Rsa(k)) => {
            rsa_public::verify_pss::<Sha512>(k, signing_input, signature)
        }
        (Algorithm::Es256, PublicKey::P256(k)) => k.verify(signing_input, signature),
        (Algorithm::Es384, PublicKey::P384(k)) => k.verify(signing_input, signature),
        (Algorithm::EdDsa, PublicKey::Ed25519(k)) => {
            let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
                return false;
            };
            k.verify_strict(signing_input, &ed25519_dalek::Signature::from_bytes(&bytes))
                .is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jose::b64;
    use crate::jose::jwk::Jwk;
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::{Padding, Rsa};
    use openssl::sign::{RsaPssSaltlen, Signer};
    use serde_json::{json, Value};

    /// A key pair minted by OpenSSL (the independent signer) and its public JWK.
    pub(crate) struct TestKey {
        pub pkey: PKey<Private>,
        pub jwk: Value,
    }

    impl TestKey {
        pub(crate) fn rsa(bits: u32) -> TestKey {
            let rsa = Rsa::generate(bits).unwrap();
            let jwk = json!({"kty":"RSA","n":b64::encode(&rsa.n().to_vec()),"e":b64::encode(&rsa.e().to_vec())});
            TestKey {
                pkey: PKey::from_rsa(rsa).unwrap(),
                jwk,
            }
        }

        pub(crate) fn ec(nid: Nid) -> TestKey {
            let group = EcGroup::from_curve_name(nid).unwrap();
            let key = EcKey::generate(&group).unwrap();
            let mut ctx = BigNumContext::new().unwrap();
            let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
            key.public_key()
                .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
                .unwrap();
            let (crv, len) = if nid == Nid::SECP384R1 {
                ("P-384", 48)
            } else {
                ("P-256", 32)
            };
            let jwk = json!({"kty":"EC","crv":crv,
                "x":b64::encode(&x.to_vec_padded(len).unwrap()),
                "y":b64::encode(&y.to_vec_padded(len).unwrap())});
            TestKey {
                pkey: PKey::from_ec_key(key).unwrap(),
                jwk,
            }
        }

        pub(crate) fn ed25519() -> TestKey {
            let pkey = PKey::generate_ed25519().unwrap();
            let jwk = json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(&pkey.raw_public_key().unwrap())});
            TestKey { pkey, jwk }
        }

        pub(crate) fn for_alg(alg: Algorithm) -> TestKey {
            match alg.key_family() {
                crate::jose::alg::KeyFamily::Rsa => TestKey::rsa(2048),
                crate::jose::alg::KeyFamily::EcP256 => TestKey::ec(Nid::X9_62_PRIME256V1),
                crate::jose::alg::KeyFamily::EcP384 => TestKey::ec(Nid::SECP384R1),
                crate::jose::alg::KeyFamily::Ed25519 => TestKey::ed25519(),
            }
        }

        pub(crate) fn public(&self) -> PublicKey {
            Jwk::from_value(&self.jwk).unwrap().key
        }

        /// Signs as a JWS signer would (P1363 for ECDSA, salt = hash length for PSS).
        pub(crate) fn sign(&self, alg: Algorithm, msg: &[u8]) -> Vec<u8> {
            self.sign_with_salt(alg, msg, None)
        }

        pub(crate) fn sign_with_salt(
            &self,
            alg: Algorithm,
            msg: &[u8],
            salt: Option<i32>,
        ) -> Vec<u8> {
            let md = match alg {
                Algorithm::Rs256 | Algorithm::Ps256 | Algorithm::Es256 => {
                    Some(MessageDigest::sha256())
                }
                Algorithm::Rs384 | Algorithm::Ps384 | Algorithm::Es384 => {
                    Some(MessageDigest::sha384())
                }
                Algorithm::Rs512 | Algorithm::Ps512 => Some(MessageDigest::sha512()),
                Algorithm::EdDsa => None,
            };
            match alg {
                Algorithm::EdDsa => {
                    let mut s = Signer::new_without_digest(&self.pkey).unwrap();
                    s.sign_oneshot_to_vec(msg).unwrap()
                }
                Algorithm::Es256 | Algorithm::Es384 => {
                    let mut s = Signer::new(md.unwrap(), &self.pkey).unwrap();
                    let der = s.sign_oneshot_to_vec(msg).unwrap();
                    let sig = openssl::ecdsa::EcdsaSig::from_der(&der).unwrap();
                    let len = if alg == Algorithm::Es256 { 32 } else { 48 };
                    let mut out = sig.r().to_vec_padded(len).unwrap();
                    out.extend(sig.s().to_vec_padded(len).unwrap());
                    out
                }
                _ => {
                    let md = md.unwrap();
                    let mut s = Signer::new(md, &self.pkey).unwrap();
                    if matches!(alg, Algorithm::Ps256 | Algorithm::Ps384 | Algorithm::Ps512) {
                        s.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
                        s.set_rsa_mgf1_md(md).unwrap();
                        let salt = salt.unwrap_or(md.size() as i32);
                        s.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt)).unwrap();
                    }
                    s.sign_oneshot_to_vec(msg).unwrap()
                }
            }
        }
    }

    #[test]
    fn verifies_every_algorithm_against_openssl() {
        for alg in Algorithm::ALL {
            let key = TestKey::for_alg(alg);
            let public = key.public();
            let sig = key.sign(alg, b"header.payload");
            assert!(verify(alg, &public, b"header.payload", &sig), "{alg:?}");
            assert!(
                !verify(alg, &public, b"header.payloaD", &sig),
                "{alg:?} message"
            );
            let mut bad = sig.clone();
            bad[sig.len() / 2] ^= 0x10;
            assert!(
                !verify(alg, &public, b"header.payload", &bad),
                "{alg:?} flipped"
            );
            assert!(
                !verify(alg, &public, b"header.payload", &[]),
                "{alg:?} empty"
            );
        }
    }

    #[test]
    fn refuses_key_of_another_family() {
        let ec = TestKey::ec(Nid::X9_62_PRIME256V1);
        let sig = ec.sign(Algorithm::Es256, b"m");
        let rsa = TestKey::rsa(2048).public();
        assert!(!verify(Algorithm::Es256, &rsa, b"m", &sig));
        let p384 = TestKey::ec(Nid::SECP384R1).public();
        assert!(!verify(Algorithm::Es256, &p384, b"m", &sig));
        assert!(!verify(Algorithm::Es384, &ec.public(), b"m", &sig));
    }

    #[test]
    fn refuses_rs_signature_under_another_hash() {
        let key = TestKey::rsa(2048);
        let sig = key.sign(Algorithm::Rs256, b"m");
        assert!(!verify(Algorithm::Rs384, &key.public(), b"m", &sig));
        assert!(!verify(Algorithm::Ps256, &key.public(), b"m", &sig));
    }

    #[test]
    fn refuses_pss_with_other_salt_length() {
        let key = TestKey::rsa(2048);
        for (alg, salt) in [
            (Algorithm::Ps256, 0),
            (Algorithm::Ps256, 20),
            (Algorithm::Ps256, 64),
            (Algorithm::Ps512, 32),
        ] {
            let sig = key.sign_with_salt(alg, b"m", Some(salt));
            assert!(
                !verify(alg, &key.public(), b"m", &sig),
                "{alg:?} salt {salt}"
            );
        }
        let sig = key.sign_with_salt(Algorithm::Ps384, b"m", Some(48));
        assert!(verify(Algorithm::Ps384, &key.public(), b"m", &sig));
    }

    #[test]
    fn refuses_rsa_signature_plus_modulus_or_shortened() {
        let key = TestKey::rsa(2048);
        let sig = key.sign(Algorithm::Rs256, b"m");
        let n =
            BigNum::from_slice(&b64::decode(key.jwk["n"].as_str().unwrap().as_bytes()).unwrap())
                .unwrap();
        let s = BigNum::from_slice(&sig).unwrap();
        let mut sum = BigNum::new().unwrap();
        sum.checked_add(&s, &n).unwrap();
        let bigger = sum.to_vec_padded(256).ok();
        if let Some(bigger) = bigger {
            assert!(!verify(Algorithm::Rs256, &key.public(), b"m", &bigger));
        }
        let mut with_zero = vec![0u8];
        with_zero.extend(&sig);
        assert!(!verify(Algorithm::Rs256, &key.public(), b"m", &with_zero));
    }

    #[test]
    fn refuses_der_ecdsa_signature() {
        let key = TestKey::ec(Nid::X9_62_PRIME256V1);
        let mut s = Signer::new(MessageDigest::sha256(), &key.pkey).unwrap();
        let der = s.sign_oneshot_to_vec(b"m").unwrap();
        assert!(!verify(Algorithm::Es256, &key.public(), b"m", &der));
    }

    #[test]
    fn refuses_ecdsa_zero_and_order_scalars() {
        let key = TestKey::ec(Nid::X9_62_PRIME256V1).public();
        assert!(!verify(Algorithm::Es256, &key, b"m", &[0u8; 64]));
        // r = s = n (the P-256 group order).
        let n = hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        let sig = [n.clone(), n].concat();
        assert!(!verify(Algorithm::Es256, &key, b"m", &sig));
    }

    #[test]
    fn refuses_ecdsa_signature_of_wrong_length() {
        let key = TestKey::ec(Nid::X9_62_PRIME256V1);
        let sig = key.sign(Algorithm::Es256, b"m");
        assert!(!verify(Algorithm::Es256, &key.public(), b"m", &sig[..63]));
        let mut long = sig.clone();
        long.push(0);
        assert!(!verify(Algorithm::Es256, &key.public(), b"m", &long));
    }

    #[test]
    fn refuses_ed25519_non_canonical_s() {
        let key = TestKey::ed25519();
        let mut sig = key.sign(Algorithm::EdDsa, b"m");
        assert!(verify(Algorithm::EdDsa, &key.public(), b"m", &sig));
        // S + L (the group order) verifies in lax implementations; strict refuses it.
        let l = hex_bytes("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(!verify(Algorithm::EdDsa, &key.public(), b"m", &sig));
    }

    pub(crate) fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
