//! Starting a gateway for a test on either engine: the `gateway` binary (the Kong stand-in) or
//! Kong's real engine (nginx + ngx_wasm_module, [`super::nginx`]). Writes the kong.yml and the
//! filters into a fresh temp dir, picks free ports, and exposes the proxy and admin addresses,
//! `/__metrics`, `/__status` (stand-in only) and the error log.

use super::engine::Engine;
use super::http;
use super::nginx::NginxGateway;
use super::process::{repo_root, SpecProcess};
use crate::http1;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The probe filter's `.wasm`; an error telling to run `make probe` when it is not built.
pub fn probe_wasm() -> Result<PathBuf> {
    let path = repo_root().join("target/wasm32-wasip1/release/probe_filter.wasm");
    if !path.is_file() {
        bail!(
            "probe filter not built: {} is missing. Run `make probe` \
             (cargo build --release --target wasm32-wasip1 -p probe-filter) before these tests",
            path.display()
        );
    }
    Ok(path)
}

/// How to start a gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayOpts {
    /// kong.yml text.
    pub kong_yml: String,
    /// Filters: name, `.wasm` path, optional meta.json text.
    pub filters: Vec<(String, PathBuf, Option<String>)>,
    /// `--workers` (default 2 when 0).
    pub workers: usize,
    pub shm_kv: Vec<String>,
    pub resolve: Vec<String>,
    pub lua_resolver: bool,
    pub ca_file: Option<PathBuf>,
    /// `--log-level` (the gateway's default is `notice`, like Kong's).
    pub log_level: Option<String>,
    /// Which engine runs it (default: the stand-in).
    pub engine: Engine,
}

impl GatewayOpts {
    /// Options with this kong.yml and the probe filter installed as `probe`.
    pub fn with_probe(kong_yml: impl Into<String>) -> Result<GatewayOpts> {
        Ok(GatewayOpts {
            kong_yml: kong_yml.into(),
            filters: vec![("probe".into(), probe_wasm()?, None)],
            ..GatewayOpts::default()
        })
    }

    /// Sets `--workers`.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds `--shm-kv`.
    pub fn shm_kv(mut self, decl: &str) -> Self {
        self.shm_kv.push(decl.to_string());
        self
    }

    /// Adds `--resolve`.
    pub fn resolve(mut self, entry: &str) -> Self {
        self.resolve.push(entry.to_string());
        self
    }

    /// Sets `--lua-resolver`.
    pub fn lua_resolver(mut self) -> Self {
        self.lua_resolver = true;
        self
    }

    /// Sets `--ca-file`.
    pub fn ca_file(mut self, path: PathBuf) -> Self {
        self.ca_file = Some(path);
        self
    }

    /// Adds `--log-level`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_string());
        self
    }

    /// Runs it on `engine`.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Adds a meta.json for the filter `name`.
    pub fn meta(mut self, name: &str, meta_json: &str) -> Self {
        for f in &mut self.filters {
            if f.0 == name {
                f.2 = Some(meta_json.to_string());
            }
        }
        self
    }
}

/// The process behind a [`Gateway`].
pub enum Backend {
    /// The `gateway` binary.
    StandIn(SpecProcess),
    /// nginx + ngx_wasm_module.
    Wasmx(NginxGateway),
}

/// A running gateway; stopped and its temp dir removed when dropped (on the real engine, its
/// error log is checked for crashes first).
pub struct Gateway {
    pub backend: Backend,
    pub engine: Engine,
    /// Set by a test that provokes a crash on purpose: dropping it then skips the log check.
    pub crash_expected: bool,
    pub dir: PathBuf,
    /// `127.0.0.1:PORT` of the proxy listener.
    pub http: String,
    /// `127.0.0.1:PORT` of the admin listener.
    pub admin: String,
}

fn temp_dir() -> Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "spec-gateway-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("filters"))?;
    Ok(dir)
}

/// Writes kong.yml and the filters (`.wasm` and meta.json) into `dir`.
fn write_files(opts: &GatewayOpts, dir: &Path) -> Result<()> {
    std::fs::write(dir.join("kong.yml"), &opts.kong_yml)?;
    let filters = dir.join("filters");
    for (name, wasm, meta) in &opts.filters {
        std::fs::copy(wasm, filters.join(format!("{name}.wasm")))
            .with_context(|| format!("copy {}", wasm.display()))?;
        if let Some(meta) = meta {
            std::fs::write(filters.join(format!("{name}.meta.json")), meta)?;
        }
    }
    Ok(())
}

