//! HTTP plumbing shared by the mock servers: binding, the fault-aware main listener (which really
//! stops listening for `refuse` and re-binds the same port when cleared), the control listener,
//! request/response types and the generic faults.

use super::common::Counters;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

/// Request bodies larger than this are answered 413.
const MAX_REQUEST_BODY: usize = 16 << 20;
/// A `hang` holds a request at most this long (or until the fault changes), then closes it.
const HANG_LIMIT: Duration = Duration::from_secs(300);
/// Size of the `huge` fault's body.
pub const HUGE_BYTES: usize = 5 * 1024 * 1024;
/// Body size of the `large` fault: under the filter's 512 KiB JWKS cap, over any value it shares
/// and over a 128k shared-memory zone.
pub const LARGE_BYTES: usize = 300 * 1000;
/// Faults every mock understands.
pub const GENERIC_FAULTS: [&str; 9] = [
    "none",
    "refuse",
    "reset",
    "hang",
    "status500",
    "garbage",
    "truncated",
    "huge",
    "large",
];

/// A request, fully read.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// Raw query string without `?` (empty when absent).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// First value of a header, if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// A query parameter (decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::testkit::http::form_decode(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
    /// The body as form pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        crate::testkit::http::form_decode(&String::from_utf8_lossy(&self.body))
    }
    /// The body as JSON (an empty body is `{}`).
    pub fn json(&self) -> Result<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body).context("body is not JSON")
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply::bytes(status, "application/json", v.to_string())
    }
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
    /// `{"error": code, "error_description": why}` with `status`.
    pub fn error(status: u16, code: &str, why: &str) -> Reply {
        Reply::json(status, &json!({"error": code, "error_description": why}))
    }
    /// 404 for a control route the mock does not have.
    pub fn no_control(req: &Req) -> Reply {
        Reply::error(
            404,
            "not_found",
            &format!("no control {} {}", req.method, req.path),
        )
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    fn into_hyper(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body));
        *resp.status_mut() = hyper::StatusCode::from_u16(self.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::try_from(k),
                hyper::header::HeaderValue::try_from(v),
            ) {
                resp.headers_mut().append(k, v);
            }
        }
        resp
    }
}

/// What a handler decided.
#[derive(Debug)]
pub enum Outcome {
    Respond(Reply),
    /// Close the connection without answering.
    Reset,
    /// Never answer (until the fault is cleared or [`HANG_LIMIT`]), then close.
    Hang,
}

impl From<Reply> for Outcome {
    fn from(r: Reply) -> Outcome {
        Outcome::Respond(r)
    }
}

pub type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;
/// A request handler.
pub type Handler = Arc<dyn Fn(Req) -> BoxFuture + Send + Sync>;

/// The active fault, shared by the main listener and the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultState {
    pub name: String,
    /// Limit to these endpoint names; `None`: every endpoint.
    pub only: Option<Vec<String>>,
}

/// Fault state plus the main listener's "is it listening" state.
pub struct Faults {
    state: watch::Sender<FaultState>,
    listening: watch::Sender<bool>,
    names: Vec<&'static str>,
    endpoints: Vec<&'static str>,
}

impl Faults {
    /// `extra`: mock-specific fault names; `endpoints`: names usable in `only`.
    pub fn new(extra: &[&'static str], endpoints: &[&'static str]) -> Arc<Faults> {
        let mut names = GENERIC_FAULTS.to_vec();
        names.extend_from_slice(extra);
        Arc::new(Faults {
            state: watch::Sender::new(FaultState {
                name: "none".into(),
                only: None,
            }),
            listening: watch::Sender::new(true),
            names,
            endpoints: endpoints.to_vec(),
        })
    }

