//! The request's headers as the filter reads them, before any token work: the screen for headers
//! the filter owns (header hygiene) and for more headers than the host shows, and the token
//! candidates the extractor chooses from.
//!
//! Why refuse instead of remove: on Kong's engine (ngx_wasm_module), removing a request header
//! only marks it deleted and nginx's proxy module still sends it, and replacing a header sent
//! twice rewrites one copy and still sends the other (`spec/README.md`, engine differences). A
//! client copy of an owned header cannot be taken out of the request, so the request is refused
//! whole: the upstream never sees a client-supplied value of an owned header, nor two copies.

use crate::config::TokenLocation;
use crate::extractor::RequestCredentials;
use crate::reject::AuthError;

/// Most header pairs a host hands to a filter: ngx_wasm_module's `NGX_HTTP_WASM_MAX_REQ_HEADERS`
/// (measured: a request with 127 headers shows 100 pairs; `spec/tests/engine_facts.rs`).
pub const HOST_MAX_HEADER_PAIRS: usize = 100;

/// Request headers as `(name, value)` byte pairs, in the host's order.
pub type HeaderPairs = [(Vec<u8>, Vec<u8>)];

/// The headers a route sets itself (lower-case), and the check for client copies of them.
#[derive(Debug, Default)]
pub struct OwnedHeaders {
    names: Vec<String>,
}

impl OwnedHeaders {
    pub fn new(names: Vec<String>) -> OwnedHeaders {
        OwnedHeaders { names }
    }

    /// The names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The owned header `name` stands for: the same name in any letter case, or an underscore
    /// look-alike (`x_user_id`), which CGI-style upstreams read as `X-User-Id`.
    pub fn matching(&self, name: &[u8]) -> Option<&str> {
        self.names
            .iter()
            .find(|owned| {
                owned.len() == name.len()
                    && owned.bytes().zip(name).all(|(a, b)| {
                        let b = if *b == b'_' {
                            b'-'
                        } else {
                            b.to_ascii_lowercase()
                        };
                        a == b
                    })
            })
            .map(String::as_str)
    }
}

/// Why [`screen`] refused a request, with the owned header's name for the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub error: AuthError,
    pub detail: String,
}

/// Refuses a request the filter cannot see whole (as many pairs as the host's limit) or that
/// carries a header this route owns. Runs on every request, before the token is looked at.
pub fn screen(owned: &OwnedHeaders, pairs: &HeaderPairs) -> Result<(), Refusal> {
    if pairs.len() >= HOST_MAX_HEADER_PAIRS {
        return Err(Refusal {
            error: AuthError::TooManyHeaders,
            detail: format!(
                " ({} header pairs: the host shows a filter at most {HOST_MAX_HEADER_PAIRS})",
                pairs.len()
            ),
        });
    }
    match pairs.iter().find_map(|(name, _)| owned.matching(name)) {
        Some(name) => Err(Refusal {
            error: AuthError::ForgedHeader,
            detail: format!(" (the client sent `{name}`, which this route sets)"),
        }),
        None => Ok(()),
    }
}

/// Every value of the configured token header and every `Cookie` header, plus the path.
pub fn credentials<'a>(
    loc: &TokenLocation,
    pairs: &'a HeaderPairs,
    path: Option<&'a [u8]>,
) -> RequestCredentials<'a> {
    let values = |wanted: &str| -> Vec<&'a [u8]> {
        pairs
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
            .map(|(_, value)| value.as_slice())
            .collect()
    };
    RequestCredentials {
        header_values: loc.header.as_deref().map(values).unwrap_or_default(),
        path,
        cookie_headers: if loc.cookie.is_some() {
            values("cookie")
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(names: &[&str]) -> Vec<(Vec<u8>, Vec<u8>)> {
        names
            .iter()
            .map(|n| (n.as_bytes().to_vec(), b"v".to_vec()))
            .collect()
    }

    fn owned() -> OwnedHeaders {
        OwnedHeaders::new(vec!["x-forwarded-authorization".into(), "x-user-id".into()])
    }

    #[test]
    fn owned_headers_match_in_any_case_and_as_underscore_lookalikes() {
        let owned = owned();
        assert_eq!(owned.matching(b"X-User-ID"), Some("x-user-id"));
        assert_eq!(owned.matching(b"x_user_id"), Some("x-user-id"));
        assert_eq!(owned.matching(b"X_User-Id"), Some("x-user-id"));
        assert_eq!(owned.matching(b"x-user-idx"), None);
        assert_eq!(owned.matching(b"x-other"), None);
        assert_eq!(owned.matching(b"authorization"), None);
    }

    #[test]
    fn screen_refuses_client_copies_of_owned_headers() {
        let refusal = screen(&owned(), &pairs(&["host", "X-Forwarded-Authorization"]));
        assert_eq!(refusal.map_err(|r| r.error), Err(AuthError::ForgedHeader));
        assert!(screen(&owned(), &pairs(&["host", "authorization", "cookie"])).is_ok());
        assert!(screen(&OwnedHeaders::default(), &pairs(&["x-user-id"])).is_ok());
    }

    #[test]
    fn screen_refuses_requests_the_host_cannot_show_whole() {
        let names: Vec<String> = (0..HOST_MAX_HEADER_PAIRS)
            .map(|i| format!("x-{i}"))
            .collect();
        let many = pairs(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let refusal = screen(&OwnedHeaders::default(), &many).unwrap_err();
        assert_eq!(refusal.error, AuthError::TooManyHeaders);
        assert!(screen(&OwnedHeaders::default(), &many[1..]).is_ok());
    }

    #[test]
    fn credentials_collect_every_copy_of_the_token_header_and_cookies() {
        let loc = TokenLocation {
            header: Some("authorization".into()),
            scheme: Some("Bearer".into()),
            query_param: None,
            cookie: Some("session".into()),
        };
        let p = vec![
            (b"Authorization".to_vec(), b"Bearer a".to_vec()),
            (b"cookie".to_vec(), b"session=b".to_vec()),
            (b"authorization".to_vec(), b"Bearer c".to_vec()),
            (b"Cookie".to_vec(), b"x=y".to_vec()),
        ];
        let c = credentials(&loc, &p, None);
        assert_eq!(c.header_values, vec![&b"Bearer a"[..], &b"Bearer c"[..]]);
        assert_eq!(c.cookie_headers, vec![&b"session=b"[..], &b"x=y"[..]]);
        let without_cookie = TokenLocation {
            cookie: None,
            ..loc
        };
        assert!(credentials(&without_cookie, &p, None)
            .cookie_headers
            .is_empty());
    }
}
