//! `make bench`: what the filter costs, measured in one run.
//!
//! 1. The release `dist/cloudrun_oidc.wasm` in the spec host, in-process (wasmtime, no network):
//!    filter time (`proxy_on_request_headers`) per request for a fresh token per algorithm
//!    (verified-token cache miss), for a repeated token (cache hit), for the hot path (keys
//!    fetched by `jwks_url`, Google ID token cached, claims mapped to headers), for early
//!    refusals, and how it grows with JWKS size, number of routes and token size.
//! 2. The same signatures natively: our code (`cloudrun_oidc::jose::signature` / `verifier`, native
//!    rlib) and OpenSSL (the reference, through the spec's `jose` module).
//! 3. HTTP throughput through the Kong stand-in (`gateway`, real loopback HTTP, keep-alive):
//!    a route without the filter, the filter with one repeated token, a fresh token per request.
//! 4. Kong's engine (nginx + ngx_wasm_module, `bench/engine.rs`): req/s and CPU per request with
//!    wrk for no filter, an empty filter, the hot path and fresh tokens, and host-call costs.
//!    `--only-engine` runs this part alone.
//!
//! Prints Markdown tables and writes `target/bench/summary.json`. Every loop is bounded in count
//! and time; nothing here asserts on timings.

#[path = "../bench/cpu.rs"]
mod cpu;
#[path = "../bench/driver.rs"]
mod driver;
#[path = "../bench/engine.rs"]
mod engine;
#[path = "../bench/engine_algs.rs"]
mod engine_algs;
#[path = "../bench/engine_report.rs"]
mod engine_report;
#[path = "../bench/engine_world.rs"]
mod engine_world;
#[path = "../bench/hostcalls.rs"]
mod hostcalls;
#[path = "../bench/load.rs"]
mod load;
#[path = "../bench/stats.rs"]
mod stats;
#[path = "../bench/tokens.rs"]
mod tokens;
#[path = "../bench/upstream.rs"]
mod upstream;
#[path = "../bench/wrk.rs"]
mod wrk;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cloudrun_oidc::jose::alg::Algorithm;
use cloudrun_oidc::jose::jwk_set::KeySet;
use cloudrun_oidc::jose::verifier::{self, IssuerRule, Limits};
use cloudrun_spec::host::context::CallResult;
use cloudrun_spec::jose::{self, Alg, KeyKind, SigningKey};
use cloudrun_spec::testkit::gateway::{Gateway, GatewayOpts};
use cloudrun_spec::testkit::mocks::{CloudRun, CloudRunOptions, GoogleOptions, MockGoogle};
use cloudrun_spec::testkit::process::repo_root;
use cloudrun_spec::testkit::stack::filter_meta;
use driver::{client_headers, ok_response, Driver, Responder};
use serde_json::{json, Map, Value};
use stats::{ratio, round, us, Samples, Table};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Engine, Module};

const ISSUER: &str = "https://idp.bench.example/realms/bench";
const AUDIENCE: &str = "orders-api";
const JWKS_URL: &str = "https://idp.bench.example/realms/bench/jwks";
const CLOUDRUN_AUDIENCE: &str = "https://orders-bench-uc.a.run.app";
/// HTTP scenarios run interleaved in this many rounds.
const HTTP_ROUNDS: usize = 10;

#[derive(Parser, Debug)]
#[command(about = "cloudrun_oidc benchmark: wasm in-process, native, OpenSSL, HTTP throughput")]
struct Args {
    /// Fresh tokens per algorithm for cold verification in wasm (and natively).
    #[arg(long, default_value_t = 300)]
    cold: usize,
    /// Timed repetitions of a repeated token (cache hit, hot path).
    #[arg(long, default_value_t = 5000)]
    hot: usize,
    /// Requests per HTTP scenario without the filter and with a repeated token.
    #[arg(long, default_value_t = 20_000)]
    http_requests: usize,
    /// Requests of the HTTP scenario with a fresh RS256 token each (tokens are minted first).
    #[arg(long, default_value_t = 4_000)]
    http_cold: usize,
    /// Concurrent keep-alive client connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Gateway workers (one wasm instance each).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Longest any one HTTP scenario may run.
    #[arg(long, default_value_t = 60)]
    http_max_seconds: u64,
    /// The filter to measure.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Where the JSON summary goes.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the HTTP scenarios (in-process and native figures only).
    #[arg(long)]
    skip_http: bool,
    #[command(flatten)]
    engine: engine::EngineArgs,
}

impl Args {
    /// The filter measured (`--wasm`, else `dist/cloudrun_oidc.wasm`); it must exist.
    fn wasm_path(&self) -> Result<PathBuf> {
        let path = self
            .wasm
            .clone()
            .unwrap_or_else(|| repo_root().join("dist/cloudrun_oidc.wasm"));
        if !path.is_file() {
            bail!("{} is missing: run `make build`", path.display());
        }
        Ok(path)
    }

    /// Where summary.json goes.
    fn out_path(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| repo_root().join("target/bench/summary.json"))
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The signing keys of the bench IdP.
struct Keys {
    rsa: SigningKey,
    p256: SigningKey,
    p384: SigningKey,
    ed25519: SigningKey,
    /// Same `kid` as `rsa`, not published: bad signatures.
    attacker: SigningKey,
}

impl Keys {
    fn generate() -> Result<Keys> {
        Ok(Keys {
            rsa: SigningKey::generate(KeyKind::Rsa(2048), "rsa-1")?,
            p256: SigningKey::generate(KeyKind::P256, "ec256-1")?,
            p384: SigningKey::generate(KeyKind::P384, "ec384-1")?,
            ed25519: SigningKey::generate(KeyKind::Ed25519, "ed25519-1")?,
            attacker: SigningKey::generate(KeyKind::Rsa(2048), "rsa-1")?,
        })
    }

    fn for_alg(&self, alg: Alg) -> &SigningKey {
        match alg {
            Alg::ES256 => &self.p256,
            Alg::ES384 => &self.p384,
            Alg::EdDSA => &self.ed25519,
            _ => &self.rsa,
        }
    }

