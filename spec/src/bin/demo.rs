//! `make demo`: starts the example topology of `kong/kong.yml` (two mock IdPs, mock Google, three
//! Cloud Run stand-ins, a gateway running `dist/cloudrun_oidc.wasm`: the Kong stand-in, or Kong's
//! real engine with `ENGINE=wasmx`), makes a few calls through it and shows what happened. Exits 0
//! only when every outcome is the expected one (and, on the real engine, no worker crashed).

use anyhow::{Context, Result};
use cloudrun_spec::jose;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::http::Response;
use cloudrun_spec::testkit::world::{claims_of, Caller, Echo, World, WorldOptions};
use serde_json::{json, Value};
use std::process::ExitCode;

/// Width of the label column.
const LABEL: usize = 28;

/// One expected outcome and what happened.
struct Check {
    step: String,
    what: String,
    expected: String,
    actual: String,
    ok: bool,
}

/// Collects checks and prints the demo.
struct Demo {
    step: String,
    checks: Vec<Check>,
}

/// `eyJhbGciOiJSUzI1NiIs…` (a token is never printed whole).
fn short(token: &str) -> String {
    let prefix: String = token.chars().take(24).collect();
    if token.len() > prefix.len() {
        format!("{prefix}…")
    } else {
        prefix
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

impl Demo {
    fn section(&mut self, title: &str, why: &str) {
        self.step = title.to_string();
        println!();
        println!(
            "── {title} {}",
            "─".repeat(90usize.saturating_sub(title.len() + 4))
        );
        for line in why.lines() {
            println!("   {line}");
        }
    }

    fn line(&self, label: &str, value: &str) {
        println!("{}", format!("   {label:<LABEL$} {value}").trim_end());
    }

    fn sub(&self, label: &str, value: &str) {
        println!(
            "{}",
            format!("     {label:<w$} {value}", w = LABEL - 2).trim_end()
        );
    }

    /// Records an expectation and prints it with ✓ / ✗.
    fn expect(&mut self, what: &str, expected: impl Into<String>, actual: impl Into<String>) {
        let (expected, actual) = (expected.into(), actual.into());
        let ok = expected == actual;
        self.expect_that(what, ok, expected, actual);
    }

    fn expect_that(&mut self, what: &str, ok: bool, expected: String, actual: String) {
        let mark = if ok { "✓" } else { "✗" };
        if ok {
            self.line(what, &format!("{actual}  {mark}"));
        } else {
            self.line(what, &format!("{actual}  {mark} expected {expected}"));
        }
        self.checks.push(Check {
            step: self.step.clone(),
            what: what.to_string(),
            expected,
            actual,
            ok,
        });
    }

    fn status(&mut self, resp: &Response, expected: u16) {
        self.expect("status", expected.to_string(), resp.status.to_string());
    }

    fn www_authenticate(&self, resp: &Response) -> String {
        resp.header("www-authenticate").unwrap_or("-").to_string()
    }

    /// The response's challenge carries `error="<code>"`.
    fn challenge(&mut self, resp: &Response, code: &str) {
        let got = self.www_authenticate(resp);
        let ok = got.contains(&format!("error=\"{code}\""));
        self.expect_that(
            "WWW-Authenticate",
            ok,
            format!("error=\"{code}\""),
            got.clone(),
        );
    }

    /// Cloud Run got nothing during the step.
    fn not_forwarded(&mut self, world: &World, cloudrun: &str, before: u64) -> Result<()> {
        let after = world.cloudrun(cloudrun)?.counter("requests")?;
        self.expect(
            &format!("requests at {cloudrun}"),
            "0 (nothing forwarded)",
            if after == before {
                "0 (nothing forwarded)".to_string()
            } else {
                format!("{}", after.saturating_sub(before))
            },
        );
        Ok(())
    }
}

/// What Cloud Run saw on a forwarded request: identity headers, the Google token, the
/// caller's token.
fn show_forwarded(
    demo: &mut Demo,
    world: &World,
    echo: &Echo,
    caller_token: &str,
    audience: &str,
    identity: &[(&str, &str)],
) -> Result<()> {
    demo.line("Cloud Run saw:", "");
    for (header, expected) in identity {
        let values = echo.header_values(header);
        let shown = values.join(" | ");
        let ok = values.len() == 1 && values.first().map(String::as_str) == Some(*expected);
        let mark = if ok { "✓" } else { "✗" };
        demo.sub(header, &format!("{shown}  {mark}"));
        demo.checks.push(Check {
            step: demo.step.clone(),
            what: header.to_string(),
            expected: (*expected).to_string(),
            actual: shown,
            ok,
        });
    }

    // Authorization: the Google ID token.
    let google = echo.bearer("authorization").unwrap_or_default();
    demo.sub(
        "authorization",
        &format!("Bearer {}  (Google ID token)", short(&google)),
    );
    let claims = claims_of(&google).unwrap_or(Value::Null);
    for name in ["iss", "aud", "email"] {
        demo.sub(&format!("  {name}"), &show(&claims[name]));
    }
    let aud = show(&claims["aud"]);
    let ok = aud == audience;
    demo.checks.push(Check {
        step: demo.step.clone(),
        what: "Google token aud".into(),
        expected: audience.into(),
        actual: aud,
        ok,
    });
    let verified = world
        .google
        .certs()
        .and_then(|jwks| jose::verify_rs256(&google, &jwks))
        .is_ok();
    demo.sub(
        "  signature",
        if verified {
            "verified with Google's JWKS  ✓"
        } else {
            "does NOT verify with Google's JWKS  ✗"
        },
    );
    demo.checks.push(Check {
        step: demo.step.clone(),
        what: "Google token signature".into(),
        expected: "verifies".into(),
        actual: if verified {
            "verifies"
        } else {
            "does not verify"
        }
        .into(),
        ok: verified,
    });

    // The caller's token, moved aside.
    let forwarded = echo.bearer("x-forwarded-authorization").unwrap_or_default();
    let same = forwarded == caller_token;
    demo.sub(
        "x-forwarded-authorization",
        &format!(
            "Bearer {}  {}",
            short(&forwarded),
            if same {
                "(the caller's token)  ✓"
            } else {
                "✗ not the caller's token"
            }
        ),
    );
    demo.checks.push(Check {
        step: demo.step.clone(),
        what: "x-forwarded-authorization".into(),
        expected: "the caller's token".into(),
        actual: if same { "the caller's token" } else { "other" }.into(),
        ok: same,
    });
    Ok(())
}

fn run(world: &World, demo: &mut Demo) -> Result<()> {
    let gw = &world.gateway;
    let engine = match gw.engine {
        Engine::StandIn => "Kong stand-in",
        Engine::Wasmx => "Kong's engine, nginx + ngx_wasm_module",
    };
    println!("cloudrun_oidc demo: kong/kong.yml on the {engine}, filter dist/cloudrun_oidc.wasm");
    println!();
    println!(
        "   {:<LABEL$} http://{}   (admin http://{})",
        format!("gateway ({})", gw.engine),
        gw.http,
        gw.admin
    );
    for entry in &world.resolve {
        if let Some((name, addr)) = entry.split_once('=') {
            println!("   {name:<LABEL$} played by {addr}");
        }
    }

    // 1. No token.
    demo.section(
        "1. No token: GET /orders",
        "The request carries no credentials: a bare RFC 6750 challenge, nothing is forwarded.",
    );
    let before = world.cloudrun("cloudrun-orders")?.counter("requests")?;
    let resp = world.call("/orders", None, &[])?;
    demo.status(&resp, 401);
    let got = demo.www_authenticate(&resp);
    demo.expect("WWW-Authenticate", "Bearer realm=\"cloudrun_oidc\"", got);
    demo.not_forwarded(world, "cloudrun-orders", before)?;

    // 2. Valid token.
    demo.section(
        "2. Valid Keycloak token: GET /orders",
        "Verified against mock-idp's JWKS (found by OIDC discovery), role orders-admin present.\n\
         Then the same token with a forged `X-User-Id: mallory`: the gateway cannot take a client's\n\
         header out of the request, so it refuses it whole (400), and Cloud Run sees nothing.",
    );
    let token = world.token(Caller::Orders)?;
    let claims = claims_of(&token)?;
    demo.line("caller token", &format!("Bearer {}", short(&token)));
    demo.sub("iss", &show(&claims["iss"]));
    demo.sub(
        "sub / aud",
        &format!("{} / {}", show(&claims["sub"]), show(&claims["aud"])),
    );
    demo.sub(
        "realm_access.roles",
        &show(&claims["realm_access"]["roles"]),
    );
    let resp = world.call("/orders", Some(&token), &[])?;
    demo.status(&resp, 200);
    if resp.status == 200 {
        let echo = Echo::from_response(&resp)?;
        show_forwarded(
            demo,
            world,
            &echo,
            &token,
            "http://cloudrun-orders:9201",
            &[
                ("x-user-id", "alice"),
                ("x-user-email", "alice@example.com"),
                ("x-user-roles", "user,orders-admin"),
            ],
        )?;
        let claims_header = echo.header("x-jwt-claims").unwrap_or_default();
        let decoded = jose::b64url_decode(&claims_header)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let ok = decoded.as_ref().map(|c| &c["sub"]) == Some(&json!("alice"));
        demo.sub(
            "x-jwt-claims",
            &format!(
                "{}  ({})",
                short(&claims_header),
                if ok {
                    "base64url of the verified payload  ✓"
                } else {
                    "✗ not the verified payload"
                }
            ),
        );
        demo.checks.push(Check {
            step: demo.step.clone(),
            what: "x-jwt-claims".into(),
            expected: "the verified payload".into(),
            actual: if ok { "the verified payload" } else { "other" }.into(),
            ok,
        });
    } else {
        demo.line("body", &resp.text());
    }
    let before = world.cloudrun("cloudrun-orders")?.counter("requests")?;
    let resp = world.call("/orders", Some(&token), &[("X-User-Id", "mallory")])?;
    demo.line("+ X-User-Id: mallory", "");
    demo.status(&resp, 400);
    demo.challenge(&resp, "invalid_request");
    demo.not_forwarded(world, "cloudrun-orders", before)?;

    // 3. Expired token.
    demo.section(
        "3. Expired token: GET /orders",
        "exp is an hour ago, beyond clock_skew_seconds (60): 401 invalid_token.",
    );
    let now = cloudrun_spec::mocks::common::now();
    let expired = world.mint(
        Caller::Orders,
        &json!({"iat": now - 7200, "exp": now - 3600}),
    )?;
    let before = world.cloudrun("cloudrun-orders")?.counter("requests")?;
    let resp = world.call("/orders", Some(&expired), &[])?;
    demo.status(&resp, 401);
    demo.challenge(&resp, "invalid_token");
    demo.not_forwarded(world, "cloudrun-orders", before)?;

    // 4. Missing role.
    demo.section(
        "4. Valid token without the orders-admin role: GET /orders",
        "required_claims: {realm_access.roles: [orders-admin]} is not met: 403 insufficient_scope.",
    );
    let user = world.mint(
        Caller::Orders,
        &json!({"realm_access": {"roles": ["user"]}}),
    )?;
    let before = world.cloudrun("cloudrun-orders")?.counter("requests")?;
    let resp = world.call("/orders", Some(&user), &[])?;
    demo.line("realm_access.roles", "[\"user\"]");
    demo.status(&resp, 403);
    demo.challenge(&resp, "insufficient_scope");
    demo.not_forwarded(world, "cloudrun-orders", before)?;

    // 5. Scopes.
    demo.section(
        "5. Scopes: GET /reports",
        "required_scopes: [reports.read]. Without it 403; with it 200.",
    );
    let no_scope = world.mint(Caller::Reports, &json!({"scope": "openid profile"}))?;
    let resp = world.call("/reports", Some(&no_scope), &[])?;
    demo.line("caller scope", "openid profile");
    demo.status(&resp, 403);
    demo.challenge(&resp, "insufficient_scope");
    let resp = world.call_as(Caller::Reports)?;
    demo.line("caller scope", "openid reports.read");
    demo.status(&resp, 200);
    if resp.status == 200 {
        let echo = Echo::from_response(&resp)?;
        let aud = echo
            .bearer("authorization")
            .and_then(|t| claims_of(&t).ok())
            .map(|c| show(&c["aud"]))
            .unwrap_or_default();
        demo.expect("Google token aud", "http://cloudrun-reports:9202", aud);
        let scopes = echo.header("x-user-scopes").unwrap_or_default();
        demo.expect("x-user-scopes", "openid reports.read", scopes);
        // /reports mints through Workload Identity Federation (no key): AWS role → STS → IAM.
        let sts = world.google.counter("sts")?;
        demo.expect_that(
            "Google token via external_account (STS exchanges)",
            sts >= 1,
            ">= 1".into(),
            sts.to_string(),
        );
    }

    // 6. Second issuer.
    demo.section(
        "6. The partner's IdP: GET /partners",
        "The route trusts two issuers, each with its own audience; the partner's tokens are ES256,\n\
         its keys come from jwks_url directly.",
    );
    let partner = world.token(Caller::Partner)?;
    let claims = claims_of(&partner)?;
    demo.line("caller token", &format!("Bearer {}", short(&partner)));
    demo.sub("iss", &show(&claims["iss"]));
    demo.sub("aud", &show(&claims["aud"]));
    let resp = world.call("/partners", Some(&partner), &[])?;
    demo.status(&resp, 200);
    if resp.status == 200 {
        let echo = Echo::from_response(&resp)?;
        show_forwarded(
            demo,
            world,
            &echo,
            &partner,
            "http://cloudrun-partners:9203",
            &[
                ("x-caller-issuer", "http://partner-idp:9001/partner"),
                ("x-caller-id", "acme-batch"),
            ],
        )?;
    }
    let wrong_aud = world.mint(Caller::Partner, &json!({"aud": "partners-api"}))?;
    let resp = world.call("/partners", Some(&wrong_aud), &[])?;
    demo.line(
        "partner token",
        "aud partners-api: the other issuer's audience",
    );
    demo.status(&resp, 401);
    demo.challenge(&resp, "invalid_token");

    // 7. Rate limits.
    demo.section(
        "7. Rate limits per verified caller: GET /partners",
        "rate_limits: 5 a minute and 10 000 a day per caller (iss + sub), counted across workers.\n\
         The partner (acme-batch) spends its minute; a user on the same route is not affected.",
    );
    let before = world.cloudrun("cloudrun-partners")?.counter("requests")?;
    // Call until refused (at most 12: a minute that ends during the loop starts a new budget).
    let mut statuses = Vec::new();
    let mut remaining_before_429 = None;
    let mut refusal = None;
    for _ in 0..12 {
        let resp = world.call("/partners", Some(&partner), &[])?;
        statuses.push(resp.status.to_string());
        if resp.status == 429 {
            refusal = Some(resp);
            break;
        }
        remaining_before_429 = resp.header("ratelimit").map(str::to_string);
    }
    demo.line("acme-batch calls", &statuses.join(" "));
    demo.sub(
        "last RateLimit before the 429",
        remaining_before_429.as_deref().unwrap_or("(absent)"),
    );
    demo.expect_that(
        "the minute's budget is spent, then 429",
        refusal.is_some()
            && remaining_before_429
                .as_deref()
                .is_some_and(|v| v.starts_with("\"partners_minute\";r=0;")),
        "r=0, then 429".into(),
        statuses.join(" "),
    );
    if let Some(resp) = &refusal {
        for name in ["retry-after", "ratelimit-policy", "ratelimit"] {
            demo.sub(name, resp.header(name).unwrap_or("(absent)"));
        }
        let retry = resp.header("retry-after").unwrap_or("(absent)");
        demo.expect_that(
            "Retry-After",
            retry.parse::<u32>().is_ok_and(|s| (1..=60).contains(&s)),
            "1..=60 seconds".into(),
            retry.to_string(),
        );
    }
    let after = world.cloudrun("cloudrun-partners")?.counter("requests")?;
    demo.expect(
        "requests Cloud Run got (all but the 429)",
        (statuses.len() - 1).to_string(),
        after.saturating_sub(before).to_string(),
    );
    let resp = world.call_as(Caller::Partners)?;
    demo.line("carol (another caller)", "");
    demo.status(&resp, 200);
    demo.sub("ratelimit", resp.header("ratelimit").unwrap_or("(absent)"));
    demo.expect(
        "carol's minute",
        "\"partners_minute\";r=4",
        resp.header("ratelimit")
            .and_then(|v| v.split(";t=").next())
            .unwrap_or("(absent)")
            .to_string(),
    );

    // 8. Without the filter.
    demo.section(
        "8. Without the filter: GET /unprotected (same Cloud Run service)",
        "The caller's IdP token reaches Cloud Run as is: its IAM check refuses it.",
    );
    let resp = world.call("/unprotected", Some(&token), &[])?;
    demo.status(&resp, 403);
    let reason = resp
        .json()
        .map(|v| show(&v["reason"]))
        .unwrap_or_else(|_| resp.text());
    demo.line("Cloud Run says", &reason);

    // Metrics.
    demo.section(
        "Metrics (what Kong's Prometheus plugin exports)",
        "Non-zero counters:",
    );
    match world.metrics() {
        Ok(metrics) => {
            let nonzero: Vec<(String, Value)> = metrics
                .into_iter()
                .filter(|(_, v)| v.as_f64().unwrap_or(0.0) != 0.0)
                .collect();
            if nonzero.is_empty() {
                demo.line("(none yet)", "");
            }
            for (name, value) in nonzero {
                println!("   {name:<48} {}", show(&value));
            }
        }
        Err(e) => demo.line("metrics unavailable", &format!("{e:#}")),
    }
    Ok(())
}

fn main() -> ExitCode {
    let world = Engine::from_env().and_then(|engine| {
        World::start_with(WorldOptions {
            engine,
            ..WorldOptions::default()
        })
        .with_context(|| format!("starting the demo world on the {engine} engine"))
    });
    let world = match world {
        Ok(w) => w,
        Err(e) => {
            eprintln!("demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut demo = Demo {
        step: String::new(),
        checks: Vec::new(),
    };
    let result = run(&world, &mut demo);
    println!();
    let failed: Vec<&Check> = demo.checks.iter().filter(|c| !c.ok).collect();
    if let Err(e) = &result {
        eprintln!("demo: stopped in \"{}\": {e:#}", demo.step);
        let log = world.gateway.stderr_lines();
        let tail = log.len().saturating_sub(20);
        eprintln!("gateway log (last lines):");
        for line in log.iter().skip(tail) {
            eprintln!("  {line}");
        }
    }
    let engine_log = world.gateway.check_engine_log();
    if let Err(e) = &engine_log {
        eprintln!("demo: {e:#}");
    }
    if failed.is_empty() && result.is_ok() && engine_log.is_ok() {
        println!(
            "All {} outcomes as expected. Stopping everything.",
            demo.checks.len()
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{} of {} outcomes differ from what was expected:",
        failed.len(),
        demo.checks.len()
    );
    for c in failed {
        println!(
            "  [{}] {}: expected {}, got {}",
            c.step, c.what, c.expected, c.actual
        );
    }
    if !world.gateway.stderr_lines().is_empty() && result.is_ok() {
        eprintln!("gateway log (last lines):");
        let log = world.gateway.stderr_lines();
        for line in log.iter().skip(log.len().saturating_sub(20)) {
            eprintln!("  {line}");
        }
    }
    ExitCode::FAILURE
}
