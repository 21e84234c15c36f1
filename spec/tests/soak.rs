//! Soak: a bounded mix of valid, expired, forged, wrong-audience, unknown-`kid` and oversized
//! tokens through a gateway (2 workers, several client threads, one request per connection: the
//! testkit client has no keep-alive) while the IdP rotates keys and flaps (faults on and off).
//! Every single response is checked against the expected decision.
//!
//! - `soak_short` (part of `cargo test`): 5 000 requests on each engine,
//!   `target/soak/summary-short-<engine>.json`.
//! - `soak_full` (`make soak`, ignored otherwise): `SOAK_REQUESTS` (default 100 000) requests on
//!   `ENGINE` (default the stand-in), `target/soak/summary.json`.
//!
//! Wasm memory and instance counts come from the stand-in's `/__status`; the real engine has no
//! such counters, so there the summary has `null` for them (its error log is checked for crashes
//! instead, as in every real-engine test).
//!
//! Expected decisions: valid tokens → 200, always. DESIGN.md allows a 503 only when the IdP is down
//! *and* no usable keys are cached; the soak warms the keys before the timed loop and switches
//! fresh tokens to a rotated key only once both workers accept it, so cached keys are always
//! usable (stale keys are served while the IdP is down) and a 503 for a valid token is wrong.
//! Bad tokens → 401 (unknown `kid`: 401, or 503 while the IdP is faulted, since its refetch
//! fails). `wrong_decisions` counts every other answer (a 200 for a bad token first of all) and
//! must be 0; `errors_5xx_unexpected` counts the 5xx among them.

use anyhow::{bail, Context, Result};
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::Gateway;
use cloudrun_spec::testkit::http;
use cloudrun_spec::testkit::mocks::{
    CloudRun, CloudRunOptions, Controls, IdpOptions, MintRequest, MockIdp,
};
use cloudrun_spec::testkit::repo_root;
use cloudrun_spec::testkit::stack::{start_gateway, AUDIENCE};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client threads.
const THREADS: usize = 4;
/// Per-request client bound: a hang is counted as a client error (and fails the soak).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// A 503 for a valid token is expected while the IdP is faulted and this long after.
const OUTAGE_GRACE_MS: u64 = 5000;
/// Fresh valid tokens kept for reuse (minted continuously by one thread).
const FRESH_POOL: usize = 256;
/// IdP flap cycle (full soak): faulted for 1 s, then healthy for 2 s.
const FULL_FLAP_MS: (u64, u64) = (1000, 2000);
/// The short soak lasts seconds: flap faster so every fault kind comes up.
const SHORT_FLAP_MS: (u64, u64) = (300, 500);
/// Faults the IdP cycles through (all endpoints but the control port).
const FLAPS: [&str; 6] = [
    "refuse",
    "status500",
    "hang",
    "garbage",
    "reset",
    "truncated",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    ValidReused,
    ValidFresh,
    Expired,
    Forged,
    WrongAudience,
    UnknownKid,
    Oversized,
}

const CLASSES: [Class; 7] = [
    Class::ValidReused,
    Class::ValidFresh,
    Class::Expired,
    Class::Forged,
    Class::WrongAudience,
    Class::UnknownKid,
    Class::Oversized,
];

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::ValidReused => "valid_reused",
            Class::ValidFresh => "valid_fresh",
            Class::Expired => "expired",
            Class::Forged => "forged",
            Class::WrongAudience => "wrong_audience",
            Class::UnknownKid => "unknown_kid",
            Class::Oversized => "oversized",
        }
    }

    /// Whether `status` is the right answer; `outage` says the IdP is (or just was) faulted.
    fn allows(self, status: u16, outage: bool) -> bool {
        match self {
            Class::ValidReused | Class::ValidFresh => status == 200,
            Class::UnknownKid => status == 401 || (status == 503 && outage),
            _ => status == 401,
        }
    }
}