    /// The published JWKs, as mock-idp publishes them (RSA without `alg`: it serves RS* and PS*);
    /// `fillers` extra P-256 keys go first so a lookup walks past them.
    fn jwks(&self, fillers: &[SigningKey]) -> Value {
        let mut keys: Vec<Value> = fillers.iter().map(SigningKey::public_jwk).collect();
        keys.push(self.rsa.public_jwk_for(None));
        keys.push(self.p256.public_jwk());
        keys.push(self.p384.public_jwk());
        keys.push(self.ed25519.public_jwk());
        json!({ "keys": keys })
    }
}

/// Claims of token `i` (distinct `sub` and `jti`, so every token is a cache miss).
fn claims(i: usize, run: u64, big: bool) -> Value {
    let now = now_secs();
    let mut c = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": format!("user-{i:06}"),
        "jti": format!("{run:x}-{i}"),
        "email": format!("user-{i:06}@example.com"),
        "azp": "bench-client",
        "scope": "openid profile orders.read",
        "realm_access": {"roles": ["user", "orders-reader"]},
        "iat": now,
        "exp": now + 3600,
    });
    if big {
        // About 4 KB of claims: groups and a profile blob, as fat enterprise tokens carry.
        let groups: Vec<String> = (0..60).map(|g| format!("group-{g:03}-orders")).collect();
        c["groups"] = json!(groups);
        c["profile"] = json!("p".repeat(2800));
    }
    c
}

/// `n` tokens signed with `alg`, minted on two threads (RSA signing is the slow part).
fn mint(
    keys: &Keys,
    alg: Alg,
    n: usize,
    run: u64,
    offset: usize,
    big: bool,
) -> Result<Vec<String>> {
    let key = keys.for_alg(alg);
    let half = n / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| -> Result<Vec<String>> {
            (0..half)
                .map(|i| jose::sign_jwt(key, alg, &claims(offset + i, run, big)))
                .collect()
        });
        let b: Result<Vec<String>> = (half..n)
            .map(|i| jose::sign_jwt(key, alg, &claims(offset + i, run, big)))
            .collect();
        let mut a = a
            .join()
            .map_err(|_| anyhow::anyhow!("minting thread panicked"))??;
        a.extend(b?);
        Ok(a)
    })
}

fn base_config(jwks: &Value) -> Value {
    json!({
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": jwks}],
        "claims_to_headers": {"sub": "x-user-id", "email": "x-user-email"},
    })
}

/// Answers the filter's callouts: the JWKS for `jwks_url`, a Google ID token from the metadata
/// server. Counts what it answered.
fn responder(jwks: Value, google_key: SigningKey) -> Responder {
    Box::new(move |spec| {
        if spec.path.starts_with("/computeMetadata/") {
            let now = now_secs();
            let claims = json!({
                "iss": "https://accounts.google.com",
                "aud": CLOUDRUN_AUDIENCE,
                "azp": "1234567890",
                "sub": "1234567890",
                "email": "gateway@bench.iam.gserviceaccount.com",
                "email_verified": true,
                "iat": now,
                "exp": now + 3600,
            });
            match jose::sign_jwt(&google_key, Alg::RS256, &claims) {
                Ok(t) => ok_response("text/html", t.into_bytes()),
                Err(_) => CallResult {
                    headers: vec![(":status".into(), b"500".to_vec())],
                    ..CallResult::default()
                },
            }
        } else {
            ok_response("application/json", jwks.to_string().into_bytes())
        }
    })
}

fn driver(module: &Module, configs: &[Value], keys: &Keys, jwks: &Value) -> Result<Driver> {
    let texts: Vec<String> = configs.iter().map(Value::to_string).collect();
    Driver::new(module, &texts, responder(jwks.clone(), keys.rsa.clone()))
}

/// Filter time for each token once (cold: every token is new). All must be allowed.
fn run_cold(d: &mut Driver, route: usize, tokens: &[String], warm: usize) -> Result<Samples> {
    let mut s = Samples::default();
    for (i, t) in tokens.iter().enumerate() {
        let out = d.request(route, &client_headers(t))?;
        if out.status != 200 || out.calls != 0 {
            bail!(
                "cold token {i} got {} ({} callouts): the bench setup is wrong",
                out.status,
                out.calls
            );
        }
        if i >= warm {
            s.push(out.headers);
        }
    }
    Ok(s)
}

/// Filter time of the same request `n` times after `warm` untimed ones; every answer must be
/// `status` without callouts.
fn run_repeat(
    d: &mut Driver,
    route: usize,
    headers: &[(String, Vec<u8>)],
    warm: usize,
    n: usize,
    status: u16,
) -> Result<Samples> {
    Ok(run_repeat_lifecycle(d, route, headers, warm, n, status)?.0)
}

/// [`run_repeat`], also returning the time of every callback of each request.
fn run_repeat_lifecycle(
    d: &mut Driver,
    route: usize,
    headers: &[(String, Vec<u8>)],
    warm: usize,
    n: usize,
    status: u16,
) -> Result<(Samples, Samples)> {
    let mut s = Samples::default();
    let mut all = Samples::default();
    for i in 0..warm + n {
        let out = d.request(route, headers)?;
        if out.status != status || out.calls != 0 {
            bail!(
                "repeated request got {} ({} callouts), expected {status}",
                out.status,
                out.calls
            );
        }
        if i >= warm {
            s.push(out.headers);
            all.push(out.lifecycle);
        }
    }
    Ok((s, all))
}

/// Distinct requests, each refused with `status`.
fn run_refusals(d: &mut Driver, tokens: &[String], status: u16) -> Result<Samples> {
    let mut s = Samples::default();
    for (i, t) in tokens.iter().enumerate() {
        let out = d.request(0, &client_headers(t))?;
        if out.status != status {
            bail!("refusal {i}: got {}, expected {status}", out.status);
        }
        if i >= 10 {
            s.push(out.headers);
        }
    }
    Ok(s)
}

/// Native timings of `f` over `items`, repeated until `budget` is spent (at least one pass).
fn native<T>(
    items: &[T],
    budget: Duration,
    mut f: impl FnMut(&T) -> Result<bool>,
) -> Result<Samples> {
    let mut s = Samples::default();
    for item in items.iter().take(5) {
        if !f(item)? {
            bail!("native verification refused a valid token");
        }
    }
    let start = Instant::now();
    let mut passes = 0;
    while passes == 0 || (start.elapsed() < budget && passes < 50) {
        for item in items {
            let t = Instant::now();
            let ok = f(item)?;
            s.push(t.elapsed());
            if !ok {
                bail!("native verification refused a valid token");
            }
        }
        passes += 1;
    }
    Ok(s)
}

