//! Why a request is refused, and the one mapping from that reason to an HTTP answer.
//!
//! Every refusal in the filter is an [`AuthError`]; [`AuthError::rejection`] is the only place
//! that decides status codes and `WWW-Authenticate` values (RFC 6750 §3). Bodies stay generic:
//! the precise reason goes to the log and to metrics, never to the caller beyond the short
//! `error_description`.

use crate::jose::TokenError;

/// The realm announced in every challenge.
pub const REALM: &str = "cloudrun_oidc";

/// Every reason the filter refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credential in the configured header, query parameter or cookie (RFC 6750 §3.1: no
    /// error code when the request carries no authentication information).
    MissingToken,
    /// Several credentials present (header, query, cookie) and they differ (RFC 6750 §2).
    ConflictingTokens,
    /// The token is longer than `max_token_bytes`.
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
    /// `aud` is missing or none of its values is a configured audience.
    WrongAudience,
    /// The header's `typ` is not one of the issuer's `token_types` (RFC 8725 §3.11: an ID token
    /// must not pass where access tokens are expected, nor the other way round).
    WrongTokenType,
    /// A verified claim mapped to a header holds bytes a header cannot carry (CR, LF, controls).
    UnrepresentableClaim,
    /// `required_scopes` not all granted.
    InsufficientScope,
    /// A `required_claims` rule is not met.
    ClaimMismatch,
    /// The verified token lacks the claim a rate limit of the route identifies callers by
    /// (`rate_limits[].key`): the caller cannot be counted, so it is not served.
    NoRateLimitKey,
    /// The caller has spent a rate limit's budget for the current window (RFC 6585 §4). Not
    /// counted as a denial: it has its own counter, `rate_limited`.
    RateLimited,
    /// A claim path used by a rule or a header reads two different values (a top-level key
    /// spelled like the dotted path next to the nested claim): it satisfies nothing.
    AmbiguousClaim,
    /// No usable keys: the IdP is unreachable or answered garbage and nothing usable is cached.
    KeysUnavailable,
    /// No valid Google ID token cached and minting one failed.
    GoogleTokenUnavailable,
    /// The request carries a header the filter sets itself (in any letter case, or an
    /// underscore look-alike): on Kong's engine a client copy cannot be taken out of the request,
    /// so the request is refused whole (RFC 6750 §3.1 `invalid_request`).
    ForgedHeader,
    /// The request has more headers than the host hands to a filter: the part the filter cannot
    /// see could hold a forged header or a second credential.
    TooManyHeaders,
    /// The request carries an `Authorization` header the filter did not verify (its token came
    /// from a cookie, the query or another header) and that no Google token replaces: it would
    /// reach the upstream as if the gateway had vouched for it, and on Kong's engine a removed
    /// header is still proxied, so the request is refused (RFC 6750 §3.1 `invalid_request`).
    UnverifiedAuthorization,
    /// The route's filter configuration is invalid; every request is refused.
    InvalidConfiguration,
    /// A host call failed unexpectedly; the request is refused rather than forwarded.
    Internal,
}

impl From<TokenError> for AuthError {
    /// JOSE's reasons are the filter's, name for name.
    fn from(error: TokenError) -> AuthError {
        match error {
            TokenError::TokenTooLarge => AuthError::TokenTooLarge,
            TokenError::Malformed => AuthError::Malformed,
            TokenError::AlgorithmNotAllowed => AuthError::AlgorithmNotAllowed,
            TokenError::CriticalHeader => AuthError::CriticalHeader,
            TokenError::UnknownIssuer => AuthError::UnknownIssuer,
            TokenError::UnknownKey => AuthError::UnknownKey,
            TokenError::KeyAlgorithmMismatch => AuthError::KeyAlgorithmMismatch,
            TokenError::BadSignature => AuthError::BadSignature,
            TokenError::Expired => AuthError::Expired,
            TokenError::NotYetValid => AuthError::NotYetValid,
            TokenError::WrongAudience => AuthError::WrongAudience,
            TokenError::WrongTokenType => AuthError::WrongTokenType,
        }
    }
}

/// A local response: what the adapter sends instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// `WWW-Authenticate` value, for 400, 401 and 403 only.
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds, for 503 (429 carries its own: the time until the window ends).
    pub retry_after: Option<u32>,
    /// A generic JSON body in Kong's style.
    pub body: &'static str,
}

/// The `Content-Type` of every [`Rejection::body`].
pub const BODY_CONTENT_TYPE: &str = "application/json; charset=utf-8";

