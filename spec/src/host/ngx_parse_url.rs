//! How Kong's engine reads the first argument of `dispatch_http_call`: ngx_wasm_module
//! (`ngx_wasm_socket_tcp_init`, src/common/ngx_wasm_socket_tcp.c:138-229 at 9136e463) hands it to
//! nginx's `ngx_parse_url` with no URI part and no name resolution (src/core/ngx_inet.c:684-1110
//! at release-1.25.3). What that refuses does not come back to the filter as a status: in a
//! request it traps (`ngx_http_proxy_wasm_dispatch_err`, ngx_http_proxy_wasm_dispatch.c:148-159).
//! The rules, as nginx applies them (spec/README.md, "Dispatch targets"):
//!
//! - `unix:` in any case, then a path (relative paths too; `:` is part of it): a Unix socket.
//!   An empty path, or one of 108 bytes or more, is refused.
//! - `[`: an IPv6 address up to `]`, then nothing or `:port`; anything else after `]` is refused,
//!   and so is an address nginx's own reader does not take (see [`ipv6`]).
//! - Otherwise `/` or `?` anywhere is refused; the port is everything after the first `:`; the
//!   host before it must not be empty; an IPv4 address is used as such, any other text is a name
//!   for the resolver (nginx checks none of its characters).
//!
//! Ports are decimal digits only, 1-65535; no port means 443 with TLS, 80 without.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// `sizeof(struct sockaddr_un.sun_path)` on Linux: the path and its terminating NUL must fit.
const SUN_PATH: usize = 108;

/// What a target names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Unix(PathBuf),
    V4(Ipv4Addr, u16),
    V6(Ipv6Addr, u16),
    /// A name for the resolver, as written.
    Name(String, u16),
}

/// Reads `target` as the engine does; `Err` is nginx's own message (`u->err`).
pub fn parse(target: &str, tls: bool) -> Result<Parsed, &'static str> {
    let default_port = if tls { 443 } else { 80 };
    let is_unix = target
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("unix:"));
    if is_unix {
        let path = target.get(5..).unwrap_or_default();
        if path.is_empty() {
            return Err("no path in the unix domain socket");
        }
        if path.len() + 1 > SUN_PATH {
            return Err("too long path in the unix domain socket");
        }
        return Ok(Parsed::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = target.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("invalid host")?;
        if after.contains('/') {
            return Err("invalid host");
        }
        let port = match after {
            "" => default_port,
            p => port(p.strip_prefix(':').ok_or("invalid host")?)?,
        };
        if inner.is_empty() {
            return Err("no host");
        }
        let addr = ipv6(inner).ok_or("invalid IPv6 address")?;
        return Ok(Parsed::V6(addr, port));
    }
    if target.contains(['/', '?']) {
        return Err("invalid host");
    }
    let (host, port) = match target.split_once(':') {
        Some((host, p)) => (host, port(p)?),
        None => (target, default_port),
    };
    if host.is_empty() {
        return Err("no host");
    }
    Ok(match ipv4(host) {
        Some(addr) => Parsed::V4(addr, port),
        None => Parsed::Name(host.to_string(), port),
    })
}

/// `ngx_atoi` then 1-65535.
fn port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid port");
    }
    match text.parse::<u32>() {
        Ok(n @ 1..=65535) => u16::try_from(n).map_err(|_| "invalid port"),
        _ => Err("invalid port"),
    }
}

