//! A tiny blocking HTTP/1.1 client for tests (one request per connection, with timeouts), plus URL
//! and `application/x-www-form-urlencoded` helpers shared with the mock servers.

use crate::http1;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Default upper bound for connect, write and read.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Refuse bodies larger than this (the mocks' `huge` fault sends 5 MB).
const MAX_BODY: usize = 64 << 20;

/// Why a request got no answer. `Refused`, `Timeout` and `Closed` are what fault tests look for.
#[derive(Debug)]
pub enum HttpError {
    /// Connection refused: nothing listens.
    Refused,
    /// No (complete) answer within the timeout.
    Timeout,
    /// The server closed or reset the connection before a complete response.
    Closed(String),
    /// Anything else (bad URL, DNS, malformed response).
    Other(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Refused => write!(f, "connection refused"),
            HttpError::Timeout => write!(f, "timed out"),
            HttpError::Closed(why) => {
                write!(f, "connection closed without a complete response: {why}")
            }
            HttpError::Other(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for HttpError {}

fn io_error(e: std::io::Error) -> HttpError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => HttpError::Refused,
        TimedOut | WouldBlock => HttpError::Timeout,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            HttpError::Closed(e.to_string())
        }
        _ => HttpError::Other(e.to_string()),
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::text_header(&self.headers, name)
    }
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            anyhow::anyhow!(
                "status {} body is not JSON ({e}): {:.200}",
                self.status,
                self.text()
            )
        })
    }
}

/// `http://host[:port]/path?query` split up. Only `http` is supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// `host` or `host:port` as written (for the `Host` header).
    pub authority: String,
    /// Path and query, at least `/`.
    pub target: String,
}

/// Parses an `http://` URL.
pub fn parse_url(url: &str) -> Result<HttpUrl, HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Other(format!("not an http:// URL: {url}")))?;
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes().get(i) == Some(&b'?') => {
            (&rest[..i], format!("/{}", &rest[i..]))
        }
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (
            h,
            p.parse()
                .map_err(|_| HttpError::Other(format!("bad port in {url}")))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(HttpError::Other(format!("no host in {url}")));
    }
    Ok(HttpUrl {
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        authority: authority.to_string(),
        target,
    })
}

/// Percent-encodes for `application/x-www-form-urlencoded` (and query strings).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `application/x-www-form-urlencoded` (or a query string) into pairs, in order.
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes.get(i) {
                Some(b'+') => out.push(b' '),
                Some(b'%') => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                Some(b) => out.push(*b),
                None => break,
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, HttpError> {
    let u = parse_url(url)?;
    let addrs: Vec<_> = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .map_err(io_error)?
        .collect();
    let addr = addrs
        .first()
        .ok_or_else(|| HttpError::Other(format!("{} does not resolve", u.host)))?;
    let mut stream = TcpStream::connect_timeout(addr, timeout).map_err(io_error)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_error)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_error)?;
    let mut head = format!("{method} {} HTTP/1.1\r\n", u.target);
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        head.push_str(&format!("Host: {}\r\n", u.authority));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).map_err(io_error)?;
    stream.write_all(body).map_err(io_error)?;
    read_response(&mut stream, method == "HEAD")
}

fn read_response(stream: &mut TcpStream, head_only: bool) -> Result<Response, HttpError> {
    let (head, mut rest) = http1::read_response_head(stream, 1 << 20).map_err(|e| match e {
        http1::ReadError::Io(e) => io_error(e),
        http1::ReadError::Closed(_) => HttpError::Closed(e.to_string()),
        http1::ReadError::TooLarge => HttpError::Other("response head over 1 MiB".into()),
        http1::ReadError::Parse(_) => HttpError::Other(e.to_string()),
    })?;
    let status = head.status;
    let no_body = http1::bodiless(status, head_only);
    let body = if no_body {
        Vec::new()
    } else if http1::is_chunked(&head.headers) {
        read_to_end(stream, &mut rest)?;
        dechunk(&rest)?
    } else if let Some(len) = http1::header(&head.headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| HttpError::Other(format!("bad content-length {len}")))?;
        if len > MAX_BODY {
            return Err(HttpError::Other(format!(
                "body of {len} bytes is too large"
            )));
        }
        let mut chunk = [0u8; 16384];
        while rest.len() < len {
            let n = stream.read(&mut chunk).map_err(io_error)?;
            if n == 0 {
                return Err(HttpError::Closed(format!(
                    "EOF after {} of {len} body bytes",
                    rest.len()
                )));
            }
            rest.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        rest.truncate(len);
        rest
    } else {
        read_to_end(stream, &mut rest)?;
        rest
    };
    let headers = http1::text_headers(head.headers);
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn read_to_end(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), HttpError> {
    let mut chunk = [0u8; 16384];
    loop {
        let n = stream.read(&mut chunk).map_err(io_error)?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() + n > MAX_BODY {
            return Err(HttpError::Other("body too large".into()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// A whole chunked body (read to its end) decoded.
fn dechunk(data: &[u8]) -> Result<Vec<u8>, HttpError> {
    let bad = |why: &str| HttpError::Closed(format!("bad chunked body: {why}"));
    http1::Chunked::default()
        .decode(data)
        .map_err(|_| bad("size"))?
        .ok_or_else(|| bad("eof"))
}

/// `GET url` with extra headers and the default timeout.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
    request("GET", url, headers, b"", DEFAULT_TIMEOUT)
}

/// `GET url` with a timeout.
pub fn get_timeout(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response, HttpError> {
    request("GET", url, headers, b"", timeout)
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &Value, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request(
        "POST",
        url,
        &all,
        body.to_string().as_bytes(),
        DEFAULT_TIMEOUT,
    )
}

/// `POST url` with a form body.
pub fn post_form(
    url: &str,
    pairs: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Result<Response, HttpError> {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(
        "POST",
        url,
        &all,
        form_encode(pairs).as_bytes(),
        DEFAULT_TIMEOUT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = parse_url("http://127.0.0.1:9000/realms/demo?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 9000, "/realms/demo?x=1")
        );
        let u = parse_url("http://mock-idp").unwrap();
        assert_eq!(
            (u.port, u.authority.as_str(), u.target.as_str()),
            (80, "mock-idp", "/")
        );
        assert_eq!(parse_url("http://h:1?q").unwrap().target, "/?q");
        assert!(parse_url("https://h/").is_err());
        assert!(parse_url("http://h:x/").is_err());
    }

    #[test]
    fn forms_round_trip() {
        let enc = form_encode(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("a b", "c&d=é"),
        ]);
        assert_eq!(
            enc,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&a+b=c%26d%3D%C3%A9"
        );
        let dec = form_decode(&enc);
        assert_eq!(dec[1], ("a b".to_string(), "c&d=é".to_string()));
        assert_eq!(
            form_decode("x&y=%zz&&z=%41"),
            vec![
                ("x".into(), "".into()),
                ("y".into(), "%zz".into()),
                ("z".into(), "A".into())
            ]
        );
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"3\r\nab").is_err());
    }
}
