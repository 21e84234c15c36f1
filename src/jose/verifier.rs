//! The fixed verification order: size → segments → header → `crit` → alg allowlist → issuer →
//! token type → cheap claim refusals → key → signature → [`VerifiedToken`].
//!
//! [`precheck`] refuses early on the unverified token (nothing from it is *used*: it only says
//! no); [`verify_signature`] finds the key and checks the signature, and only then hands the
//! claims out as a [`VerifiedToken`]. The claim checks are pure functions of the bytes the
//! signature covers, so checking them first gives the same verdict as checking them after.
//!
//! # Example
//!
//! ```
//! use cloudrun_oidc::jose::alg::Algorithm;
//! use cloudrun_oidc::jose::b64;
//! use cloudrun_oidc::jose::jwk_set::KeySet;
//! use cloudrun_oidc::jose::verifier::{self, IssuerRule, Limits};
//! use cloudrun_oidc::jose::TokenError;
//! use ed25519_dalek::{Signer, SigningKey};
//!
//! // The issuer's key pair (RFC 8037 §A.1); its JWKS publishes the public half.
//! let seed = b64::decode(b"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
//! let issuer_key = SigningKey::from_bytes(&seed.try_into().unwrap());
//! let keys = KeySet::parse(
//!     br#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
//!                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
//! )
//! .unwrap();
//!
//! // A token that issuer signed.
//! let header = b64::encode(br#"{"alg":"EdDSA","kid":"k1"}"#);
//! let claims = r#"{"iss":"https://idp.example","aud":"orders","sub":"ada","exp":2000000000}"#;
//! let input = format!("{header}.{}", b64::encode(claims.as_bytes()));
//! let signature = issuer_key.sign(input.as_bytes()).to_bytes();
//! let token = format!("{input}.{}", b64::encode(&signature));
//!
//! // What the route accepts.
//! let issuers = [IssuerRule {
//!     issuer: "https://idp.example".into(),
//!     audiences: vec!["orders".into()],
//!     algorithms: vec![Algorithm::EdDsa],
//!     token_types: vec![],
//! }];
//! let limits = Limits { max_token_bytes: 8192, clock_skew_secs: 60 };
//! let now = 1_900_000_000;
//!
//! // Refusals that need no key first, then the key and the signature.
//! let prechecked = verifier::precheck(&token, &issuers, &limits, now).unwrap();
//! let verified = verifier::verify_signature(prechecked, &keys).unwrap();
//! assert_eq!(verified.sub.as_deref(), Some("ada"));
//!
//! // Past `exp` (and the skew), the token is refused before any key work.
//! let later = 2_000_000_061;
//! let refused = verifier::precheck(&token, &issuers, &limits, later).unwrap_err();
//! assert_eq!(refused, TokenError::Expired);
//!
//! // A signature over other claims does not verify.
//! let forged_claims = b64::encode(claims.replace("ada", "eve").as_bytes());
//! let forged = format!("{header}.{forged_claims}.{}", b64::encode(&signature));
//! let prechecked = verifier::precheck(&forged, &issuers, &limits, now).unwrap();
//! let refused = verifier::verify_signature(prechecked, &keys).unwrap_err();
//! assert_eq!(refused, TokenError::BadSignature);
//! ```

use serde_json::{Map, Value};

use crate::jose::alg::Algorithm;
use crate::jose::jwk_set::KeySet;
use crate::jose::jwt::{self, UnverifiedToken};
use crate::jose::signature;
use crate::jose::TokenError;

/// What one configured issuer accepts. Built by `config` from an `issuers[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRule {
    /// Compared byte for byte with the token's `iss`.
    pub issuer: String,
    /// Any-of against the token's `aud` (string or array). Never empty.
    pub audiences: Vec<String>,
    /// Algorithms accepted for this issuer. Never empty; never `none` or `HS*` (unrepresentable).
    pub algorithms: Vec<Algorithm>,
    /// `token_types`: the header's `typ` must be one of these, compared by [`token_type`]
    /// (stored in that form). Default empty: `typ` is not checked.
    pub token_types: Vec<String>,
}

/// A JOSE `typ` (or a configured token type) in comparable form: ASCII-lowercased, without the
/// `application/` prefix that RFC 7515 §4.1.9 lets writers omit (`application/at+JWT` and `at+jwt`
/// name one type). Only a prefix followed by a name without `/` is dropped.
pub fn token_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(name) if !name.is_empty() && !name.contains('/') => name.to_string(),
        _ => lower,
    }
}

