//! Why JOSE verification refuses a token. The filter maps each reason to its own refusal
//! (`reject::AuthError`, the same names) and so to an HTTP answer; nothing here knows HTTP.

use std::fmt;

/// Every reason a token fails parsing or verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// The token is longer than the configured maximum.
    TokenTooLarge,
    /// Not three base64url segments, bad base64url, bad JSON, or a header/claim of the wrong type.
    Malformed,
    /// `alg` is missing, `none`, HMAC, unknown, or not on the issuer's allowlist.
    AlgorithmNotAllowed,
    /// The header carries `crit` (no extension is understood, RFC 7515 §4.1.11).
    CriticalHeader,
    /// `iss` is missing or matches no configured issuer.
    UnknownIssuer,
    /// No key in the issuer's JWKS matches the token's `kid` (or, without `kid`, its algorithm).
    UnknownKey,
    /// The key found has a type that cannot verify the token's `alg`.
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is missing, not a number, or in the past beyond the allowed clock skew.
    Expired,
    /// `nbf` is in the future beyond the allowed clock skew.
    NotYetValid,
    /// `aud` is missing or none of its values is an accepted audience.
    WrongAudience,
    /// The header's `typ` is not one of the issuer's token types (RFC 8725 §3.11).
    WrongTokenType,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for TokenError {}
