//! Signature micro-benchmark: `signature::verify` per algorithm on the node-oidc-provider sample
//! tokens (`../shared/vectors/idp/node-oidc-provider/samples`, compiled in), `Jwk::from_value` (key parse +
//! precomputation) per key type, and both together (the first verification with a new key).
//! Runs natively (also timing OpenSSL on the same key, signature and message) and as a WASI
//! command in wasmtime:
//!
//! ```text
//! cargo run --release --example verify_bench
//! cargo build --release --target wasm32-wasip1 --example verify_bench
//! cargo run --profile spec -p cloudrun-spec --bin wasm-microbench -- \
//!     target/wasm32-wasip1/release/examples/verify_bench.wasm
//! ```
//!
//! Also the costs around the signature that every new token pays (`around_*`): JWT parse
//! (`jwt::parse`: three base64url segments, header and payload JSON), SHA-256 of the signing
//! input, and an insert of a new token into a full verified-token cache (the route's default
//! size, evictions included).
//!
//! Output: one line per operation, `name<TAB>µs per operation` (fastest batch).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::b64;
use cloudrun_oidc::jose::jwk::Jwk;
use cloudrun_oidc::jose::jwt;
use cloudrun_oidc::jose::signature;
use cloudrun_oidc::request::token_cache::{
    TokenCache, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRY_BYTES,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const JWKS: &str = include_str!("../../shared/vectors/idp/node-oidc-provider/samples/jwks.json");
const TOKENS: &str =
    include_str!("../../shared/vectors/idp/node-oidc-provider/samples/tokens.json");

/// µs per call of `f`: the fastest of batches of about 5 ms run for about `budget` (the
/// minimum is the figure least disturbed by other load on a shared machine).
fn time(budget: Duration, mut f: impl FnMut() -> bool) -> f64 {
    // Warm up and size a batch.
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(5) {
        assert!(f());
        n += 1;
    }
    let batch = n.max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..batch {
            assert!(black_box(f()));
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(batch));
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[0]
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).collect();
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400),
    );
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let tokens: Value = serde_json::from_str(TOKENS).unwrap();
    let where_ = if cfg!(target_arch = "wasm32") {
        "wasm"
    } else {
        "native"
    };
    if filter.is_empty() || filter.iter().any(|f| f == "around") {
        around_signature(&tokens, where_, budget);
    }
    for (name, token) in tokens["id_tokens"].as_object().unwrap() {
        if !filter.is_empty() && !filter.iter().any(|f| f == name) {
            continue;
        }
        let token = token.as_str().unwrap();
        let (signing_input, sig) = token.rsplit_once('.').unwrap();
        let header: Value = serde_json::from_slice(
            &b64::decode(signing_input.split('.').next().unwrap().as_bytes()).unwrap(),
        )
        .unwrap();
        let alg = Algorithm::from_name(header["alg"].as_str().unwrap()).unwrap();
        let kid = header["kid"].as_str().unwrap();
        let jwk_json = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap();
        let jwk = Jwk::from_value(jwk_json).unwrap();
        let sig = b64::decode(sig.as_bytes()).unwrap();
        let msg = signing_input.as_bytes();
        let us = time(budget, || {
            signature::verify(alg, black_box(&jwk.key), black_box(msg), black_box(&sig))
        });
        println!("{name}_{where_}_us\t{us:.2}\t({kid})");
        let us = time(budget / 4, || Jwk::from_value(black_box(jwk_json)).is_ok());
        println!("{name}_{where_}_jwk_parse_us\t{us:.2}");
        // A key never used before: parse, per-key precomputation (EC comb table), verify.
        let us = time(budget / 4, || {
            let key = Jwk::from_value(black_box(jwk_json)).unwrap().key;
            signature::verify(alg, &key, msg, &sig)
        });
        println!("{name}_{where_}_new_key_us\t{us:.2}");
        #[cfg(not(target_arch = "wasm32"))]
        {
            let us = openssl_ref::time_verify(budget, alg, jwk_json, msg, &sig);
            println!("{name}_openssl_us\t{us:.2}");
        }
    }
}

