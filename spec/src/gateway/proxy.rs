//! Forwarding a request to its service over HTTP/1.1, with the headers Kong 3.9's
//! `proxy_set_header` lines set (kong/templates/nginx_kong.lua) over the client's and the
//! filter's values: their values are computed from the client's request before any filter runs,
//! as Kong's Lua does (`runloop/handler.lua`, access `before`/`after`). `preserve_host` false:
//! `Host` is the upstream's.

use super::kong_yml::Upstream;
use crate::host::dispatch::Resolver;
use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Kong's default upstream connect/send/read timeout.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// `Via`'s token for this gateway: Kong's `<http version> kong/<version>`.
pub const KONG_VIA: &str = "1.1 kong/3.9.3";

/// Headers Kong sets on every proxied request with `proxy_set_header`: whatever the client or
/// a filter put under these names never reaches the upstream (an empty value sends none).
pub const KONG_SET_HEADERS: [&str; 13] = [
    "te",
    "via",
    "host",
    "upgrade",
    "connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-kong-request-id",
];

/// Hop-by-hop headers never forwarded.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "host"
    )
}

/// What Kong knows about the client's request when it starts.
pub struct ClientSide<'a> {
    pub ip: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// The request's path, without the query.
    pub path: &'a str,
    /// The route's matched prefix when the route strips it (`strip_path`), else `None`.
    pub stripped_prefix: Option<&'a str>,
}

/// The values of Kong's `proxy_set_header` lines but `Host`, taken from the client's headers
/// before any filter runs (Kong's Lua sets its `$upstream_*` variables then); an empty value
/// means the header is not sent.
pub fn kong_headers(
    client_headers: &[(&str, &[u8])],
    client: &ClientSide<'_>,
) -> Vec<(String, String)> {
    let joined = |name: &str| -> Option<String> {
        let values: Vec<String> = client_headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    let websocket = joined("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let trailers = joined("te").is_some_and(|te| {
        te.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    });
    let xff = match joined("x-forwarded-for") {
        Some(previous) => format!("{previous}, {}", client.ip),
        None => client.ip.to_string(),
    };
    let via = match joined("via") {
        Some(previous) => format!("{previous}, {KONG_VIA}"),
        None => KONG_VIA.to_string(),
    };
    let connection = if websocket {
        "keep-alive, Upgrade"
    } else {
        "keep-alive"
    };
    let pairs = [
        (
            "te",
            if trailers {
                "trailers".to_string()
            } else {
                String::new()
            },
        ),
        ("via", via),
        (
            "upgrade",
            if websocket {
                "websocket".into()
            } else {
                String::new()
            },
        ),
        ("connection", connection.to_string()),
        ("x-forwarded-for", xff),
        ("x-forwarded-proto", client.scheme.to_string()),
        ("x-forwarded-host", client.host.to_string()),
        ("x-forwarded-port", client.port.to_string()),
        ("x-forwarded-path", client.path.to_string()),
        (
            "x-forwarded-prefix",
            client
                .stripped_prefix
                .filter(|p| *p != "/")
                .unwrap_or_default()
                .to_string(),
        ),
        ("x-real-ip", client.ip.to_string()),
        ("x-kong-request-id", request_id()),
    ];
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// A request id like Kong's `$kong_request_id` (32 hex digits), unique in this process.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{n:016x}", std::process::id())
}

/// Sends the request upstream; `Err` means Kong answers 502.
pub async fn forward(
    upstream: &Upstream,
    resolver: &Resolver,
    method: &str,
    uri: &str,
    headers: &[(String, Vec<u8>)],
    body: Vec<u8>,
    kong: &[(String, String)],
) -> Result<(u16, Vec<(String, Vec<u8>)>, Vec<u8>)> {
    let addr = resolver
        .resolve(&upstream.host, upstream.port, false)
        .await
        .ok_or_else(|| anyhow!("could not resolve {}", upstream.host))?;
    let tcp = tokio::time::timeout(UPSTREAM_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .context("upstream connect timed out")??;
    let default_port = if upstream.tls { 443 } else { 80 };
    let host = if upstream.port == default_port {
        upstream.host.clone()
    } else {
        format!("{}:{}", upstream.host, upstream.port)
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", &host);
    for (k, v) in headers {
        // Kong's own values replace the client's and the filter's.
        if is_hop_by_hop(k) || KONG_SET_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            continue;
        }
        req = req.header(k.as_str(), v.as_slice());
    }
    for (k, v) in kong {
        req = req.header(k.as_str(), v.as_str());
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req = req.header("content-length", body.len().to_string());
    }
    let req = req.body(Full::new(Bytes::from(body)))?;
    if upstream.tls {
        // Kong's services default to `tls_verify: false`: the upstream certificate is not
        // checked (SNI is still the service host).
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        builder.set_verify(SslVerifyMode::NONE);
        let ssl = builder.build().configure()?.into_ssl(&upstream.host)?;
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp)?;
        Pin::new(&mut stream)
            .connect()
            .await
            .context("upstream TLS handshake")?;
        send(stream, req).await
    } else {
        send(tcp, req).await
    }
}

async fn send<S>(
    stream: S,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Vec<(String, Vec<u8>)>, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let resp = tokio::time::timeout(UPSTREAM_TIMEOUT, sender.send_request(req))
        .await
        .context("upstream timed out")??;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let body = tokio::time::timeout(UPSTREAM_TIMEOUT, resp.into_body().collect())
        .await
        .context("upstream body timed out")??;
    Ok((status, headers, body.to_bytes().to_vec()))
}
