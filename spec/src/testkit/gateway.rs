//! Starting the `gateway` binary (the Kong stand-in) for a test: writes the kong.yml and the
//! filters into a fresh temp dir, picks free ports, and exposes the proxy and admin addresses,
//! `/__metrics`, `/__status` and the error log.

use super::http;
use super::process::{repo_root, SpecProcess};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A running gateway; stopped and its temp dir removed when dropped.
pub struct Gateway {
    pub process: SpecProcess,
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

fn write_setup(opts: &GatewayOpts, dir: &Path) -> Result<Vec<String>> {
    let config = dir.join("kong.yml");
    std::fs::write(&config, &opts.kong_yml)?;
    let filters = dir.join("filters");
    for (name, wasm, meta) in &opts.filters {
        std::fs::copy(wasm, filters.join(format!("{name}.wasm")))
            .with_context(|| format!("copy {}", wasm.display()))?;
        if let Some(meta) = meta {
            std::fs::write(filters.join(format!("{name}.meta.json")), meta)?;
        }
    }
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
    Ok(args)
}

impl Gateway {
    /// Starts a gateway and waits for its `listening` line.
    pub fn start(opts: &GatewayOpts) -> Result<Gateway> {
        let dir = temp_dir()?;
        let args = write_setup(opts, &dir)?;
        let process = match SpecProcess::start("gateway", &args) {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let http = process.addr("http")?.to_string();
        let admin = process.addr("admin")?.to_string();
        Ok(Gateway {
            process,
            dir,
            http,
            admin,
        })
    }

    /// Starts a gateway that is expected to refuse to start; returns its error output.
    pub fn start_failure(opts: &GatewayOpts) -> Result<String> {
        match Gateway::start(opts) {
            Ok(_) => bail!("gateway started but was expected to refuse"),
            Err(e) => Ok(format!("{e:#}")),
        }
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

    fn admin_json(&self, path: &str) -> Result<Value> {
        http::get(&format!("http://{}{path}", self.admin), &[])?.json()
    }

    /// `GET /__metrics` (metric name → value).
    pub fn metrics(&self) -> Result<Value> {
        self.admin_json("/__metrics")
    }

    /// `GET /__status`.
    pub fn status(&self) -> Result<Value> {
        self.admin_json("/__status")
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
        self.process.stderr_lines()
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

impl Drop for Gateway {
    fn drop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
