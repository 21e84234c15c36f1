//! Google-signed identity tokens for Cloud Run: metadata server and service-account sources.
//!
//! Builds the callouts that mint a token, reads the answers, and decides when a cached token
//! must be refreshed. Cloud Run's IAM check accepts a Google ID token whose `aud` is the service
//! URL; the token's lifetime is read from its own `exp`. Pure: time comes in as `now`.
//!
//! Refresh timing: `refresh_before_expiry_seconds` ahead of `exp`, but never before half of the
//! token's life (from when it was obtained) has passed. A setting close to the lifetime Google
//! grants (300 s before a 303 s token) would otherwise make every tick mint a new token.

use crate::host::shared::layout;
use crate::host::CalloutRequest;
use crate::http::url::{encode_query_component, HttpUrl};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};
use std::fmt;

/// A token is never handed out with less than this much life left (seconds): it must still be
/// valid when Cloud Run checks it.
pub const MIN_REMAINING_SECS: u64 = 10;
/// Lifetime requested for a service-account assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// Largest token or token response accepted from Google.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
const METADATA_IDENTITY_PATH: &str =
    "/computeMetadata/v1/instance/service-accounts/default/identity";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Why a Google ID token could not be minted or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdTokenError {
    /// The service-account private key is not a PKCS#8 RSA key (the key itself is never shown).
    BadPrivateKey,
    /// Signing the assertion failed.
    Signing,
    /// Google's answer was not a usable token (the reason never contains token bytes).
    BadResponse(&'static str),
}

impl fmt::Display for IdTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdTokenError::BadPrivateKey => f.write_str("private_key is not a PKCS#8 RSA key"),
            IdTokenError::Signing => f.write_str("could not sign the assertion"),
            IdTokenError::BadResponse(why) => write!(f, "unusable token response: {why}"),
        }
    }
}

/// A service-account key, parsed once at configure time. `Debug` never shows the key.
pub struct ServiceAccountKey {
    pub private_key_id: String,
    pub client_email: String,
    /// SHA-256 of the public key (modulus and exponent): identifies the key material in cache
    /// keys without revealing it.
    pub fingerprint: [u8; 32],
    signer: SigningKey<Sha256>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("private_key_id", &self.private_key_id)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Parses the key file's `private_key` (PKCS#8 PEM, as Google issues it).
    pub fn new(
        private_key_id: &str,
        client_email: &str,
        private_key_pem: &str,
    ) -> Result<Self, IdTokenError> {
        let key = RsaPrivateKey::from_pkcs8_pem(private_key_pem)
            .map_err(|_| IdTokenError::BadPrivateKey)?;
        Ok(ServiceAccountKey {
            private_key_id: private_key_id.to_string(),
            client_email: client_email.to_string(),
            fingerprint: public_fingerprint(&key),
            signer: SigningKey::<Sha256>::new(key),
        })
    }

