//! A small async HTTP/1.1 client (GET only) for the mocks, e.g. cloudrun fetching Google's JWKS.

use crate::testkit::http::parse_url;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::time::Duration;

const MAX_BODY: usize = 16 << 20;

/// `GET url` (http only); returns status and body. The whole exchange is bounded by `timeout`.
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, Bytes)> {
    let u = parse_url(url)?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((u.host.as_str(), u.port))
            .await
            .with_context(|| format!("connect {}", u.authority))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(u.target.as_str())
            .header(hyper::header::HOST, u.authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow!("body: {e}"))?;
        Ok::<_, anyhow::Error>((status, body.to_bytes()))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => bail!("GET {url}: no answer within {timeout:?}"),
    }
}