/// The median, minimum and maximum of per-round ratios (NaN when there are none).
fn spread(ratios: &[f64]) -> (f64, f64, f64) {
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |i: usize| sorted.get(i).copied().unwrap_or(f64::NAN);
    let median = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => at(n / 2),
        n => (at(n / 2 - 1) + at(n / 2)) / 2.0,
    };
    (median, at(0), at(sorted.len().saturating_sub(1)))
}

struct AlgFigures {
    alg: Alg,
    wasm_cold: Samples,
    wasm_hit: Samples,
    native_sig: Samples,
    native_verifier: Samples,
    openssl: Samples,
    /// wasm cold / OpenSSL per round ([`RATIO_ROUNDS`]).
    ratios: Vec<f64>,
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cmd = |c: &str, args: &[&str]| -> String {
        std::process::Command::new(c)
            .args(args)
            .current_dir(repo_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "cpu": cpu,
        "cores": cores,
        "kernel": cmd("uname", &["-sr"]),
        "rustc": cmd("rustc", &["-V"]),
        "openssl": openssl::version::version(),
        "wasmtime": "36 (Engine::default, cranelift)",
        "commit": cmd("git", &["rev-parse", "--short", "HEAD"]),
        "dirty": !cmd("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty(),
        "date_utc": cmd("date", &["-u", "+%Y-%m-%d %H:%M"]),
    })
}

/// What every in-process phase shares: the compiled filter, the keys, the published JWKS and
/// the counts derived from the arguments.
struct Setup {
    module: Module,
    keys: Keys,
    jwks: Value,
    /// Distinguishes this run's tokens (`jti`).
    run: u64,
    /// Fresh tokens per algorithm, and how many of them are untimed warm-up.
    cold_n: usize,
    warm_cold: usize,
    /// Timed repetitions of a repeated token.
    hot_n: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = repo_root();
    let wasm_path = args.wasm_path()?;
    let started = Instant::now();
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    if args.engine.only_engine {
        return engine::only(&args.engine, &wasm_path, &args.out_path(), run);
    }
    let wasm_bytes = std::fs::metadata(&wasm_path)?.len();
    let machine = machine();
    eprintln!(
        "bench: {} ({wasm_bytes} bytes) on {} ({} cores)",
        wasm_path.display(),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"]
    );
    let (setup, compile_ms) = setup(&args, &wasm_path, run)?;

    // ---- 1. cold verification per algorithm: wasm, native ours, OpenSSL ----
    let mut d = driver(
        &setup.module,
        &[base_config(&setup.jwks)],
        &setup.keys,
        &setup.jwks,
    )?;
    let figures = per_algorithm(&setup, &mut d)?;
    // ---- 2. hot path and early refusals (filter time in wasm) ----
    let hot = hot_path(&setup)?;
    let refused = refusals(&setup, &mut d)?;
    // ---- 3. scaling: JWKS size, routes, token size (RS256) ----
    let scaled = scaling(&setup, hot.token_len)?;
    // ---- 4. HTTP throughput through the gateway; 5. Kong's engine ----
    let http = if args.skip_http {
        None
    } else {
        Some(http_scenarios(&args, &setup.keys, &setup.jwks, run)?)
    };
    let kong_engine = engine::run(&args.engine, &wasm_path, run)?;

    // ---- tables and summary ----
    let mut report = Report::default();
    report.algorithms(&figures, &setup);
    report.wasm_cases(&hot, &refused);
    report.scaling(&scaled);
    if let Some(h) = &http {
        report.http(h, &args, &machine);
    }
    report.put("wasm_bytes", wasm_bytes as f64);
    report.put("wasm_compile_ms", compile_ms);
    report.out.push_str(&format!(
        "Filter: {} = {wasm_bytes} bytes (cranelift compile {compile_ms:.0} ms).\n",
        wasm_path
            .strip_prefix(&root)
            .unwrap_or(&wasm_path)
            .display()
    ));
    report.put("bench_seconds", started.elapsed().as_secs_f64());

