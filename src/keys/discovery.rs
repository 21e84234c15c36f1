//! OIDC discovery documents (OpenID Connect Discovery 1.0 §4): where the JWKS is, checked
//! against the configured issuer.
//!
//! Decisions:
//! - The body is capped at [`MAX_DISCOVERY_BYTES`] before parsing and must be a JSON object (a
//!   leading UTF-8 BOM is ignored, RFC 8259 §8.1).
//! - `issuer` must equal the configured issuer byte for byte (§4.3), with one exception: a
//!   document issuer holding the literal `{tenantid}` (Entra ID multi-tenant `common` /
//!   `organizations` endpoints) matches a configured issuer that has one non-empty path segment
//!   in its place (`https://login.microsoftonline.com/{tenantid}/v2.0` matches
//!   `https://login.microsoftonline.com/<tenant>/v2.0`). The token's `iss` is still compared
//!   exactly with the configured issuer by the verifier.
//! - `jwks_uri` must parse as an [`HttpUrl`]. **`http` is allowed**: the mock IdP and the docker
//!   demo serve plain http, and the operator chose the discovery URL (an `https` discovery
//!   document pointing at an `http` JWKS is the IdP's choice to make, as with `jwks_url`). The
//!   scheme is available in [`HttpUrl::scheme`] for callers that want to log it.

use std::fmt;

use serde_json::Value;

use crate::http::url::{HttpUrl, UrlError};

/// Largest discovery document accepted, in bytes.
pub const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// The placeholder Entra ID multi-tenant documents put in `issuer`.
const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Why a discovery document was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryError {
    /// More than [`MAX_DISCOVERY_BYTES`].
    TooLarge,
    /// Not a JSON object.
    NotJson,
    /// `issuer` missing or not a string.
    MissingIssuer,
    /// `issuer` is not the configured issuer.
    IssuerMismatch,
    /// `jwks_uri` missing or not a string.
    MissingJwksUri,
    /// `jwks_uri` is not an acceptable `http(s)` URL.
    BadJwksUri(UrlError),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::TooLarge => {
                write!(
                    f,
                    "discovery document larger than {MAX_DISCOVERY_BYTES} bytes"
                )
            }
            DiscoveryError::NotJson => f.write_str("discovery document is not a JSON object"),
            DiscoveryError::MissingIssuer => f.write_str("discovery document has no issuer"),
            DiscoveryError::IssuerMismatch => {
                f.write_str("discovery issuer differs from the configured issuer")
            }
            DiscoveryError::MissingJwksUri => f.write_str("discovery document has no jwks_uri"),
            DiscoveryError::BadJwksUri(e) => write!(f, "jwks_uri refused: {e}"),
        }
    }
}

/// The `jwks_uri` of a discovery document whose `issuer` is `expected_issuer`.
pub fn jwks_uri(body: &[u8], expected_issuer: &str) -> Result<HttpUrl, DiscoveryError> {
    if body.len() > MAX_DISCOVERY_BYTES {
        return Err(DiscoveryError::TooLarge);
    }
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let doc: Value = serde_json::from_slice(body).map_err(|_| DiscoveryError::NotJson)?;
    let obj = doc.as_object().ok_or(DiscoveryError::NotJson)?;
    let issuer = obj
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or(DiscoveryError::MissingIssuer)?;
    if !issuer_matches(issuer, expected_issuer) {
        return Err(DiscoveryError::IssuerMismatch);
    }
    let uri = obj
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or(DiscoveryError::MissingJwksUri)?;
    HttpUrl::parse(uri).map_err(DiscoveryError::BadJwksUri)
}

