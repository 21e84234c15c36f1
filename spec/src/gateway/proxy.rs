//! Forwarding a request to its service over HTTP/1.1, with Kong's proxy headers
//! (`X-Forwarded-*`, `X-Real-IP`; `preserve_host` false: `Host` is the upstream's).

use super::kong_yml::Upstream;
use crate::host::dispatch::Resolver;
use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Kong's default upstream connect/send/read timeout.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers Kong sets on every proxied request, overriding the client's copies.
const KONG_FORWARDED: [&str; 7] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-forwarded-for",
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

/// What Kong adds about the client.
pub struct ClientSide<'a> {
    pub ip: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
}

/// Sends the request upstream; `Err` means Kong answers 502.
pub async fn forward(
    upstream: &Upstream,
    resolver: &Resolver,
    method: &str,
    uri: &str,
    headers: &[(String, Vec<u8>)],
    body: Vec<u8>,
    client: &ClientSide<'_>,
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
    let mut xff = None;
    for (k, v) in headers {
        if is_hop_by_hop(k) {
            continue;
        }
        let lk = k.to_ascii_lowercase();
        if lk == "x-forwarded-for" {
            xff = Some(String::from_utf8_lossy(v).into_owned());
            continue;
        }
        // Kong replaces the X-Forwarded-* headers it sets itself; others (such as
        // X-Forwarded-Authorization) pass like any header.
        if KONG_FORWARDED.contains(&lk.as_str()) {
            continue;
        }
        req = req.header(k.as_str(), v.as_slice());
    }
    let xff = match xff {
        Some(prev) => format!("{prev}, {}", client.ip),
        None => client.ip.to_string(),
    };
    req = req
        .header("x-forwarded-for", xff)
        .header("x-forwarded-proto", client.scheme)
        .header("x-forwarded-host", client.host)
        .header("x-forwarded-port", client.port.to_string())
        .header("x-forwarded-path", client.path)
        .header("x-real-ip", client.ip);
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
