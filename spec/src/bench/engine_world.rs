//! The engine bench's world: the routes of its gateway, the kong.yml that declares them, the
//! request headers, and the processes (plain nginx upstream, mock Google, the gateway on Kong's
//! engine with cloudrun_oidc, the empty filter and the probe filter).

use super::cpu;
use super::engine::EngineArgs;
use super::hostcalls::{self, Case};
use super::upstream::PlainNginx;
use anyhow::{bail, Context, Result};
use cloudrun_spec::testkit::gateway::{probe_wasm, yaml_string, Backend, Gateway, GatewayOpts};
use cloudrun_spec::testkit::mocks::{GoogleOptions, MockGoogle};
use cloudrun_spec::testkit::process::repo_root;
use cloudrun_spec::testkit::stack::filter_meta;
use serde_json::json;
use std::path::{Path, PathBuf};

/// A route of the engine's gateway.
#[derive(Clone)]
pub struct Route {
    /// Summary key part: `no_filter`, `empty`, `hot`, `fresh`, `hc_<call>`.
    pub key: String,
    pub label: String,
    pub path: String,
    pub seconds: u64,
    /// Every request carries a token never sent before.
    pub fresh: bool,
}

/// The four main routes, then the host-call routes (baseline first).
pub fn routes(args: &EngineArgs) -> Vec<Route> {
    let main = |key: &str, label: &str, path: &str, fresh: bool| Route {
        key: key.into(),
        label: label.into(),
        path: path.into(),
        seconds: args.engine_seconds,
        fresh,
    };
    let mut out = vec![
        main("no_filter", "no filter", "/plain", false),
        main(
            "empty",
            "an empty proxy-wasm filter (`on_http_request_headers` returns `Continue`)",
            "/empty",
            false,
        ),
        main(
            "hot",
            "cloudrun_oidc, one valid token repeated (verified-token cache, cached Google token)",
            "/hot",
            false,
        ),
        main(
            "fresh",
            "cloudrun_oidc, a valid RS256 token never seen before on every request",
            "/fresh",
            true,
        ),
    ];
    if args.engine_hostcall_seconds > 0 {
        for case in std::iter::once(hostcalls::BASELINE).chain(hostcalls::cases()) {
            let (key, path) = case.route();
            out.push(Route {
                key,
                label: case.what.into(),
                path,
                seconds: args.engine_hostcall_seconds,
                fresh: false,
            });
        }
    }
    out
}

/// The request headers of every route (10 with wrk's `Host`); the fresh route replaces
/// `Authorization`.
pub fn request_headers(token: &str) -> Vec<(String, String)> {
    [
        ("Authorization", format!("Bearer {token}")),
        ("User-Agent", "bench-client/1.0 (wrk)".into()),
        ("Accept", "application/json".into()),
        ("Accept-Encoding", "gzip, deflate, br".into()),
        ("Accept-Language", "en-US,en;q=0.9".into()),
        ("Cache-Control", "no-cache".into()),
        (
            "X-Request-Id",
            "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
        ),
        (
            "Traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        ),
        ("X-Client-Version", "2026.12.1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One filter-chain entry of kong.yml.
fn chain(filter: &str, config: &str) -> String {
    format!(
        "        filter_chains:\n          - filters:\n              - name: {filter}\n                config: {config}\n"
    )
}

/// kong.yml: one service (the upstream) and every route of [`routes`].
fn kong_yml(upstream: &str, routes: &[Route], oidc_config: &str, repeat: u64) -> String {
    let mut out = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: upstream\n    url: http://{upstream}\n    routes:\n"
    );
    let cases: Vec<Case> = std::iter::once(hostcalls::BASELINE)
        .chain(hostcalls::cases())
        .collect();
    // The per-algorithm loads reuse the fresh route's path.
    for route in routes.iter().filter(|r| !r.key.starts_with("verify_")) {
        out.push_str(&format!(
            "      - name: {}\n        paths: [\"{}\"]\n        strip_path: false\n",
            route.key, route.path
        ));
        match route.key.as_str() {
            "no_filter" => {}
            "empty" => out.push_str(&chain("empty", "\"\"")),
            "hot" | "fresh" => out.push_str(&chain("cloudrun_oidc", oidc_config)),
            key => {
                if let Some(case) = cases.iter().find(|c| c.route().0 == key) {
                    let config = yaml_string(&case.probe_config(repeat).to_string());
                    out.push_str(&chain("probe", &config));
                }
            }
        }
    }
    out
}

/// The processes of one engine bench: upstream, mock Google, the gateway; removed when dropped.
pub struct World {
    pub gateway: Gateway,
    _google: MockGoogle,
    pub upstream: PlainNginx,
    /// Scratch directory (wrk script, token files).
    pub dir: PathBuf,
}

impl World {
    pub fn start(
        args: &EngineArgs,
        nginx: &Path,
        wasm: &Path,
        jwks: Vec<serde_json::Value>,
        routes: &[Route],
    ) -> Result<World> {
        let dir = repo_root().join("target/bench/engine");
        std::fs::create_dir_all(&dir)?;
        let upstream_bin = args.upstream_nginx.clone().unwrap_or_else(|| nginx.into());
        let upstream = PlainNginx::start(&upstream_bin, &dir).context("starting the upstream")?;
        let google = MockGoogle::start(GoogleOptions::default()).context("starting mock-google")?;
        let mut config = crate::base_config(&json!({ "keys": jwks }));
        config["google_id_token"] = json!({
            "audience": "https://orders-bench-uc.a.run.app",
            "source": "metadata",
            "metadata_host": google.http_addr(),
        });
        let meta = filter_meta();
        let oidc_config = match &meta {
            Some(_) => config.to_string(),
            None => serde_json::to_string(&config.to_string())?,
        };
        let empty = repo_root().join("target/wasm32-wasip1/release/empty_filter.wasm");
        if !empty.is_file() {
            bail!("{} is missing: `make bench` builds it", empty.display());
        }
        let gateway = Gateway::start(&GatewayOpts {
            kong_yml: kong_yml(
                &upstream.addr,
                routes,
                &oidc_config,
                args.engine_hostcall_repeat,
            ),
            filters: vec![
                ("cloudrun_oidc".into(), wasm.to_path_buf(), meta),
                ("empty".into(), empty, None),
                ("probe".into(), probe_wasm()?, None),
            ],
            workers: args.engine_workers,
            shm_kv: vec!["cloudrun_oidc=12m".into()],
            engine: args.engine_gateway,
            ..GatewayOpts::default()
        })
        .context("starting the gateway on Kong's engine")?;
        Ok(World {
            gateway,
            _google: google,
            upstream,
            dir,
        })
    }

    /// The nginx workers, or the stand-in's one process.
    pub fn worker_pids(&self) -> Vec<u32> {
        match &self.gateway.backend {
            Backend::Wasmx(n) => n.worker_pids(),
            Backend::StandIn(_) => cpu::child_pids("gateway"),
        }
    }

    /// The last lines of the engine's error log.
    pub fn log_tail(&self) -> String {
        let log = self.gateway.stderr_lines();
        log.get(log.len().saturating_sub(20)..)
            .unwrap_or_default()
            .join("\n")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // The engine's log was checked when the figures were taken; do not panic on it here.
        self.gateway.crash_expected = true;
    }
}
