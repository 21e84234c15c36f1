//! Finding the caller's token in the configured header, query parameter or cookie.
//!
//! Decisions where DESIGN.md is silent:
//! - Header: `<scheme> 1*SP <token68>` (RFC 7235 §2.1 allows one or more spaces; trailing
//!   spaces/tabs are ignored). The scheme is compared case-insensitively. A value carrying
//!   another scheme (`Basic …`) is not a candidate at all: it is someone else's credential, so
//!   a request with only that gets the bare 401 challenge. The scheme alone (`Bearer`) is
//!   malformed. Without a configured scheme the whole (trimmed) value is the token.
//! - Query: the first `?` splits the path; parameters are `&`-separated, names and values are
//!   percent-decoded (`+` is kept literally: tokens never contain spaces). Every occurrence of
//!   the parameter is a candidate.
//! - Cookie: every `Cookie` header, `;`-separated pairs, exact name match, value optionally in
//!   double quotes (RFC 6265 §4.1.1). Every occurrence is a candidate.
//! - Empty values are not candidates. Several candidates must all be identical, otherwise
//!   [`AuthError::ConflictingTokens`] (RFC 6750 §2 forbids several methods; identical copies
//!   from e.g. a header and a cookie set by the same client are tolerated).
//! - Every candidate is checked, in this order: size (before any copy) → charset (token68:
//!   `A-Z a-z 0-9 - . _ ~ + /` then `=` padding) → agreement. The first failure wins.

use crate::config::TokenLocation;
use crate::reject::AuthError;
use std::borrow::Cow;

/// The parts of a request where a token may be, as raw bytes from the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCredentials<'a> {
    /// Every value of the configured token header (empty when the header is absent).
    pub header_values: Vec<&'a [u8]>,
    /// The request path including the query (`:path`).
    pub path: Option<&'a [u8]>,
    /// Every `Cookie` header value.
    pub cookie_headers: Vec<&'a [u8]>,
}

/// The token, borrowed from the request when no decoding was needed.
pub fn extract<'a>(
    loc: &TokenLocation,
    req: &RequestCredentials<'a>,
    max_token_bytes: usize,
) -> Result<Cow<'a, str>, AuthError> {
    let mut candidates: Vec<Cow<'a, [u8]>> = Vec::new();
    if loc.header.is_some() {
        for value in &req.header_values {
            if let Some(token) = from_header(value, loc.scheme.as_deref())? {
                candidates.push(Cow::Borrowed(token));
            }
        }
    }
    if let (Some(name), Some(path)) = (loc.query_param.as_deref(), req.path) {
        from_query(path, name, max_token_bytes, &mut candidates)?;
    }
    if let Some(name) = loc.cookie.as_deref() {
        for header in &req.cookie_headers {
            from_cookie(header, name, &mut candidates);
        }
    }

    for c in &candidates {
        if c.len() > max_token_bytes {
            return Err(AuthError::TokenTooLarge);
        }
        if !is_token68(c) {
            return Err(AuthError::Malformed);
        }
    }
    let mut iter = candidates.into_iter();
    let first = iter.next().ok_or(AuthError::MissingToken)?;
    if iter.any(|c| c != first) {
        return Err(AuthError::ConflictingTokens);
    }
    // token68 bytes are ASCII, so these conversions cannot fail.
    match first {
        Cow::Borrowed(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|_| AuthError::Malformed),
        Cow::Owned(v) => String::from_utf8(v)
            .map(Cow::Owned)
            .map_err(|_| AuthError::Malformed),
    }
}

/// RFC 7235 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(b: &[u8]) -> bool {
    let body_len = b.len() - b.iter().rev().take_while(|&&c| c == b'=').count();
    let (body, _) = b.split_at(body_len);
    // One table load per byte, no early exit: every request's token is checked whole.
    !body.is_empty()
        && body.iter().fold(true, |ok, &c| {
            ok & TOKEN68_BODY.get(usize::from(c)).copied().unwrap_or(false)
        })
}