const BODY_400: &str = "{\"message\":\"Bad request\"}";
const BODY_401: &str = "{\"message\":\"Unauthorized\"}";
const BODY_403: &str = "{\"message\":\"Forbidden\"}";
const BODY_429: &str = "{\"message\":\"API rate limit exceeded\"}";
const BODY_500: &str = "{\"message\":\"An unexpected error occurred\"}";
const BODY_503: &str = "{\"message\":\"Service unavailable\"}";

/// How long a client should wait before retrying a 503: one JWKS/Google round trip.
const RETRY_AFTER_SECONDS: u32 = 1;

impl AuthError {
    /// The short, fixed `error_description` (never derived from request bytes), or the log
    /// reason for outcomes that carry no challenge.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::MissingToken => "no token",
            AuthError::ConflictingTokens => "more than one token",
            AuthError::TokenTooLarge => "token too large",
            AuthError::Malformed => "malformed token",
            AuthError::AlgorithmNotAllowed => "algorithm not allowed",
            AuthError::CriticalHeader => "unsupported critical header",
            AuthError::UnknownIssuer => "unknown issuer",
            AuthError::UnknownKey => "unknown signing key",
            AuthError::KeyAlgorithmMismatch => "key does not match algorithm",
            AuthError::BadSignature => "invalid signature",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::WrongAudience => "invalid audience",
            AuthError::WrongTokenType => "wrong token type",
            AuthError::UnrepresentableClaim => "claim cannot be forwarded",
            AuthError::InsufficientScope => "insufficient scope",
            AuthError::ClaimMismatch => "required claim not satisfied",
            AuthError::NoRateLimitKey => "token lacks the rate limit's key claim",
            AuthError::RateLimited => "rate limit reached",
            AuthError::AmbiguousClaim => "ambiguous claim",
            AuthError::KeysUnavailable => "signing keys unavailable",
            AuthError::GoogleTokenUnavailable => "upstream identity token unavailable",
            AuthError::ForgedHeader => "request carries a header set by the gateway",
            AuthError::TooManyHeaders => "too many request headers",
            AuthError::UnverifiedAuthorization => "unverified authorization header",
            AuthError::InvalidConfiguration => "invalid filter configuration",
            AuthError::Internal => "internal error",
        }
    }

    /// The one mapping from a reason to the answer the caller gets.
    pub fn rejection(self) -> Rejection {
        match self {
            // RFC 6750 §3.1: a request without credentials gets a bare challenge.
            AuthError::MissingToken => Rejection {
                status: 401,
                www_authenticate: Some(format!("Bearer realm=\"{REALM}\"")),
                retry_after: None,
                body: BODY_401,
            },
            // RFC 6750 §3.1 `invalid_token`: malformed, expired, revoked or otherwise invalid.
            AuthError::ConflictingTokens
            | AuthError::TokenTooLarge
            | AuthError::Malformed
            | AuthError::AlgorithmNotAllowed
            | AuthError::CriticalHeader
            | AuthError::UnknownIssuer
            | AuthError::UnknownKey
            | AuthError::KeyAlgorithmMismatch
            | AuthError::BadSignature
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::WrongAudience
            | AuthError::WrongTokenType
            | AuthError::UnrepresentableClaim => Rejection {
                status: 401,
                www_authenticate: Some(challenge("invalid_token", self.reason())),
                retry_after: None,
                body: BODY_401,
            },
            // RFC 6750 §3.1 `insufficient_scope`: valid token, not enough privilege.
            AuthError::InsufficientScope
            | AuthError::ClaimMismatch
            | AuthError::AmbiguousClaim
            | AuthError::NoRateLimitKey => Rejection {
                status: 403,
                www_authenticate: Some(challenge("insufficient_scope", self.reason())),
                retry_after: None,
                body: BODY_403,
            },
            // RFC 6750 §3.1 `invalid_request`: the request is malformed, whatever its token.
            AuthError::ForgedHeader
            | AuthError::TooManyHeaders
            | AuthError::UnverifiedAuthorization => Rejection {
                status: 400,
                www_authenticate: Some(challenge("invalid_request", self.reason())),
                retry_after: None,
                body: BODY_400,
            },
            // RFC 6585 §4; no challenge: the credentials are fine. Retry-After and the RateLimit
            // fields come from the limit that refused (the adapter adds them).
            AuthError::RateLimited => Rejection {
                status: 429,
                www_authenticate: None,
                retry_after: None,
                body: BODY_429,
            },
            AuthError::KeysUnavailable | AuthError::GoogleTokenUnavailable => Rejection {
                status: 503,
                www_authenticate: None,
                retry_after: Some(RETRY_AFTER_SECONDS),
                body: BODY_503,
            },
            AuthError::InvalidConfiguration | AuthError::Internal => Rejection {
                status: 500,
                www_authenticate: None,
                retry_after: None,
                body: BODY_500,
            },
        }
    }

    /// The reason this refusal is counted under (`denied_<reason>`); `None` for
    /// [`AuthError::RateLimited`], counted as `rate_limited`.
    pub fn metric_reason(self) -> Option<DenyReason> {
        Some(match self {
            AuthError::MissingToken => DenyReason::MissingToken,
            AuthError::ConflictingTokens
            | AuthError::TokenTooLarge
            | AuthError::Malformed
            | AuthError::CriticalHeader
            | AuthError::UnrepresentableClaim => DenyReason::Malformed,
            AuthError::AlgorithmNotAllowed | AuthError::KeyAlgorithmMismatch => {
                DenyReason::Algorithm
            }
            AuthError::UnknownIssuer => DenyReason::Issuer,
            AuthError::UnknownKey => DenyReason::UnknownKid,
            AuthError::BadSignature => DenyReason::Signature,
            AuthError::Expired | AuthError::NotYetValid => DenyReason::Expired,
            AuthError::WrongAudience => DenyReason::Audience,
            AuthError::WrongTokenType => DenyReason::TokenType,
            AuthError::InsufficientScope
            | AuthError::ClaimMismatch
            | AuthError::AmbiguousClaim
            | AuthError::NoRateLimitKey => DenyReason::Forbidden,
            AuthError::RateLimited => return None,
            AuthError::KeysUnavailable => DenyReason::KeysUnavailable,
            AuthError::GoogleTokenUnavailable => DenyReason::GoogleTokenUnavailable,
            AuthError::ForgedHeader
            | AuthError::TooManyHeaders
            | AuthError::UnverifiedAuthorization => DenyReason::InvalidRequest,
            AuthError::InvalidConfiguration => DenyReason::Config,
            AuthError::Internal => DenyReason::Internal,
        })
    }
}

