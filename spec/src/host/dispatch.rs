//! `dispatch_http_call` as ngx_wasm_module does it: the target is `host[:port]`, `[v6][:port]` or
//! `unix:path`, read as nginx's `ngx_parse_url` reads it (`ngx_parse_url.rs`); `:method` and
//! `:path` are required; `:authority` sets `Host` and TLS SNI; `:scheme: https` turns TLS on; one connection per call with `Connection: close`; the timeout
//! applies to connect, send and each read separately; response headers must fit in 8 KB.
//! Failures are reported with a `:dispatch_status` pseudo-header instead of `:status`.

use super::context::CallResult;
use super::ngx_parse_url::{self, Parsed};
use crate::http1;
use anyhow::{Context, Result};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head (status line + headers) accepted, like Kong's 8 KB buffer.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;
/// Timeout used when a filter passes 0.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a callout connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// A validated callout request.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub target: Target,
    /// The first argument as given (used as `Host` without `:authority`).
    pub raw_target: String,
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub tls: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// Parses the first argument of `dispatch_http_call` as the engine does (`ngx_parse_url.rs`).
/// `Err` is the engine's message, a trap in a request.
pub fn parse_target(raw: &str, tls: bool) -> Result<Target, String> {
    let parsed =
        ngx_parse_url::parse(raw, tls).map_err(|e| format!("dispatch failed: tcp socket - {e}"))?;
    Ok(match parsed {
        Parsed::Unix(path) => Target::Unix(path),
        Parsed::V4(addr, port) => Target::Tcp {
            host: addr.to_string(),
            port,
        },
        Parsed::V6(addr, port) => Target::Tcp {
            host: addr.to_string(),
            port,
        },
        Parsed::Name(host, port) => Target::Tcp { host, port },
    })
}

/// Builds the call from the filter's arguments. `Err` is a trap message.
pub fn build(
    raw_target: &str,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout_ms: u32,
) -> Result<CallSpec, String> {
    let mut method = String::new();
    let mut path = String::new();
    let mut authority = None;
    let mut tls = false;
    let mut regular = Vec::new();
    for (k, v) in headers {
        let value = String::from_utf8_lossy(&v).into_owned();
        match k.as_str() {
            ":method" => method = value,
            ":path" => path = value,
            ":authority" => authority = Some(value).filter(|a| !a.is_empty()),
            ":scheme" => tls = value == "https",
            k if k.starts_with(':') => {}
            k if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("connection") => {}
            _ => regular.push((k, v)),
        }
    }
    if method.is_empty() {
        return Err("dispatch failed: no :method".to_string());
    }
    if path.is_empty() {
        return Err("dispatch failed: no :path".to_string());
    }
    let target = parse_target(raw_target, tls)?;
    let timeout = if timeout_ms == 0 {
        DEFAULT_TIMEOUT
    } else {
        Duration::from_millis(timeout_ms.into())
    };
    Ok(CallSpec {
        target,
        raw_target: raw_target.to_string(),
        method,
        path,
        authority,
        tls,
        headers: regular,
        body,
        timeout,
    })
}

/// How callout host names are resolved.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// `--resolve HOST=IP` entries (the stand-in's `/etc/hosts`), keyed by lower-case host.
    pub hosts: HashMap<String, IpAddr>,
    /// `--resolve HOST:PORT=IP:PORT` entries: this exact host and port goes to another address
    /// (a port mapping, so that a fixed kong.yml can run against servers on random ports).
    pub host_ports: HashMap<(String, u16), SocketAddr>,
    /// `--lua-resolver`: root-context calls resolve like request calls.
    pub lua_resolver: bool,
    /// `--ca-file`: PEM bundle instead of the system CAs.
    pub ca_file: Option<PathBuf>,
}

/// Parses `HOST` or `HOST:PORT` (`[v6]:PORT` too) into a lower-case host without brackets.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (h.to_string(), port)
    } else if text.matches(':').count() > 1 {
        // A bare IPv6 address.
        (text.parse::<std::net::Ipv6Addr>().ok()?.to_string(), None)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().ok()?)),
            None => (text.to_string(), None),
        }
    };
    if host.is_empty() || port == Some(0) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