/// JWT parse, SHA-256 and a cache insert on the RS256 sample token (see the module docs).
fn around_signature(tokens: &Value, where_: &str, budget: Duration) {
    let token = tokens["id_tokens"]["rs256"].as_str().unwrap();
    println!("around_token_bytes\t{}", token.len());
    let us = time(budget, || jwt::parse(black_box(token)).is_ok());
    println!("around_jwt_parse_{where_}_us\t{us:.2}");
    let signing_input = &token.as_bytes()[..token.rfind('.').unwrap()];
    let us = time(budget, || Sha256::digest(black_box(signing_input))[0] != 1);
    println!(
        "around_sha256_{where_}_us\t{us:.2}\t({} bytes)",
        signing_input.len()
    );
    // Distinct tokens of the same length, twice the cache's entries: every insert is new and
    // the cache stays full (its evictions amortised in the figure).
    let keys: Vec<Vec<u8>> = (0..2 * DEFAULT_MAX_ENTRIES)
        .map(|i| {
            let mut t = token.as_bytes().to_vec();
            t[..8].copy_from_slice(format!("{i:08}").as_bytes());
            t
        })
        .collect();
    let mut cache = TokenCache::new(
        DEFAULT_MAX_ENTRIES,
        DEFAULT_MAX_BYTES,
        DEFAULT_MAX_ENTRY_BYTES,
    );
    let mut next = 0usize;
    let us = time(budget, || {
        next = (next + 1) % keys.len();
        cache.insert(
            black_box(&keys[next]),
            next,
            600,
            2_000_000_000,
            1_000_000_000,
        )
    });
    println!(
        "around_cache_insert_{where_}_us\t{us:.2}\t({} entries)",
        cache.len()
    );
}

#[cfg(not(target_arch = "wasm32"))]
mod openssl_ref {
    use super::*;
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{Id, PKey};
    use openssl::rsa::{Padding, Rsa};
    use openssl::sign::{RsaPssSaltlen, Verifier};

    fn bn(v: &Value) -> BigNum {
        BigNum::from_slice(&b64::decode(v.as_str().unwrap().as_bytes()).unwrap()).unwrap()
    }

    /// OpenSSL verifying the same signature (P1363 turned into DER for ECDSA), key built once.
    pub fn time_verify(
        budget: Duration,
        alg: Algorithm,
        jwk: &Value,
        msg: &[u8],
        sig: &[u8],
    ) -> f64 {
        let pkey = match jwk["kty"].as_str().unwrap() {
            "RSA" => {
                PKey::from_rsa(Rsa::from_public_components(bn(&jwk["n"]), bn(&jwk["e"])).unwrap())
                    .unwrap()
            }
            "EC" => {
                let nid = if jwk["crv"] == "P-256" {
                    Nid::X9_62_PRIME256V1
                } else {
                    Nid::SECP384R1
                };
                let group = EcGroup::from_curve_name(nid).unwrap();
                let mut ctx = BigNumContext::new().unwrap();
                let key = EcKey::from_public_key_affine_coordinates(
                    &group,
                    &bn(&jwk["x"]),
                    &bn(&jwk["y"]),
                )
                .unwrap();
                let _ = &mut ctx;
                PKey::from_ec_key(key).unwrap()
            }
            _ => PKey::public_key_from_raw_bytes(
                &b64::decode(jwk["x"].as_str().unwrap().as_bytes()).unwrap(),
                Id::ED25519,
            )
            .unwrap(),
        };
        let sig = match alg {
            Algorithm::Es256 | Algorithm::Es384 => {
                let half = sig.len() / 2;
                openssl::ecdsa::EcdsaSig::from_private_components(
                    BigNum::from_slice(&sig[..half]).unwrap(),
                    BigNum::from_slice(&sig[half..]).unwrap(),
                )
                .unwrap()
                .to_der()
                .unwrap()
            }
            _ => sig.to_vec(),
        };
        let md = match alg {
            Algorithm::Rs256 | Algorithm::Ps256 | Algorithm::Es256 => Some(MessageDigest::sha256()),
            Algorithm::Rs384 | Algorithm::Ps384 | Algorithm::Es384 => Some(MessageDigest::sha384()),
            Algorithm::Rs512 | Algorithm::Ps512 => Some(MessageDigest::sha512()),
            Algorithm::EdDsa => None,
        };
        time(budget, || {
            let mut v = match md {
                Some(md) => Verifier::new(md, &pkey).unwrap(),
                None => Verifier::new_without_digest(&pkey).unwrap(),
            };
            if matches!(alg, Algorithm::Ps256 | Algorithm::Ps384 | Algorithm::Ps512) {
                v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
                v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
            }
            v.verify_oneshot(&sig, msg).unwrap()
        })
    }
}