/// Refusal reasons as counted (`denied_<reason>`); several [`AuthError`]s share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    MissingToken,
    Malformed,
    Algorithm,
    Issuer,
    UnknownKid,
    Signature,
    Expired,
    Audience,
    TokenType,
    Forbidden,
    KeysUnavailable,
    GoogleTokenUnavailable,
    InvalidRequest,
    Config,
    Internal,
}

impl DenyReason {
    /// Every reason, in the order the counters are defined.
    pub fn all() -> impl Iterator<Item = DenyReason> {
        std::iter::successors(Some(DenyReason::MissingToken), |r| r.name_and_next().1)
    }

    /// The reason after this one in [`DenyReason::all`].
    pub fn next(self) -> Option<DenyReason> {
        self.name_and_next().1
    }

    /// The metric name's suffix, exported as `pw_cloudrun_oidc_denied_<name>`.
    pub fn name(self) -> &'static str {
        self.name_and_next().0
    }

    /// Name and successor in one exhaustive match: a new reason does not compile until it has a
    /// name and a place in the chain [`DenyReason::all`] walks.
    fn name_and_next(self) -> (&'static str, Option<DenyReason>) {
        use DenyReason::*;
        match self {
            MissingToken => ("missing_token", Some(Malformed)),
            Malformed => ("malformed", Some(Algorithm)),
            Algorithm => ("algorithm", Some(Issuer)),
            Issuer => ("issuer", Some(UnknownKid)),
            UnknownKid => ("unknown_kid", Some(Signature)),
            Signature => ("signature", Some(Expired)),
            Expired => ("expired", Some(Audience)),
            Audience => ("audience", Some(TokenType)),
            TokenType => ("token_type", Some(Forbidden)),
            Forbidden => ("forbidden", Some(KeysUnavailable)),
            KeysUnavailable => ("keys_unavailable", Some(GoogleTokenUnavailable)),
            GoogleTokenUnavailable => ("google_token_unavailable", Some(InvalidRequest)),
            InvalidRequest => ("invalid_request", Some(Config)),
            Config => ("config", Some(Internal)),
            Internal => ("internal", None),
        }
    }
}