/// Bytes allowed in a `token68` before its `=` padding.
#[allow(clippy::indexing_slicing)] // `c < 256` indexes a `[_; 256]`, evaluated at compile time
const TOKEN68_BODY: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        c += 1;
    }
    table
};

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if *first == b' ' || *first == b'\t' {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if *last == b' ' || *last == b'\t' {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// The token in one header value: `Ok(None)` when the value is empty or carries another scheme.
/// Whether a token header's `value` holds a token candidate with `scheme` (as [`extract`] reads
/// it): when extraction succeeded, such a value held the verified token.
pub fn carries_token(value: &[u8], scheme: Option<&str>) -> bool {
    matches!(from_header(value, scheme), Ok(Some(_)))
}

fn from_header<'a>(value: &'a [u8], scheme: Option<&str>) -> Result<Option<&'a [u8]>, AuthError> {
    let value = trim(value);
    if value.is_empty() {
        return Ok(None);
    }
    let Some(scheme) = scheme else {
        return Ok(Some(value));
    };
    let scheme = scheme.as_bytes();
    let Some(head) = value.get(..scheme.len()) else {
        return Ok(None);
    };
    if !head.eq_ignore_ascii_case(scheme) {
        return Ok(None);
    }
    let rest = value.get(scheme.len()..).unwrap_or_default();
    match rest.first() {
        // The scheme alone: a Bearer credential without a token.
        None => Err(AuthError::Malformed),
        Some(b' ') => {
            let token = trim(rest);
            if token.is_empty() {
                Err(AuthError::Malformed)
            } else {
                Ok(Some(token))
            }
        }
        // `BearerX…` is another scheme; `Bearer\t…` is not RFC 7235 syntax.
        Some(b'\t') => Err(AuthError::Malformed),
        Some(_) => Ok(None),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Length once percent-decoded, without decoding (malformed escapes count as written).
fn decoded_len(s: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        let escaped = s.get(i) == Some(&b'%')
            && s.get(i + 1).copied().and_then(hex).is_some()
            && s.get(i + 2).copied().and_then(hex).is_some();
        i += if escaped { 3 } else { 1 };
        n += 1;
    }
    n
}

/// Percent-decodes; a `%` not followed by two hex digits is kept as is (and later refused by
/// the token68 check).
fn percent_decode(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

fn from_query<'a>(
    path: &'a [u8],
    name: &str,
    max_token_bytes: usize,
    out: &mut Vec<Cow<'a, [u8]>>,
) -> Result<(), AuthError> {
    let Some(q) = path.iter().position(|&b| b == b'?') else {
        return Ok(());
    };
    let query = path.get(q + 1..).unwrap_or_default();
    // A fragment never reaches a server, but do not read into one if a client sends it.
    let query = query.split(|&b| b == b'#').next().unwrap_or_default();
    for pair in query.split(|&b| b == b'&') {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &b""[..]),
        };
        if percent_decode(k).as_ref() != name.as_bytes() || v.is_empty() {
            continue;
        }
        // Checked before decoding, so an oversized value is never copied.
        if decoded_len(v) > max_token_bytes {
            return Err(AuthError::TokenTooLarge);
        }
        out.push(percent_decode(v));
    }
    Ok(())
}