fn write_setup(opts: &GatewayOpts, dir: &Path) -> Result<Vec<String>> {
    write_files(opts, dir)?;
    let config = dir.join("kong.yml");
    let filters = dir.join("filters");
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--filters".into(),
        filters.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
        "--workers".into(),
        (if opts.workers == 0 { 2 } else { opts.workers }).to_string(),
    ];
    for z in &opts.shm_kv {
        args.extend(["--shm-kv".to_string(), z.clone()]);
    }
    for r in &opts.resolve {
        args.extend(["--resolve".to_string(), r.clone()]);
    }
    if opts.lua_resolver {
        args.push("--lua-resolver".into());
    }
    if let Some(ca) = &opts.ca_file {
        args.extend(["--ca-file".to_string(), ca.display().to_string()]);
    }
    if let Some(level) = &opts.log_level {
        args.extend(["--log-level".to_string(), level.clone()]);
    }
    Ok(args)
}

impl Gateway {
    /// Starts a gateway on `opts.engine` and waits until it serves.
    pub fn start(opts: &GatewayOpts) -> Result<Gateway> {
        let dir = temp_dir()?;
        let started = match opts.engine {
            Engine::StandIn => start_stand_in(opts, &dir),
            Engine::Wasmx => write_files(opts, &dir)
                .and_then(|()| NginxGateway::start(opts, &dir).map(Backend::Wasmx)),
        };
        let backend = match started {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.context(format!(
                    "starting the gateway on the {} engine",
                    opts.engine
                )));
            }
        };
        let (http, admin) = match &backend {
            Backend::StandIn(p) => (p.addr("http")?.to_string(), p.addr("admin")?.to_string()),
            Backend::Wasmx(n) => (n.http.clone(), n.admin.clone()),
        };
        Ok(Gateway {
            backend,
            engine: opts.engine,
            crash_expected: false,
            dir,
            http,
            admin,
        })
    }

    /// Starts a stand-in gateway that is expected to refuse to start; returns its whole stderr
    /// once it has exited (an error if it prints its listening line instead, or runs for 60 s).
    pub fn start_failure(opts: &GatewayOpts) -> Result<String> {
        let dir = temp_dir()?;
        let result = run_to_failure(opts, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// `http://127.0.0.1:PORT{path}` on the proxy listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// GET on the proxy with a 30 s timeout.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<http::Response> {
        Ok(http::get(&self.url(path), headers)?)
    }

    /// POST on the proxy.
    pub fn post(&self, path: &str, body: &[u8]) -> Result<http::Response> {
        Ok(http::request(
            "POST",
            &self.url(path),
            &[],
            body,
            Duration::from_secs(30),
        )?)
    }

    /// Any request on the proxy (30 s timeout).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<http::Response> {
        Ok(http::request(
            method,
            &self.url(path),
            headers,
            body,
            Duration::from_secs(30),
        )?)
    }

    /// Waits (up to 60 s) until at least `n` log lines contain `needle`, then returns how many
    /// do. The log arrives through a pipe read by another thread: a line the gateway wrote before
    /// answering may not be here yet when the answer is, so exact counts must wait for it.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let count = self.count_log(needle);
            if count >= n || std::time::Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many log lines so far contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.stderr_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn admin_json(&self, path: &str) -> Result<Value> {
        http::get(&format!("http://{}{path}", self.admin), &[])?.json()
    }

    /// `GET /__metrics` (metric name → value).
    pub fn metrics(&self) -> Result<Value> {
        match &self.backend {
            Backend::StandIn(_) => self.admin_json("/__metrics"),
            Backend::Wasmx(nginx) => nginx.metrics(),
        }
    }

    /// `GET /__status` (the stand-in's instance, memory and shm counters; nginx has none).
    pub fn status(&self) -> Result<Value> {
        match &self.backend {
            Backend::StandIn(_) => self.admin_json("/__status"),
            Backend::Wasmx(_) => {
                bail!("/__status is the stand-in's: the real engine has no such counters")
            }
        }
    }

    /// Resident memory: `vm_hwm_bytes` (peak) and `vm_rss_bytes` of the gateway process (the
    /// stand-in) or of the nginx workers together (the real engine).
    pub fn memory(&self) -> Result<Value> {
        match &self.backend {
            Backend::StandIn(_) => Ok(self.status()?["process"].clone()),
            Backend::Wasmx(n) => Ok(n.memory()),
        }
    }

    /// How many instances of `filter` worker `worker` has created.
    pub fn instances_created(&self, worker: usize, filter: &str) -> Result<u64> {
        let status = self.status()?;
        Ok(status["workers"][worker]["instances_created"][filter]
            .as_u64()
            .unwrap_or(0))
    }

    /// The gateway's error log so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        match &self.backend {
            Backend::StandIn(p) => p.stderr_lines(),
            Backend::Wasmx(n) => n.log_lines(),
        }
    }

    /// Whether the gateway process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.backend {
            Backend::StandIn(p) => p.is_running(),
            Backend::Wasmx(n) => n.is_running(),
        }
    }

    /// `Err` on the real engine's worker crashes, alerts and emergencies so far, and on the
    /// stand-in's alerts (it logs one where the real engine would crash, e.g. a callout from a
    /// root context's call answer).
    pub fn check_engine_log(&self) -> Result<()> {
        match &self.backend {
            Backend::StandIn(p) => {
                let alerts: Vec<String> = p
                    .stderr_lines()
                    .into_iter()
                    .filter(|l| l.split_whitespace().nth(2) == Some("[alert]"))
                    .collect();
                if alerts.is_empty() {
                    Ok(())
                } else {
                    bail!(
                        "the stand-in logged what crashes Kong's engine:\n{}",
                        alerts.join("\n")
                    )
                }
            }
            Backend::Wasmx(n) => n.check_log(),
        }
    }

    /// `Err` listing the error log's lines that say the filter trapped, a worker crashed or
    /// ran out of memory, or the host raised an alert or an emergency; then
    /// [`Gateway::check_engine_log`]'s own checks.
    pub fn check_no_trap(&self) -> Result<()> {
        const TRAP_SIGNS: [&str; 5] = [
            "trapped",
            "exited on signal",
            "[alert]",
            "[emerg]",
            "no memory",
        ];
        let signs: Vec<String> = self
            .stderr_lines()
            .into_iter()
            .filter(|l| TRAP_SIGNS.iter().any(|s| l.contains(s)))
            .collect();
        if !signs.is_empty() {
            bail!("the host log shows traps:\n{}", signs.join("\n"));
        }
        self.check_engine_log()
    }

    /// Waits (up to `timeout`) until no new log line has arrived for `quiet`: the log comes
    /// through a pipe read by a thread, so lines of requests already answered may still be on
    /// their way. `false` when the log never went quiet.
    pub fn settle_log(&self, quiet: Duration, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = self.stderr_lines().len();
        let mut since = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.stderr_lines().len();
            if now != seen {
                seen = now;
                since = std::time::Instant::now();
            } else if since.elapsed() >= quiet {
                return true;
            }
        }
        false
    }

    /// Waits (up to `timeout`) until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.stderr_lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn run_to_failure(opts: &GatewayOpts, dir: &Path) -> Result<String> {
    let args = write_setup(opts, dir)?;
    let mut child = std::process::Command::new(super::process::bin_path("gateway")?)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("spawn gateway")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // Reading stderr to its end returns once the process has exited (or closed it).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(err) => {
            let status = child.wait()?;
            let out = out.join().unwrap_or_default();
            if status.success() || out.contains("listening") {
                bail!("gateway did not refuse to start ({status}): {out}{err}");
            }
            Ok(err)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("gateway neither started nor exited within 60 s")
        }
    }
}

