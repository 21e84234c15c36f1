//! HTTP header names the filter may own: validated, lowercased, never a header that frames or
//! routes the request.

use std::fmt;

/// Headers the filter will never own: hop-by-hop (RFC 7230 §6.1), framing and routing headers.
const FORBIDDEN_HEADERS: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "host",
    "content-length",
    "content-type",
    "cookie",
];

/// A validated, lowercased HTTP header name (RFC 7230 token), never hop-by-hop, `host`,
/// `content-length` or a pseudo-header.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeaderName(String);

impl HeaderName {
    /// Parses and lowercases a header name. `authorization` is allowed here; whether a field
    /// may name it is decided by the field.
    pub fn parse(name: &str) -> Result<HeaderName, String> {
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.len() > 256 {
            return Err("is longer than 256 bytes".into());
        }
        if name.starts_with(':') {
            return Err("pseudo-headers cannot be set".into());
        }
        if !name.bytes().all(is_tchar) {
            return Err("is not a valid header name (RFC 7230 token characters only)".into());
        }
        let lower = name.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
            return Err(format!("`{lower}` is a reserved header"));
        }
        Ok(HeaderName(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 7230 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_lowercased_and_checked() {
        assert_eq!(
            HeaderName::parse("X-User-ID").unwrap().as_str(),
            "x-user-id"
        );
        for bad in [
            "",
            "a b",
            "a:b",
            ":authority",
            "Host",
            "Content-Length",
            "TE",
            "x\u{e9}",
            "a\r\n",
        ] {
            assert!(HeaderName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