    let Report {
        mut out,
        mut summary,
    } = report;
    out.push_str(&kong_engine.render());
    summary.extend(kong_engine.summary());
    summary.insert("machine".into(), machine);
    summary.insert(
        "params".into(),
        json!({
            "cold_tokens_per_alg": setup.cold_n,
            "hot_repetitions": setup.hot_n,
            "http_requests": args.http_requests,
            "http_cold_requests": args.http_cold,
            "connections": args.connections,
            "workers": args.workers,
            "http": !args.skip_http,
        }),
    );
    write_outputs(&args.out_path(), &summary, &out, started)
}

/// Compiles the filter and generates the keys; also returns the compile time in ms.
fn setup(args: &Args, wasm_path: &std::path::Path, run: u64) -> Result<(Setup, f64)> {
    let engine = Engine::default();
    let t = Instant::now();
    let module = Module::from_file(&engine, wasm_path).context("compiling the filter")?;
    let compile_ms = t.elapsed().as_secs_f64() * 1000.0;
    eprintln!("bench: compiled in {compile_ms:.0} ms; generating keys and tokens");

    let keys = Keys::generate()?;
    let jwks = keys.jwks(&[]);
    let cold_n = args.cold.max(20);
    let setup = Setup {
        module,
        keys,
        jwks,
        run,
        cold_n,
        warm_cold: 10.min(cold_n / 4),
        hot_n: args.hot.max(100),
    };
    Ok((setup, compile_ms))
}

/// The algorithms measured, in table order.
const ALGS: [Alg; 5] = [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::EdDSA];

/// Our verifier natively, configured like the wasm filter's inline-JWKS route.
struct NativeVerifier {
    set: KeySet,
    rules: Vec<IssuerRule>,
    limits: Limits,
}

impl NativeVerifier {
    fn new(jwks: &Value) -> Result<NativeVerifier> {
        let set = KeySet::parse(jwks.to_string().as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rules = vec![IssuerRule {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            algorithms: ALGS
                .iter()
                .filter_map(|a| Algorithm::from_name(a.name()))
                .collect(),
            token_types: Vec::new(),
        }];
        let limits = Limits {
            max_token_bytes: 8192,
            clock_skew_secs: 60,
        };
        Ok(NativeVerifier { set, rules, limits })
    }
}

/// Rounds in which an algorithm's wasm and OpenSSL figures alternate, on a fifth of its fresh
/// tokens each: both then run on the same machine (a shared machine's speed swings from one
/// second to the next), and the ratio printed is the median of the rounds' ratios, with their
/// spread.
const RATIO_ROUNDS: usize = 5;

/// Phase 1, for each algorithm in turn: the wasm cache hit, then wasm cold and OpenSSL in
/// alternating rounds, then natively.
fn per_algorithm(setup: &Setup, d: &mut Driver) -> Result<Vec<AlgFigures>> {
    let ours = NativeVerifier::new(&setup.jwks)?;
    let mut figures = Vec::new();
    for (k, alg) in ALGS.into_iter().enumerate() {
        eprintln!("bench: {} cold x{}", alg.name(), setup.cold_n);
        let (tokens, wasm_hit) = wasm_algorithm(setup, d, k, alg)?;
        let decoded: Vec<jose::Decoded> = tokens
            .iter()
            .map(|t| jose::decode(t))
            .collect::<Result<_>>()?;
        let kid = setup.keys.for_alg(alg).kid.clone();
        let budget = Duration::from_millis(300);
        let (warm, timed) = tokens.split_at(setup.warm_cold.min(tokens.len()));
        run_cold(d, 0, warm, warm.len())?;
        let round_len = timed.len().div_ceil(RATIO_ROUNDS).max(1);
        let (mut wasm_cold, mut openssl) = (Samples::default(), Samples::default());
        let mut ratios = Vec::new();
        for (round, signed) in timed.chunks(round_len).zip(
            decoded
                .get(warm.len()..)
                .unwrap_or_default()
                .chunks(round_len),
        ) {
            let wasm = run_cold(d, 0, round, 0)?;
            let ossl =
                openssl_algorithm(&setup.jwks, alg, &kid, signed, budget / RATIO_ROUNDS as u32)?;
            ratios.push(wasm.median_us() / ossl.median_us());
            wasm_cold.extend(&wasm);
            openssl.extend(&ossl);
        }
        let (native_sig, native_verifier) =
            native_algorithm(&ours, alg, &kid, &tokens, &decoded, budget)?;
        figures.push(AlgFigures {
            alg,
            wasm_cold,
            wasm_hit,
            native_sig,
            native_verifier,
            openssl,
            ratios,
        });
    }
    Ok(figures)
}

/// In-process wasm: fresh `alg` tokens (timed later, in rounds with OpenSSL) and the filter
/// time for one repeated token (hit).
fn wasm_algorithm(
    setup: &Setup,
    d: &mut Driver,
    k: usize,
    alg: Alg,
) -> Result<(Vec<String>, Samples)> {
    let (keys, run) = (&setup.keys, setup.run);
    let tokens = mint(keys, alg, setup.cold_n, run, k * 1_000_000, false)?;
    let hit_token = mint(keys, alg, 1, run, k * 1_000_000 + 900_000, false)?;
    let hit_headers = client_headers(hit_token.first().map(String::as_str).unwrap_or(""));
    let wasm_hit = run_repeat(d, 0, &hit_headers, 100, setup.hot_n, 200)?;
    Ok((tokens, wasm_hit))
}

/// Natively: our signature check alone, then our whole verifier (precheck + signature).
fn native_algorithm(
    ours: &NativeVerifier,
    alg: Alg,
    kid: &str,
    tokens: &[String],
    decoded: &[jose::Decoded],
    budget: Duration,
) -> Result<(Samples, Samples)> {
    let ours_alg = Algorithm::from_name(alg.name()).context("alg")?;
    let jwk = ours
        .set
        .find(Some(kid), ours_alg)
        .map_err(|e| anyhow::anyhow!("our key set has no {kid}: {e:?}"))?;
    let native_sig = native(decoded, budget, |t| {
        Ok(cloudrun_oidc::jose::signature::verify(
            ours_alg,
            &jwk.key,
            t.signing_input.as_bytes(),
            &t.signature,
        ))
    })?;
    let now = now_secs();
    let native_verifier = native(tokens, budget, |t| {
        let pre = verifier::precheck(t, &ours.rules, &ours.limits, now)
            .map_err(|e| anyhow::anyhow!("precheck: {e:?}"))?;
        Ok(verifier::verify_signature(pre, &ours.set).is_ok())
    })?;
    Ok((native_sig, native_verifier))
}

/// OpenSSL, the reference: the same signatures through the spec's `jose` module.
fn openssl_algorithm(
    jwks: &Value,
    alg: Alg,
    kid: &str,
    decoded: &[jose::Decoded],
    budget: Duration,
) -> Result<Samples> {
    let public_jwk = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|j| j["kid"] == kid))
        .cloned()
        .context("jwk")?;
    let ossl_key = jose::PublicKey::from_jwk(&public_jwk)?;
    native(decoded, budget, |t| {
        ossl_key.verify(alg, t.signing_input.as_bytes(), &t.signature)
    })
}

/// Filter time on the hot configuration (keys by `jwks_url`, a Google ID token).
struct HotPath {
    /// The repeated token, and every callback of its request.
    path: Samples,
    lifecycle: Samples,
    /// Fresh RS256 tokens on the same route.
    cold: Samples,
    /// The repeated token on the same route with a rate limit it never reaches (counted in
    /// shared data on every request, `RateLimit` fields on the answer), and every callback.
    limited: Samples,
    limited_lifecycle: Samples,
    /// The first request on a fresh worker (both callouts), µs.
    warm_first_us: f64,
    /// Length of the repeated token (the "small" token of the scaling table).
    token_len: usize,
}