    /// The fault applying to `endpoint`, if any.
    pub fn active(&self, endpoint: &str) -> Option<String> {
        let s = self.state.borrow();
        let applies = s
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|e| e == endpoint));
        (s.name != "none" && applies).then(|| s.name.clone())
    }

    pub fn current(&self) -> FaultState {
        self.state.borrow().clone()
    }

    /// Sets a fault from a control body `{"fault": NAME, "only"?: [...]}`; for `refuse` (and clearing
    /// it) waits until the main listener has really closed (re-bound).
    pub async fn set_from(&self, body: &Value) -> Result<(), String> {
        let name = body
            .get("fault")
            .and_then(Value::as_str)
            .ok_or("body needs a \"fault\" string")?;
        if !self.names.contains(&name) {
            return Err(format!(
                "unknown fault {name:?}; known: {}",
                self.names.join(", ")
            ));
        }
        let only = match body.get("only") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut only = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(e) if self.endpoints.contains(&e) => only.push(e.to_string()),
                        _ => {
                            return Err(format!(
                                "\"only\" takes endpoint names from {:?}",
                                self.endpoints
                            ))
                        }
                    }
                }
                Some(only)
            }
            Some(_) => return Err("\"only\" must be an array".into()),
        };
        if name == "refuse" && only.is_some() {
            return Err(
                "refuse closes the whole listener; it cannot be limited with \"only\"".into(),
            );
        }
        let want_listening = name != "refuse";
        self.state.send_replace(FaultState {
            name: name.to_string(),
            only,
        });
        let mut rx = self.listening.subscribe();
        let reached = matches!(
            tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|l| *l == want_listening)
            )
            .await,
            Ok(Ok(_))
        );
        if reached {
            Ok(())
        } else {
            Err(format!(
                "main listener did not reach listening={want_listening}"
            ))
        }
    }

    async fn hang(&self) {
        let mut rx = self.state.subscribe();
        let _ = tokio::time::timeout(HANG_LIMIT, rx.wait_for(|s| s.name != "hang")).await;
    }
}

/// Applies a generic fault to what the endpoint would answer (`normal`).
pub fn generic_fault(fault: &str, normal: impl FnOnce() -> Reply) -> Outcome {
    match fault {
        "reset" | "refuse" => Outcome::Reset,
        "hang" => Outcome::Hang,
        "status500" => Reply::error(500, "server_error", "fault status500").into(),
        "garbage" => Reply::bytes(
            200,
            "application/json",
            &b"<html>\x00\xff\xfe not json {{{"[..],
        )
        .into(),
        "truncated" => {
            let mut r = normal();
            let keep = r.body.len() / 2;
            r.body = r.body.slice(..keep);
            r.into()
        }
        "huge" => {
            let mut r = normal();
            r.body = pad_to(&r.body, HUGE_BYTES);
            r.into()
        }
        "large" => {
            let mut r = normal();
            r.body = pad_to(&r.body, LARGE_BYTES);
            r.into()
        }
        _ => normal().into(),
    }
}

/// A JSON object gets a `"x-padding"` member so it stays valid JSON; anything else gets `A`s appended.
fn pad_to(body: &Bytes, size: usize) -> Bytes {
    if let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) {
        let filler = size.saturating_sub(body.len());
        obj.insert("x-padding".into(), Value::String("A".repeat(filler.max(1))));
        return Bytes::from(Value::Object(obj).to_string());
    }
    let mut v = body.to_vec();
    v.resize(size.max(body.len()), b'A');
    Bytes::from(v)
}

/// Binds `addr` (SO_REUSEADDR, so the same port can be bound again after `refuse`).
pub async fn bind(addr: &str) -> Result<TcpListener> {
    let sa = tokio::net::lookup_host(addr)
        .await?
        .next()
        .with_context(|| format!("{addr} does not resolve"))?;
    bind_addr(sa).with_context(|| format!("bind {addr}"))
}

fn bind_addr(sa: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if sa.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    // Shares the port with the holder of `spawn_main`, which keeps it ours while `refuse` has the
    // listener closed.
    socket.set_reuseport(true)?;
    socket.bind(sa)?;
    socket.listen(1024)
}

