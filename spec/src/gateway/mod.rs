//! The HTTP gateway (the Kong stand-in's nginx): reads a DB-less kong.yml, loads the filters,
//! starts N workers (each with its own filter instances) and an admin listener, hands client
//! connections to workers round-robin, runs filter chains and proxies to services.

pub mod cjson;
pub mod kong_yml;
pub mod log;
pub mod proxy;
pub mod router;
pub mod schema;
pub mod worker;

use crate::host::dispatch::Resolver;
use crate::host::shared_data::{ZoneDecl, Zones};
use crate::host::World;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `gateway` command line (see spec/README.md).
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    about = "Kong stand-in: proxy-wasm host on wasmtime + HTTP gateway reading a DB-less kong.yml"
)]
pub struct Opts {
    /// DB-less kong.yml (`_format_version: "3.0"`).
    #[arg(long)]
    pub config: PathBuf,
    /// Directory of filters: `<name>.wasm` and optional `<name>.meta.json`.
    #[arg(long)]
    pub filters: PathBuf,
    /// Proxy listener (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Admin listener (`/__metrics`, `/__status`, `/__fault`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin_listen: String,
    /// Number of workers, each with its own filter instances.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// shm_kv zone `NAME=SIZE[ eviction=slru|lru|none]` (stands for
    /// `KONG_NGINX_WASM_SHM_KV_<NAME>=SIZE[ eviction=...]`, which Kong writes as
    /// `shm_kv NAME SIZE[ eviction=...];`).
    #[arg(long = "shm-kv")]
    pub shm_kv: Vec<String>,
    /// `HOST=IP` (the container's /etc/hosts) or `HOST:PORT=IP:PORT` (that exact host and port
    /// goes to another address), for upstreams and request-context callouts (tick callouts only
    /// with `--lua-resolver`).
    #[arg(long)]
    pub resolve: Vec<String>,
    /// Tick callouts resolve like request callouts (`KONG_NGINX_WASM_PROXY_WASM_LUA_RESOLVER=on`).
    #[arg(long)]
    pub lua_resolver: bool,
    /// PEM CA bundle for HTTPS callouts instead of the system CAs.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Error log level (nginx's `error_log ... LEVEL`): debug, info, notice (default, as in Kong),
    /// warn, error, crit. Overrides `SPEC_LOG_LEVEL`.
    #[arg(long)]
    pub log_level: Option<String>,
}

fn resolver(opts: &Opts) -> Result<Resolver> {
    let mut resolver = Resolver {
        lua_resolver: opts.lua_resolver,
        ca_file: opts.ca_file.clone(),
        ..Resolver::default()
    };
    for entry in &opts.resolve {
        resolver.add_entry(entry).map_err(|e| anyhow!(e))?;
    }
    if let Some(ca) = &opts.ca_file {
        if !ca.is_file() {
            bail!("--ca-file {}: no such file", ca.display());
        }
    }
    Ok(resolver)
}

fn zones(opts: &Opts) -> Result<Zones> {
    let decls = opts
        .shm_kv
        .iter()
        .map(|entry| ZoneDecl::parse(entry))
        .collect::<Result<Vec<_>>>()?;
    Zones::declare(&decls)
}

/// Runs the gateway until killed.
pub fn run(opts: Opts) -> Result<()> {
    if opts.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if let Some(level) = &opts.log_level {
        log::set_level(level)?;
    }
    let text = std::fs::read_to_string(&opts.config)
        .with_context(|| format!("reading {}", opts.config.display()))?;
    let yml = kong_yml::KongYml::parse(&text)?;
    schema::check_dir(&opts.filters)?;
    let mut filters = schema::Filters::new(&opts.filters);
    let table = router::Table::build(&yml, &mut filters)
        .map_err(|e| anyhow!("failed parsing declarative configuration: {e:#}"))?;
    let world = Arc::new(World::new(opts.workers, zones(&opts)?, resolver(&opts)?));
    let engine = wasmtime::Engine::default();
    let mut modules = BTreeMap::new();
    for (name, meta) in filters.all() {
        if table.roots.contains_key(name) {
            let module = wasmtime::Module::from_file(&engine, &meta.wasm)
                .map_err(|e| anyhow!("[wasm] failed loading \"{name}\" module: {e:#}"))?;
            modules.insert(name.clone(), module);
        }
    }
    let http = std::net::TcpListener::bind(&opts.listen)
        .with_context(|| format!("bind {}", opts.listen))?;
    let admin = std::net::TcpListener::bind(&opts.admin_listen)
        .with_context(|| format!("bind {}", opts.admin_listen))?;
    http.set_nonblocking(true)?;
    admin.set_nonblocking(true)?;
    let http_addr = http.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let shared = Arc::new(worker::Shared {
        table,
        world: world.clone(),
        engine,
        modules,
        listen_port: http_addr.port(),
    });

    let mut senders = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for id in 0..opts.workers {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        worker::spawn(id, shared.clone(), rx, ready_tx.clone())?;
        senders.push(tx);
    }
    for _ in 0..opts.workers {
        ready_rx.recv().context("worker died while starting")??;
    }
    log::emit(
        "notice",
        0,
        None,
        &format!(
            "gateway started: {} worker(s), listening on {http_addr}",
            opts.workers
        ),
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening http={http_addr} admin={admin_addr}")?;
    out.flush()?;
    drop(out);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let http = tokio::net::TcpListener::from_std(http)?;
        let admin = tokio::net::TcpListener::from_std(admin)?;
        tokio::spawn(serve_admin(admin, world));
        let mut k: u64 = 0;
        loop {
            let Ok((stream, peer)) = http.accept().await else {
                continue;
            };
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            let idx = (k % senders.len() as u64) as usize;
            k += 1;
            if let Some(tx) = senders.get(idx) {
                let _ = tx.send(worker::Conn {
                    stream,
                    peer,
                    id: k,
                });
            }
        }
    })
}