/// Phase 2a: the hot path, its first request and fresh tokens on the same route.
fn hot_path(setup: &Setup) -> Result<HotPath> {
    let (keys, jwks, run) = (&setup.keys, &setup.jwks, setup.run);
    eprintln!("bench: hot path and refusals");
    let mut hot_cfg = base_config(jwks);
    hot_cfg["issuers"][0]
        .as_object_mut()
        .context("issuer")?
        .remove("jwks");
    hot_cfg["issuers"][0]["jwks_url"] = json!(JWKS_URL);
    hot_cfg["google_id_token"] = json!({"audience": CLOUDRUN_AUDIENCE, "source": "metadata"});
    let mut hot = driver(&setup.module, &[hot_cfg.clone()], keys, jwks)?;
    let hot_token = mint(keys, Alg::RS256, 1, run, 5_000_000, false)?;
    let hot_headers = client_headers(hot_token.first().map(String::as_str).unwrap_or(""));
    let first = hot.request(0, &hot_headers)?;
    let has = |name: &str| first.upstream_headers.iter().any(|(k, _)| k == name);
    if first.status != 200
        || first.calls != 2
        || !has("x-user-id")
        || !has("x-forwarded-authorization")
    {
        bail!(
            "hot-path warm-up: status {}, {} callouts, headers {:?}",
            first.status,
            first.calls,
            first
                .upstream_headers
                .iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        );
    }
    let warm_first_us = (first.headers + first.callouts).as_secs_f64() * 1e6;
    let (path, lifecycle) = run_repeat_lifecycle(&mut hot, 0, &hot_headers, 200, setup.hot_n, 200)?;
    // The same route with a rate limit (a budget the run never spends).
    let mut limited_cfg = hot_cfg.clone();
    limited_cfg["rate_limits"] =
        json!([{"name": "per_day", "requests": 1_000_000_000u64, "window": "day"}]);
    let mut limited_route = driver(&setup.module, &[limited_cfg], keys, jwks)?;
    let first = limited_route.request(0, &hot_headers)?;
    if first.status != 200 {
        bail!("rate-limited hot path warm-up: status {}", first.status);
    }
    let (limited, limited_lifecycle) =
        run_repeat_lifecycle(&mut limited_route, 0, &hot_headers, 200, setup.hot_n, 200)?;
    // Fresh tokens on the hot configuration: a cold request in production (fetched keys + Google).
    let cold_hotcfg_tokens = mint(keys, Alg::RS256, setup.cold_n, run, 5_100_000, false)?;
    let cold = run_cold(&mut hot, 0, &cold_hotcfg_tokens, setup.warm_cold)?;
    Ok(HotPath {
        path,
        lifecycle,
        cold,
        limited,
        limited_lifecycle,
        warm_first_us,
        token_len: hot_token.first().map(String::len).unwrap_or(0),
    })
}

/// Filter time of early refusals, on the inline-JWKS route.
struct Refusals {
    no_token: Samples,
    expired: Samples,
    wrong_aud: Samples,
    unknown_kid: Samples,
    bad_sig: Samples,
}

/// Phase 2b: refusals on phase 1's driver.
fn refusals(setup: &Setup, d: &mut Driver) -> Result<Refusals> {
    let (keys, run, cold_n) = (&setup.keys, setup.run, setup.cold_n);
    let refusal_n = cold_n;
    let no_token = run_repeat(d, 0, &client_headers("")[..4], 100, setup.hot_n, 401)?;
    let expired: Vec<String> = (0..refusal_n)
        .map(|i| {
            let mut c = claims(6_000_000 + i, run, false);
            c["exp"] = json!(now_secs() - 3600);
            jose::sign_jwt(&keys.ed25519, Alg::EdDSA, &c)
        })
        .collect::<Result<_>>()?;
    let expired = run_refusals(d, &expired, 401)?;
    let wrong_aud: Vec<String> = (0..refusal_n)
        .map(|i| {
            let mut c = claims(6_100_000 + i, run, false);
            c["aud"] = json!("someone-else");
            jose::sign_jwt(&keys.ed25519, Alg::EdDSA, &c)
        })
        .collect::<Result<_>>()?;
    let wrong_aud = run_refusals(d, &wrong_aud, 401)?;
    let unknown_kid: Vec<String> = (0..refusal_n)
        .map(|i| {
            let h = json!({"alg": "EdDSA", "kid": format!("nope-{i}"), "typ": "JWT"});
            jose::sign_compact(
                &keys.ed25519,
                Alg::EdDSA,
                &h,
                &claims(6_200_000 + i, run, false),
            )
        })
        .collect::<Result<_>>()?;
    let unknown_kid = run_refusals(d, &unknown_kid, 401)?;
    let bad_sig_n = (cold_n / 2).max(20);
    let bad_sig: Vec<String> = (0..bad_sig_n)
        .map(|i| {
            jose::sign_jwt(
                &keys.attacker,
                Alg::RS256,
                &claims(6_300_000 + i, run, false),
            )
        })
        .collect::<Result<_>>()?;
    let bad_sig = run_refusals(d, &bad_sig, 401)?;
    Ok(Refusals {
        no_token,
        expired,
        wrong_aud,
        unknown_kid,
        bad_sig,
    })
}

/// One row of the scaling table: dimension, case, cold and hit filter time.
struct ScaleRow {
    what: String,
    label: String,
    cold: Samples,
    hit: Samples,
}

/// One scaling case: fresh RS256 tokens (`big` ones: about 4 KB of claims) on `route` of `d`,
/// then one of them repeated.
fn scale_case(
    setup: &Setup,
    (what, label): (&str, String),
    d: &mut Driver,
    route: usize,
    big: bool,
    offset: usize,
) -> Result<ScaleRow> {
    let scale_n = (setup.cold_n / 2).max(20);
    let scale_hot = (setup.hot_n / 2).max(100);
    let tokens = mint(&setup.keys, Alg::RS256, scale_n + 1, setup.run, offset, big)?;
    let (hit, cold) = tokens.split_at(1);
    let cold = run_cold(d, route, cold, setup.warm_cold)?;
    let hit_headers = client_headers(hit.first().map(String::as_str).unwrap_or(""));
    let hit = run_repeat(d, route, &hit_headers, 100, scale_hot, 200)?;
    Ok(ScaleRow {
        what: what.to_string(),
        label,
        cold,
        hit,
    })
}