impl Resolver {
    /// Adds one `--resolve` entry: `HOST=IP`, `HOST:PORT=IP:PORT` or `HOST:PORT=IP` (same port).
    pub fn add_entry(&mut self, entry: &str) -> Result<(), String> {
        let usage = || {
            format!("--resolve {entry:?}: expected HOST=IP or HOST:PORT=IP:PORT (IPv6 in brackets)")
        };
        let (from, to) = entry.split_once('=').ok_or_else(usage)?;
        let (host, port) = split_host_port(from.trim()).ok_or_else(usage)?;
        let (ip, to_port) = split_host_port(to.trim()).ok_or_else(usage)?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("--resolve {entry:?}: {ip:?} is not an IP address"))?;
        match (port, to_port) {
            (None, None) => {
                self.hosts.insert(host, ip);
            }
            (Some(p), to_port) => {
                let addr = SocketAddr::new(ip, to_port.unwrap_or(p));
                self.host_ports.insert((host, p), addr);
            }
            (None, Some(_)) => {
                return Err(format!(
                    "--resolve {entry:?}: a target port needs a source port (HOST:PORT=IP:PORT)"
                ))
            }
        }
        Ok(())
    }

    /// Whether the `--resolve` entries apply: request-context calls and upstreams always;
    /// root-context calls (ticks) only with `--lua-resolver`.
    fn uses_hosts(&self, from_root: bool) -> bool {
        !from_root || self.lua_resolver
    }

    /// Resolves `host`. Root-context calls without `--lua-resolver` use Kong's `wasm{}` resolver,
    /// which answers only IP literals here (it neither reads /etc/hosts nor reaches 8.8.8.8).
    pub async fn resolve(&self, host: &str, port: u16, from_root: bool) -> Option<SocketAddr> {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_ascii_lowercase();
        if self.uses_hosts(from_root) {
            if let Some(addr) = self.host_ports.get(&(host.clone(), port)) {
                return Some(*addr);
            }
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, port));
        }
        if !self.uses_hosts(from_root) {
            return None;
        }
        if let Some(ip) = self.hosts.get(&host) {
            return Some(SocketAddr::new(*ip, port));
        }
        let lookup = tokio::net::lookup_host((host.as_str(), port));
        let found = match tokio::time::timeout(Duration::from_secs(5), lookup).await {
            Ok(Ok(mut addrs)) => addrs.next(),
            _ => None,
        };
        found
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Performs the call; never fails: failures become a `:dispatch_status` result.
pub async fn perform(spec: CallSpec, resolver: &Resolver, from_root: bool) -> CallResult {
    let mut sent = false;
    let outcome = run(&spec, resolver, from_root, &mut sent).await;
    let body_sent_unanswered = sent
        && !spec.body.is_empty()
        && matches!(outcome, Err(Failure::Status("timeout") | Failure::Closed));
    let dispatch_status = |s: &str| (":dispatch_status".to_string(), s.as_bytes().to_vec());
    match outcome {
        Ok((mut headers, body)) => {
            headers.push(dispatch_status("ok"));
            CallResult {
                headers,
                body,
                failure: None,
                body_sent_unanswered,
            }
        }
        // ngx_wasm_module reports a peer that closed before a byte of answer as `ok`, without
        // `:status`; and a response head over its buffer as `reader failure` with `:status`.
        Err(failure) => {
            let (headers, why) = match failure {
                Failure::Closed => (vec![dispatch_status("ok")], "closed without an answer"),
                Failure::HeadTooLarge(status) => (
                    vec![
                        (":status".to_string(), status.into_bytes()),
                        dispatch_status("reader failure"),
                    ],
                    "reader failure",
                ),
                Failure::Status(s) => (vec![dispatch_status(s)], s),
            };
            CallResult {
                headers,
                body: Vec::new(),
                failure: Some(why),
                body_sent_unanswered,
            }
        }
    }
}

/// How a call failed.
enum Failure {
    /// A `:dispatch_status` value.
    Status(&'static str),
    /// The peer closed the connection before any byte of an answer.
    Closed,
    /// The status line was read, but the head did not fit the reader's buffer.
    HeadTooLarge(String),
}

impl From<&'static str> for Failure {
    fn from(status: &'static str) -> Failure {
        Failure::Status(status)
    }
}

