//! `make bench` on Kong's engine (nginx + ngx_wasm_module as Kong 3.9 builds it, found as the
//! tests find it): one gateway, 2 workers, four routes to a plain nginx upstream on loopback —
//! no filter, an empty filter (`spec/empty`), cloudrun_oidc with one valid token repeated (the
//! hot path: verified-token cache, cached Google token, two claims to headers) and cloudrun_oidc
//! with a token never seen before on every request (RS256, signed before the timed rounds, pool
//! sized from a short calibration) — plus the probe filter's host-call routes
//! ([`super::hostcalls`]). Load is `wrk` with 2 connections; every route runs once per round,
//! rounds interleaved, the best round counts (highest req/s, lowest CPU per request). CPU per
//! request is the nginx workers' utime + stime (`/proc`) over a run divided by its requests.
//!
//! Without the engine (or wrk) the part is skipped and says why, in the output and in
//! `summary.json` (`engine.skipped`).

use super::engine_algs::{self, AlgKeys, ALGS};
use super::engine_report::{Figures, Measured, Report, RoundFigure};
use super::engine_world::{request_headers, routes, Route, World};
use super::{cpu, tokens, wrk};
use anyhow::{bail, Context, Result};
use cloudrun_spec::jose::{Alg, KeyKind, SigningKey};
use cloudrun_spec::testkit::engine::{wasmx_nginx, Engine};
use cloudrun_spec::testkit::gateway::probe_seen;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of the engine part (flattened into the bench's own).
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Only the engine part; its figures are merged into an existing summary.json, its tables
    /// go to engine.md beside it.
    #[arg(long)]
    pub only_engine: bool,
    /// Skip the engine part.
    #[arg(long, conflicts_with = "only_engine")]
    pub skip_engine: bool,
    /// Interleaved rounds on the engine (the best counts).
    #[arg(long, default_value_t = 2)]
    pub engine_rounds: usize,
    /// Seconds of load per route per round (no filter, empty, hot, fresh).
    #[arg(long, default_value_t = 8)]
    pub engine_seconds: u64,
    /// Seconds of load per algorithm (PS256, ES256, ES384, EdDSA) with new tokens on the fresh
    /// route per round (0: none); RS256 is the fresh route itself.
    #[arg(long, default_value_t = 3)]
    pub engine_alg_seconds: u64,
    /// Seconds of load per host-call route per round (0: no host-call routes).
    #[arg(long, default_value_t = 4)]
    pub engine_hostcall_seconds: u64,
    /// Host calls per request on a host-call route.
    #[arg(long, default_value_t = 100)]
    pub engine_hostcall_repeat: u64,
    /// wrk connections (one wrk thread per connection, at most 2).
    #[arg(long, default_value_t = 2)]
    pub engine_connections: usize,
    /// nginx workers of the engine's gateway.
    #[arg(long, default_value_t = 2)]
    pub engine_workers: usize,
    /// Fresh tokens signed per round: calibrated req/s × seconds × this.
    #[arg(long, default_value_t = 1.5)]
    pub engine_fresh_margin: f64,
    /// nginx binary of the upstream (default: the engine's own, run without wasm).
    #[arg(long)]
    pub upstream_nginx: Option<PathBuf>,
    /// The gateway loaded: `wasmx` (Kong's engine) or `standin` (the same harness on the Kong
    /// stand-in, to compare; its summary keys are `standin_wrk_*` instead of `engine_*`).
    #[arg(long, default_value = "wasmx", value_parser = Engine::parse)]
    pub engine_gateway: Engine,
}

impl EngineArgs {
    /// The summary.json key prefix of the figures: `engine`, or `standin_wrk` on the stand-in.
    pub fn prefix(&self) -> &'static str {
        match self.engine_gateway {
            Engine::Wasmx => "engine",
            Engine::StandIn => "standin_wrk",
        }
    }

    /// The gateway's name in titles.
    pub fn gateway_name(&self) -> &'static str {
        match self.engine_gateway {
            Engine::Wasmx => "Kong's engine",
            Engine::StandIn => "the Kong stand-in",
        }
    }
}

