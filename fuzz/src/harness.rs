//! The fuzzing entry points, shared by the `cargo fuzz` targets (`fuzz/fuzz_targets/*.rs`) and by
//! the root crate's `tests/fuzz_seeds.rs` (which includes this file with `#[path]`), so that
//! `make test` replays the same seeds through the same code with the same invariants.
//!
//! Every entry point takes arbitrary bytes, must never panic on its own account, and panics (a
//! fuzzer "crash") only when an invariant breaks. The invariant that matters most, checked by
//! [`token`] and [`jwks`]: **nothing is accepted that is not correctly signed by the fixed key
//! set**, judged by an independent implementation (OpenSSL), not by the filter's own code.
//!
//! The fixed world is the node-oidc-provider sample (`../shared/vectors/idp/node-oidc-provider/samples/`
//! beside the repository, compiled in):
//! its JWKS (RSA-2048, RSA-3072, P-256, P-384, Ed25519), its issuer, the audiences of its 18
//! real tokens, and a clock pinned at their issue time.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use cloudrun_oidc::config::{FilterConfig, KeySource, TokenLocation};
use cloudrun_oidc::http::header_name::HeaderName;
use cloudrun_oidc::http::url::HttpUrl;
use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::jwk_set::{KeySet, MAX_KEYS};
use cloudrun_oidc::jose::verifier::{self, IssuerRule, Limits, VerifiedToken};
use cloudrun_oidc::keys::discovery;
use cloudrun_oidc::request::claims::{self, ClaimPath, MAX_HEADER_VALUE_BYTES};
use cloudrun_oidc::request::extractor::{self, RequestCredentials};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Verifier};
use serde_json::{Map, Value};

/// The fixed key set (node-oidc-provider sample).
pub const JWKS_JSON: &str =
    include_str!("../../../shared/vectors/idp/node-oidc-provider/samples/jwks.json");
/// The tokens it signed, with `issuer` and `generated_at`.
pub const TOKENS_JSON: &str =
    include_str!("../../../shared/vectors/idp/node-oidc-provider/samples/tokens.json");
/// Its discovery document.
pub const DISCOVERY_JSON: &str = include_str!(
    "../../../shared/vectors/idp/node-oidc-provider/samples/openid-configuration.json"
);

/// The target names, as `cargo fuzz` knows them and as `fuzz/seeds/<name>/` is laid out.
pub const TARGETS: [&str; 6] = [
    "token",
    "jwks",
    "discovery",
    "config",
    "claims",
    "extractor",
];

/// Runs the entry point called `target` (see [`TARGETS`]).
pub fn run(target: &str, data: &[u8]) {
    match target {
        "token" => token(data),
        "jwks" => jwks(data),
        "discovery" => discovery_doc(data),
        "config" => config(data),
        "claims" => claim_mapping(data),
        "extractor" => extract(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The fixed world every entry point checks against.
pub struct World {
    pub keys: KeySet,
    /// Public keys by `kid`, loaded by OpenSSL from the same JWKS (the independent oracle).
    pub oracle: Vec<(String, PKey<Public>)>,
    pub rules: Vec<IssuerRule>,
    pub limits: Limits,
    pub now: i64,
    pub issuer: String,
    /// The 18 real tokens, all valid at `now`.
    pub valid_tokens: Vec<String>,
}

/// The world, built once.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let keys = KeySet::parse(JWKS_JSON.as_bytes()).expect("the fixed JWKS parses");
        let doc: Value = serde_json::from_str(JWKS_JSON).unwrap();
        let oracle = doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["kid"].as_str().unwrap().to_string(), openssl_key(k)))
            .collect();
        let tokens: Value = serde_json::from_str(TOKENS_JSON).unwrap();
        let issuer = tokens["issuer"].as_str().unwrap().to_string();
        let mut audiences = Vec::new();
        let mut valid_tokens = Vec::new();
        for kind in ["access_tokens", "id_tokens"] {
            for (name, token) in tokens[kind].as_object().unwrap() {
                audiences.push(format!("urn:test:{name}"));
                audiences.push(format!("web-{name}"));
                valid_tokens.push(token.as_str().unwrap().to_string());
            }
        }
        audiences.sort();
        audiences.dedup();
        World {
            keys,
            oracle,
            rules: vec![IssuerRule {
                issuer: issuer.clone(),
                audiences,
                algorithms: Algorithm::ALL.to_vec(),
                token_types: Vec::new(),
            }],
            limits: Limits {
                max_token_bytes: 8192,
                clock_skew_secs: 60,
            },
            now: tokens["generated_at"].as_i64().unwrap() + 60,
            issuer,
            valid_tokens,
        }
    })
}