fn start_stand_in(opts: &GatewayOpts, dir: &Path) -> Result<Backend> {
    let args = write_setup(opts, dir)?;
    SpecProcess::start("gateway", &args).map(Backend::StandIn)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        match &mut self.backend {
            Backend::StandIn(p) => p.stop(),
            Backend::Wasmx(n) => n.stop(),
        }
        let fatal = if self.crash_expected {
            Ok(())
        } else {
            self.check_engine_log()
        };
        // Kept when a test fails on the real engine: its nginx.conf and error.log explain it.
        if std::thread::panicking() && self.engine == Engine::Wasmx {
            eprintln!("real engine's files kept in {}", self.dir.display());
            return;
        }
        if let Err(e) = fatal {
            if !std::thread::panicking() {
                panic!(
                    "{e:#}\n(the gateway's files are kept in {})",
                    self.dir.display()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `; `-separated records the probe filter reports in `x-probe-seen` (every such header).
pub fn probe_seen(resp: &http::Response) -> Vec<String> {
    resp.headers
        .iter()
        .filter(|(k, _)| k == "x-probe-seen")
        .flat_map(|(_, v)| v.split("; ").map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The value of the first probe record `name=value`, if any.
pub fn seen_value(seen: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    seen.iter()
        .find_map(|s| s.strip_prefix(&prefix).map(str::to_string))
}

/// A kong.yml with one service (`svc`, `url: upstream`) and one route (`r`, paths `/`) whose
/// chain runs the probe filter with `config` (JSON, given as a string: no meta.json needed).
pub fn probe_kong_yml(upstream: &str, config: &Value) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: {upstream}\n    routes:\n      - name: r\n        paths: [/]\n        filter_chains:\n          - filters:\n              - name: probe\n                config: {}\n",
        yaml_string(&config.to_string())
    )
}

/// A YAML double-quoted scalar holding `text` (JSON string escapes are valid YAML ones).
pub fn yaml_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// A request a [`TestServer`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::text_header(&self.headers, name)
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 (port 0) that records every request and answers by path:
/// `/hang...` holds the connection unanswered (until the server is dropped), `/close...` closes
/// it unanswered, `/delay/MS...` answers after MS milliseconds, `/big-head...` answers with a 9 KB
/// header, `/chunked...` answers `hello world` chunked, anything else answers at once.
/// Answers are `200` with `x-test-server: yes` and a JSON body `{"method","target","body"}`, one
/// request per connection (`Connection: close`). With [`TestServer::start_tls`] it speaks TLS with
/// a certificate for `tls.test` signed by a CA written to `ca_file`.
pub struct TestServer {
    pub addr: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// `/hang` requests whose connection the client closed while waiting.
    hangs_closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// PEM of the CA that signed the TLS server's certificate.
    pub ca_pem: Option<Vec<u8>>,
}

type Tls = Option<Arc<openssl::ssl::SslAcceptor>>;

impl TestServer {
    /// A plain HTTP server.
    pub fn start() -> Result<TestServer> {
        TestServer::start_with(None, None)
    }

    /// A TLS server for `tls.test` (SNI) and its CA.
    pub fn start_tls() -> Result<TestServer> {
        let (acceptor, ca_pem) = tls_acceptor()?;
        TestServer::start_with(Some(Arc::new(acceptor)), Some(ca_pem))
    }

    fn start_with(tls: Tls, ca_pem: Option<Vec<u8>>) -> Result<TestServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let hangs_closed = Arc::new(AtomicUsize::new(0));
        let (reqs, stop2, closed) = (requests.clone(), stop.clone(), hangs_closed.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (reqs, stop, tls) = (reqs.clone(), stop2.clone(), tls.clone());
                        let closed = closed.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let ctx = Ctx {
                                reqs: &reqs,
                                stop: &stop,
                                closed: &closed,
                            };
                            let _ = serve_one(stream, &ctx, tls);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(TestServer {
            addr,
            requests,
            hangs_closed,
            stop,
            ca_pem,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far (complete heads and bodies).
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Requests whose target starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.target.starts_with(prefix))
            .collect()
    }

    /// Waits (up to `timeout`) until at least `n` `/hang` connections were closed by the client.
    pub fn wait_hangs_closed(&self, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.hangs_closed.load(Ordering::Relaxed) >= n {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many `/hang` connections the client closed so far.
    pub fn hangs_closed(&self) -> usize {
        self.hangs_closed.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until at least `n` requests to `prefix` arrived.
    pub fn wait_for(&self, prefix: &str, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.requests_to(prefix).len() >= n {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Ctx<'a> {
    reqs: &'a Mutex<Vec<Recorded>>,
    stop: &'a AtomicBool,
    closed: &'a AtomicUsize,
}

/// The connection's socket, to poll for the peer closing it while a `/hang` request waits.
trait Conn: Read + Write {
    fn set_poll(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl Conn for std::net::TcpStream {
    fn set_poll(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

impl Conn for openssl::ssl::SslStream<std::net::TcpStream> {
    fn set_poll(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.get_ref().set_read_timeout(timeout)
    }
}

fn serve_one(stream: std::net::TcpStream, ctx: &Ctx<'_>, tls: Tls) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    match tls {
        Some(acceptor) => {
            let s = acceptor
                .accept(stream)
                .map_err(|e| anyhow::anyhow!("tls accept: {e}"))?;
            exchange(s, ctx)
        }
        None => exchange(stream, ctx),
    }
}

fn exchange<S: Conn>(mut s: S, ctx: &Ctx<'_>) -> Result<()> {
    let mut chunk = [0u8; 8192];
    let (head, mut body) = match http1::read_request_head(&mut s, 1 << 20) {
        Ok(read) => read,
        Err(http1::ReadError::Closed(_)) => bail!("closed before a request"),
        Err(e) => return Err(e.into()),
    };
    let (method, target) = (head.method, head.target);
    let headers: Vec<(String, String)> = http1::text_headers(head.headers);
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while body.len() < len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    body.truncate(len);
    let rec = Recorded {
        method: method.clone(),
        target: target.clone(),
        headers,
        body: body.clone(),
    };
    if let Ok(mut r) = ctx.reqs.lock() {
        r.push(rec);
    }
    if target.starts_with("/hang") {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        s.set_poll(Some(Duration::from_millis(50)))?;
        while !ctx.stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            match s.read(&mut chunk) {
                Ok(0) => {
                    ctx.closed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    ctx.closed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
        return Ok(());
    }
    if target.starts_with("/close") {
        return Ok(());
    }
    if let Some(ms) = target
        .strip_prefix("/delay/")
        .and_then(|r| r.split(['/', '?']).next())
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if target.starts_with("/big-head") {
        let resp = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            "b".repeat(9000)
        );
        s.write_all(resp.as_bytes())?;
        return Ok(());
    }
    if target.starts_with("/chunked") {
        let resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        s.write_all(resp.as_bytes())?;
        return Ok(());
    }
    let out = serde_json::json!({
        "method": method,
        "target": target,
        "body": String::from_utf8_lossy(&body),
    })
    .to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Test-Server: yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
        out.len()
    );
    s.write_all(resp.as_bytes())?;
    s.flush()?;
    Ok(())
}

/// A CA and a `tls.test` certificate it signed; the acceptor serves that certificate.
fn tls_acceptor() -> Result<(openssl::ssl::SslAcceptor, Vec<u8>)> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::ssl::{SslAcceptor, SslMethod};
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509NameBuilder, X509};

    let name = |cn: &str| -> Result<openssl::x509::X509Name> {
        let mut b = X509NameBuilder::new()?;
        b.append_entry_by_text("CN", cn)?;
        Ok(b.build())
    };
    let serial = || -> Result<openssl::asn1::Asn1Integer> {
        let mut bn = BigNum::new()?;
        bn.rand(64, MsbOption::MAYBE_ZERO, false)?;
        Ok(bn.to_asn1_integer()?)
    };
    let ca_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut ca = X509::builder()?;
    ca.set_version(2)?;
    ca.set_serial_number(&*serial()?)?;
    ca.set_subject_name(&*name("spec test CA")?)?;
    ca.set_issuer_name(&*name("spec test CA")?)?;
    ca.set_pubkey(&ca_key)?;
    ca.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    ca.set_not_after(&*Asn1Time::days_from_now(2)?)?;
    ca.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    ca.sign(&ca_key, MessageDigest::sha256())?;
    let ca = ca.build();

    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    cert.set_serial_number(&*serial()?)?;
    cert.set_subject_name(&*name("tls.test")?)?;
    cert.set_issuer_name(ca.subject_name())?;
    cert.set_pubkey(&key)?;
    cert.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    cert.set_not_after(&*Asn1Time::days_from_now(2)?)?;
    let san = SubjectAlternativeName::new()
        .dns("tls.test")
        .build(&cert.x509v3_context(Some(&ca), None))?;
    cert.append_extension(san)?;
    cert.sign(&ca_key, MessageDigest::sha256())?;
    let cert = cert.build();

    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    acceptor.set_private_key(&key)?;
    acceptor.set_certificate(&cert)?;
    acceptor.check_private_key()?;
    Ok((acceptor.build(), ca.to_pem()?))
}

/// A kong.yml with one service (`svc`, `url: upstream`) and routes `(name, path, probe config)`,
/// each with its own chain running the probe filter with its config.
pub fn probe_routes_yml(upstream: &str, routes: &[(&str, &str, Value)]) -> String {
    let mut out = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: {upstream}\n    routes:\n"
    );
    for (name, path, config) in routes {
        out.push_str(&format!(
            "      - name: {name}\n        paths: [{path}]\n        filter_chains:\n          - filters:\n              - name: probe\n                config: {}\n",
            yaml_string(&config.to_string())
        ));
    }
    out
}
