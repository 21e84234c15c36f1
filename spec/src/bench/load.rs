//! A bounded HTTP/1.1 load generator: `connections` keep-alive connections on one thread, each
//! sending requests back to back until `requests` have been sent in all or `max_time` passed.

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::stats::Samples;

/// One scenario.
pub struct Load {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub path: String,
    /// Tokens sent as `Authorization: Bearer`, request `i` uses `tokens[i % len]`; empty: none.
    pub tokens: Rc<Vec<String>>,
    pub requests: usize,
    pub connections: usize,
    pub max_time: Duration,
}

/// What a scenario measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub sent: usize,
    pub ok: usize,
    /// Responses other than 200 (status, count of the first kind seen).
    pub errors: usize,
    pub first_error: Option<u16>,
    pub elapsed: Duration,
    pub latency: Samples,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds another run of the same scenario (requests and time add up).
    pub fn add(&mut self, other: LoadResult) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latency.extend(&other.latency);
    }
}

/// Runs `load` on a fresh single-threaded runtime.
pub fn run(load: &Load) -> Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run_async(load))
}

async fn run_async(load: &Load) -> Result<LoadResult> {
    let next = Rc::new(Cell::new(0usize));
    let deadline = Instant::now() + load.max_time;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..load.connections.max(1) {
        let stream = tokio::net::TcpStream::connect(&load.addr)
            .await
            .with_context(|| format!("connect {}", load.addr))?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        let next = next.clone();
        let tokens = load.tokens.clone();
        let addr = load.addr.clone();
        let path = load.path.clone();
        let total = load.requests;
        tasks.push(tokio::task::spawn_local(async move {
            let mut out = LoadResult::default();
            loop {
                let i = next.get();
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                next.set(i + 1);
                let mut req = hyper::Request::builder()
                    .method("GET")
                    .uri(&path)
                    .header("host", &addr)
                    .header("user-agent", "bench/1")
                    .header("accept", "application/json");
                if !tokens.is_empty() {
                    let token = tokens
                        .get(i % tokens.len())
                        .map(String::as_str)
                        .unwrap_or("");
                    req = req.header("authorization", format!("Bearer {token}"));
                }
                let req = req.body(Empty::<Bytes>::new())?;
                let t = Instant::now();
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await?;
                out.latency.push(t.elapsed());
                out.sent += 1;
                if status == 200 {
                    out.ok += 1;
                } else {
                    out.errors += 1;
                    out.first_error.get_or_insert(status);
                }
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut total = LoadResult::default();
    for task in tasks {
        total.add(task.await.map_err(|e| anyhow!("load task: {e}"))??);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