    /// The RS256 JWT-bearer assertion asking Google for an ID token for `audience`
    /// (`iss`=client_email, `aud`=token URL, `target_audience`, `iat`, `exp`; `kid` header).
    pub fn assertion(
        &self,
        token_url: &str,
        audience: &str,
        now: u64,
    ) -> Result<String, IdTokenError> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        let claims = serde_json::json!({
            "iss": self.client_email,
            "aud": token_url,
            "target_audience": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // PKCS#1 v1.5 signing is deterministic: no randomness needed (WASI's is not a CSPRNG).
        let signature = self
            .signer
            .try_sign(signing_input.as_bytes())
            .map_err(|_| IdTokenError::Signing)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// SHA-256 over the public key's length-prefixed modulus and exponent.
fn public_fingerprint(key: &RsaPrivateKey) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [key.n().to_bytes_be(), key.e().to_bytes_be()] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(&part);
    }
    hash.finalize().into()
}

/// The metadata server call: `GET …/identity?audience=…&format=full` with `Metadata-Flavor`.
/// `metadata_host` is `host[:port]`; the metadata server speaks plain HTTP.
pub fn metadata_request(metadata_host: &str, audience: &str, timeout_ms: u32) -> CalloutRequest {
    let path = format!(
        "{METADATA_IDENTITY_PATH}?audience={}&format=full",
        encode_query_component(audience)
    );
    let upstream = if metadata_host.contains(':') && !metadata_host.ends_with(']') {
        metadata_host.to_string()
    } else {
        format!("{metadata_host}:80")
    };
    CalloutRequest {
        upstream,
        headers: vec![
            (":method".into(), "GET".into()),
            (":path".into(), path),
            (":authority".into(), metadata_host.to_string()),
            (":scheme".into(), "http".into()),
            ("metadata-flavor".into(), "Google".into()),
        ],
        body: None,
        timeout_ms,
    }
}

/// The OAuth call exchanging a signed assertion for an ID token. `upstream` is the configured
/// callout target for `token_url` (its dispatch target unless overridden).
pub fn token_request(
    token_url: &HttpUrl,
    upstream: &str,
    assertion: &str,
    timeout_ms: u32,
) -> CalloutRequest {
    let body = format!(
        "grant_type={}&assertion={}",
        encode_query_component(JWT_BEARER_GRANT),
        encode_query_component(assertion)
    );
    CalloutRequest {
        upstream: upstream.to_string(),
        headers: vec![
            (":method".into(), "POST".into()),
            (":path".into(), token_url.path_and_query.clone()),
            (":authority".into(), token_url.authority()),
            (":scheme".into(), token_url.scheme.as_str().into()),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("content-length".into(), body.len().to_string()),
        ],
        body: Some(body.into_bytes()),
        timeout_ms,
    }
}

/// A minted token, when it expires (its own `exp`) and when it was obtained (our clock), seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct GoogleToken {
    pub token: String,
    pub expires_at: u64,
    pub obtained_at: u64,
}

impl fmt::Debug for GoogleToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleToken")
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .finish_non_exhaustive()
    }
}