fn from_cookie<'a>(header: &'a [u8], name: &str, out: &mut Vec<Cow<'a, [u8]>>) {
    for pair in header.split(|&b| b == b';') {
        let pair = trim(pair);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (k, v) = (
            trim(pair.get(..eq).unwrap_or_default()),
            trim(pair.get(eq + 1..).unwrap_or_default()),
        );
        if k != name.as_bytes() {
            continue;
        }
        let v = match v {
            [b'"', inner @ .., b'"'] => inner,
            other => other,
        };
        if !v.is_empty() {
            out.push(Cow::Borrowed(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl";
    const OTHER: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MiJ9.c2lnbmF0dXJl";

    fn bearer() -> TokenLocation {
        TokenLocation::default()
    }

    fn all_locations() -> TokenLocation {
        TokenLocation {
            query_param: Some("access_token".into()),
            cookie: Some("session".into()),
            ..TokenLocation::default()
        }
    }

    fn headers<'a>(values: &[&'a str]) -> RequestCredentials<'a> {
        RequestCredentials {
            header_values: values.iter().map(|v| v.as_bytes()).collect(),
            ..Default::default()
        }
    }

    fn run(loc: &TokenLocation, req: &RequestCredentials<'_>) -> Result<String, AuthError> {
        extract(loc, req, 8192).map(|c| c.into_owned())
    }

    #[test]
    fn reads_a_bearer_token_without_copying() {
        let value = format!("Bearer {JWT}");
        let req = headers(&[&value]);
        let got = extract(&bearer(), &req, 8192).unwrap();
        assert!(matches!(got, Cow::Borrowed(_)));
        assert_eq!(got, JWT);
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_tolerated() {
        for v in [
            format!("bearer {JWT}"),
            format!("BEARER {JWT}"),
            format!("Bearer   {JWT}"),
            format!("  Bearer {JWT} \t"),
        ] {
            assert_eq!(run(&bearer(), &headers(&[&v])), Ok(JWT.into()), "{v}");
        }
    }

    #[test]
    fn missing_token_when_nothing_usable_is_present() {
        for values in [
            vec![],
            vec![""],
            vec!["   "],
            vec!["Basic dXNlcjpwdw=="],
            vec!["BearerX abc"],
            vec!["Bear"],
        ] {
            assert_eq!(
                run(&bearer(), &headers(&values)),
                Err(AuthError::MissingToken),
                "{values:?}"
            );
        }
        let req = RequestCredentials {
            path: Some(b"/orders?x=1"),
            cookie_headers: vec![b"a=b"],
            ..Default::default()
        };
        assert_eq!(run(&all_locations(), &req), Err(AuthError::MissingToken));
    }

    #[test]
    fn malformed_header_values_are_refused() {
        for v in [
            "Bearer".to_string(),
            "Bearer    ".to_string(),
            format!("Bearer\t{JWT}"),
            format!("Bearer {JWT} extra"),
            format!("Bearer {JWT},{JWT}"),
            "Bearer a\u{7f}b".to_string(),
            "Bearer jos\u{e9}".to_string(),
            "Bearer a\"b".to_string(),
            "Bearer ==".to_string(),
            "Bearer a=b".to_string(),
        ] {
            assert_eq!(
                run(&bearer(), &headers(&[&v])),
                Err(AuthError::Malformed),
                "{v:?}"
            );
        }
        let raw: &[u8] = b"Bearer \xff\xfe";
        let req = RequestCredentials {
            header_values: vec![raw],
            ..Default::default()
        };
        assert_eq!(run(&bearer(), &req), Err(AuthError::Malformed));
    }

    #[test]
    fn token68_padding_is_allowed() {
        let v = "Bearer abc+/def==";
        assert_eq!(run(&bearer(), &headers(&[v])), Ok("abc+/def==".into()));
    }

    #[test]
    fn header_without_scheme_is_the_bare_token() {
        let loc = TokenLocation {
            header: Some("x-token".into()),
            scheme: None,
            ..TokenLocation::default()
        };
        assert_eq!(run(&loc, &headers(&[JWT])), Ok(JWT.into()));
        assert_eq!(
            run(&loc, &headers(&[&format!("Bearer {JWT}")])),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn oversize_tokens_are_refused() {
        let big = "a".repeat(300);
        let v = format!("Bearer {big}");
        assert_eq!(
            extract(&bearer(), &headers(&[&v]), 299).map(|c| c.into_owned()),
            Err(AuthError::TokenTooLarge)
        );
        assert_eq!(
            extract(&bearer(), &headers(&[&v]), 300).map(|c| c.into_owned()),
            Ok(big.clone())
        );
        // Size is checked before the charset.
        let junk = format!("Bearer {}", "\u{7f}".repeat(400));
        assert_eq!(
            extract(&bearer(), &headers(&[&junk]), 300).map(|c| c.into_owned()),
            Err(AuthError::TokenTooLarge)
        );
        let path = format!("/x?access_token={}", "%41".repeat(301));
        let req = RequestCredentials {
            path: Some(path.as_bytes()),
            ..Default::default()
        };
        assert_eq!(
            extract(&all_locations(), &req, 300).map(|c| c.into_owned()),
            Err(AuthError::TokenTooLarge)
        );
        let path = format!("/x?access_token={}", "%41".repeat(300));
        let req = RequestCredentials {
            path: Some(path.as_bytes()),
            ..Default::default()
        };
        assert_eq!(
            extract(&all_locations(), &req, 300).map(|c| c.into_owned()),
            Ok("A".repeat(300))
        );
    }

    #[test]
    fn reads_and_decodes_the_query_parameter() {
        let path = format!("/orders?a=1&access_token={}&b", JWT.replace('.', "%2E"));
        let req = RequestCredentials {
            path: Some(path.as_bytes()),
            ..Default::default()
        };
        let loc = TokenLocation {
            header: None,
            ..all_locations()
        };
        assert_eq!(run(&loc, &req), Ok(JWT.into()));
        // Other parameters with similar names do not count.
        let req = RequestCredentials {
            path: Some(b"/orders?xaccess_token=abc&access_token_=def&access_token="),
            ..Default::default()
        };
        assert_eq!(run(&loc, &req), Err(AuthError::MissingToken));
        let req = RequestCredentials {
            path: Some(b"/orders?access_token=a%2"),
            ..Default::default()
        };
        assert_eq!(run(&loc, &req), Err(AuthError::Malformed));
        let req = RequestCredentials {
            path: Some(b"/orders?access_token=a%20b"),
            ..Default::default()
        };
        assert_eq!(run(&loc, &req), Err(AuthError::Malformed));
        let req = RequestCredentials {
            path: Some(b"/orders/access_token=abc"),
            ..Default::default()
        };
        assert_eq!(run(&loc, &req), Err(AuthError::MissingToken));
    }

    #[test]
    fn reads_the_cookie() {
        let loc = TokenLocation {
            header: None,
            ..all_locations()
        };
        for cookie in [
            format!("session={JWT}"),
            format!("a=b; session={JWT}; c=d"),
            format!("a=b;session=\"{JWT}\""),
            format!("xsession=zzz; session = {JWT}"),
        ] {
            let req = RequestCredentials {
                cookie_headers: vec![cookie.as_bytes()],
                ..Default::default()
            };
            assert_eq!(run(&loc, &req), Ok(JWT.into()), "{cookie}");
        }
        let second = format!("session={JWT}");
        let req = RequestCredentials {
            cookie_headers: vec![b"a=b", second.as_bytes()],
            ..Default::default()
        };
        assert_eq!(run(&loc, &req), Ok(JWT.into()));
        let req = RequestCredentials {
            cookie_headers: vec![b"Session=abc; session"],
            ..Default::default()
        };
        assert_eq!(run(&loc, &req), Err(AuthError::MissingToken));
    }

    #[test]
    fn identical_copies_are_accepted_different_ones_conflict() {
        let h = format!("Bearer {JWT}");
        let path = format!("/x?access_token={JWT}");
        let cookie = format!("session={JWT}");
        let req = RequestCredentials {
            header_values: vec![h.as_bytes(), h.as_bytes()],
            path: Some(path.as_bytes()),
            cookie_headers: vec![cookie.as_bytes()],
        };
        assert_eq!(run(&all_locations(), &req), Ok(JWT.into()));

        let other_cookie = format!("session={OTHER}");
        let req = RequestCredentials {
            header_values: vec![h.as_bytes()],
            path: None,
            cookie_headers: vec![other_cookie.as_bytes()],
        };
        assert_eq!(
            run(&all_locations(), &req),
            Err(AuthError::ConflictingTokens)
        );
        let h2 = format!("Bearer {OTHER}");
        assert_eq!(
            run(&bearer(), &headers(&[&h, &h2])),
            Err(AuthError::ConflictingTokens)
        );
        // A Basic credential next to a bearer token is not a conflict.
        assert_eq!(
            run(&bearer(), &headers(&["Basic dXNlcjpwdw==", &h])),
            Ok(JWT.into())
        );
    }

    #[test]
    fn unconfigured_locations_are_ignored() {
        let path = format!("/x?access_token={OTHER}");
        let cookie = format!("session={OTHER}");
        let h = format!("Bearer {JWT}");
        let req = RequestCredentials {
            header_values: vec![h.as_bytes()],
            path: Some(path.as_bytes()),
            cookie_headers: vec![cookie.as_bytes()],
        };
        assert_eq!(run(&bearer(), &req), Ok(JWT.into()));
        let loc = TokenLocation {
            header: None,
            scheme: None,
            query_param: Some("access_token".into()),
            cookie: None,
        };
        assert_eq!(run(&loc, &req), Ok(OTHER.into()));
    }
}