/// Picks a class: mostly valid traffic, every bad kind well represented.
fn class_of(n: u64) -> Class {
    match n % 20 {
        0..=5 => Class::ValidReused,
        6..=9 => Class::ValidFresh,
        10..=11 => Class::Expired,
        12..=14 => Class::Forged,
        15..=16 => Class::WrongAudience,
        17..=18 => Class::UnknownKid,
        _ => Class::Oversized,
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn mint(ctl: &Controls, req: MintRequest) -> Result<String> {
    let req = if req.claims.contains_key("aud") {
        req
    } else {
        req.claim("aud", AUDIENCE)
    };
    let v = ctl.post("/__control/mint", &req.to_json())?;
    Ok(v["token"].as_str().context("no token")?.to_string())
}

/// A valid RS256 token of `kid`, living an hour (the soak outlasts the default 5 minutes).
fn valid(ctl: &Controls, kid: &str) -> Result<String> {
    mint(
        ctl,
        MintRequest::new("RS256")
            .kid(kid)
            .claim("exp", now_secs() + 3600)
            .claim(
                "jti",
                format!(
                    "{:x}",
                    mix(Instant::now().elapsed().as_nanos() as u64 ^ rand_seed())
                ),
            ),
    )
}

fn rand_seed() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    mix(N.fetch_add(1, Ordering::Relaxed)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0))
}

/// Tokens minted before the timed loop.
struct Pools {
    by_class: BTreeMap<Class, Vec<String>>,
}

fn premint(ctl: &Controls, kid: &str) -> Result<Pools> {
    let mut by_class: BTreeMap<Class, Vec<String>> = BTreeMap::new();
    let exp = now_secs() + 3600;
    let mut put = |class: Class, token: String| by_class.entry(class).or_default().push(token);
    for _ in 0..8 {
        put(Class::ValidReused, valid(ctl, kid)?);
    }
    for alg in ["ES256", "EdDSA", "ES384", "PS256"] {
        put(
            Class::ValidReused,
            mint(ctl, MintRequest::new(alg).claim("exp", exp))?,
        );
    }
    for ago in [120, 3600, 86_400 * 30] {
        put(
            Class::Expired,
            mint(
                ctl,
                MintRequest::new("RS256")
                    .kid(kid)
                    .claim("iat", now_secs() - ago - 60)
                    .claim("exp", now_secs() - ago),
            )?,
        );
    }
    put(
        Class::Expired,
        mint(
            ctl,
            MintRequest::new("ES256").claim("exp", now_secs() - 600),
        )?,
    );
    for alg in ["RS256", "ES256", "EdDSA", "PS256"] {
        put(
            Class::Forged,
            mint(ctl, MintRequest::new(alg).claim("exp", exp).attacker())?,
        );
    }
    // Algorithm confusion and `none`, with the real kid.
    put(
        Class::Forged,
        mint(ctl, MintRequest::new("HS256").kid(kid).claim("exp", exp))?,
    );
    put(
        Class::Forged,
        mint(ctl, MintRequest::new("none").kid(kid).claim("exp", exp))?,
    );
    // A genuine signature whose payload was swapped for another identity.
    let genuine = valid(ctl, kid)?;
    let mut parts = genuine.splitn(3, '.');
    let (h, _, s) = (parts.next(), parts.next(), parts.next());
    let admin = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        json!({"iss": "x", "sub": "admin", "aud": AUDIENCE, "exp": exp}).to_string(),
    );
    put(
        Class::Forged,
        format!(
            "{}.{admin}.{}",
            h.unwrap_or_default(),
            s.unwrap_or_default()
        ),
    );
    for aud in ["other-api", "", "orders-api "] {
        put(
            Class::WrongAudience,
            mint(
                ctl,
                MintRequest::new("RS256")
                    .kid(kid)
                    .claim("aud", aud)
                    .claim("exp", exp),
            )?,
        );
    }
    put(
        Class::WrongAudience,
        mint(
            ctl,
            MintRequest::new("ES256")
                .claim("aud", json!(["a", "b"]))
                .claim("exp", exp),
        )?,
    );
    for i in 0..32 {
        put(
            Class::UnknownKid,
            mint(
                ctl,
                MintRequest::new("RS256")
                    .kid(kid)
                    .header("kid", format!("soak-unknown-{i}"))
                    .claim("exp", exp),
            )?,
        );
    }
    // Over `max_token_bytes` (4096), under nginx's 8 KB header line.
    for size in [4300, 5000] {
        put(
            Class::Oversized,
            mint(
                ctl,
                MintRequest::new("RS256")
                    .kid(kid)
                    .claim("pad", "p".repeat(size))
                    .claim("exp", exp),
            )?,
        );
    }
    Ok(Pools { by_class })
}

/// What the IdP flapper publishes to the clients.
struct Outage {
    /// A fault is set right now.
    active: AtomicBool,
    /// When the last fault ended (ms since the soak started).
    last_end_ms: AtomicU64,
}