/// Route-wide limits applied before any key work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `max_token_bytes` (default 8192).
    pub max_token_bytes: usize,
    /// `clock_skew_seconds` (default 60), applied to `exp` and `nbf`.
    pub clock_skew_secs: i64,
}

/// A token that passed every check that needs no key. Still unverified.
#[derive(Clone, Debug)]
pub struct Prechecked<'t> {
    /// Index into the `issuers` slice given to [`precheck`].
    pub issuer_index: usize,
    pub alg: Algorithm,
    pub token: UnverifiedToken<'t>,
}

impl Prechecked<'_> {
    /// The `kid` to look up (for logs and the unknown-kid refetch decision).
    pub fn kid(&self) -> Option<&str> {
        self.token.unverified_header.kid.as_deref()
    }
}

/// A token whose signature verified under a key of its issuer, with claims that passed.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedToken {
    pub issuer_index: usize,
    pub alg: Algorithm,
    /// The token's `kid` header, if any.
    pub kid: Option<String>,
    /// RFC 7638 thumbprint of the key that verified it.
    pub key_thumbprint: [u8; 32],
    /// The verified payload object.
    pub claims: Map<String, Value>,
    /// The verified payload JSON, as signed.
    pub payload_json: Vec<u8>,
    /// `exp`, in seconds (rounded down).
    pub exp: i64,
    pub sub: Option<String>,
}

/// Every refusal that needs no key, in the house order (STYLE.md item 6):
/// size ([`TokenError::TokenTooLarge`]) → parse ([`TokenError::Malformed`]) → `crit`
/// ([`TokenError::CriticalHeader`]) → `alg` supported ([`TokenError::AlgorithmNotAllowed`]) →
/// `iss` is a configured issuer ([`TokenError::UnknownIssuer`]) → `alg` on that issuer's list
/// ([`TokenError::AlgorithmNotAllowed`]) → `typ` among the issuer's `token_types`, when it has
/// any ([`TokenError::WrongTokenType`]) → `exp` present and `now <= exp + skew`
/// ([`TokenError::Expired`]) → `now + skew >= nbf` ([`TokenError::NotYetValid`]) → `aud` any-of
/// ([`TokenError::WrongAudience`]). `iat` is not checked.
pub fn precheck<'t>(
    token: &'t str,
    issuers: &[IssuerRule],
    limits: &Limits,
    now_secs: i64,
) -> Result<Prechecked<'t>, TokenError> {
    if token.len() > limits.max_token_bytes {
        return Err(TokenError::TokenTooLarge);
    }
    let parsed = jwt::parse(token)?;
    let header = &parsed.unverified_header;
    if header.has_crit {
        return Err(TokenError::CriticalHeader);
    }
    let alg = Algorithm::from_name(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
    let claims = &parsed.unverified_claims;
    let iss = claims.iss.as_deref().ok_or(TokenError::UnknownIssuer)?;
    let (issuer_index, rule) = issuers
        .iter()
        .enumerate()
        .find(|(_, r)| r.issuer == iss)
        .ok_or(TokenError::UnknownIssuer)?;
    if !rule.algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    if !rule.token_types.is_empty()
        && !header
            .typ
            .as_deref()
            .is_some_and(|typ| rule.token_types.contains(&token_type(typ)))
    {
        return Err(TokenError::WrongTokenType);
    }
    let skew = limits.clock_skew_secs.max(0);
    let exp = claims.exp.ok_or(TokenError::Expired)?;
    if now_secs > exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if now_secs.saturating_add(skew) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    if !claims.aud.iter().any(|a| rule.audiences.contains(a)) {
        return Err(TokenError::WrongAudience);
    }
    Ok(Prechecked {
        issuer_index,
        alg,
        token: parsed,
    })
}