/// Phase 3: filter time as the JWKS, the routes and the token grow; `small_len` is the length
/// of the hot path's token.
fn scaling(setup: &Setup, small_len: usize) -> Result<Vec<ScaleRow>> {
    let (module, keys, jwks) = (&setup.module, &setup.keys, &setup.jwks);
    eprintln!("bench: scaling");
    let mut scaling = Vec::new();
    let mut fillers = Vec::new();
    for n_keys in [1usize, 10, 100] {
        // The RS256 key plus (n - 1) others; here the other published keys are P-256 fillers.
        while fillers.len() + 1 < n_keys {
            fillers.push(SigningKey::generate(
                KeyKind::P256,
                &format!("filler-{:03}", fillers.len()),
            )?);
        }
        let mut ks: Vec<Value> = fillers
            .iter()
            .take(n_keys - 1)
            .map(SigningKey::public_jwk)
            .collect();
        ks.push(keys.rsa.public_jwk_for(None));
        let set_json = json!({ "keys": ks });
        let mut dn = driver(module, &[base_config(&set_json)], keys, &set_json)?;
        scaling.push(scale_case(
            setup,
            ("JWKS size", format!("{n_keys} key(s)")),
            &mut dn,
            0,
            false,
            7_000_000 + n_keys * 10_000,
        )?);
    }
    for n_routes in [1usize, 10] {
        let configs: Vec<Value> = (0..n_routes).map(|_| base_config(jwks)).collect();
        let mut dr = driver(module, &configs, keys, jwks)?;
        scaling.push(scale_case(
            setup,
            (
                "routes",
                format!("{n_routes} route(s), request on the last"),
            ),
            &mut dr,
            n_routes - 1,
            false,
            8_000_000 + n_routes * 10_000,
        )?);
    }
    let mut small_big = driver(module, &[base_config(jwks)], keys, jwks)?;
    let big_len = mint(keys, Alg::EdDSA, 1, setup.run, 9_900_000, true)?
        .first()
        .map(String::len)
        .unwrap_or(0);
    scaling.push(scale_case(
        setup,
        ("token size", format!("small ({small_len} B)")),
        &mut small_big,
        0,
        false,
        9_000_000,
    )?);
    scaling.push(scale_case(
        setup,
        ("token size", format!("large ({big_len} B)")),
        &mut small_big,
        0,
        true,
        9_100_000,
    )?);
    Ok(scaling)
}

/// The Markdown tables printed and summary.json's figures, built section by section.
#[derive(Default)]
struct Report {
    out: String,
    summary: Map<String, Value>,
}

impl Report {
    /// One figure of summary.json, rounded.
    fn put(&mut self, k: &str, v: f64) {
        self.summary.insert(k.to_string(), json!(round(v)));
    }

    /// Table 1: cold verification per algorithm, wasm against native and OpenSSL.
    fn algorithms(&mut self, figures: &[AlgFigures], setup: &Setup) {
        let mut t1 = Table::new(
            "Cold verification per algorithm (µs, median; wasm = filter time in proxy_on_request_headers)",
            &[
                "alg",
                "wasm cold",
                "wasm hit",
                "wasm cold−hit",
                "native ours (sig)",
                "native ours (verifier)",
                "OpenSSL",
                "wasm cold / OpenSSL (rounds' median, min–max)",
                "(cold−hit) / OpenSSL",
                "native ours / OpenSSL",
            ],
        );
        for f in figures {
            let cold = f.wasm_cold.median_us();
            let hit = f.wasm_hit.median_us();
            let sig = (cold - hit).max(0.0);
            let ossl = f.openssl.median_us();
            let ours = f.native_sig.median_us();
            let name = f.alg.name().to_ascii_lowercase();
            self.put(&format!("{name}_wasm_us"), cold);
            self.put(&format!("{name}_wasm_p90_us"), f.wasm_cold.p90_us());
            self.put(&format!("{name}_wasm_hit_us"), hit);
            self.put(&format!("{name}_wasm_sig_us"), sig);
            self.put(&format!("{name}_native_us"), ours);
            self.put(
                &format!("{name}_native_verifier_us"),
                f.native_verifier.median_us(),
            );
            self.put(&format!("{name}_openssl_us"), ossl);
            let (vs, lo, hi) = spread(&f.ratios);
            self.put(&format!("{name}_wasm_vs_openssl"), vs);
            self.put(&format!("{name}_wasm_vs_openssl_min"), lo);
            self.put(&format!("{name}_wasm_vs_openssl_max"), hi);
            self.put(&format!("{name}_wasm_sig_vs_openssl"), sig / ossl);
            self.put(&format!("{name}_native_vs_openssl"), ours / ossl);
            t1.row(vec![
                f.alg.name().to_string(),
                us(cold),
                us(hit),
                us(sig),
                us(ours),
                us(f.native_verifier.median_us()),
                us(ossl),
                format!("{} ({}–{})", ratio(vs), ratio(lo), ratio(hi)),
                ratio(sig / ossl),
                ratio(ours / ossl),
            ]);
        }
        self.out.push_str(&t1.render());
        self.out.push_str(&format!(
            "\nwasm: {} fresh tokens per algorithm ({} timed), inline JWKS (4 keys), claims→headers, \
             no google_id_token; hit: one token repeated {}×. Native: the same tokens, \
             ≥300 ms per figure. wasm cold and OpenSSL alternate in {} rounds on a share of the \
             tokens each; their ratio is the median of the rounds' ratios (min–max).\n\n",
            setup.cold_n,
            setup.cold_n - setup.warm_cold,
            setup.hot_n,
            RATIO_ROUNDS
        ));
    }

    /// Table 2: the hot path and refusals.
    fn wasm_cases(&mut self, hot: &HotPath, refused: &Refusals) {
        let mut t2 = Table::new(
            "Per-request filter time in wasm (µs)",
            &["case", "median", "p90", "mean", "n"],
        );
        let mut row2 = |name: &str, s: &Samples| {
            t2.row(vec![
                name.to_string(),
                us(s.median_us()),
                us(s.p90_us()),
                us(s.mean_us()),
                s.len().to_string(),
            ]);
        };
        row2(
            "hot path: repeated RS256 token, jwks_url keys, Google token cached, 2 claims→headers",
            &hot.path,
        );
        row2(
            "hot path, every callback of the request (context create … on_delete)",
            &hot.lifecycle,
        );
        row2(
            "cold on the same route: fresh RS256 token each (keys and Google token cached)",
            &hot.cold,
        );
        row2("refused: no token (401)", &refused.no_token);
        row2(
            "refused: expired (401, before any key work)",
            &refused.expired,
        );
        row2(
            "refused: wrong aud (401, before any key work)",
            &refused.wrong_aud,
        );
        row2(
            "refused: unknown kid (401, inline keys: no refetch)",
            &refused.unknown_kid,
        );
        row2(
            "refused: bad RS256 signature (401, full verification)",
            &refused.bad_sig,
        );
        self.out.push_str(&t2.render());
        self.out.push_str(&format!(
            "\nFirst request on a fresh worker (JWKS fetch + Google mint, callouts answered in-process): \
             {} µs of filter time.\n\n",
            us(hot.warm_first_us)
        ));
        self.put("hot_path_us", hot.path.median_us());
        self.put("hot_path_p90_us", hot.path.p90_us());
        self.put("hot_path_mean_us", hot.path.mean_us());
        self.put("hot_path_lifecycle_us", hot.lifecycle.median_us());
        self.put("hot_path_rate_limited_us", hot.limited.median_us());
        self.put(
            "hot_path_rate_limited_lifecycle_us",
            hot.limited_lifecycle.median_us(),
        );
        let limit_cost = hot.limited_lifecycle.median_us() - hot.lifecycle.median_us();
        self.put("rate_limit_cost_us", limit_cost);
        self.out.push_str(&format!(
            "Hot path with one rate limit (counted in shared data, RateLimit fields on the answer): \
             {} µs in on_request_headers, {} µs over every callback: {} µs more than without \
             (issue 21's goal: at most 2).\n\n",
            us(hot.limited.median_us()),
            us(hot.limited_lifecycle.median_us()),
            us(limit_cost)
        ));
        self.put("cold_rs256_hot_config_us", hot.cold.median_us());
        self.put("first_request_us", hot.warm_first_us);
        self.put("reject_no_token_us", refused.no_token.median_us());
        self.put("reject_expired_us", refused.expired.median_us());
        self.put("reject_wrong_aud_us", refused.wrong_aud.median_us());
        self.put("reject_unknown_kid_us", refused.unknown_kid.median_us());
        self.put("reject_bad_signature_us", refused.bad_sig.median_us());
    }