fn b64url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url in the fixed JWKS")
}

fn bn(s: &str) -> BigNum {
    BigNum::from_slice(&b64url(s)).unwrap()
}

/// A public JWK of the fixed set as an OpenSSL key.
fn openssl_key(jwk: &Value) -> PKey<Public> {
    let s = |name: &str| jwk[name].as_str().unwrap();
    match s("kty") {
        "RSA" => {
            PKey::from_rsa(Rsa::from_public_components(bn(s("n")), bn(s("e"))).unwrap()).unwrap()
        }
        "EC" => {
            let nid = match s("crv") {
                "P-256" => Nid::X9_62_PRIME256V1,
                _ => Nid::SECP384R1,
            };
            let group = EcGroup::from_curve_name(nid).unwrap();
            let key = EcKey::from_public_key_affine_coordinates(&group, &bn(s("x")), &bn(s("y")))
                .unwrap();
            PKey::from_ec_key(key).unwrap()
        }
        _ => PKey::public_key_from_raw_bytes(&b64url(s("x")), Id::ED25519).unwrap(),
    }
}

/// Whether OpenSSL finds `sig` a valid `alg` signature of `input` under `key`.
pub fn openssl_verifies(alg: Algorithm, key: &PKey<Public>, input: &[u8], sig: &[u8]) -> bool {
    let digest = match alg {
        Algorithm::Rs256 | Algorithm::Ps256 | Algorithm::Es256 => MessageDigest::sha256(),
        Algorithm::Rs384 | Algorithm::Ps384 | Algorithm::Es384 => MessageDigest::sha384(),
        Algorithm::Rs512 | Algorithm::Ps512 => MessageDigest::sha512(),
        Algorithm::EdDsa => {
            if key.id() != Id::ED25519 {
                return false;
            }
            let Ok(mut v) = Verifier::new_without_digest(key) else {
                return false;
            };
            return v.verify_oneshot(sig, input).unwrap_or(false);
        }
    };
    let rsa = matches!(
        alg,
        Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512
    );
    if rsa != (key.id() == Id::RSA) || (!rsa && key.id() != Id::EC) {
        return false;
    }
    let der;
    let sig = if rsa {
        sig
    } else {
        // JWS carries ECDSA as raw r‖s; OpenSSL wants DER.
        let half = sig.len() / 2;
        if sig.is_empty() || !sig.len().is_multiple_of(2) {
            return false;
        }
        let (Ok(r), Ok(s)) = (
            BigNum::from_slice(&sig[..half]),
            BigNum::from_slice(&sig[half..]),
        ) else {
            return false;
        };
        let Ok(ecdsa) = EcdsaSig::from_private_components(r, s) else {
            return false;
        };
        der = ecdsa.to_der().unwrap();
        &der
    };
    let Ok(mut v) = Verifier::new(digest, key) else {
        return false;
    };
    if matches!(alg, Algorithm::Ps256 | Algorithm::Ps384 | Algorithm::Ps512) {
        v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
        v.set_rsa_mgf1_md(digest).unwrap();
    }
    v.update(input).unwrap();
    v.verify(sig).unwrap_or(false)
}