/// Finds the key ([`TokenError::UnknownKey`], [`TokenError::KeyAlgorithmMismatch`]) and checks
/// the signature ([`TokenError::BadSignature`]); only then are the claims handed out.
pub fn verify_signature(pre: Prechecked<'_>, keys: &KeySet) -> Result<VerifiedToken, TokenError> {
    let header = &pre.token.unverified_header;
    let key = keys.select(header.kid.as_deref(), header.x5t.as_deref(), pre.alg)?;
    if !signature::verify(
        pre.alg,
        &key.key,
        pre.token.signing_input,
        &pre.token.signature,
    ) {
        return Err(TokenError::BadSignature);
    }
    let key_thumbprint = key.thumbprint;
    let token = pre.token;
    // `precheck` refused tokens without `exp`; this only keeps the function total.
    let exp = token.unverified_claims.exp.ok_or(TokenError::Expired)?;
    Ok(VerifiedToken {
        issuer_index: pre.issuer_index,
        alg: pre.alg,
        kid: token.unverified_header.kid,
        key_thumbprint,
        claims: token.payload,
        payload_json: token.payload_json,
        exp,
        sub: token.unverified_claims.sub,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64;
    use crate::jose::signature::tests::TestKey;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const ISS: &str = "https://idp.example.com/realms/prod";

    fn rules() -> Vec<IssuerRule> {
        vec![
            IssuerRule {
                issuer: "https://other.example".into(),
                audiences: vec!["x".into()],
                algorithms: Algorithm::ALL.to_vec(),
                token_types: Vec::new(),
            },
            IssuerRule {
                issuer: ISS.into(),
                audiences: vec!["orders-api".into(), "billing".into()],
                algorithms: vec![Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa],
                token_types: Vec::new(),
            },
        ]
    }

    const LIMITS: Limits = Limits {
        max_token_bytes: 8192,
        clock_skew_secs: 60,
    };

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "alice", "aud": "orders-api", "exp": NOW + 300, "iat": NOW})
    }

    fn sign(key: &TestKey, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64::encode(header.to_string().as_bytes()),
            b64::encode(payload.to_string().as_bytes())
        );
        let alg =
            Algorithm::from_name(header["alg"].as_str().unwrap_or("")).unwrap_or(Algorithm::Rs256);
        let sig = key.sign(alg, input.as_bytes());
        format!("{input}.{}", b64::encode(&sig))
    }

    fn keyset(key: &TestKey, kid: &str) -> KeySet {
        let mut jwk = key.jwk.clone();
        jwk["kid"] = json!(kid);
        KeySet::parse(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap()
    }

    fn check(token: &str, keys: &KeySet) -> Result<VerifiedToken, TokenError> {
        verify_signature(precheck(token, &rules(), &LIMITS, NOW)?, keys)
    }

    #[test]
    fn accepts_valid_token_for_each_allowed_algorithm() {
        for alg in [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa] {
            let key = TestKey::for_alg(alg);
            let t = sign(
                &key,
                &json!({"alg": alg.name(), "kid": "k1", "typ": "JWT"}),
                &claims(),
            );
            let v = check(&t, &keyset(&key, "k1")).unwrap();
            assert_eq!(v.issuer_index, 1);
            assert_eq!(v.alg, alg);
            assert_eq!(v.kid.as_deref(), Some("k1"));
            assert_eq!(v.exp, NOW + 300);
            assert_eq!(v.sub.as_deref(), Some("alice"));
            assert_eq!(v.claims.get("aud"), Some(&json!("orders-api")));
            assert_eq!(v.payload_json, claims().to_string().into_bytes());
            assert!(keyset(&key, "k1").contains_thumbprint(&v.key_thumbprint));
        }
    }

    #[test]
    fn rejects_oversized_token_before_parsing() {
        let t = "x".repeat(LIMITS.max_token_bytes + 1);
        assert_eq!(
            precheck(&t, &rules(), &LIMITS, NOW).err(),
            Some(TokenError::TokenTooLarge)
        );
        let t = "x".repeat(LIMITS.max_token_bytes);
        assert_eq!(
            precheck(&t, &rules(), &LIMITS, NOW).err(),
            Some(TokenError::Malformed)
        );
    }

    #[test]
    fn rejects_crit_header_before_alg() {
        let key = TestKey::rsa(2048);
        let t = sign(
            &key,
            &json!({"alg":"HS256","crit":["exp"],"exp":1}),
            &claims(),
        );
        assert_eq!(
            check(&t, &keyset(&key, "k")).err(),
            Some(TokenError::CriticalHeader)
        );
    }

    #[test]
    fn rejects_none_hmac_missing_and_unknown_alg() {
        let key = TestKey::rsa(2048);
        let payload = b64::encode(claims().to_string().as_bytes());
        for h in [
            json!({"alg":"none"}),
            json!({"alg":"HS256","kid":"k"}),
            json!({}),
            json!({"alg":"RS1"}),
            json!({"alg":"rs256"}),
        ] {
            let t = format!("{}.{payload}.c2ln", b64::encode(h.to_string().as_bytes()));
            assert_eq!(
                check(&t, &keyset(&key, "k")).err(),
                Some(TokenError::AlgorithmNotAllowed),
                "{h}"
            );
        }
        let t = format!("{}.{payload}.", b64::encode(br#"{"alg":"none"}"#));
        assert_eq!(
            check(&t, &keyset(&key, "k")).err(),
            Some(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn rejects_unknown_or_missing_issuer() {
        let key = TestKey::rsa(2048);
        for iss in [
            json!("https://evil.example"),
            json!(format!("{ISS}/")),
            Value::Null,
        ] {
            let mut c = claims();
            if iss.is_null() {
                c.as_object_mut().unwrap().remove("iss");
            } else {
                c["iss"] = iss.clone();
            }
            let t = sign(&key, &json!({"alg":"RS256","kid":"k"}), &c);
            assert_eq!(
                check(&t, &keyset(&key, "k")).err(),
                Some(TokenError::UnknownIssuer),
                "{iss}"
            );
        }
    }

    #[test]
    fn rejects_algorithm_not_allowed_for_issuer() {
        let key = TestKey::rsa(2048);
        let t = sign(&key, &json!({"alg":"PS256","kid":"k"}), &claims());
        assert_eq!(
            check(&t, &keyset(&key, "k")).err(),
            Some(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn rejects_expired_token_beyond_skew() {
        let key = TestKey::rsa(2048);
        let ks = keyset(&key, "k");
        let at = |exp: Value| {
            let mut c = claims();
            c["exp"] = exp;
            sign(&key, &json!({"alg":"RS256","kid":"k"}), &c)
        };
        assert!(check(&at(json!(NOW - 60)), &ks).is_ok());
        assert_eq!(
            check(&at(json!(NOW - 61)), &ks).err(),
            Some(TokenError::Expired)
        );
        assert_eq!(check(&at(json!(-1)), &ks).err(), Some(TokenError::Expired));
        assert_eq!(
            check(&at(json!("soon")), &ks).err(),
            Some(TokenError::Malformed)
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        let t = sign(&key, &json!({"alg":"RS256","kid":"k"}), &c);
        assert_eq!(check(&t, &ks).err(), Some(TokenError::Expired));
    }

    #[test]
    fn rejects_not_yet_valid_token_beyond_skew() {
        let key = TestKey::rsa(2048);
        let ks = keyset(&key, "k");
        let at = |nbf: i64| {
            let mut c = claims();
            c["nbf"] = json!(nbf);
            sign(&key, &json!({"alg":"RS256","kid":"k"}), &c)
        };
        assert!(check(&at(NOW + 60), &ks).is_ok());
        assert_eq!(
            check(&at(NOW + 61), &ks).err(),
            Some(TokenError::NotYetValid)
        );
    }

    #[test]
    fn rejects_wrong_audience() {
        let key = TestKey::rsa(2048);
        let ks = keyset(&key, "k");
        for (aud, ok) in [
            (json!("billing"), true),
            (json!(["x", "billing"]), true),
            (json!("x"), false),
            (json!([]), false),
            (json!("Orders-Api"), false),
        ] {
            let mut c = claims();
            c["aud"] = aud.clone();
            let t = sign(&key, &json!({"alg":"RS256","kid":"k"}), &c);
            assert_eq!(check(&t, &ks).is_ok(), ok, "{aud}");
            if !ok {
                assert_eq!(check(&t, &ks).err(), Some(TokenError::WrongAudience));
            }
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("aud");
        let t = sign(&key, &json!({"alg":"RS256","kid":"k"}), &c);
        assert_eq!(check(&t, &ks).err(), Some(TokenError::WrongAudience));
    }

    #[test]
    fn rejects_unknown_kid_and_key_of_other_family() {
        let rsa = TestKey::rsa(2048);
        let t = sign(&rsa, &json!({"alg":"RS256","kid":"nope"}), &claims());
        assert_eq!(
            check(&t, &keyset(&rsa, "k")).err(),
            Some(TokenError::UnknownKey)
        );
        let ec = TestKey::for_alg(Algorithm::Es256);
        let t = sign(&ec, &json!({"alg":"ES256","kid":"k"}), &claims());
        assert_eq!(
            check(&t, &keyset(&rsa, "k")).err(),
            Some(TokenError::KeyAlgorithmMismatch)
        );
    }

    #[test]
    fn rejects_tampered_payload_and_foreign_key() {
        let key = TestKey::rsa(2048);
        let t = sign(&key, &json!({"alg":"RS256","kid":"k"}), &claims());
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        parts[1] = b64::encode(c.to_string().as_bytes());
        assert_eq!(
            check(&parts.join("."), &keyset(&key, "k")).err(),
            Some(TokenError::BadSignature)
        );
        let other = TestKey::rsa(2048);
        assert_eq!(
            check(&t, &keyset(&other, "k")).err(),
            Some(TokenError::BadSignature)
        );
    }

    #[test]
    fn ignores_embedded_jwk_and_jku() {
        let attacker = TestKey::rsa(2048);
        let real = TestKey::rsa(2048);
        let t = sign(
            &attacker,
            &json!({"alg":"RS256","kid":"k","jwk":attacker.jwk,"jku":"https://evil/jwks"}),
            &claims(),
        );
        assert_eq!(
            check(&t, &keyset(&real, "k")).err(),
            Some(TokenError::BadSignature)
        );
        // With the real key the same headers are harmless (noted, never used).
        let t = sign(
            &real,
            &json!({"alg":"RS256","kid":"k","jwk":attacker.jwk}),
            &claims(),
        );
        assert!(check(&t, &keyset(&real, "k")).is_ok());
    }

    #[test]
    fn token_without_kid_uses_the_only_fitting_key() {
        let key = TestKey::for_alg(Algorithm::Es256);
        let t = sign(&key, &json!({"alg":"ES256"}), &claims());
        assert!(check(&t, &keyset(&key, "k")).is_ok());
    }

    #[test]
    fn token_types_compare_case_insensitively_with_optional_media_prefix() {
        assert_eq!(token_type("application/AT+JWT"), "at+jwt");
        assert_eq!(token_type("at+jwt"), "at+jwt");
        assert_eq!(token_type("JWT"), "jwt");
        assert_eq!(token_type("application/"), "application/");
        assert_eq!(token_type("application/a/b"), "application/a/b");
        assert_eq!(token_type("xapplication/at+jwt"), "xapplication/at+jwt");
        let key = TestKey::rsa(2048);
        let mut pinned = rules();
        pinned[1].token_types = vec!["at+jwt".into()];
        let at = |header: Value| {
            let t = sign(&key, &header, &claims());
            verify_signature(precheck(&t, &pinned, &LIMITS, NOW)?, &keyset(&key, "k"))
        };
        assert!(at(json!({"alg":"RS256","kid":"k","typ":"at+jwt"})).is_ok());
        assert!(at(json!({"alg":"RS256","kid":"k","typ":"application/at+JWT"})).is_ok());
        for typ in [json!("JWT"), json!("at+jwt "), json!("")] {
            assert_eq!(
                at(json!({"alg":"RS256","kid":"k","typ":typ})).err(),
                Some(TokenError::WrongTokenType),
                "{typ}"
            );
        }
        assert_eq!(
            at(json!({"alg":"RS256","kid":"k"})).err(),
            Some(TokenError::WrongTokenType),
            "no typ"
        );
        // After the issuer and its algorithms, before the claims.
        let mut c = claims();
        c["exp"] = json!(1);
        let t = sign(&key, &json!({"alg":"RS256","kid":"k","typ":"JWT"}), &c);
        assert_eq!(
            precheck(&t, &pinned, &LIMITS, NOW).err(),
            Some(TokenError::WrongTokenType)
        );
        let t = sign(&key, &json!({"alg":"PS256","kid":"k","typ":"JWT"}), &c);
        assert_eq!(
            precheck(&t, &pinned, &LIMITS, NOW).err(),
            Some(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn refusal_order_matches_style_guide() {
        // A token wrong in every way reports the first check of the order.
        let key = TestKey::rsa(2048);
        let mut c = claims();
        c["iss"] = json!("https://evil");
        c["exp"] = json!(1);
        let t = sign(&key, &json!({"alg":"HS256","kid":"k"}), &c);
        assert_eq!(
            check(&t, &keyset(&key, "k")).err(),
            Some(TokenError::AlgorithmNotAllowed)
        );
        let t = sign(&key, &json!({"alg":"RS256","kid":"k"}), &c);
        assert_eq!(
            check(&t, &keyset(&key, "k")).err(),
            Some(TokenError::UnknownIssuer)
        );
        c["iss"] = json!(ISS);
        c["aud"] = json!("x");
        let t = sign(&key, &json!({"alg":"RS256","kid":"k"}), &c);
        assert_eq!(
            check(&t, &keyset(&key, "k")).err(),
            Some(TokenError::Expired)
        );
    }

    #[test]
    fn survives_mutated_tokens_without_accepting_them() {
        let key = TestKey::for_alg(Algorithm::Es256);
        let ks = keyset(&key, "k");
        let good = sign(&key, &json!({"alg":"ES256","kid":"k"}), &claims());
        assert!(check(&good, &ks).is_ok());
        let alphabet = b"ABCxyz019-_.=+/ {}\"\x00\xff";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut bytes = good.clone().into_bytes();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            if text != good {
                // Any outcome but acceptance (or a panic) is fine.
                assert!(check(&text, &ks).is_err(), "{text}");
            }
        }
    }
}
