//! The small subset of URLs the filter calls out to: `http(s)://host[:port][/path][?query]`,
//! and how each becomes a `dispatch_http_call` target and pseudo-headers.
//!
//! Every host goes through one check, [`check_host`], because Kong's engine hands the target to
//! nginx's `ngx_parse_url`, and a target that refuses does not come back as an error status: it
//! traps the instance, and a trap inside `on_http_call_response` proxies the request unverified.
//! So a URL whose host the engine could not parse is no URL here, whether it was configured
//! (a config error naming the field) or learned from the network (a discovery document's
//! `jwks_uri`: the bad-document path, 503).

use std::fmt;
use std::net::Ipv6Addr;

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
    /// A bracketed host that is not an IPv6 address both Rust and nginx read.
    Ipv6,
    /// `unix`: nginx reads `unix:...` as the path of a local Unix socket.
    UnixHost,
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
            UrlError::Ipv6 => "bracketed host is not an IPv6 address",
            UrlError::UnixHost => "host unix names a local socket on Kong's engine",
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

/// Splits `host[:port]`; the host passes [`check_host`], the port is 1-65535.
pub fn parse_authority(authority: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let end = v6.find(']').ok_or(UrlError::Host)?;
            let (host, after) = authority.split_at_checked(end + 2).ok_or(UrlError::Host)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(UrlError::Port)?),
            };
            (host, port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    check_host(host)?;
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
    Ok((host.to_string(), port))
}

/// The one check of a callout host, as written in a URL or a `host[:port]` setting: a DNS name
/// of letters, digits, `-`, `.` and `_`; an IPv4 address (a name of those characters too); or
/// `[v6]`. That is less than `ngx_parse_url` takes (any name without `/`, `?` or `:`) and never
/// what it refuses or reads as a Unix socket (spec/README.md, "Dispatch targets").
fn check_host(host: &str) -> Result<(), UrlError> {
    if host.is_empty() || host.len() > 253 {
        return Err(UrlError::Host);
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(UrlError::Host)?;
        return if ipv6_ok(inner) {
            Ok(())
        } else {
            Err(UrlError::Ipv6)
        };
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(UrlError::Host);
    }
    // The target would be `unix:<port>`, which `ngx_parse_url` takes for a socket path.
    if host.eq_ignore_ascii_case("unix") {
        return Err(UrlError::UnixHost);
    }
    Ok(())
}

/// An IPv6 address in a form both Rust's reader and nginx's (`ngx_inet6_addr`) take. Rust's
/// takes no zone id (`%eth0`) and no IPv4 where nginx would refuse one; nginx also refuses `::`
/// standing for the last of eight groups (`1:2:3:4:5:6:7::`), which Rust takes.
fn ipv6_ok(inner: &str) -> bool {
    inner.parse::<Ipv6Addr>().is_ok() && !(inner.ends_with("::") && inner.matches(':').count() == 8)
}

/// Whether `target` (the first argument of `dispatch_http_call`: `host[:port]`) passes the same
/// check as every URL's host: the last guard before the host, for a target built elsewhere.
pub fn dispatch_target_ok(target: &str) -> bool {
    parse_authority(target).is_ok()
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
    fn dispatch_targets_accept_names_ipv4_and_real_ipv6() {
        for good in [
            "idp",
            "idp:8080",
            "mock_idp.internal:1",
            "127.0.0.1:65535",
            "unix.example.com:80",
            "unixsocket",
            "[::1]",
            "[::1]:443",
            "[::]",
            "[FE80::1]",
            "[::ffff:1.2.3.4]:80",
            "[1:2:3:4:5:6:7:8]",
            "[::2:3:4:5:6:7:8]",
            "[1:2:3::5:6:7:8]",
            "[1::]",
        ] {
            assert!(dispatch_target_ok(good), "{good}");
        }
    }

    #[test]
    fn dispatch_targets_refuse_what_ngx_parse_url_refuses_or_sends_to_a_socket() {
        for bad in [
            "[.]",
            "[:]",
            "[1.2.3.4]",
            "[12345::]",
            "[:::]",
            "[]",
            "[::1%eth0]",
            "[fe80::1%25eth0]:80",
            "[1:2:3:4:5:6:7::]",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1]:0",
            "[::1]:65536",
            "unix",
            "unix:80",
            "UNIX:80",
            "Unix",
            "unix:/tmp/s.sock",
            "",
            ":80",
            "idp:",
            "idp:0",
            "idp:65536",
            "idp:8o",
            "a:b:80",
            "a b",
            "a/b",
            "a?b",
            "a@b",
            "a%b",
        ] {
            assert!(!dispatch_target_ok(bad), "{bad}");
        }
    }

    #[test]
    fn urls_with_hosts_the_engine_cannot_take_are_refused() {
        for (url, e) in [
            ("http://[.]/keys", UrlError::Ipv6),
            ("http://[:]/keys", UrlError::Ipv6),
            ("http://[1.2.3.4]/keys", UrlError::Ipv6),
            ("http://[12345::]/keys", UrlError::Ipv6),
            ("https://[::1%eth0]:8443/", UrlError::Ipv6),
            ("http://unix:80/keys", UrlError::UnixHost),
            ("http://UNIX/keys", UrlError::UnixHost),
        ] {
            assert_eq!(HttpUrl::parse(url), Err(e), "{url}");
        }
    }

    #[test]
    fn every_parsed_url_gives_a_target_that_passes_the_check() {
        for url in [
            "http://idp/x",
            "https://[::1]/",
            "http://10.0.0.1:8080?q",
            "https://a.run.app",
        ] {
            let target = HttpUrl::parse(url).unwrap().dispatch_target();
            assert!(dispatch_target_ok(&target), "{url} -> {target}");
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