/// `Bearer realm="…", error="…", error_description="…"`. The description is one of the fixed
/// strings of [`AuthError::reason`], so it never needs escaping.
fn challenge(error: &str, description: &str) -> String {
    format!("Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{description}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_errors_map_to_the_refusal_of_the_same_name() {
        use TokenError::*;
        for e in [
            TokenTooLarge,
            Malformed,
            AlgorithmNotAllowed,
            CriticalHeader,
            UnknownIssuer,
            UnknownKey,
            KeyAlgorithmMismatch,
            BadSignature,
            Expired,
            NotYetValid,
            WrongAudience,
            WrongTokenType,
        ] {
            assert_eq!(format!("{e:?}"), format!("{:?}", AuthError::from(e)));
        }
    }

    const ALL: [AuthError; 27] = [
        AuthError::MissingToken,
        AuthError::ConflictingTokens,
        AuthError::TokenTooLarge,
        AuthError::Malformed,
        AuthError::AlgorithmNotAllowed,
        AuthError::CriticalHeader,
        AuthError::UnknownIssuer,
        AuthError::UnknownKey,
        AuthError::KeyAlgorithmMismatch,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongAudience,
        AuthError::WrongTokenType,
        AuthError::UnrepresentableClaim,
        AuthError::InsufficientScope,
        AuthError::ClaimMismatch,
        AuthError::AmbiguousClaim,
        AuthError::NoRateLimitKey,
        AuthError::RateLimited,
        AuthError::KeysUnavailable,
        AuthError::GoogleTokenUnavailable,
        AuthError::ForgedHeader,
        AuthError::TooManyHeaders,
        AuthError::UnverifiedAuthorization,
        AuthError::InvalidConfiguration,
        AuthError::Internal,
    ];

    #[test]
    fn missing_token_gets_a_bare_challenge() {
        let r = AuthError::MissingToken.rejection();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.www_authenticate.as_deref(),
            Some("Bearer realm=\"cloudrun_oidc\"")
        );
    }

    #[test]
    fn expired_token_gets_invalid_token() {
        let r = AuthError::Expired.rejection();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.www_authenticate.as_deref(),
            Some("Bearer realm=\"cloudrun_oidc\", error=\"invalid_token\", error_description=\"token expired\"")
        );
    }

    #[test]
    fn policy_failures_get_insufficient_scope() {
        for e in [
            AuthError::InsufficientScope,
            AuthError::ClaimMismatch,
            AuthError::AmbiguousClaim,
        ] {
            let r = e.rejection();
            assert_eq!(r.status, 403);
            assert!(r
                .www_authenticate
                .unwrap_or_default()
                .contains("error=\"insufficient_scope\""));
        }
    }

    #[test]
    fn forged_headers_and_header_floods_get_invalid_request() {
        for e in [
            AuthError::ForgedHeader,
            AuthError::TooManyHeaders,
            AuthError::UnverifiedAuthorization,
        ] {
            let r = e.rejection();
            assert_eq!(r.status, 400);
            assert!(r
                .www_authenticate
                .unwrap_or_default()
                .starts_with("Bearer realm=\"cloudrun_oidc\", error=\"invalid_request\""));
        }
    }

    #[test]
    fn outages_are_503_without_challenge() {
        for e in [
            AuthError::KeysUnavailable,
            AuthError::GoogleTokenUnavailable,
        ] {
            let r = e.rejection();
            assert_eq!(
                (r.status, r.www_authenticate, r.retry_after),
                (503, None, Some(1))
            );
        }
    }

    #[test]
    fn every_refusal_is_counted_under_a_listed_reason() {
        let listed: Vec<DenyReason> = DenyReason::all().collect();
        for e in ALL {
            match e.metric_reason() {
                Some(reason) => assert!(listed.contains(&reason), "{e:?}"),
                None => assert_eq!(e, AuthError::RateLimited),
            }
        }
    }

    #[test]
    fn deny_reasons_keep_their_published_names() {
        // README's metrics table and dashboards read these names.
        let names: Vec<&str> = DenyReason::all().map(DenyReason::name).collect();
        assert_eq!(
            names,
            [
                "missing_token",
                "malformed",
                "algorithm",
                "issuer",
                "unknown_kid",
                "signature",
                "expired",
                "audience",
                "token_type",
                "forbidden",
                "keys_unavailable",
                "google_token_unavailable",
                "invalid_request",
                "config",
                "internal",
            ]
        );
    }

    #[test]
    fn every_reason_is_a_safe_quoted_string() {
        for e in ALL {
            let reason = e.reason();
            assert!(!reason.is_empty());
            assert!(reason
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
            let r = e.rejection();
            assert!(matches!(r.status, 400 | 401 | 403 | 429 | 500 | 503));
            assert_eq!(
                r.www_authenticate.is_some(),
                matches!(r.status, 400 | 401 | 403)
            );
        }
    }

    #[test]
    fn a_spent_rate_limit_is_429_without_a_challenge() {
        let r = AuthError::RateLimited.rejection();
        assert_eq!(r.status, 429);
        assert_eq!(r.www_authenticate, None);
        assert_eq!(AuthError::RateLimited.metric_reason(), None);
        let r = AuthError::NoRateLimitKey.rejection();
        assert_eq!(r.status, 403);
        assert!(r.www_authenticate.unwrap().contains("insufficient_scope"));
    }
}
