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
use crate::reject::AuthError;
use crate::request::extractor::{self, RequestCredentials};

/// Most header pairs a host hands to a filter: ngx_wasm_module's `NGX_HTTP_WASM_MAX_REQ_HEADERS`
/// (measured: a request with 127 headers shows 100 pairs; `spec/tests/engine_facts.rs`).
pub const HOST_MAX_HEADER_PAIRS: usize = 100;

/// Request headers as `(name, value)` byte pairs, in the host's order.
pub type HeaderPairs<'a> = [(&'a [u8], &'a [u8])];

/// [`HeaderPairs`] in a vector, borrowed from the host's buffer.
pub type OwnedPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The (name, value) pairs of a header map in the ABI's encoding (count, then name and value
/// lengths, then each name and value followed by a NUL), borrowed from its buffer: no copy
/// per header. `None` when the encoding is malformed: a pair the filter cannot read could be
/// a header it must see, so the caller refuses the request.
pub fn parse_header_map(map: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if map.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = map.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]) as usize)
    };
    let count = u32_at(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > map.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let name_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        let name_end = data.checked_add(name_len)?;
        let value_end = name_end.checked_add(1)?.checked_add(value_len)?;
        // Each name and value is followed by a NUL.
        if map.get(name_end) != Some(&0) || map.get(value_end) != Some(&0) {
            return None;
        }
        pairs.push((map.get(data..name_end)?, map.get(name_end + 1..value_end)?));
        data = value_end + 1;
    }
    Some(pairs)
}

/// The request's header pairs from the host's map, or why the request is refused. Kong's engine
/// (ngx_wasm_module 9136e463) lists `:path`, `:method`, `:scheme` and `:authority` before the
/// headers and cuts the list at [`HOST_MAX_HEADER_PAIRS`], but sizes its buffer for the first
/// 100 headers plus only as many pseudo-headers as it counted before reaching 100: from 98
/// headers on it writes a map longer than the buffer it hands over (`spec/README.md`). Such a
/// map declares the host's maximum, so it is the same refusal as any request the filter cannot
/// see whole (400). Any other unreadable map is a broken host (500).
pub fn read_header_map(map: &[u8]) -> Result<OwnedPairs<'_>, Refusal> {
    if let Some(pairs) = parse_header_map(map) {
        return Ok(pairs);
    }
    let declared = map
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize);
    if declared >= HOST_MAX_HEADER_PAIRS {
        return Err(Refusal {
            error: AuthError::TooManyHeaders,
            detail: format!(
                " ({declared} header pairs in a malformed map: the host shows a filter at most \
                 {HOST_MAX_HEADER_PAIRS})"
            ),
        });
    }
    Err(Refusal {
        error: AuthError::Internal,
        detail: " (the host's request header map is malformed)".to_string(),
    })
}

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
pub fn screen(owned: &OwnedHeaders, pairs: &HeaderPairs<'_>) -> Result<(), Refusal> {
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

/// Whether the request carries an `Authorization` header the filter did not verify: one that
/// held no token candidate of the configured header (a token from a cookie, the query or
/// another header; another scheme such as `Basic`). Called once the token was extracted, so a
/// candidate held the token being verified. The caller refuses such a request unless the
/// Google token replaces `Authorization` (nginx refuses a request with two of them, so the one
/// copy is rewritten in place); removing it would not work on Kong's engine (module doc).
pub fn unverified_authorization(loc: &TokenLocation, pairs: &HeaderPairs<'_>) -> bool {
    let read_from_authorization = loc.header.as_deref() == Some(AUTHORIZATION);
    pairs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(AUTHORIZATION.as_bytes()))
        .any(|(_, value)| {
            !(read_from_authorization && extractor::carries_token(value, loc.scheme.as_deref()))
        })
}

const AUTHORIZATION: &str = "authorization";