impl Outage {
    fn now_or_recent(&self, now_ms: u64) -> bool {
        self.active.load(Ordering::SeqCst)
            || now_ms.saturating_sub(self.last_end_ms.load(Ordering::SeqCst)) < OUTAGE_GRACE_MS
    }
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    wrong: u64,
    unexpected_5xx: u64,
    client_errors: u64,
    latencies_us: Vec<u64>,
    examples: Vec<String>,
}

/// Linear-memory sizes of the filter per worker, from the stand-in's `/__status` (`null` on the
/// real engine, which does not expose them).
fn wasm_memory(gateway: &Gateway) -> Result<Value> {
    if gateway.engine != Engine::StandIn {
        return Ok(Value::Null);
    }
    let status = gateway.status()?;
    let workers = status["workers"].as_array().context("workers")?;
    Ok(workers
        .iter()
        .map(|w| json!(w["memory_bytes"]["cloudrun_oidc"].as_u64().unwrap_or(0)))
        .collect())
}

/// Filter instances created on the stand-in's workers (`null` on the real engine).
fn instances(gateway: &Gateway) -> Value {
    if gateway.engine != Engine::StandIn {
        return Value::Null;
    }
    json!((0..2)
        .map(|w| gateway.instances_created(w, "cloudrun_oidc").unwrap_or(0))
        .sum::<u64>())
}