type Head = Vec<(String, Vec<u8>)>;

async fn run(
    spec: &CallSpec,
    resolver: &Resolver,
    from_root: bool,
    sent: &mut bool,
) -> Result<(Head, Vec<u8>), Failure> {
    let t = spec.timeout;
    let mut stream: Box<dyn Io> = match &spec.target {
        Target::Unix(path) => {
            let s = tokio::time::timeout(t, tokio::net::UnixStream::connect(path)).await;
            Box::new(s.map_err(|_| "timeout")?.map_err(|_| "broken connection")?)
        }
        Target::Tcp { host, port } => {
            let addr = resolver
                .resolve(host, *port, from_root)
                .await
                .ok_or("resolver failure")?;
            let s = tokio::time::timeout(t, tokio::net::TcpStream::connect(addr)).await;
            let tcp = s.map_err(|_| "timeout")?.map_err(|_| "broken connection")?;
            if spec.tls {
                let sni = spec
                    .authority
                    .as_deref()
                    .map(strip_port)
                    .unwrap_or(host.as_str())
                    .to_string();
                let tls = tokio::time::timeout(t, handshake(tcp, &sni, resolver)).await;
                Box::new(
                    tls.map_err(|_| "timeout")?
                        .map_err(|_| "tls handshake failure")?,
                )
            } else {
                Box::new(tcp)
            }
        }
    };
    let request = encode_request(spec);
    match tokio::time::timeout(t, stream.write_all(&request)).await {
        Err(_) => return Err("timeout".into()),
        Ok(Err(_)) => return Err("broken connection".into()),
        Ok(Ok(())) => *sent = true,
    }
    read_response(&mut stream, t, spec.method.eq_ignore_ascii_case("HEAD")).await
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map(|(h, _)| h.trim_start_matches('['))
            .unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

async fn handshake(
    tcp: tokio::net::TcpStream,
    sni: &str,
    resolver: &Resolver,
) -> Result<tokio_openssl::SslStream<tokio::net::TcpStream>> {
    if sni.parse::<IpAddr>().is_ok() {
        anyhow::bail!("SNI needs a host name, not an IP address");
    }
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    if let Some(ca) = &resolver.ca_file {
        builder
            .set_ca_file(ca)
            .with_context(|| format!("ca file {}", ca.display()))?;
    }
    builder.set_verify(SslVerifyMode::PEER);
    let ssl = builder.build().configure()?.into_ssl(sni)?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp)?;
    Pin::new(&mut stream).connect().await?;
    Ok(stream)
}

fn encode_request(spec: &CallSpec) -> Vec<u8> {
    let host = match (&spec.authority, &spec.target) {
        (Some(a), _) => a.clone(),
        (None, Target::Unix(_)) => "localhost".to_string(),
        (None, Target::Tcp { .. }) => spec.raw_target.clone(),
    };
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
        spec.method, spec.path
    )
    .into_bytes();
    if !spec
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        out.extend_from_slice(format!("Content-Length: {}\r\n", spec.body.len()).as_bytes());
    }
    for (k, v) in &spec.headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&spec.body);
    out
}

async fn read_some(
    stream: &mut Box<dyn Io>,
    buf: &mut Vec<u8>,
    t: Duration,
) -> Result<usize, &'static str> {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(t, stream.read(&mut chunk)).await {
        Err(_) => Err("timeout"),
        Ok(Err(_)) => Err("broken connection"),
        Ok(Ok(n)) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            Ok(n)
        }
    }
}