impl GoogleToken {
    /// Reads a raw JWT (the metadata server's answer). The token comes from Google over the
    /// configured channel and is verified by Cloud Run; here it is only checked for shape and
    /// its `exp` is read so the cache knows when to refresh.
    pub fn from_jwt(body: &[u8], now: u64) -> Result<GoogleToken, IdTokenError> {
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(IdTokenError::BadResponse("too large"));
        }
        let token = std::str::from_utf8(body)
            .map_err(|_| IdTokenError::BadResponse("not UTF-8"))?
            .trim();
        let mut segments = token.split('.');
        let (Some(_), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(IdTokenError::BadResponse("not a JWT"));
        };
        if signature.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(IdTokenError::BadResponse("not a JWT"));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| IdTokenError::BadResponse("payload is not base64url"))?;
        let claims: serde_json::Value = serde_json::from_slice(&payload)
            .map_err(|_| IdTokenError::BadResponse("payload is not JSON"))?;
        let expires_at = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or(IdTokenError::BadResponse("no exp"))?;
        if expires_at <= now.saturating_add(MIN_REMAINING_SECS) {
            return Err(IdTokenError::BadResponse("already expired"));
        }
        Ok(GoogleToken {
            token: token.to_string(),
            expires_at,
            obtained_at: now,
        })
    }

    /// Reads Google's OAuth answer `{"id_token": "..."}`.
    pub fn from_token_response(body: &[u8], now: u64) -> Result<GoogleToken, IdTokenError> {
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(IdTokenError::BadResponse("too large"));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            id_token: String,
        }
        let response: TokenResponse = serde_json::from_slice(body)
            .map_err(|_| IdTokenError::BadResponse("no id_token in JSON answer"))?;
        GoogleToken::from_jwt(response.id_token.as_bytes(), now)
    }

    /// Whether the token may still be forwarded at `now`.
    pub fn usable(&self, now: u64) -> bool {
        now.saturating_add(MIN_REMAINING_SECS) < self.expires_at
    }

    /// Whether a refresh should start at `now`: `refresh_before_secs` ahead of expiry, and not
    /// before half of the token's life since it was obtained.
    pub fn refresh_due(&self, now: u64, refresh_before_secs: u64) -> bool {
        let ahead = self.expires_at.saturating_sub(refresh_before_secs);
        let half_life = self
            .obtained_at
            .saturating_add(self.expires_at.saturating_sub(self.obtained_at) / 2);
        now >= ahead.max(half_life)
    }

    /// Payload bytes for [`crate::host::shared::write`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.token.len());
        layout::put_u64(&mut out, self.expires_at);
        layout::put_u64(&mut out, self.obtained_at);
        layout::put_bytes(&mut out, self.token.as_bytes());
        out
    }

    /// Reads a payload written by [`GoogleToken::encode`].
    pub fn decode(payload: &[u8]) -> Option<GoogleToken> {
        let mut input = payload;
        let expires_at = layout::take_u64(&mut input)?;
        let obtained_at = layout::take_u64(&mut input)?;
        let token = String::from_utf8(layout::take_bytes(&mut input)?.to_vec()).ok()?;
        input.is_empty().then_some(GoogleToken {
            token,
            expires_at,
            obtained_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::sign::Verifier;

    fn jwt_with_exp(exp: u64) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!("{{\"aud\":\"x\",\"exp\":{exp}}}"));
        format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
    }

    #[test]
    fn signs_assertions_an_independent_verifier_accepts() {
        let rsa = Rsa::generate(2048).unwrap();
        let pkey = PKey::from_rsa(rsa).unwrap();
        let pem = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let key = ServiceAccountKey::new("kid-1", "sa@proj.iam.gserviceaccount.com", &pem).unwrap();

        let jwt = key
            .assertion(
                "https://oauth2.googleapis.com/token",
                "https://svc.a.run.app",
                1_000,
            )
            .unwrap();
        let (signing_input, signature) = jwt.rsplit_once('.').unwrap();
        let mut verifier = Verifier::new(MessageDigest::sha256(), &pkey).unwrap();
        verifier.update(signing_input.as_bytes()).unwrap();
        assert!(verifier
            .verify(&URL_SAFE_NO_PAD.decode(signature).unwrap())
            .unwrap());

        let (header, claims) = signing_input.split_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg":"RS256","typ":"JWT","kid":"kid-1"})
        );
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "sa@proj.iam.gserviceaccount.com",
                "aud": "https://oauth2.googleapis.com/token",
                "target_audience": "https://svc.a.run.app",
                "iat": 1_000,
                "exp": 4_600,
            })
        );
    }

    #[test]
    fn refuses_non_pkcs8_keys_without_echoing_them() {
        let rsa = Rsa::generate(2048).unwrap();
        let pkcs1 = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
        for bad in [
            pkcs1.as_str(),
            "",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            let err = ServiceAccountKey::new("k", "e", bad).unwrap_err();
            assert_eq!(err, IdTokenError::BadPrivateKey);
            assert!(!err.to_string().contains("BEGIN"));
        }
    }

    #[test]
    fn debug_output_never_shows_key_or_token() {
        let rsa = Rsa::generate(2048).unwrap();
        let pem = String::from_utf8(
            PKey::from_rsa(rsa)
                .unwrap()
                .private_key_to_pem_pkcs8()
                .unwrap(),
        )
        .unwrap();
        let key = ServiceAccountKey::new("kid", "sa@x", &pem).unwrap();
        assert!(!format!("{key:?}").contains("signer"));
        let token = GoogleToken {
            token: "secret.token.value".into(),
            expires_at: 5,
            obtained_at: 1,
        };
        assert!(!format!("{token:?}").contains("secret"));
    }

    #[test]
    fn metadata_request_url_encodes_the_audience() {
        let r = metadata_request(
            "metadata.google.internal",
            "https://svc-abc.a.run.app/x?y=1",
            5000,
        );
        assert_eq!(r.upstream, "metadata.google.internal:80");
        let path = &r.headers.iter().find(|(n, _)| n == ":path").unwrap().1;
        assert_eq!(
            path,
            "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https%3A%2F%2Fsvc-abc.a.run.app%2Fx%3Fy%3D1&format=full"
        );
        assert!(r
            .headers
            .contains(&("metadata-flavor".into(), "Google".into())));
        assert!(!r
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for")));
        assert_eq!(
            metadata_request("169.254.169.254:8080", "a", 1).upstream,
            "169.254.169.254:8080"
        );
    }

    #[test]
    fn token_request_posts_the_jwt_bearer_grant() {
        let url = HttpUrl::parse("https://oauth2.googleapis.com/token").unwrap();
        let r = token_request(&url, "oauth2.googleapis.com:443", "a.b.c", 5000);
        assert_eq!(r.upstream, "oauth2.googleapis.com:443");
        assert!(r.headers.contains(&(":scheme".into(), "https".into())));
        assert!(r.headers.contains(&(":path".into(), "/token".into())));
        assert_eq!(
            r.body.unwrap(),
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c"
        );
    }

    #[test]
    fn reads_expiry_from_the_token_itself() {
        let t = GoogleToken::from_jwt(jwt_with_exp(5_000).as_bytes(), 1_000).unwrap();
        assert_eq!(t.expires_at, 5_000);
        let body = format!("{{\"id_token\":\"{}\"}}", jwt_with_exp(6_000));
        assert_eq!(
            GoogleToken::from_token_response(body.as_bytes(), 1_000)
                .unwrap()
                .expires_at,
            6_000
        );
    }

    #[test]
    fn refuses_unusable_answers() {
        let expired = jwt_with_exp(1_005);
        let cases: [&[u8]; 7] = [
            b"",
            b"not a jwt",
            b"a.b",
            b"a.b.c.d",
            b"eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
            expired.as_bytes(),
            b"eyJ\n.e30.c2ln",
        ];
        for body in cases {
            assert!(GoogleToken::from_jwt(body, 1_000).is_err(), "{body:?}");
        }
        assert!(GoogleToken::from_token_response(b"{\"access_token\":\"x\"}", 1_000).is_err());
        assert!(GoogleToken::from_jwt(&vec![b'a'; MAX_RESPONSE_BYTES + 1], 0).is_err());
    }

    #[test]
    fn refresh_is_due_ahead_of_expiry_and_never_serves_expired() {
        let t = GoogleToken {
            token: "t".into(),
            expires_at: 4_600,
            obtained_at: 1_000,
        };
        assert!(!t.refresh_due(4_299, 300));
        assert!(t.refresh_due(4_300, 300));
        assert!(t.usable(4_589));
        assert!(!t.usable(4_590));
    }

    #[test]
    fn refresh_waits_for_half_the_lifetime_whatever_the_setting() {
        // 303 s token, refresh 300 s ahead: not before 151 s after it was obtained.
        let t = GoogleToken::from_jwt(jwt_with_exp(1_303).as_bytes(), 1_000).unwrap();
        assert_eq!(t.obtained_at, 1_000);
        assert!(!t.refresh_due(1_003, 300));
        assert!(!t.refresh_due(1_150, 300));
        assert!(t.refresh_due(1_151, 300));
        // A setting larger than the whole lifetime, or zero, changes nothing unsafe.
        assert!(!t.refresh_due(1_100, 3_000));
        assert!(!t.refresh_due(1_302, 0));
        assert!(t.refresh_due(1_303, 0));
        // Times that make no sense (obtained after its `exp`) mean: due now.
        let odd = GoogleToken {
            token: "t".into(),
            expires_at: 500,
            obtained_at: 1_000,
        };
        assert!(odd.refresh_due(1_000, 300));
    }

    #[test]
    fn shared_payload_round_trips() {
        let t = GoogleToken {
            token: "a.b.c".into(),
            expires_at: 42,
            obtained_at: 7,
        };
        assert_eq!(GoogleToken::decode(&t.encode()), Some(t.clone()));
        assert_eq!(GoogleToken::decode(&t.encode()[..5]), None);
    }
}