/// Calls until a token of `kid` has been accepted by both workers (bounded).
fn wait_kid_live(gateway: &Gateway, ctl: &Controls, kid: &str) -> Result<()> {
    let token = valid(ctl, kid)?;
    let auth = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ok_workers = std::collections::BTreeSet::new();
    while ok_workers.len() < 2 {
        if Instant::now() > deadline {
            bail!("kid {kid} never became live on both workers");
        }
        if let Ok(resp) = http::get_timeout(
            &gateway.url("/orders"),
            &[("authorization", &auth)],
            CLIENT_TIMEOUT,
        ) {
            if resp.status == 200 {
                ok_workers.insert(resp.header("x-spec-worker").unwrap_or_default().to_string());
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn soak(
    engine: Engine,
    requests: usize,
    summary_name: &str,
    (fault_ms, healthy_ms): (u64, u64),
) -> Result<Value> {
    let idp = MockIdp::start(IdpOptions::with_audience(AUDIENCE))?;
    let upstream = CloudRun::start(CloudRunOptions::no_auth())?;
    let config = json!({
        "issuers": [{"issuer": idp.issuer(), "audiences": [AUDIENCE]}],
        "claims_to_headers": {"sub": "x-user-id"},
        "callout_timeout_ms": 1000,
        // Short TTL: background refreshes (and their failures) happen during the soak.
        "jwks_cache": {"ttl_seconds": 10, "unknown_kid_cooldown_seconds": 2},
        // Oversized tokens must fit in one nginx header buffer (8 KB) to reach the filter.
        "max_token_bytes": 4096,
    });
    let gateway = start_gateway(&config, upstream.http_addr(), 2, engine)?;
    let ctl = idp.controls().clone();
    let first_kid = "rsa-1".to_string();
    wait_kid_live(&gateway, &ctl, &first_kid)?;
    let pools = premint(&ctl, &first_kid)?;
    let memory_start = wasm_memory(&gateway)?;
    let instances_start = instances(&gateway);

    let current_kid = Mutex::new(first_kid.clone());
    let fresh: Mutex<Vec<String>> = Mutex::new(vec![valid(&ctl, &first_kid)?]);
    let outage = Outage {
        active: AtomicBool::new(false),
        last_end_ms: AtomicU64::new(0),
    };
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    let rotations = AtomicUsize::new(0);
    let flaps = AtomicUsize::new(0);
    let memory_mid: Mutex<Value> = Mutex::new(Value::Null);
    let url = gateway.url("/orders");

    std::thread::scope(|s| -> Result<()> {
        // Fresh valid tokens, minted continuously into a bounded ring.
        s.spawn(|| {
            let mut i = 0usize;
            while !done.load(Ordering::Relaxed) {
                let kid = current_kid.lock().map(|k| k.clone()).unwrap_or_default();
                if let Ok(t) = valid(&ctl, &kid) {
                    if let Ok(mut ring) = fresh.lock() {
                        if ring.len() < FRESH_POOL {
                            ring.push(t);
                        } else if let Some(slot) = ring.get_mut(i % FRESH_POOL) {
                            *slot = t;
                        }
                    }
                    i += 1;
                }
            }
        });
        // The IdP flaps: a fault on every endpoint for `fault_ms`, then healthy for `healthy_ms`.
        let controller = s.spawn(|| -> Result<()> {
            let mut cycle = 0usize;
            while !done.load(Ordering::Relaxed) {
                let fault = FLAPS[cycle % FLAPS.len()];
                cycle += 1;
                outage.active.store(true, Ordering::SeqCst);
                ctl.fault(fault)?;
                flaps.fetch_add(1, Ordering::Relaxed);
                sleep_unless(&done, fault_ms);
                ctl.fault("none")?;
                outage
                    .last_end_ms
                    .store(started.elapsed().as_millis() as u64, Ordering::SeqCst);
                outage.active.store(false, Ordering::SeqCst);
                if memory_mid.lock().map(|m| m.is_null()).unwrap_or(false)
                    && next.load(Ordering::Relaxed) >= requests / 2
                {
                    if let (Ok(m), Ok(mut mid)) = (wasm_memory(&gateway), memory_mid.lock()) {
                        *mid = m;
                    }
                }
                sleep_unless(&done, healthy_ms);
            }
            ctl.fault("none")?;
            Ok(())
        });
        // Key rotation, independent of the flaps: every tenth of the requests (at most 10
        // times, keeping the JWKS under the filter's 100-key cap: old keys stay published).
        // Fresh tokens switch to the new key once both workers accept it.
        let rotator = s.spawn(|| -> Result<()> {
            let rotate_every = (requests / 10).max(1);
            let mut next_rotation = rotate_every;
            while !done.load(Ordering::Relaxed) {
                if next.load(Ordering::Relaxed) < next_rotation
                    || rotations.load(Ordering::Relaxed) >= 10
                {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                if next.load(Ordering::Relaxed) >= next_rotation
                    && rotations.load(Ordering::Relaxed) < 10
                {
                    next_rotation += rotate_every;
                    let v = ctl.post("/__control/rotate", &json!({"retire_old": false}))?;
                    let kid = v["kids"]
                        .as_array()
                        .and_then(|k| {
                            k.iter()
                                .filter_map(Value::as_str)
                                .find(|k| k.starts_with("rsa"))
                        })
                        .context("rotate: no rsa kid")?
                        .to_string();
                    wait_kid_live(&gateway, &ctl, &kid)?;
                    *current_kid
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))? = kid;
                    rotations.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        });
        let clients: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut local = Tally::default();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= requests {
                            break;
                        }
                        let r = mix(n as u64);
                        let class = class_of(r);
                        let token = if class == Class::ValidFresh {
                            let ring = fresh.lock().map(|f| f.clone()).unwrap_or_default();
                            ring.get((r >> 8) as usize % ring.len().max(1))
                                .cloned()
                                .unwrap_or_default()
                        } else {
                            let pool = pools.by_class.get(&class).cloned().unwrap_or_default();
                            pool.get((r >> 8) as usize % pool.len().max(1))
                                .cloned()
                                .unwrap_or_default()
                        };
                        let auth = format!("Bearer {token}");
                        let t0 = Instant::now();
                        let at_start = outage.now_or_recent(started.elapsed().as_millis() as u64);
                        let resp =
                            http::get_timeout(&url, &[("authorization", &auth)], CLIENT_TIMEOUT);
                        let us = t0.elapsed().as_micros() as u64;
                        let in_outage =
                            at_start || outage.now_or_recent(started.elapsed().as_millis() as u64);
                        match resp {
                            Ok(resp) => {
                                local.latencies_us.push(us);
                                *local
                                    .statuses
                                    .entry(class.name())
                                    .or_default()
                                    .entry(resp.status)
                                    .or_default() += 1;
                                if !class.allows(resp.status, in_outage) {
                                    local.wrong += 1;
                                    if resp.status >= 500 {
                                        local.unexpected_5xx += 1;
                                    }
                                    if local.examples.len() < 5 {
                                        local.examples.push(format!(
                                            "#{n} {} -> {} {:.200}",
                                            class.name(),
                                            resp.status,
                                            resp.text()
                                        ));
                                    }
                                }
                            }
                            Err(e) => {
                                local.client_errors += 1;
                                if local.examples.len() < 5 {
                                    local.examples.push(format!("#{n} {}: {e}", class.name()));
                                }
                            }
                        }
                    }
                    if let Ok(mut t) = tally.lock() {
                        for (class, statuses) in local.statuses {
                            for (status, count) in statuses {
                                *t.statuses
                                    .entry(class)
                                    .or_default()
                                    .entry(status)
                                    .or_default() += count;
                            }
                        }
                        t.wrong += local.wrong;
                        t.unexpected_5xx += local.unexpected_5xx;
                        t.client_errors += local.client_errors;
                        t.latencies_us.extend(local.latencies_us);
                        t.examples.extend(local.examples);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
        }
        done.store(true, Ordering::Relaxed);
        controller
            .join()
            .map_err(|_| anyhow::anyhow!("controller panicked"))??;
        rotator
            .join()
            .map_err(|_| anyhow::anyhow!("rotator panicked"))??;
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let memory_end = wasm_memory(&gateway)?;
    let memory = gateway.memory()?;
    let mut t = tally
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    t.latencies_us.sort_unstable();
    let answered = t.latencies_us.len() as u64;
    let summary = json!({
        "requests": requests,
        "answered": answered,
        "wrong_decisions": t.wrong,
        "errors_5xx_unexpected": t.unexpected_5xx,
        "client_errors": t.client_errors,
        "p50_us": percentile(&t.latencies_us, 0.50),
        "p99_us": percentile(&t.latencies_us, 0.99),
        "max_us": t.latencies_us.last().copied().unwrap_or(0),
        "duration_s": elapsed.as_secs_f64(),
        "requests_per_s": answered as f64 / elapsed.as_secs_f64().max(0.001),
        "client_threads": THREADS,
        "engine": engine.name(),
        "gateway_workers": 2,
        "max_rss_bytes": memory["vm_hwm_bytes"],
        "rss_end_bytes": memory["vm_rss_bytes"],
        "wasm_memory_bytes_start": memory_start,
        "wasm_memory_bytes_mid": memory_mid.into_inner().unwrap_or_default(),
        "wasm_memory_bytes_end": memory_end,
        "instances_created": {"start": instances_start, "end": instances(&gateway)},
        "key_rotations": rotations.load(Ordering::Relaxed),
        "idp_fault_windows": flaps.load(Ordering::Relaxed),
        "idp_counters": idp.counters()?,
        "upstream_requests": upstream.counter("requests")?,
        "statuses_by_class": t.statuses,
        "metrics": gateway.metrics()?,
        "examples_of_wrong": t.examples,
    });
    let dir = repo_root().join("target/soak");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(summary_name),
        serde_json::to_string_pretty(&summary)?,
    )?;
    eprintln!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(summary)
}

fn sleep_unless(done: &AtomicBool, ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until && !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check(summary: &Value, requests: usize) {
    assert_eq!(
        summary["wrong_decisions"],
        json!(0),
        "wrong decisions: {summary}"
    );
    assert_eq!(summary["errors_5xx_unexpected"], json!(0));
    assert_eq!(
        summary["client_errors"],
        json!(0),
        "hangs or dropped connections"
    );
    assert_eq!(summary["answered"], json!(requests));
    // Every class was exercised and every bad class was refused at least once.
    for class in CLASSES {
        let statuses = &summary["statuses_by_class"][class.name()];
        let total: u64 = statuses
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        assert!(total > 0, "class {} never sent", class.name());
    }
    // No trap, no instance recreated.
    assert_eq!(
        summary["instances_created"]["start"],
        summary["instances_created"]["end"]
    );
    // The filter's memory stays bounded (caches have caps): well under 128 MiB per instance.
    for m in summary["wasm_memory_bytes_end"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(
            m.as_u64().unwrap_or(u64::MAX) < 128 << 20,
            "wasm memory {m}"
        );
    }
    // Valid traffic reached the upstream: the soak was not just refusals.
    assert!(summary["upstream_requests"].as_u64().unwrap_or(0) > requests as u64 / 4);
}

fn soak_short(engine: Engine) -> Result<()> {
    let requests = 5000;
    let name = format!("summary-short-{}.json", engine.name());
    let summary = soak(engine, requests, &name, SHORT_FLAP_MS)?;
    check(&summary, requests);
    Ok(())
}

cloudrun_spec::engine_tests!(soak_short);

/// `make soak`: `SOAK_REQUESTS` (default 100 000) requests.
#[test]
#[ignore = "long: run by `make soak`"]
fn soak_full() -> Result<()> {
    let requests = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let summary = soak(Engine::from_env()?, requests, "summary.json", FULL_FLAP_MS)?;
    check(&summary, requests);
    Ok(())
}
