//! What would trap the filter's instance on Kong's engine, end to end (issue 19). A trap inside
//! a callout answer proxies the request unverified, so each case sends forged tokens (a
//! well-formed JWT with a random 256-byte signature) that must never reach Cloud Run, and the
//! error log must show no trap, crash, alert or emergency.

use anyhow::Result;
use cloudrun_spec::engine_tests;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::gateway::Gateway;
use cloudrun_spec::testkit::http::Response;
use cloudrun_spec::testkit::stack::{Stack, AUDIENCE};
use serde_json::{json, Value};

/// How long a log line may take to arrive (the log comes through a pipe read by a thread).
const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Log lines that mean the engine trapped an instance or lost a worker.
const TRAP_SIGNS: [&str; 4] = ["trapped", "exited on signal", "[alert]", "[emerg]"];

/// Fails when the gateway's error log shows a trap, a crash, an alert or an emergency.
fn assert_no_trap_in_log(gateway: &Gateway, what: &str) -> Result<()> {
    gateway.check_engine_log()?;
    let lines = gateway.stderr_lines();
    let signs: Vec<&String> = lines
        .iter()
        .filter(|l| TRAP_SIGNS.iter().any(|s| l.contains(s)))
        .collect();
    assert!(signs.is_empty(), "{what}: {signs:#?}");
    Ok(())
}

/// A well-formed RS256 token for `issuer` and the stack's audience, signed by nobody: its
/// signature is 256 random bytes.
fn forged_token(issuer: &str) -> Result<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"});
    let claims = json!({"iss": issuer, "aud": AUDIENCE, "sub": "mallory",
                        "iat": now, "exp": now + 300});
    let mut signature = [0u8; 256];
    openssl::rand::rand_bytes(&mut signature)?;
    Ok(format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

// ---------------------------------------------------------------------------------------------
// Dispatch targets: every callout target passes one check (src/http/url.rs) that accepts only
// what nginx's `ngx_parse_url` takes and never a Unix socket. Configured: invalid
// configuration naming the field. Discovered: the bad-discovery-document path (503).
// ---------------------------------------------------------------------------------------------

/// `jwks_uri` values the engine cannot parse (a trap) or reads as a local Unix socket.
const UNPARSEABLE_JWKS_URIS: [&str; 5] = [
    "http://[.]/keys",
    "http://[:]/keys",
    "http://[1.2.3.4]/keys",
    "http://[12345::]/keys",
    "http://unix:80/keys",
];

/// An IdP that answers every request with one discovery document naming `jwks_uri`.
struct DiscoveryOnlyIdp {
    issuer: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl DiscoveryOnlyIdp {
    fn start(jwks_uri: &str) -> Result<DiscoveryOnlyIdp> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let body = json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string();
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // Counted before answering: the filter may act on the answer at once.
                counted.fetch_add(1, Ordering::Relaxed);
                let _ = answer_discovery(stream, &body);
            }
        });
        Ok(DiscoveryOnlyIdp { issuer, hits })
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Reads one request head and answers `body` as JSON.
fn answer_discovery(mut stream: std::net::TcpStream, body: &str) -> Result<()> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    Ok(())
}

/// Shapes the one issuer entry of a stack's configuration.
type IssuerEdit = fn(&mut Value);

/// A stack whose only issuer is `issuer`, keys found by discovery (or as `edit` says).
fn stack_for_issuer(engine: Engine, issuer: &str, edit: IssuerEdit) -> Result<Stack> {
    let issuer = issuer.to_string();
    Stack::with_config(engine, move |c| {
        c["issuers"] = json!([{"issuer": issuer, "audiences": [AUDIENCE]}]);
        edit(&mut c["issuers"][0]);
    })
}

fn assert_keys_unavailable(resp: &Response, what: &str) {
    assert_eq!(resp.status, 503, "{what}: {}", resp.text());
    assert!(
        resp.header("retry-after").is_some(),
        "{what}: no Retry-After"
    );
}

/// The review's reproduction: a discovery document names a `jwks_uri` the engine cannot take.
/// On main the JWKS callout trapped inside the discovery answer and the forged token was
/// proxied (200 at Cloud Run); now the document is refused like any bad one: 503, no callout.
fn a_discovered_jwks_uri_the_engine_cannot_parse_is_503_and_never_proxied(
    engine: Engine,
) -> Result<()> {
    for jwks_uri in UNPARSEABLE_JWKS_URIS {
        let idp = DiscoveryOnlyIdp::start(jwks_uri)?;
        let stack = stack_for_issuer(engine, &idp.issuer, |_| {})?;
        let forged = forged_token(&idp.issuer)?;
        for _ in 0..4 {
            assert_keys_unavailable(&stack.call(Some(&forged))?, jwks_uri);
        }
        assert!(idp.hits() >= 1, "{jwks_uri}: discovery was never fetched");
        assert_eq!(
            stack.upstream_requests()?,
            0,
            "{jwks_uri}: reached Cloud Run"
        );
        assert!(
            stack.gateway.wait_for_log("jwks_uri refused", LOG_WAIT),
            "{jwks_uri}: the refusal is not logged"
        );
        assert_no_trap_in_log(&stack.gateway, jwks_uri)?;
    }
    Ok(())
}

/// The same hosts configured: the route's configuration is invalid (every request 500, nothing
/// fetched or proxied) and the log names the field.
fn configured_dispatch_targets_the_engine_cannot_parse_are_invalid_configuration(
    engine: Engine,
) -> Result<()> {
    let cases: [(&str, IssuerEdit, &str); 6] = [
        (
            "http://[.]",
            |i| i["jwks_url"] = json!("http://[.]/keys"),
            "issuers[0].jwks_url",
        ),
        (
            "http://idp.test",
            |i| i["discovery_url"] = json!("http://[12345::]/.well-known/openid-configuration"),
            "issuers[0].discovery_url",
        ),
        ("http://[1.2.3.4]", |_| {}, "issuers[0].issuer"),
        (
            "http://idp.test",
            |i| i["jwks_url"] = json!("http://unix:80/keys"),
            "issuers[0].jwks_url",
        ),
        (
            "http://idp.test",
            |i| i["callout_host"] = json!("[:]"),
            "issuers[0].callout_host",
        ),
        (
            "http://idp.test",
            |i| i["callout_host"] = json!("unix:80"),
            "issuers[0].callout_host",
        ),
    ];
    for (issuer, edit, field) in cases {
        let stack = stack_for_issuer(engine, issuer, edit)?;
        let forged = forged_token(issuer)?;
        for _ in 0..2 {
            let resp = stack.call(Some(&forged))?;
            assert_eq!(resp.status, 500, "{field}: {}", resp.text());
        }
        assert_eq!(stack.upstream_requests()?, 0, "{field}: reached Cloud Run");
        assert!(
            stack.gateway.wait_for_log(field, LOG_WAIT),
            "{field} is not named: {:#?}",
            stack.gateway.stderr_lines()
        );
        assert_no_trap_in_log(&stack.gateway, field)?;
    }
    Ok(())
}

engine_tests!(
    a_discovered_jwks_uri_the_engine_cannot_parse_is_503_and_never_proxied,
    configured_dispatch_targets_the_engine_cannot_parse_are_invalid_configuration,
);