async fn serve_admin(listener: tokio::net::TcpListener, world: Arc<World>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let world = world.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let world = world.clone();
                    async move {
                        let post = req.method() == hyper::Method::POST;
                        let path = req.uri().path().to_string();
                        let body = match req.into_body().collect().await {
                            Ok(collected) => collected.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        let body = post.then_some(body);
                        Ok::<_, std::convert::Infallible>(admin_response(
                            &world,
                            &path,
                            body.as_deref(),
                        ))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers an admin request; `post` is the body of a `POST` (`None` for other methods).
fn admin_response(world: &World, path: &str, post: Option<&[u8]>) -> hyper::Response<Full<Bytes>> {
    let (status, body) = match (path, post) {
        ("/__metrics", None) => (200, world.metrics.to_json()),
        ("/__status", None) => (200, status_json(world)),
        ("/__fault", None) => (200, fault_json(world)),
        ("/__fault", Some(body)) => set_fault(world, body),
        _ => (404, serde_json::json!({"message": "Not found"})),
    };
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::NOT_FOUND);
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The host fault in force: `clock` (the clock call fails) or `none`.
fn fault_json(world: &World) -> serde_json::Value {
    let clock = world.clock_fails.load(Ordering::Relaxed);
    serde_json::json!({"fault": if clock { "clock" } else { "none" }})
}

/// `{"fault": "clock"}` makes every worker's `proxy_get_current_time_nanoseconds` fail;
/// `{"fault": "none"}` clears it.
fn set_fault(world: &World, body: &[u8]) -> (u16, serde_json::Value) {
    let wanted = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("fault").and_then(|f| f.as_str()).map(str::to_string));
    match wanted.as_deref() {
        Some("clock") => world.clock_fails.store(true, Ordering::Relaxed),
        Some("none") => world.clock_fails.store(false, Ordering::Relaxed),
        _ => {
            return (
                400,
                serde_json::json!({"message": "expected {\"fault\": \"clock\" | \"none\"}"}),
            )
        }
    }
    (200, fault_json(world))
}

fn status_json(world: &World) -> serde_json::Value {
    let created = world
        .instances_created
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let memory = world
        .memory_bytes
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let workers: Vec<serde_json::Value> = created
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mem = memory.get(i).cloned().unwrap_or_default();
            serde_json::json!({"worker": i, "instances_created": m, "memory_bytes": mem})
        })
        .collect();
    let shm: serde_json::Map<String, serde_json::Value> = world
        .zones
        .usage()
        .into_iter()
        .map(|(name, (entries, used, capacity))| {
            (
                name,
                serde_json::json!({"entries": entries, "used": used, "capacity": capacity}),
            )
        })
        .collect();
    serde_json::json!({"workers": workers, "shm_kv": shm, "process": process_memory()})
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process in bytes, from `/proc/self/status`
/// (empty where there is no procfs).
fn process_memory() -> serde_json::Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    let mut out = serde_json::Map::new();
    for (field, name) in [("VmHWM:", "vm_hwm_bytes"), ("VmRSS:", "vm_rss_bytes")] {
        if let Some(k) = kib(field) {
            out.insert(name.into(), serde_json::json!(k * 1024));
        }
    }
    serde_json::Value::Object(out)
}