/// Independent checks of a token the filter accepted: some key of the fixed set signs it
/// (OpenSSL), and the claims the filter hands out are the signed ones and pass the rules.
pub fn check_accepted(token: &str, v: &VerifiedToken) {
    let w = world();
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("accepted a token that is not three segments: {token:?}");
    };
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let sig = engine.decode(s).unwrap_or_else(|e| {
        panic!("accepted a token whose signature is not base64url ({e}): {token:?}")
    });
    let header: Value = serde_json::from_slice(&engine.decode(h).expect("header base64url"))
        .unwrap_or_else(|e| panic!("accepted a token whose header is not JSON ({e}): {token:?}"));
    let alg = header["alg"]
        .as_str()
        .and_then(Algorithm::from_name)
        .unwrap_or_else(|| panic!("accepted a token without a supported alg: {token:?}"));
    assert_eq!(
        alg, v.alg,
        "verified alg differs from the header's: {token:?}"
    );
    assert!(
        header.get("crit").is_none(),
        "accepted a token with crit: {token:?}"
    );
    let input = format!("{h}.{p}");
    let signed_by = w
        .oracle
        .iter()
        .find(|(_, key)| openssl_verifies(alg, key, input.as_bytes(), &sig));
    let Some((kid, _)) = signed_by else {
        panic!("ACCEPTED A TOKEN NO KEY OF THE SET SIGNED: {token:?}");
    };
    if let Some(token_kid) = &v.kid {
        assert_eq!(
            token_kid, kid,
            "verified under another key than its kid names: {token:?}"
        );
    }
    let payload = engine.decode(p).expect("payload base64url");
    assert_eq!(
        v.payload_json, payload,
        "handed-out payload is not the signed one"
    );
    let claims: Value = serde_json::from_slice(&payload).expect("accepted payload is JSON");
    assert_eq!(
        Value::Object(v.claims.clone()),
        claims,
        "claims differ from the payload"
    );
    assert_eq!(
        claims["iss"].as_str(),
        Some(w.issuer.as_str()),
        "iss: {token:?}"
    );
    let auds: Vec<&str> = match &claims["aud"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    assert!(
        auds.iter()
            .any(|a| w.rules[0].audiences.iter().any(|r| r == a)),
        "accepted a token for no configured audience: {token:?}"
    );
    let exp = claims["exp"]
        .as_f64()
        .expect("accepted a token without a numeric exp");
    assert!(
        exp + w.limits.clock_skew_secs as f64 >= w.now as f64,
        "accepted an expired token"
    );
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        assert!(
            nbf <= (w.now + w.limits.clock_skew_secs) as f64,
            "accepted before nbf"
        );
    }
}

/// Token parse + verify: `verifier::precheck` then `verify_signature` with the fixed set. The
/// bytes are the token (non-UTF-8 input cannot come from a header the extractor passed).
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let w = world();
    let Ok(pre) = verifier::precheck(text, &w.rules, &w.limits, w.now) else {
        return;
    };
    let _ = pre.kid();
    if let Ok(v) = verifier::verify_signature(pre, &w.keys) {
        check_accepted(text, &v);
    }
}

/// JWKS parsing (`KeySet::parse`), then key choice and verification against the parsed set:
/// a genuine token may only verify under a key with the genuine key's RFC 7638 thumbprint (a
/// fuzzed set cannot smuggle another key in under a known `kid`).
pub fn jwks(data: &[u8]) {
    let Ok(set) = KeySet::parse(data) else {
        return;
    };
    assert!(
        !set.is_empty() && set.len() <= MAX_KEYS,
        "{} keys",
        set.len()
    );
    let kids: Vec<String> = set.kids().map(str::to_string).collect();
    for alg in Algorithm::ALL {
        let _ = set.find(None, alg);
        for kid in &kids {
            let _ = set.find(Some(kid), alg);
        }
    }
    let w = world();
    for token in w.valid_tokens.iter().step_by(5) {
        let pre = verifier::precheck(token, &w.rules, &w.limits, w.now).expect("genuine token");
        if let Ok(v) = verifier::verify_signature(pre.clone(), &set) {
            let genuine = verifier::verify_signature(pre, &w.keys).expect("genuine token");
            assert_eq!(
                v.key_thumbprint, genuine.key_thumbprint,
                "a token verified under a key that is not the one that signed it"
            );
        }
    }
}

/// Discovery (`discovery::jwks_uri`) against a plain issuer and an Entra `{tenantid}` one.
pub fn discovery_doc(data: &[u8]) {
    let w = world();
    for expected in [
        w.issuer.as_str(),
        "https://login.microsoftonline.com/8eaef023-2b34-4da1-9baa-8bc8c9d6a490/v2.0",
    ] {
        if let Ok(url) = discovery::jwks_uri(data, expected) {
            let doc: Value = serde_json::from_slice(
                data.strip_prefix(b"\xef\xbb\xbf".as_slice())
                    .unwrap_or(data),
            )
            .expect("an accepted discovery document is JSON");
            let issuer = doc["issuer"].as_str().expect("issuer");
            assert!(
                discovery::issuer_matches(issuer, expected),
                "accepted issuer {issuer:?} for {expected:?}"
            );
            let again = HttpUrl::parse(&url.to_string()).expect("jwks_uri round-trips");
            assert_eq!(again, url);
            assert!(!url.dispatch_target().is_empty());
        }
    }
    // The bytes as an issuer pair: `{tenantid}` matching never panics.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((a, b)) = text.split_once('\n') {
            if discovery::issuer_matches(a, b) && a != b {
                assert!(a.contains("{tenantid}"), "{a:?} matched {b:?}");
            }
        }
    }
}