    /// Table 3: scaling.
    fn scaling(&mut self, scaling: &[ScaleRow]) {
        let mut t3 = Table::new(
            "Scaling (RS256, wasm filter time, µs median)",
            &["dimension", "case", "cold", "hit"],
        );
        for ScaleRow {
            what,
            label,
            cold,
            hit,
        } in scaling
        {
            t3.row(vec![
                what.clone(),
                label.clone(),
                us(cold.median_us()),
                us(hit.median_us()),
            ]);
            let key = format!(
                "scale_{}_{}",
                what.replace(' ', "_").to_ascii_lowercase(),
                label
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            );
            self.put(&format!("{key}_cold_us"), cold.median_us());
            self.put(&format!("{key}_hit_us"), hit.median_us());
        }
        self.out.push_str(&t3.render());
        self.out.push('\n');
    }

    /// Tables 4 and 5: HTTP throughput through the stand-in and the CPU it cost.
    fn http(&mut self, h: &HttpFigures, args: &Args, machine: &Value) {
        let base = h.no_filter.rps();
        let mut t4 = Table::new(
            &format!(
                "HTTP throughput through the gateway ({} workers, {} keep-alive connections, \
                 client and upstream on the same {} cores)",
                args.workers, args.connections, machine["cores"]
            ),
            &[
                "scenario",
                "requests",
                "req/s",
                "vs no filter",
                "p50 ms",
                "p99 ms",
                "non-200",
            ],
        );
        for (name, r) in [
            ("no filter", &h.no_filter),
            ("filter, one repeated token (hot)", &h.hot),
            ("filter, fresh RS256 token per request (cold)", &h.cold),
        ] {
            t4.row(vec![
                name.to_string(),
                r.sent.to_string(),
                format!("{:.0}", r.rps()),
                format!("{:.0}%", r.rps() / base * 100.0),
                format!("{:.2}", r.latency.median_us() / 1000.0),
                format!("{:.2}", r.latency.quantile_us(0.99) / 1000.0),
                r.errors.to_string(),
            ]);
        }
        self.out.push_str(&t4.render());
        self.out.push_str(
            "\nThe gateway opens a new upstream connection per request (Kong pools them): \
             the no-filter baseline carries that cost too.\n\n",
        );
        let mut t5 = Table::new(
            "CPU per request in the child processes (µs; /proc utime+stime over each scenario)",
            &[
                "process",
                "no filter",
                "hot",
                "cold",
                "hot − no filter",
                "cold − no filter",
            ],
        );
        let per_req = |m: &BTreeMap<String, f64>, name: &str, sent: usize| -> f64 {
            m.get(name).copied().unwrap_or(f64::NAN) * 1e6 / sent.max(1) as f64
        };
        for name in ["gateway", "cloudrun"] {
            let nf = per_req(&h.cpu.0, name, h.no_filter.sent);
            let ho = per_req(&h.cpu.1, name, h.hot.sent);
            let co = per_req(&h.cpu.2, name, h.cold.sent);
            t5.row(vec![
                name.to_string(),
                us(nf),
                us(ho),
                us(co),
                us(ho - nf),
                us(co - nf),
            ]);
            self.put(&format!("{name}_cpu_us_per_req_no_filter"), nf);
            self.put(&format!("{name}_cpu_us_per_req_hot"), ho);
            self.put(&format!("{name}_cpu_us_per_req_cold"), co);
        }
        self.out.push_str(&t5.render());
        self.out.push_str(
            "\nCPU time is less disturbed by other load than req/s: `hot − no filter` on the gateway \
             row is what the filter costs the gateway per request, everything included.\n\n",
        );
        self.put("rps_no_filter", base);
        self.put("rps_hot", h.hot.rps());
        self.put("rps_cold", h.cold.rps());
        self.put("rps_hot_vs_no_filter", h.hot.rps() / base);
        self.put("rps_cold_vs_no_filter", h.cold.rps() / base);
        // Per-round ratios: each round runs the scenarios back to back, so their median is the
        // figure least moved by other load on a shared machine.
        let median = |mut v: Vec<f64>| -> f64 {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let hot_ratio = median(h.rounds.iter().map(|r| r.1 / r.0).collect());
        let cold_ratio = median(h.rounds.iter().map(|r| r.2 / r.0).collect());
        self.put("rps_hot_vs_no_filter_round_median", hot_ratio);
        self.put("rps_cold_vs_no_filter_round_median", cold_ratio);
        self.out.push_str(&format!(
            "Median over {} interleaved rounds of the per-round ratio: hot {:.0}% and cold {:.0}% \
             of no filter. Per-round req/s (no filter / hot / cold): {}.\n\n",
            h.rounds.len(),
            hot_ratio * 100.0,
            cold_ratio * 100.0,
            h.rounds
                .iter()
                .map(|r| format!("{:.0}/{:.0}/{:.0}", r.0, r.1, r.2))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        self.put(
            "http_non_200",
            (h.no_filter.errors + h.hot.errors + h.cold.errors) as f64,
        );
    }
}

/// Prints the tables, writes summary.json and table.md beside it.
fn write_outputs(
    out_path: &std::path::Path,
    summary: &Map<String, Value>,
    tables: &str,
    started: Instant,
) -> Result<()> {
    println!("{tables}");
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out_path, serde_json::to_string_pretty(summary)? + "\n")?;
    std::fs::write(out_path.with_file_name("table.md"), tables)?;
    eprintln!(
        "bench: wrote {} and table.md ({:.0} s)",
        out_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct HttpFigures {
    /// Per round: (no filter, hot, cold) requests per second.
    rounds: Vec<(f64, f64, f64)>,
    /// CPU seconds per child process name (`gateway`, `cloudrun`) in each scenario.
    cpu: (
        BTreeMap<String, f64>,
        BTreeMap<String, f64>,
        BTreeMap<String, f64>,
    ),
    no_filter: load::LoadResult,
    hot: load::LoadResult,
    cold: load::LoadResult,
}

fn http_scenarios(args: &Args, keys: &Keys, jwks: &Value, run: u64) -> Result<HttpFigures> {
    eprintln!("bench: HTTP: minting {} tokens", args.http_cold + 400);
    let cold_warm = 400usize.min(args.http_cold / 4 + 1);
    let mut cold_tokens = mint(
        keys,
        Alg::RS256,
        args.http_cold + cold_warm,
        run,
        20_000_000,
        false,
    )?;
    let cold_measured = cold_tokens.split_off(cold_warm);
    let hot_token = mint(keys, Alg::RS256, 1, run, 19_000_000, false)?;

    let cloudrun = CloudRun::start(CloudRunOptions::no_auth())?;
    let google = MockGoogle::start(GoogleOptions::default())?;
    let mut config = base_config(jwks);
    config["google_id_token"] = json!({
        "audience": cloudrun.audience(),
        "source": "metadata",
        "metadata_host": google.http_addr(),
    });
    let meta = filter_meta();
    let config_yaml = match &meta {
        Some(_) => config.to_string(),
        None => serde_json::to_string(&config.to_string())?,
    };
    let upstream = cloudrun.http_addr();
    let kong_yml = format!(
        r#"_format_version: "3.0"
services:
  - name: plain
    url: http://{upstream}
    routes:
      - name: plain
        paths: ["/plain"]
        strip_path: false
  - name: orders
    url: http://{upstream}
    routes:
      - name: orders
        paths: ["/orders"]
        strip_path: false
        filter_chains:
          - filters:
              - name: cloudrun_oidc
                config: {config_yaml}
"#
    );
    let wasm = args
        .wasm
        .clone()
        .unwrap_or_else(|| repo_root().join("dist/cloudrun_oidc.wasm"));
    let gateway = Gateway::start(&GatewayOpts {
        kong_yml,
        filters: vec![("cloudrun_oidc".into(), wasm, meta)],
        workers: args.workers,
        shm_kv: vec!["cloudrun_oidc=12m".into()],
        lua_resolver: true,
        ..GatewayOpts::default()
    })
    .context("starting the gateway")?;

    let max_time = Duration::from_secs(args.http_max_seconds);
    let scenario = |path: &str, tokens: Vec<String>, requests: usize| load::Load {
        addr: gateway.http.clone(),
        path: path.to_string(),
        tokens: Rc::new(tokens),
        requests,
        connections: args.connections,
        max_time,
    };
    let check = |name: &str, r: &load::LoadResult| -> Result<()> {
        if r.sent == 0 || r.errors * 100 > r.sent {
            let log = gateway.stderr_lines();
            let tail = log.get(log.len().saturating_sub(20)..).unwrap_or_default();
            bail!(
                "HTTP {name}: {} of {} requests failed (first status {:?}); gateway log:\n{}",
                r.errors,
                r.sent,
                r.first_error,
                tail.join("\n")
            );
        }
        Ok(())
    };
    let warm_n = (args.http_requests / 10).clamp(100, 2_000);

    // Warm-up, untimed: the first requests on each worker fetch the Google token.
    check(
        "warm-up",
        &load::run(&scenario("/plain", hot_token.clone(), warm_n))?,
    )?;
    check(
        "warm-up",
        &load::run(&scenario("/orders", hot_token.clone(), warm_n))?,
    )?;
    let n = cold_tokens.len();
    check("warm-up", &load::run(&scenario("/orders", cold_tokens, n))?)?;

    // Interleaved rounds, so that drift on a shared machine hits every scenario alike.
    let rounds = HTTP_ROUNDS;
    let per_round = args.http_requests.div_ceil(rounds);
    let cold_per_round = cold_measured.len().div_ceil(rounds);
    let mut no_filter = load::LoadResult::default();
    let mut hot = load::LoadResult::default();
    let mut cold = load::LoadResult::default();
    let mut per_round_rps = Vec::new();
    // CPU seconds the gateway and the upstream spent in each scenario (no filter, hot, cold).
    let mut cpu_totals = (
        BTreeMap::<String, f64>::new(),
        BTreeMap::<String, f64>::new(),
        BTreeMap::<String, f64>::new(),
    );
    for (round, cold_chunk) in cold_measured.chunks(cold_per_round.max(1)).enumerate() {
        eprintln!(
            "bench: HTTP round {}/{rounds}: no filter x{per_round}, hot x{per_round}, cold x{}",
            round + 1,
            cold_chunk.len()
        );
        // The no-filter route gets the same request (its token is ignored there).
        let cpu = cpu::child_cpu_secs();
        let r = load::run(&scenario("/plain", hot_token.clone(), per_round))?;
        check("no filter", &r)?;
        cpu::add_cpu(&mut cpu_totals.0, &cpu, &cpu::child_cpu_secs());
        let nf_rps = r.rps();
        no_filter.add(r);
        let cpu = cpu::child_cpu_secs();
        let r = load::run(&scenario("/orders", hot_token.clone(), per_round))?;
        cpu::add_cpu(&mut cpu_totals.1, &cpu, &cpu::child_cpu_secs());
        let hot_rps = r.rps();
        check("hot", &r)?;
        hot.add(r);
        let cpu = cpu::child_cpu_secs();
        let r = load::run(&scenario("/orders", cold_chunk.to_vec(), cold_chunk.len()))?;
        cpu::add_cpu(&mut cpu_totals.2, &cpu, &cpu::child_cpu_secs());
        check("cold", &r)?;
        per_round_rps.push((nf_rps, hot_rps, r.rps()));
        cold.add(r);
    }
    drop(gateway);
    drop(google);
    drop(cloudrun);
    Ok(HttpFigures {
        rounds: per_round_rps,
        cpu: cpu_totals,
        no_filter,
        hot,
        cold,
    })
}