async fn read_response(
    stream: &mut Box<dyn Io>,
    t: Duration,
    head_only: bool,
) -> Result<(Head, Vec<u8>), Failure> {
    let mut buf = Vec::new();
    let too_large = |buf: &[u8]| match http1::status_code(buf) {
        Some(code) => Failure::HeadTooLarge(code.to_string()),
        None => "reader failure".into(),
    };
    let head = loop {
        match http1::parse_response(&buf) {
            Ok(Some(head)) if head.len > MAX_RESPONSE_HEAD => return Err(too_large(&buf)),
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(_) => return Err("reader failure".into()),
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(too_large(&buf));
        }
        if read_some(stream, &mut buf, t).await? == 0 {
            return Err(if buf.is_empty() {
                Failure::Closed
            } else {
                "reader failure".into()
            });
        }
    };
    let mut body: Vec<u8> = buf.get(head.len..).unwrap_or_default().to_vec();
    let status = head.status;
    let mut headers = vec![(":status".to_string(), status.to_string().into_bytes())];
    headers.extend(head.headers);
    if http1::bodiless(status, head_only) {
        return Ok((headers, Vec::new()));
    }
    if http1::is_chunked(&headers) {
        let mut chunked = http1::Chunked::default();
        loop {
            match chunked.decode(&body) {
                Ok(Some(decoded)) => return Ok((headers, decoded)),
                Ok(None) => {}
                Err(_) => return Err("reader failure".into()),
            }
            if read_some(stream, &mut body, t).await? == 0 {
                return Err("broken connection".into());
            }
        }
    }
    if let Some(cl) = http1::header(&headers, "content-length") {
        let cl: usize = cl
            .trim()
            .parse()
            .map_err(|_| Failure::Status("reader failure"))?;
        while body.len() < cl {
            if read_some(stream, &mut body, t).await? == 0 {
                return Err("broken connection".into());
            }
        }
        body.truncate(cl);
        return Ok((headers, body));
    }
    while read_some(stream, &mut body, t).await? > 0 {}
    Ok((headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kong() {
        assert_eq!(
            parse_target("127.0.0.1:8080", false),
            Ok(Target::Tcp {
                host: "127.0.0.1".into(),
                port: 8080
            })
        );
        assert_eq!(
            parse_target("idp", true),
            Ok(Target::Tcp {
                host: "idp".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_target("[::1]:81", false),
            Ok(Target::Tcp {
                host: "::1".into(),
                port: 81
            })
        );
        assert_eq!(
            parse_target("unix:/tmp/s", false),
            Ok(Target::Unix("/tmp/s".into()))
        );
        for bad in ["", "http://x", "x:y", "x:99999", "[::1", "[.]", "x:0"] {
            assert!(parse_target(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_entries_map_hosts_and_host_ports() {
        let mut r = Resolver::default();
        r.add_entry("Mock-IdP:9000=127.0.0.1:4567").unwrap();
        r.add_entry("idp=10.0.0.1").unwrap();
        r.add_entry("[::1]:80=127.0.0.1:81").unwrap();
        r.add_entry("same:7000=127.0.0.2").unwrap();
        for bad in [
            "x",
            "x=y",
            "x=1.2.3.4:5",
            "x:0=1.2.3.4:5",
            "x:1=1.2.3.4:0",
            "=1.2.3.4",
        ] {
            assert!(r.add_entry(bad).is_err(), "{bad}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
            assert_eq!(
                r.resolve("mock-idp", 9000, false).await,
                a("127.0.0.1:4567")
            );
            assert_eq!(r.resolve("idp", 9000, false).await, a("10.0.0.1:9000"));
            assert_eq!(r.resolve("::1", 80, false).await, a("127.0.0.1:81"));
            assert_eq!(r.resolve("same", 7000, false).await, a("127.0.0.2:7000"));
            // Ticks use the wasm{} resolver: no --resolve entries, IP literals only.
            assert_eq!(r.resolve("mock-idp", 9000, true).await, None);
            assert_eq!(r.resolve("::1", 80, true).await, a("[::1]:80"));
            let mut lua = r.clone();
            lua.lua_resolver = true;
            assert_eq!(
                lua.resolve("mock-idp", 9000, true).await,
                a("127.0.0.1:4567")
            );
        });
    }

    #[test]
    fn method_and_path_are_required() {
        let h = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert!(build("x:1", h(&[(":path", "/")]), vec![], 0).is_err());
        assert!(build("x:1", h(&[(":method", "GET")]), vec![], 0).is_err());
        let spec = build(
            "x:1",
            h(&[(":method", "GET"), (":path", "/"), ("host", "evil")]),
            vec![],
            0,
        )
        .unwrap();
        assert!(spec.headers.is_empty());
    }
}
