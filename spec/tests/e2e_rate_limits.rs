//! Rate limits per verified caller, end to end on 2 workers and on both engines: the budget holds
//! under concurrent load (the 200s and 429s are counted: no overshoot), windows roll over,
//! callers are apart, refused tokens spend nothing, and a zone at the documented minimum with
//! `eviction=none` never fills (callers beyond the table are admitted uncounted, never trapped).

use anyhow::{ensure, Result};
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::Gateway;
use cloudrun_spec::testkit::http::{self, Response};
use cloudrun_spec::testkit::mocks::{CloudRun, CloudRunOptions, IdpOptions, MintRequest, MockIdp};
use cloudrun_spec::testkit::stack::{orders_gateway, Stack, AUDIENCE};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn limited(engine: Engine, limits: Value) -> Result<Stack> {
    Stack::with_config(engine, move |c| c["rate_limits"] = limits)
}

fn token_of(stack: &Stack, sub: &str) -> Result<String> {
    stack.mint(MintRequest::new("RS256").claim("sub", sub))
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The day (UTC) now falls in.
fn day() -> u64 {
    now().as_secs() / 86_400
}

/// `token` with its signature replaced by 256 random bytes.
fn forged(token: &str) -> Result<String> {
    use base64::Engine as _;
    let (signed, _) = token.rsplit_once('.').unwrap_or((token, ""));
    let mut signature = [0u8; 256];
    openssl::rand::rand_bytes(&mut signature)?;
    Ok(format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
    ))
}

fn assert_limited(resp: &Response, what: &str) {
    assert_eq!(resp.status, 429, "{what}: {}", resp.text());
    let retry: u64 = resp
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        retry >= 1,
        "{what}: Retry-After {:?}",
        resp.header("retry-after")
    );
    assert!(
        resp.header("ratelimit")
            .is_some_and(|v| v.contains(";r=0;")),
        "{what}: RateLimit {:?}",
        resp.header("ratelimit")
    );
    assert!(resp.header("ratelimit-policy").is_some(), "{what}");
    assert!(resp.header("www-authenticate").is_none(), "{what}");
}