/// Runs the engine part unless skipped; an absent engine or wrk is a [`Report::Skipped`].
pub fn run(args: &EngineArgs, wasm: &Path, run_id: u64) -> Result<Report> {
    if args.skip_engine {
        return Ok(Report::Skipped("--skip-engine".into()));
    }
    let nginx = match wasmx_nginx() {
        Ok(path) => path,
        Err(e) => return Ok(Report::Skipped(format!("{e:#}"))),
    };
    let Some(wrk_bin) = wrk::find() else {
        return Ok(Report::Skipped(
            "wrk is not installed (`apt-get install wrk`; `make bench` installs it)".into(),
        ));
    };
    eprintln!(
        "bench: engine: {} with {}",
        nginx.display(),
        wrk_bin.display()
    );
    measure(args, &nginx, &wrk_bin, wasm, run_id).map(|f| Report::Measured(Box::new(f)))
}

/// What every load on the engine needs: the world, wrk, the request headers, the options.
struct Bench<'a> {
    world: &'a World,
    wrk: &'a Path,
    headers: &'a [(String, String)],
    args: &'a EngineArgs,
}

impl Bench<'_> {
    /// wrk threads (one per connection, at most 2): the number of token files per pool.
    fn threads(&self) -> usize {
        self.args.engine_connections.clamp(1, 2)
    }

    /// Loads `route` for its seconds; the workers' CPU over the run. Every answer must be 2xx
    /// and the workers the same before and after.
    fn load(&self, route: &Route, token_files: Option<PathBuf>) -> Result<RoundFigure> {
        let world = self.world;
        let pids = world.worker_pids();
        let before: Vec<f64> = pids.iter().filter_map(|p| cpu::pid_cpu_secs(*p)).collect();
        let machine_before = cpu::machine_busy_secs().unwrap_or(f64::NAN);
        let outcome = wrk::run(
            self.wrk,
            &world.dir,
            &wrk::Run {
                url: world.gateway.url(&route.path),
                duration: Duration::from_secs(route.seconds),
                connections: self.args.engine_connections,
                headers: self.headers,
                token_files,
            },
        )?;
        let after: Vec<f64> = pids.iter().filter_map(|p| cpu::pid_cpu_secs(*p)).collect();
        let machine = cpu::machine_busy_secs().unwrap_or(f64::NAN) - machine_before;
        if world.worker_pids() != pids || after.len() != before.len() {
            bail!(
                "a gateway worker exited during {}:\n{}",
                route.key,
                world.log_tail()
            );
        }
        if outcome.requests == 0
            || outcome.bad_status > 0
            || outcome.socket_errors * 1000 > outcome.requests
        {
            bail!(
                "{}: {} requests, {} non-2xx answers, {} socket errors; engine log:\n{}",
                route.key,
                outcome.requests,
                outcome.bad_status,
                outcome.socket_errors,
                world.log_tail()
            );
        }
        let spent: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let total: f64 = spent.iter().sum();
        Ok(RoundFigure {
            cpu_us: total * 1e6 / outcome.requests as f64,
            machine_cpu_us: machine * 1e6 / outcome.requests as f64,
            busy_workers: spent.iter().filter(|s| **s > total / 10.0).count(),
            outcome,
        })
    }

    /// Checks that each route does what its figure assumes: 200 with the hot token everywhere,
    /// cloudrun_oidc refusing a request without a token (so it runs), every probe call
    /// answering.
    fn check_routes(&self, routes: &[Route]) -> Result<()> {
        let with_token: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for route in routes {
            let resp = self.world.gateway.get(&route.path, &with_token)?;
            if resp.status != 200 {
                bail!("{} answered {} to the hot token", route.path, resp.status);
            }
            if route.key == "hot" || route.fresh {
                let bare = self.world.gateway.get(&route.path, &[])?;
                if bare.status != 401 {
                    bail!(
                        "{} answered {} without a token: is cloudrun_oidc running?",
                        route.path,
                        bare.status
                    );
                }
            }
            if route.key.starts_with("hc_") {
                let seen = probe_seen(&resp);
                if !seen
                    .iter()
                    .any(|s| s.starts_with("repeat_") && s.ends_with(":0:0"))
                {
                    bail!(
                        "{}: the probe's calls failed or found nothing: {seen:?}",
                        route.path
                    );
                }
            }
        }
        Ok(())
    }

    /// Untimed load for 1 s on every route but the fresh one (the first requests fetch the
    /// Google token); the hot route's req/s.
    fn warm_up(&self, routes: &[Route]) -> Result<f64> {
        let mut hot_rps = 0.0;
        for route in routes.iter().filter(|r| !r.fresh) {
            let short = Route {
                seconds: 1,
                ..route.clone()
            };
            let fig = self.load(&short, None)?;
            if route.key == "hot" {
                hot_rps = fig.outcome.rps();
            }
        }
        Ok(hot_rps)
    }

    /// Signs `count` fresh `alg` tokens from index `first` and writes them for wrk's threads.
    fn token_pool(
        &self,
        (key, alg): (&SigningKey, Alg),
        name: &str,
        first: usize,
        count: usize,
        run_id: u64,
    ) -> Result<(PathBuf, Vec<String>)> {
        let pool = tokens::sign(key, alg, first, count, run_id)?;
        let prefix = tokens::write_per_thread(&self.world.dir, name, &pool, self.threads())?;
        Ok((prefix, pool))
    }

    /// The fresh route's req/s over 2 s, with a pool that the hot route's rate (an upper
    /// bound) cannot exhaust; also the fresh route's warm-up.
    fn calibrate(&self, route: &Route, key: &SigningKey, hot_rps: f64, run_id: u64) -> Result<f64> {
        let count = tokens::pool_size(hot_rps, 2.0, 1.2);
        let (prefix, _) =
            self.token_pool((key, Alg::RS256), "calibration", 40_000_000, count, run_id)?;
        let short = Route {
            seconds: 2,
            ..route.clone()
        };
        let fig = self.load(&short, Some(prefix.clone()));
        tokens::remove_per_thread(&prefix, self.threads());
        let fig = fig?;
        Ok(if fig.outcome.exhausted {
            hot_rps
        } else {
            fig.outcome.rps()
        })
    }

    /// Every route once per round, in order, rounds one after the other; in round `r` a fresh
    /// route takes its tokens from `pools[r][route key]`.
    fn run_rounds(
        &self,
        pools: &[HashMap<String, PathBuf>],
        measured: &mut [Measured],
    ) -> Result<()> {
        for (r, pool) in pools.iter().enumerate() {
            for m in measured.iter_mut() {
                let tokens = match m.route.fresh {
                    true => Some(pool.get(&m.route.key).cloned().with_context(|| {
                        format!("no token pool for {} in round {}", m.route.key, r + 1)
                    })?),
                    false => None,
                };
                let fig = self.load(&m.route, tokens)?;
                eprintln!(
                    "bench: engine round {}/{}: {:<22} {:>7.0} req/s {:>7.1} µs CPU/req \
                     ({} busy worker(s){})",
                    r + 1,
                    pools.len(),
                    m.route.key,
                    fig.outcome.rps(),
                    fig.cpu_us,
                    fig.busy_workers,
                    if fig.outcome.exhausted {
                        ", OUT OF FRESH TOKENS"
                    } else {
                        ""
                    }
                );
                m.rounds.push(fig);
            }
        }
        Ok(())
    }
}

