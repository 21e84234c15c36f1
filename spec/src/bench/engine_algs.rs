//! Cold verification per algorithm on Kong's engine: the fresh route (inline JWKS holding an
//! RSA-2048, a P-256, a P-384 and an Ed25519 key) loaded with tokens never seen before, one
//! algorithm at a time. What a new token of that algorithm costs the workers over the hot path
//! (`CPU per request − hot's`) is set against OpenSSL verifying the same signatures in this
//! process (`EVP_DigestVerify`, median of 200): issue 12's "within 5× of native OpenSSL, in the
//! engine's runtime". RS256 is the main fresh route itself.

use super::engine::EngineArgs;
use super::engine_world::Route;
use super::stats::Samples;
use anyhow::{Context, Result};
use cloudrun_spec::jose::{self, Alg, KeyKind, SigningKey};
use std::time::Instant;

/// Tokens per algorithm per round: enough for a steady CPU figure (a route that runs out
/// stops early; CPU per request stays valid), few enough to sign in seconds.
pub const POOL_PER_ROUND: usize = 6_000;
/// OpenSSL verifications timed per algorithm.
const OPENSSL_SAMPLES: usize = 200;

/// The algorithms measured besides RS256, with the key kind each needs.
pub const ALGS: [(Alg, KeyKind, &str); 4] = [
    (Alg::PS256, KeyKind::Rsa(2048), "rsa-1"),
    (Alg::ES256, KeyKind::P256, "ec-256"),
    (Alg::ES384, KeyKind::P384, "ec-384"),
    (Alg::EdDSA, KeyKind::Ed25519, "ed-1"),
];

/// The route key of `alg`'s load: `verify_<alg>`, and `fresh` for RS256 (the fresh route).
pub fn route_key(alg: Alg) -> String {
    match alg {
        Alg::RS256 => "fresh".to_string(),
        other => format!("verify_{}", other.name().to_ascii_lowercase()),
    }
}

/// One load per algorithm of [`ALGS`] on the fresh route's path (none without
/// `--engine-alg-seconds`).
pub fn routes(args: &EngineArgs) -> Vec<Route> {
    if args.engine_alg_seconds == 0 {
        return Vec::new();
    }
    ALGS.iter()
        .map(|(alg, _, _)| Route {
            key: route_key(*alg),
            label: format!("cloudrun_oidc, a new {} token on every request", alg.name()),
            path: "/fresh".into(),
            seconds: args.engine_alg_seconds,
            fresh: true,
        })
        .collect()
}

/// The signing keys: the RSA key the other routes use, and one key per other kind.
pub struct AlgKeys {
    keys: Vec<SigningKey>,
}

impl AlgKeys {
    pub fn generate() -> Result<AlgKeys> {
        let keys = ALGS
            .iter()
            .filter(|(_, kind, _)| !matches!(kind, KeyKind::Rsa(_)))
            .map(|(_, kind, kid)| SigningKey::generate(*kind, kid))
            .collect::<Result<_>>()?;
        Ok(AlgKeys { keys })
    }

    /// The key that signs `alg` (`rsa` for the RSA algorithms).
    pub fn for_alg<'a>(&'a self, alg: Alg, rsa: &'a SigningKey) -> Option<&'a SigningKey> {
        let (_, kind, kid) = ALGS.iter().find(|(a, _, _)| *a == alg)?;
        match kind {
            KeyKind::Rsa(_) => Some(rsa),
            _ => self.keys.iter().find(|k| k.kid == *kid),
        }
    }

    /// Public JWKs (no `alg` member: the RSA key serves RS256 and PS256).
    pub fn public_jwks(&self) -> Vec<serde_json::Value> {
        self.keys.iter().map(|k| k.public_jwk_for(None)).collect()
    }
}

/// OpenSSL's median µs to verify one of `tokens` (signed with `key` and `alg`).
pub fn openssl_us(key: &SigningKey, alg: Alg, tokens: &[String]) -> Result<f64> {
    let public = key.public()?;
    let mut samples = Samples::default();
    for token in tokens.iter().take(OPENSSL_SAMPLES) {
        let (input, sig) = token.rsplit_once('.').context("not a JWS")?;
        let sig = jose::b64url_decode(sig)?;
        let started = Instant::now();
        let ok = public.verify(alg, input.as_bytes(), &sig)?;
        samples.push(started.elapsed());
        anyhow::ensure!(ok, "OpenSSL refused a bench {} token", alg.name());
    }
    Ok(samples.median_us())
}