/// 16 clients send 800 requests with one caller's token through 2 workers against a budget of
/// 200 a day (after one request of each worker's warm-up, which fetches the keys: a cold burst
/// would meet 503 while the JWKS is on its way): exactly 200 pass, the rest get 429, and the
/// upstream sees 200.
fn the_budget_holds_across_two_workers_under_concurrent_load(engine: Engine) -> Result<()> {
    const BUDGET: u64 = 200;
    const CLIENTS: usize = 16;
    const EACH: usize = 50;
    let stack = limited(
        engine,
        json!([{"name": "per_day", "requests": BUDGET, "window": "day"}]),
    )?;
    let token = token_of(&stack, "ada")?;
    let url = stack.gateway.url("/orders");
    let day_before = day();
    let mut warm = 0;
    for _ in 0..2 {
        let resp = stack.call(Some(&token))?;
        ensure!(
            resp.status == 200,
            "warm-up: {} {}",
            resp.status,
            resp.text()
        );
        warm += 1;
    }
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (url, auth) = (url.clone(), format!("Bearer {token}"));
                s.spawn(move || {
                    (0..EACH)
                        .map(|_| {
                            http::get(&url, &[("authorization", &auth)])
                                .map(|r| r.status)
                                .unwrap_or(0)
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let ok = warm + statuses.iter().filter(|&&s| s == 200).count() as u64;
    let refused = statuses.iter().filter(|&&s| s == 429).count() as u64;
    let total = (CLIENTS * EACH) as u64;
    println!(
        "{engine:?}: {ok} × 200, {refused} × 429 of {} (budget {BUDGET})",
        total + warm
    );
    ensure!(ok + refused == total + warm, "other statuses: {statuses:?}");
    if day() == day_before {
        ensure!(ok == BUDGET, "overshoot: {ok} passed, budget {BUDGET}");
    } else {
        // The day ended during the run: a second budget began.
        ensure!(ok <= 2 * BUDGET, "{ok} passed over two days of {BUDGET}");
    }
    ensure!(
        stack.upstream_requests()? == ok,
        "the upstream saw a refused request"
    );
    ensure!(stack.metric("rate_limited")? == refused);
    ensure!(stack.metric("rate_limited_per_day")? == refused);
    ensure!(stack.metric("rate_limit_unmetered")? == 0);
    assert_limited(&stack.call(Some(&token))?, "after the run");
    stack.gateway.check_no_trap()
}

/// Two requests a second: the third within the same second is refused, the next second serves
/// again. A try whose requests straddle a second boundary says nothing and is repeated.
fn windows_roll_over(engine: Engine) -> Result<()> {
    let stack = limited(
        engine,
        json!([{"name": "per_second", "requests": 2, "window": "second"}]),
    )?;
    for attempt in 0.. {
        ensure!(attempt < 10, "never three requests within one second");
        let token = token_of(&stack, &format!("user-{attempt}"))?;
        // Start just after a second begins.
        let into = now().subsec_millis();
        std::thread::sleep(Duration::from_millis(u64::from(1_010 - into.min(1_000))));
        let second = now().as_secs();
        let statuses: Vec<Response> = (0..3)
            .map(|_| stack.call(Some(&token)))
            .collect::<Result<_>>()?;
        if now().as_secs() != second {
            continue;
        }
        let codes: Vec<u16> = statuses.iter().map(|r| r.status).collect();
        ensure!(codes == [200, 200, 429], "{codes:?}");
        assert_limited(&statuses[2], "third in the second");
        let reset = statuses[2]
            .header("retry-after")
            .unwrap_or_default()
            .to_string();
        ensure!(reset == "1", "Retry-After {reset}");
        std::thread::sleep(Duration::from_millis(1_100));
        let resp = stack.call(Some(&token))?;
        ensure!(resp.status == 200, "the next second: {}", resp.status);
        ensure!(
            resp.header("ratelimit") == Some("\"per_second\";r=1;t=1"),
            "{:?}",
            resp.header("ratelimit")
        );
        break;
    }
    stack.gateway.check_no_trap()
}

/// Forged, expired and wrong-audience tokens naming a caller are refused and spend nothing of
/// its budget; another caller's budget is its own; a token without the key claim gets 403.
fn callers_are_apart_and_refused_tokens_spend_nothing(engine: Engine) -> Result<()> {
    let stack = limited(
        engine,
        json!([{"name": "per_client", "requests": 2, "window": "day", "key": "client_id"}]),
    )?;
    let valid = |client: &str| stack.mint(MintRequest::new("RS256").claim("client_id", client));
    let partner_a = valid("partner-a")?;
    let day_before = day();
    for token in [
        forged(&partner_a)?,
        stack.mint(
            MintRequest::new("RS256")
                .claim("client_id", "partner-a")
                .claim("exp", json!(now().as_secs() - 3_600)),
        )?,
        stack.mint(
            MintRequest::new("RS256")
                .claim("client_id", "partner-a")
                .claim("aud", "another-api"),
        )?,
    ] {
        for _ in 0..3 {
            let resp = stack.call(Some(&token))?;
            ensure!(
                resp.status == 401,
                "refused token: {} {}",
                resp.status,
                resp.text()
            );
        }
    }
    let codes: Vec<u16> = (0..3)
        .map(|_| stack.call(Some(&partner_a)).map(|r| r.status))
        .collect::<Result<_>>()?;
    if day() == day_before {
        ensure!(codes == [200, 200, 429], "partner-a: {codes:?}");
    }
    let resp = stack.call(Some(&valid("partner-b")?))?;
    ensure!(resp.status == 200, "partner-b: {}", resp.status);
    ensure!(
        resp.header("ratelimit-policy") == Some("\"per_client\";q=2;w=86400"),
        "{:?}",
        resp.header("ratelimit-policy")
    );
    let resp = stack.call(Some(&stack.valid_token()?))?;
    ensure!(resp.status == 403, "no client_id: {}", resp.status);
    stack.gateway.check_no_trap()
}

/// The documented minimum zone for one key source and one limit of 16 callers (96k + 8k) with
/// `eviction=none`: 60 callers in one day fill the table, not the zone. Callers beyond it are
/// admitted uncounted (`rate_limit_unmetered`), forged tokens still 401, nothing traps.
fn a_zone_at_the_minimum_never_fills_and_extra_callers_are_unmetered(engine: Engine) -> Result<()> {
    let idp = MockIdp::start(IdpOptions::with_audience(AUDIENCE))?;
    let upstream = CloudRun::start(CloudRunOptions::no_auth())?;
    let config = json!({
        "issuers": [{"issuer": idp.issuer(), "audiences": [AUDIENCE]}],
        "rate_limits": [{"name": "per_day", "requests": 1000, "window": "day", "max_callers": 16}],
    });
    let mut opts = orders_gateway(&config, upstream.http_addr(), 2, engine)?;
    opts.shm_kv = vec!["cloudrun_oidc=104k eviction=none".to_string()];
    let gateway = Gateway::start(&opts)?;
    let url = gateway.url("/orders");
    let mut passed = 0;
    for i in 0..60 {
        let token = idp.mint(
            &MintRequest::new("RS256")
                .claim("aud", AUDIENCE)
                .claim("sub", format!("caller-{i}")),
        )?;
        let auth = format!("Bearer {token}");
        let resp = http::get(&url, &[("authorization", &auth)])?;
        ensure!(
            resp.status == 200,
            "caller {i}: {} {}",
            resp.status,
            resp.text()
        );
        passed += 1;
        let forged_auth = format!("Bearer {}", forged(&token)?);
        let resp = http::get(&url, &[("authorization", &forged_auth)])?;
        ensure!(resp.status == 401, "forged {i}: {}", resp.status);
    }
    ensure!(upstream.counter("requests")? == passed);
    let metrics = gateway.metrics()?;
    let unmetered = metrics["pw_cloudrun_oidc_rate_limit_unmetered"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        (60 - 16..60).contains(&unmetered),
        "16 slots count at most 16 callers: {unmetered} unmetered"
    );
    ensure!(
        gateway.count_log("request admitted uncounted") >= 1,
        "the fault is logged"
    );
    if engine == Engine::StandIn {
        let shm = &gateway.status()?["shm_kv"]["cloudrun_oidc"];
        ensure!(
            shm["used"].as_u64() < shm["capacity"].as_u64(),
            "the zone filled: {shm}"
        );
        ensure!(shm["entries"].as_u64() <= Some(5 + 16), "{shm}");
    }
    gateway.check_no_trap()
}

engine_tests!(
    the_budget_holds_across_two_workers_under_concurrent_load,
    windows_roll_over,
    callers_are_apart_and_refused_tokens_spend_nothing,
    a_zone_at_the_minimum_never_fills_and_extra_callers_are_unmetered,
);
