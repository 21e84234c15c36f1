//! The small subset of URLs the filter calls out to: `http(s)://host[:port][/path][?query]`,
//! and how each becomes a `dispatch_http_call` target and pseudo-headers.

use std::fmt;

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed absolute URL. Userinfo, fragments, whitespace and control bytes are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: Scheme,
    /// Host as written: a DNS name, an IPv4 address, or `[v6]` with brackets.
    pub host: String,
    pub port: Option<u16>,
    /// Always starts with `/`; includes the query.
    pub path_and_query: String,
}

/// Why a URL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlError {
    Scheme,
    Host,
    Port,
    Characters,
    Userinfo,
    Fragment,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => "scheme must be http or https",
            UrlError::Host => "missing or invalid host",
            UrlError::Port => "invalid port",
            UrlError::Characters => "contains whitespace or control characters",
            UrlError::Userinfo => "userinfo is not allowed",
            UrlError::Fragment => "fragment is not allowed",
        })
    }
}

impl HttpUrl {
    pub fn parse(input: &str) -> Result<HttpUrl, UrlError> {
        if input.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::Characters);
        }
        let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(input, "https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(input, "http://") {
            (Scheme::Http, rest)
        } else {
            return Err(UrlError::Scheme);
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::Userinfo);
        }
        let (host, port) = parse_authority(authority)?;
        let path_and_query = match tail.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{tail}"),
            Some(_) => tail.to_string(),
        };
        Ok(HttpUrl {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// The `:authority` / `Host` value: host, plus the port when one was written.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// `host:port` for `dispatch_http_call`, with the scheme's default port filled in.
    pub fn dispatch_target(&self) -> String {
        format!(
            "{}:{}",
            self.host,
            self.port.unwrap_or(self.scheme.default_port())
        )
    }

    /// This URL with its path and query replaced.
    pub fn with_path_and_query(&self, path_and_query: &str) -> HttpUrl {
        HttpUrl {
            path_and_query: path_and_query.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path_and_query
        )
    }
}

fn strip_prefix_ignore_case<'a>(input: &'a str, prefix: &str) -> Option<&'a str> {
    let head = input.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| input.get(prefix.len()..))
        .flatten()
}

/// Splits `host[:port]`, accepting `[v6]` hosts and DNS names / IPv4 of sane characters.
pub fn parse_authority(authority: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or(UrlError::Host)?;
        let (inner, after) = v6.split_at(end);
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UrlError::Host);
        }
        let after = after.get(1..).unwrap_or("");
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::Port)?),
        };
        (format!("[{inner}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !host_ok {
        return Err(UrlError::Host);
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(UrlError::Port),
                Ok(n) => Some(n),
            }
        }
        Some(_) => return Err(UrlError::Port),
    };
    Ok((host, port))
}

/// Percent-encodes every byte but RFC 3986's unreserved ones (`A-Z a-z 0-9 - . _ ~`): query
/// components, and SigV4's canonical URI and query (`google/federation/sigv4.rs`).
pub fn encode_query_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_with_default_port() {
        let u =
            HttpUrl::parse("https://idp.example.com/realms/prod/.well-known/openid-configuration")
                .unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.authority(), "idp.example.com");
        assert_eq!(u.dispatch_target(), "idp.example.com:443");
        assert_eq!(
            u.path_and_query,
            "/realms/prod/.well-known/openid-configuration"
        );
    }

    #[test]
    fn parses_http_with_port_and_query() {
        let u = HttpUrl::parse("http://mock-idp:9000?x=1").unwrap();
        assert_eq!(u.dispatch_target(), "mock-idp:9000");
        assert_eq!(u.authority(), "mock-idp:9000");
        assert_eq!(u.path_and_query, "/?x=1");
        assert_eq!(u.to_string(), "http://mock-idp:9000/?x=1");
    }

    #[test]
    fn parses_ipv6_hosts() {
        let u = HttpUrl::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(u.dispatch_target(), "[::1]:8080");
        assert_eq!(
            HttpUrl::parse("https://[fe80::1]/")
                .unwrap()
                .dispatch_target(),
            "[fe80::1]:443"
        );
    }

    #[test]
    fn refuses_hostile_urls() {
        for bad in [
            "ftp://x/",
            "https://",
            "https:///path",
            "https://user:pw@idp/",
            "https://idp/#frag",
            "https://idp:0/",
            "https://idp:99999/",
            "https://idp:/",
            "https://id p/",
            "https://idp/\r\nX: y",
            "https://[zz]/",
            "https://[::1/",
            "https://idp/%00\u{7f}",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_query_components() {
        assert_eq!(
            encode_query_component("https://orders-abc.a.run.app/x y"),
            "https%3A%2F%2Forders-abc.a.run.app%2Fx%20y"
        );
    }
}