/// A socket bound to `addr` but never listening: connections to the port are refused while the
/// listener is closed, yet no other socket can be bound to it (`SO_REUSEPORT` without
/// `SO_REUSEADDR` admits only our own listener, and the kernel never picks the port for a
/// `bind(0)` or an outgoing connection), so `refuse` can always re-bind.
fn hold_port(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Serves the main listener with faults (spawned; returns at once).
pub fn spawn_main(
    listener: TcpListener,
    faults: Arc<Faults>,
    handler: Handler,
    tag: &'static str,
) -> Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let holder = hold_port(addr).with_context(|| format!("holding port {addr}"))?;
    tokio::spawn(async move {
        let _holder = holder;
        let mut listener = Some(listener);
        let mut rx = faults.state.subscribe();
        loop {
            let refuse = rx.borrow_and_update().name == "refuse";
            if refuse {
                if listener.take().is_some() {
                    eprintln!("[{tag}] fault refuse: closed {addr}");
                }
                faults.listening.send_replace(false);
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let Some(l) = listener.as_ref() else {
                match rebind(addr).await {
                    Ok(l) => {
                        eprintln!("[{tag}] re-bound {addr}");
                        listener = Some(l);
                        faults.listening.send_replace(true);
                    }
                    Err(e) => {
                        eprintln!("[{tag}] cannot re-bind {addr}: {e}");
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                }
                continue;
            };
            tokio::select! {
                accepted = l.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_conn(stream, Arc::clone(&handler), Some(Arc::clone(&faults))));
                    }
                    Err(e) => {
                        eprintln!("[{tag}] accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    });
    Ok(addr)
}

async fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        match bind_addr(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

/// Serves the control listener (no faults; spawned; returns at once).
pub fn spawn_control(
    listener: TcpListener,
    handler: Handler,
    tag: &'static str,
) -> Result<SocketAddr> {
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_conn(stream, Arc::clone(&handler), None));
                }
                Err(e) => {
                    eprintln!("[{tag}] control accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    Ok(addr)
}

#[derive(Debug)]
struct CloseConnection;
impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closing without an answer (fault)")
    }
}
impl std::error::Error for CloseConnection {}

async fn serve_conn(stream: tokio::net::TcpStream, handler: Handler, faults: Option<Arc<Faults>>) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req: Request<Incoming>| {
        let handler = Arc::clone(&handler);
        let faults = faults.clone();
        async move {
            // A keep-alive connection accepted before `refuse` must not be answered either.
            if faults
                .as_ref()
                .is_some_and(|f| f.current().name == "refuse")
            {
                return Err(CloseConnection);
            }
            let req = match read_request(req).await {
                Ok(req) => req,
                Err(reply) => return Ok(reply.into_hyper()),
            };
            match handler(req).await {
                Outcome::Respond(reply) => Ok(reply.into_hyper()),
                Outcome::Reset => Err(CloseConnection),
                Outcome::Hang => {
                    match &faults {
                        Some(f) => f.hang().await,
                        None => tokio::time::sleep(HANG_LIMIT).await,
                    }
                    Err(CloseConnection)
                }
            }
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

async fn read_request(req: Request<Incoming>) -> Result<Req, Reply> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(Reply::error(413, "invalid_request", &format!("body: {e}"))),
    };
    Ok(Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers,
        body,
    })
}

/// Control routes every mock has: counters, counters/reset, fault. `None` if `req` is none of them.
pub async fn common_control(req: &Req, faults: &Faults, counters: &Counters) -> Option<Reply> {
    let reply = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__control/counters") => Reply::json(200, &counters.snapshot()),
        ("POST", "/__control/counters/reset") => {
            counters.reset();
            Reply::json(200, &counters.snapshot())
        }
        ("GET", "/__control/fault") => {
            let s = faults.current();
            Reply::json(200, &json!({"fault": s.name, "only": s.only}))
        }
        ("POST", "/__control/fault") => match req.json() {
            Ok(body) => match faults.set_from(&body).await {
                Ok(()) => {
                    let s = faults.current();
                    Reply::json(200, &json!({"fault": s.name, "only": s.only}))
                }
                Err(e) => Reply::error(400, "bad_fault", &e),
            },
            Err(e) => Reply::error(400, "bad_json", &e.to_string()),
        },
        _ => return None,
    };
    Some(reply)
}

/// Serves a mock until ctrl-c: `main` with `faults` through `on_main`, `control` through
/// `on_control` (both given `state`); prints `[tag] banner` to stderr, if any, then the
/// `listening` line.
pub async fn serve_until_ctrl_c<S, M, MFut, C, CFut>(
    tag: &'static str,
    (main, control): (TcpListener, TcpListener),
    state: Arc<S>,
    faults: Arc<Faults>,
    (on_main, on_control): (M, C),
    banner: Option<String>,
) -> Result<()>
where
    S: Send + Sync + 'static,
    M: Fn(Arc<S>, Req) -> MFut + Send + Sync + 'static,
    MFut: Future<Output = Outcome> + Send + 'static,
    C: Fn(Arc<S>, Req) -> CFut + Send + Sync + 'static,
    CFut: Future<Output = Outcome> + Send + 'static,
{
    let http = spawn_main(main, faults, handler(Arc::clone(&state), on_main), tag)?;
    let control = spawn_control(control, handler(state, on_control), tag)?;
    if let Some(banner) = banner {
        eprintln!("[{tag}] {banner}");
    }
    announce(http, control);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}

/// Prints the `listening http=... control=...` line and flushes stdout.
pub fn announce(http: SocketAddr, control: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening http={http} control={control}");
    let _ = out.flush();
}

/// Runs a server's async main on a small multi-threaded runtime; errors go to stderr, exit code 1.
pub fn run(tag: &str, main: impl Future<Output = Result<()>>) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("[{tag}] runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(main) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[{tag}] error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Wraps an async closure into a [`Handler`].
pub fn handler<S, F, Fut>(state: Arc<S>, f: F) -> Handler
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(Arc::clone(&state), req)))
}