/// Configuration (`FilterConfig::from_json`): accepted configurations own only valid,
/// lower-case, non-reserved headers and usable URLs; inline keys parse without panicking.
pub fn config(data: &[u8]) {
    let Ok(cfg) = FilterConfig::from_json(data) else {
        return;
    };
    assert!(!cfg.issuers.is_empty());
    for issuer in &cfg.issuers {
        assert!(!issuer.rule.audiences.is_empty() && !issuer.rule.algorithms.is_empty());
        match &issuer.keys {
            KeySource::Inline(set) => {
                assert!(!set.is_empty(), "inline jwks accepted without a usable key");
            }
            KeySource::JwksUrl(url) | KeySource::Discovery(url) => {
                assert_eq!(HttpUrl::parse(&url.to_string()).as_ref(), Ok(url));
            }
        }
        assert!(cfg.issuer(&issuer.rule.issuer).is_some());
    }
    for header in cfg.owned_headers() {
        let reparsed = HeaderName::parse(&header).expect("owned header is a valid name");
        assert_eq!(reparsed.as_str(), header, "owned header not lower-case");
    }
    assert!(cfg.limits.max_token_bytes > 0);
}

/// The claim paths the mapping target reads, including a URL-shaped claim name with dots.
fn claim_paths() -> &'static [(ClaimPath, HeaderName)] {
    static PATHS: OnceLock<Vec<(ClaimPath, HeaderName)>> = OnceLock::new();
    PATHS.get_or_init(|| {
        [
            ("sub", "x-user-id"),
            ("email", "x-user-email"),
            ("realm_access.roles", "x-user-roles"),
            ("a.b.c", "x-abc"),
            ("https://example.com/claims.groups", "x-groups"),
            ("scope", "x-scope"),
        ]
        .iter()
        .map(|(p, h)| (ClaimPath::parse(p).unwrap(), HeaderName::parse(h).unwrap()))
        .collect()
    })
}

fn check_header_value(text: &str) {
    assert!(!text.is_empty(), "empty header value");
    assert!(
        text.len() <= MAX_HEADER_VALUE_BYTES,
        "header value of {} bytes",
        text.len()
    );
    assert!(
        !text.bytes().any(|b| b < 0x20 || b == 0x7f),
        "control byte in a header value: {text:?}"
    );
}

/// Claim mapping (`claims::map_claims`, `claims::header_value`) over a JSON claims object:
/// every header value is non-empty, bounded and free of CR/LF/controls (no header injection).
pub fn claim_mapping(data: &[u8]) {
    let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    if let Ok(headers) = claims::map_claims(&claims, claim_paths()) {
        for (name, value) in &headers {
            assert!(claim_paths().iter().any(|(_, h)| h.as_str() == name));
            check_header_value(value);
        }
    }
    for value in claims.values() {
        if let Ok(Some(text)) = claims::header_value(value) {
            check_header_value(&text);
        }
    }
    for (path, _) in claim_paths() {
        let _ = claims::lookup(&claims, path);
    }
}

/// Extractor (`extractor::extract`): the bytes are split at `0xff` into header values, the
/// path, and cookie headers; a token handed out is non-empty token68 within the size cap and
/// one of the candidates.
pub fn extract(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xff);
    let sel = parts.next().and_then(|p| p.first().copied()).unwrap_or(0);
    let rest: Vec<&[u8]> = parts.collect();
    let header_values: Vec<&[u8]> = rest.iter().copied().step_by(3).collect();
    let path = rest.get(1).copied();
    let cookie_headers: Vec<&[u8]> = rest.iter().copied().skip(2).step_by(3).collect();
    let req = RequestCredentials {
        header_values,
        path,
        cookie_headers,
    };
    let locations = [
        TokenLocation::default(),
        TokenLocation {
            header: Some("x-token".into()),
            scheme: None,
            query_param: Some("access_token".into()),
            cookie: Some("session".into()),
        },
        TokenLocation {
            header: None,
            scheme: None,
            query_param: Some("t".into()),
            cookie: None,
        },
    ];
    let max = if sel & 1 == 0 { 8192 } else { 16 };
    for loc in &locations {
        if let Ok(token) = extractor::extract(loc, &req, max) {
            assert!(!token.is_empty() && token.len() <= max, "{token:?}");
            let body = token.trim_end_matches('=');
            assert!(
                !body.is_empty()
                    && body.bytes().all(|c| c.is_ascii_alphanumeric()
                        || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')),
                "not token68: {token:?}"
            );
        }
    }
}