/// Exact match, or the Entra `{tenantid}` template with one path segment substituted.
pub fn issuer_matches(document_issuer: &str, expected: &str) -> bool {
    if document_issuer == expected {
        return true;
    }
    let Some((prefix, suffix)) = document_issuer.split_once(TENANT_PLACEHOLDER) else {
        return false;
    };
    if suffix.contains(TENANT_PLACEHOLDER) || !prefix.ends_with('/') || !prefix.contains("://") {
        return false;
    }
    if !(suffix.is_empty() || suffix.starts_with('/')) {
        return false;
    }
    let Some(tenant) = expected
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
    else {
        return false;
    };
    !tenant.is_empty()
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::url::Scheme;
    use serde_json::json;

    fn doc(issuer: &str, jwks: &str) -> Vec<u8> {
        json!({"issuer": issuer, "jwks_uri": jwks, "authorization_endpoint": "x"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn returns_jwks_uri_for_matching_issuer() {
        let u = jwks_uri(
            &doc(
                "https://idp.example.com/realms/prod",
                "https://idp.example.com/realms/prod/certs",
            ),
            "https://idp.example.com/realms/prod",
        )
        .unwrap();
        assert_eq!(u.to_string(), "https://idp.example.com/realms/prod/certs");
    }

    #[test]
    fn allows_plain_http_jwks_uri() {
        let u = jwks_uri(
            &doc("http://mock-idp:9000", "http://mock-idp:9000/jwks"),
            "http://mock-idp:9000",
        )
        .unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.dispatch_target(), "mock-idp:9000");
    }

    #[test]
    fn refuses_issuer_mismatch() {
        for expected in [
            "https://idp.example.com/realms/prod/",
            "https://idp.example.com/realms/other",
            "https://IDP.example.com/realms/prod",
        ] {
            assert_eq!(
                jwks_uri(
                    &doc("https://idp.example.com/realms/prod", "https://x/j"),
                    expected
                )
                .err(),
                Some(DiscoveryError::IssuerMismatch),
                "{expected}"
            );
        }
    }

    #[test]
    fn matches_entra_tenant_template() {
        let tmpl = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let tenant = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
        assert!(jwks_uri(
            &doc(
                tmpl,
                "https://login.microsoftonline.com/common/discovery/v2.0/keys"
            ),
            tenant
        )
        .is_ok());
        assert!(issuer_matches(tmpl, tmpl));
        for bad in [
            "https://login.microsoftonline.com//v2.0",
            "https://login.microsoftonline.com/a/b/v2.0",
            "https://login.microsoftonline.com/t/v2.0/",
            "https://login.microsoftonline.com/t?x/v2.0",
            "https://evil.example/t/v2.0",
        ] {
            assert!(!issuer_matches(tmpl, bad), "{bad}");
        }
        assert!(!issuer_matches("{tenantid}", "x"));
        assert!(!issuer_matches(
            "https://a/x{tenantid}/v2.0",
            "https://a/xy/v2.0"
        ));
    }

    #[test]
    fn refuses_bad_jwks_uri() {
        for (uri, e) in [
            ("ftp://idp/keys", UrlError::Scheme),
            ("https://user@idp/keys", UrlError::Userinfo),
            ("https://idp/keys#x", UrlError::Fragment),
            ("/keys", UrlError::Scheme),
            ("http://[.]/keys", UrlError::Ipv6),
            ("http://[:]/keys", UrlError::Ipv6),
            ("http://[1.2.3.4]/keys", UrlError::Ipv6),
            ("http://[12345::]/keys", UrlError::Ipv6),
            ("http://unix:80/keys", UrlError::UnixHost),
        ] {
            assert_eq!(
                jwks_uri(&doc("https://idp", uri), "https://idp").err(),
                Some(DiscoveryError::BadJwksUri(e)),
                "{uri}"
            );
        }
    }

    #[test]
    fn refuses_missing_members_and_non_objects() {
        let i = "https://idp";
        assert_eq!(
            jwks_uri(br#"{"jwks_uri":"https://idp/k"}"#, i).err(),
            Some(DiscoveryError::MissingIssuer)
        );
        assert_eq!(
            jwks_uri(br#"{"issuer":1,"jwks_uri":"https://idp/k"}"#, i).err(),
            Some(DiscoveryError::MissingIssuer)
        );
        assert_eq!(
            jwks_uri(br#"{"issuer":"https://idp"}"#, i).err(),
            Some(DiscoveryError::MissingJwksUri)
        );
        assert_eq!(
            jwks_uri(br#"{"issuer":"https://idp","jwks_uri":["x"]}"#, i).err(),
            Some(DiscoveryError::MissingJwksUri)
        );
        assert_eq!(jwks_uri(b"[]", i).err(), Some(DiscoveryError::NotJson));
        assert_eq!(jwks_uri(b"<html>", i).err(), Some(DiscoveryError::NotJson));
    }

    #[test]
    fn refuses_oversized_document() {
        let mut body = doc("https://idp", "https://idp/k");
        body.truncate(body.len() - 1);
        body.extend(std::iter::repeat_n(b' ', MAX_DISCOVERY_BYTES));
        body.push(b'}');
        assert_eq!(
            jwks_uri(&body, "https://idp").err(),
            Some(DiscoveryError::TooLarge)
        );
    }
}