/// Every value of the configured token header and every `Cookie` header, plus the path.
pub fn credentials<'a>(
    loc: &TokenLocation,
    pairs: &HeaderPairs<'a>,
    path: Option<&'a [u8]>,
) -> RequestCredentials<'a> {
    let values = |wanted: &str| -> Vec<&'a [u8]> {
        pairs
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
            .map(|(_, value)| *value)
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

    fn pairs<'a>(names: &[&'a str]) -> Vec<(&'a [u8], &'a [u8])> {
        names.iter().map(|n| (n.as_bytes(), &b"v"[..])).collect()
    }

    /// The ABI's header-map encoding of `pairs`.
    fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut map = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            map.extend_from_slice(&(name.len() as u32).to_le_bytes());
            map.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            map.extend_from_slice(name.as_bytes());
            map.push(0);
            map.extend_from_slice(value.as_bytes());
            map.push(0);
        }
        map
    }

    #[test]
    fn header_maps_are_read_in_place() {
        let map = encode(&[
            ("host", "a"),
            ("authorization", "Bearer t"),
            ("x-empty", ""),
        ]);
        let read = parse_header_map(&map).unwrap();
        assert_eq!(
            read,
            vec![
                (&b"host"[..], &b"a"[..]),
                (&b"authorization"[..], &b"Bearer t"[..]),
                (&b"x-empty"[..], &b""[..])
            ]
        );
        assert_eq!(parse_header_map(&[]), Some(Vec::new()));
        assert_eq!(parse_header_map(&encode(&[])), Some(Vec::new()));
    }

    #[test]
    fn malformed_header_maps_are_refused_not_read_in_part() {
        let map = encode(&[("host", "a"), ("x-user-id", "mallory")]);
        // Cut short anywhere: never the first pair alone.
        for len in 1..map.len() {
            assert_eq!(parse_header_map(&map[..len]), None, "cut at {len}");
        }
        // A missing NUL after a name.
        let mut bad = map.clone();
        bad[24] = b'!';
        assert_eq!(parse_header_map(&bad), None);
        // A count the buffer cannot hold.
        let mut huge = map.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_header_map(&huge), None);
    }

    #[test]
    fn a_truncated_map_of_the_hosts_maximum_is_too_many_headers_not_an_internal_error() {
        // As Kong's engine hands it from 98 headers on: 100 pairs declared, the buffer cut
        // before the last ones end.
        let names: Vec<String> = (0..HOST_MAX_HEADER_PAIRS)
            .map(|i| format!("x-{i}"))
            .collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let map = encode(&pairs);
        let cut = &map[..map.len() - 10];
        assert_eq!(parse_header_map(cut), None);
        let refusal = read_header_map(cut).unwrap_err();
        assert_eq!(refusal.error, AuthError::TooManyHeaders);
        assert_eq!(read_header_map(&map).map(|p| p.len()), Ok(100));
        // Fewer pairs declared: the host is broken, not the request.
        let small = encode(&[("host", "a"), ("x-user-id", "mallory")]);
        let refusal = read_header_map(&small[..small.len() - 1]).unwrap_err();
        assert_eq!(refusal.error, AuthError::Internal);
        assert_eq!(
            read_header_map(&[1, 0]).unwrap_err().error,
            AuthError::Internal
        );
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
    fn an_authorization_that_held_no_token_candidate_is_unverified() {
        let bearer = TokenLocation::default();
        let with = |value: &'static [u8]| -> Vec<(&'static [u8], &'static [u8])> {
            vec![(b"host", b"a"), (b"Authorization", value)]
        };
        assert!(!unverified_authorization(&bearer, &with(b"Bearer abc")));
        assert!(!unverified_authorization(&bearer, &with(b"bearer   abc ")));
        assert!(unverified_authorization(
            &bearer,
            &with(b"Basic dXNlcjpwYXNz")
        ));
        assert!(!unverified_authorization(&bearer, &[(b"host", b"a")]));
        for elsewhere in [
            TokenLocation {
                header: None,
                cookie: Some("session".into()),
                ..TokenLocation::default()
            },
            TokenLocation {
                header: Some("x-token".into()),
                ..TokenLocation::default()
            },
        ] {
            assert!(unverified_authorization(&elsewhere, &with(b"Bearer abc")));
            assert!(!unverified_authorization(
                &elsewhere,
                &[(b"x-token", b"Bearer abc")]
            ));
        }
    }

    #[test]
    fn credentials_collect_every_copy_of_the_token_header_and_cookies() {
        let loc = TokenLocation {
            header: Some("authorization".into()),
            scheme: Some("Bearer".into()),
            query_param: None,
            cookie: Some("session".into()),
        };
        let p: Vec<(&[u8], &[u8])> = vec![
            (b"Authorization", b"Bearer a"),
            (b"cookie", b"session=b"),
            (b"authorization", b"Bearer c"),
            (b"Cookie", b"x=y"),
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