/// nginx's IPv4 reader (`ngx_inet_addr`): digits and exactly three dots, each part at most 255;
/// leading zeros and empty parts (read as 0) are taken.
pub fn ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(parts) {
        let mut value = 0u32;
        for b in part.bytes() {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
            if value > 255 {
                return None;
            }
        }
        *octet = u8::try_from(value).ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

/// nginx's IPv6 reader (`ngx_inet6_addr`, ngx_inet.c:65-177), which differs from the RFC text
/// forms at the edges: one leading `:` is skipped (`:1::` is `1::`); a trailing `::` writes a
/// zero group of its own, so `::` for the last of eight groups (`1:2:3:4:5:6:7::`) is refused;
/// groups of 1-4 hex digits; a dotted IPv4 (as [`ipv4`] reads it) may end the address after a
/// `:` when two groups are left for it; no zone id.
pub fn ipv6(text: &str) -> Option<Ipv6Addr> {
    let text = text.strip_prefix(':').unwrap_or(text);
    let mut groups: Vec<u16> = Vec::with_capacity(8);
    let mut gap: Option<usize> = None;
    let mut after_colon: Option<usize> = None;
    let mut word: u32 = 0;
    let mut digits = 0;
    for (i, c) in text.char_indices() {
        if c == ':' {
            if digits > 0 {
                groups.push(u16::try_from(word).ok()?);
                if groups.len() == 8 {
                    return None;
                }
            } else if gap.is_none() {
                gap = Some(groups.len());
            } else {
                return None;
            }
            after_colon = Some(i + 1);
            word = 0;
            digits = 0;
            continue;
        }
        if c == '.' && digits > 0 {
            let start = after_colon?;
            if 8 - groups.len() < 2 {
                return None;
            }
            let v4 = u32::from(ipv4(text.get(start..)?)?);
            groups.push(u16::try_from(v4 >> 16).ok()?);
            word = v4 & 0xffff;
            break;
        }
        digits += 1;
        if digits > 4 {
            return None;
        }
        word = word * 16 + c.to_digit(16)?;
    }
    if digits == 0 && gap.is_none() {
        return None;
    }
    groups.push(u16::try_from(word).ok()?);
    let missing = 8 - groups.len();
    match (missing, gap) {
        (0, None) => {}
        (1.., Some(at)) => {
            let tail = groups.split_off(at);
            groups.extend(std::iter::repeat_n(0, missing));
            groups.extend(tail);
        }
        _ => return None,
    }
    let segments: [u16; 8] = groups.try_into().ok()?;
    Some(Ipv6Addr::from(segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Option<String> {
        ipv6(s).map(|a| a.to_string())
    }

    #[test]
    fn ipv6_reads_as_nginx_does() {
        for (text, addr) in [
            ("::1", "::1"),
            ("::", "::"),
            ("1::", "1::"),
            (":1::", "1::"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
            ("1:2:3::5:6:7:8", "1:2:3:0:5:6:7:8"),
            ("FE80::1", "fe80::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::ffff:01.2.3.4", "::ffff:1.2.3.4"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        ] {
            assert_eq!(v6(text).as_deref(), Some(addr), "{text}");
        }
        for bad in [
            "",
            ".",
            ":",
            ":::",
            "1.2.3.4",
            ":1.2.3.4",
            "12345::",
            "1:2:3:4:5:6:7::",
            "1:2:3:4:5:6:7:8:",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "::1%eth0",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::a.1.2.3",
            "::1.2.3",
            "::256.1.1.1",
            "g::",
        ] {
            assert_eq!(v6(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets_read_as_ngx_parse_url_does() {
        assert_eq!(parse("unix:80", false), Ok(Parsed::Unix("80".into())));
        assert_eq!(parse("UNIX:/s", false), Ok(Parsed::Unix("/s".into())));
        assert_eq!(
            parse("Unix:", false),
            Err("no path in the unix domain socket")
        );
        assert_eq!(parse("unix", false), Ok(Parsed::Name("unix".into(), 80)));
        assert_eq!(
            parse("[::1]", true),
            Ok(Parsed::V6(Ipv6Addr::LOCALHOST, 443))
        );
        assert_eq!(
            parse("010.0.0.1:8080", false),
            Ok(Parsed::V4(Ipv4Addr::new(10, 0, 0, 1), 8080))
        );
        assert_eq!(parse("a b", false), Ok(Parsed::Name("a b".into(), 80)));
        for (bad, err) in [
            ("[.]", "invalid IPv6 address"),
            ("[:]", "invalid IPv6 address"),
            ("[1.2.3.4]", "invalid IPv6 address"),
            ("[12345::]", "invalid IPv6 address"),
            ("[]", "no host"),
            ("[::1", "invalid host"),
            ("[::1]x", "invalid host"),
            ("[::1]/x", "invalid host"),
            ("[::1]:", "invalid port"),
            ("http://x", "invalid host"),
            ("x?y", "invalid host"),
            ("x:y", "invalid port"),
            ("x:0", "invalid port"),
            ("x:65536", "invalid port"),
            ("a:b:80", "invalid port"),
            ("", "no host"),
            (":80", "no host"),
        ] {
            assert_eq!(parse(bad, false), Err(err), "{bad}");
        }
    }
}