fn measure(
    args: &EngineArgs,
    nginx: &Path,
    wrk_bin: &Path,
    wasm: &Path,
    run_id: u64,
) -> Result<Figures> {
    let started = Instant::now();
    let mut routes = routes(args);
    routes.extend(engine_algs::routes(args));
    let key = SigningKey::generate(KeyKind::Rsa(2048), "rsa-1")?;
    let alg_keys = AlgKeys::generate()?;
    let hot_token = tokens::sign(&key, Alg::RS256, 30_000_000, 1, run_id)?
        .pop()
        .context("no hot token")?;
    let headers = request_headers(&hot_token);
    let mut jwks = vec![key.public_jwk_for(None)];
    jwks.extend(alg_keys.public_jwks());
    let world = World::start(args, nginx, wasm, jwks, &routes)?;
    eprintln!(
        "bench: engine: gateway {} (workers {:?}), upstream {}; checks and warm-up",
        world.gateway.http,
        world.worker_pids(),
        world.upstream.addr
    );
    let bench = Bench {
        world: &world,
        wrk: wrk_bin,
        headers: &headers,
        args,
    };
    bench.check_routes(&routes)?;
    let hot_rps = bench.warm_up(&routes)?;
    let fresh_route = routes.iter().find(|r| r.fresh).context("no fresh route")?;
    let calibration_rps = bench.calibrate(fresh_route, &key, hot_rps, run_id)?;
    let rounds = args.engine_rounds.max(1);
    let pool = tokens::pool_size(
        calibration_rps,
        args.engine_seconds as f64,
        args.engine_fresh_margin,
    );
    eprintln!(
        "bench: engine: fresh route ~{calibration_rps:.0} req/s: signing {rounds} × {pool} tokens"
    );
    let signing = Instant::now();
    let mut pools: Vec<HashMap<String, PathBuf>> = Vec::new();
    let mut openssl_us: Vec<(Alg, f64)> = Vec::new();
    for r in 0..rounds {
        let first = 50_000_000 + r * 10_000_000;
        let mut round = HashMap::new();
        let (prefix, tokens) = bench.token_pool(
            (&key, Alg::RS256),
            &format!("round{r}"),
            first,
            pool,
            run_id,
        )?;
        if r == 0 {
            openssl_us.push((
                Alg::RS256,
                engine_algs::openssl_us(&key, Alg::RS256, &tokens)?,
            ));
        }
        round.insert("fresh".to_string(), prefix);
        for route in routes.iter().filter(|r| r.fresh && r.key != "fresh") {
            let (alg, signer) = ALGS
                .iter()
                .find(|(alg, _, _)| engine_algs::route_key(*alg) == route.key)
                .and_then(|(alg, _, _)| Some((*alg, alg_keys.for_alg(*alg, &key)?)))
                .with_context(|| format!("no key for {}", route.key))?;
            let name = format!("round{r}-{}", route.key);
            let count = engine_algs::POOL_PER_ROUND;
            let (prefix, tokens) = bench.token_pool((signer, alg), &name, first, count, run_id)?;
            if r == 0 {
                openssl_us.push((alg, engine_algs::openssl_us(signer, alg, &tokens)?));
            }
            round.insert(route.key.clone(), prefix);
        }
        pools.push(round);
    }
    let signing_secs = signing.elapsed().as_secs_f64();
    let mut measured: Vec<Measured> = routes
        .iter()
        .map(|r| Measured {
            route: r.clone(),
            rounds: Vec::new(),
        })
        .collect();
    let result = bench.run_rounds(&pools, &mut measured);
    for prefix in pools.iter().flat_map(HashMap::values) {
        tokens::remove_per_thread(prefix, bench.threads());
    }
    result?;
    world.gateway.check_engine_log()?;
    Ok(Figures {
        measured,
        args: args.clone(),
        gateway: match args.engine_gateway {
            Engine::Wasmx => nginx.display().to_string(),
            Engine::StandIn => "the stand-in (target/spec/gateway)".into(),
        },
        upstream: match &args.upstream_nginx {
            Some(p) => format!("{} (1 worker, `return 200`)", p.display()),
            None => "the engine's nginx without wasm (1 worker, `return 200`)".into(),
        },
        calibration_rps,
        pool_per_round: pool,
        openssl_us,
        signing_secs,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

/// `--only-engine`: runs the engine part, prints it, merges its keys into `out` (summary.json,
/// other keys kept) and writes its tables to `engine.md` beside it.
pub fn only(args: &EngineArgs, wasm: &Path, out: &Path, run_id: u64) -> Result<()> {
    let report = run(args, wasm, run_id)?;
    let text = report.render();
    println!("{text}");
    let mut summary: Map<String, Value> = std::fs::read_to_string(out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    summary.retain(|k, _| !k.starts_with(args.prefix()));
    summary.extend(report.summary());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&summary)? + "\n")?;
    std::fs::write(out.with_file_name("engine.md"), &text)?;
    eprintln!("bench: wrote {} (engine keys) and engine.md", out.display());
    Ok(())
}
