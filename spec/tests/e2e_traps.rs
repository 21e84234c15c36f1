//! Traps Kong's engine turns into an open door (issue 19), end to end on both engines: each
//! section sends forged tokens (valid-looking JWTs with a random 256-byte signature) that must
//! never reach the upstream, and checks the host's log for traps and crashes. Sections keep their
//! own helpers.

// ---------------------------------------------------------------------------------------------
// Dispatch targets the engine cannot parse: a discovered `jwks_uri` and configured URLs.
// ---------------------------------------------------------------------------------------------
mod dispatch_targets {
    use anyhow::{Context as _, Result};
    use cloudrun_spec::engine_tests;
    use cloudrun_spec::testkit::engine::Engine;
    use cloudrun_spec::testkit::http::Response;
    use cloudrun_spec::testkit::stack::{Stack, AUDIENCE};
    use serde_json::{json, Value};

    /// How long a log line may take to arrive (the log comes through a pipe read by a thread).
    const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

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
            stack
                .gateway
                .check_no_trap()
                .context(jwks_uri.to_string())?;
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
            stack.gateway.check_no_trap().context(field.to_string())?;
        }
        Ok(())
    }

    engine_tests!(
        a_discovered_jwks_uri_the_engine_cannot_parse_is_503_and_never_proxied,
        configured_dispatch_targets_the_engine_cannot_parse_are_invalid_configuration,
    );
}

// ---------------------------------------------------------------------------------------------
// Shared writes that cannot trap: a JWKS larger than the shm_kv zone, and a zone that cannot
// evict (`eviction=none`).
// ---------------------------------------------------------------------------------------------
mod shared_writes {
    use anyhow::{ensure, Result};
    use base64::Engine as _;
    use cloudrun_spec::engine_tests;
    use cloudrun_spec::testkit::engine::Engine;
    use cloudrun_spec::testkit::gateway::Gateway;
    use cloudrun_spec::testkit::http;
    use cloudrun_spec::testkit::mocks::{
        CloudRun, CloudRunOptions, IdpOptions, MintRequest, MockIdp,
    };
    use cloudrun_spec::testkit::stack::{eventually, orders_gateway, AUDIENCE};
    use serde_json::{json, Value};
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Serves one JSON document at every path (500 while there is none), one request per
    /// connection, and counts requests.
    struct DocumentServer {
        addr: String,
        body: Arc<Mutex<Option<Vec<u8>>>>,
        hits: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
    }

    impl DocumentServer {
        fn start(body: Option<Vec<u8>>) -> Result<DocumentServer> {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?.to_string();
            let hits = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let body = Arc::new(Mutex::new(body));
            let (counted, stopped, served) = (hits.clone(), stop.clone(), body.clone());
            std::thread::spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let (counted, served) = (counted.clone(), served.clone());
                    std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n")
                            && stream.read(&mut byte).unwrap_or(0) == 1
                        {
                            head.push(byte[0]);
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        let body = served.lock().map(|b| b.clone()).unwrap_or_default();
                        let (status, body) = match body {
                            Some(body) => ("200 OK", body),
                            None => ("500 Internal Server Error", b"{}".to_vec()),
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(&body);
                    });
                }
            });
            Ok(DocumentServer {
                addr,
                body,
                hits,
                stop,
            })
        }

        fn serve(&self, body: Option<Vec<u8>>) {
            if let Ok(mut served) = self.body.lock() {
                *served = body;
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    impl Drop for DocumentServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// The IdP's JWKS (its real signing keys first) padded with `fillers` encryption keys of
    /// ~3.4 kB each, as an IdP with many certificates publishes them (the filter skips them).
    fn padded_jwks(idp: &MockIdp, fillers: usize) -> Result<Vec<u8>> {
        let mut jwks = idp.jwks()?;
        let keys = jwks["keys"].as_array_mut().expect("keys");
        for i in 0..fillers {
            keys.push(
                json!({"kty": "RSA", "use": "enc", "kid": format!("enc-{i}"),
                "n": "x".repeat(3300), "e": "AQAB"}),
            );
        }
        Ok(jwks.to_string().into_bytes())
    }

    /// ~300 kB: under the filter's 512 KiB limit, over any small zone.
    fn jwks_of_300_kb(idp: &MockIdp) -> Result<Vec<u8>> {
        let body = padded_jwks(idp, 90)?;
        ensure!(
            (290_000..512 * 1024).contains(&body.len()),
            "{}",
            body.len()
        );
        Ok(body)
    }

    /// `token` with its signature replaced by 256 random bytes.
    fn forged(token: &str) -> String {
        let (signed, _) = token.rsplit_once('.').expect("a JWS");
        let mut signature = [0u8; 256];
        openssl::rand::rand_bytes(&mut signature).expect("random bytes");
        format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// One route `/orders` to `upstream` with `config`, the filter's zone declared as `zone`.
    fn gateway(config: &Value, upstream: &str, zone: &str, engine: Engine) -> Result<Gateway> {
        let mut opts = orders_gateway(config, upstream, 2, engine)?;
        opts.shm_kv = vec![zone.to_string()];
        Gateway::start(&opts)
    }

    fn call(gateway: &Gateway, token: &str) -> Result<http::Response> {
        let auth = format!("Bearer {token}");
        Ok(http::get(
            &gateway.url("/orders"),
            &[("authorization", &auth)],
        )?)
    }

    /// Sends forged and valid tokens in turns (two of each first, so that both workers meet a
    /// forged token cold): every forged one 401, every valid one 200, and the upstream sees
    /// exactly the valid ones.
    fn forged_never_pass(
        gateway: &Gateway,
        upstream: &CloudRun,
        idp: &MockIdp,
        rounds: usize,
    ) -> Result<()> {
        let before = upstream.counter("requests")?;
        let mut valid_sent = 0;
        for round in 0..rounds {
            let token = idp.mint(&MintRequest::new("RS256").claim("aud", AUDIENCE))?;
            let copies = if round == 0 { 2 } else { 1 };
            for _ in 0..copies {
                let resp = call(gateway, &forged(&token))?;
                ensure!(
                    resp.status == 401,
                    "round {round}: forged token got {}: {}",
                    resp.status,
                    resp.text()
                );
            }
            for _ in 0..copies {
                let resp = call(gateway, &token)?;
                ensure!(
                    resp.status == 200,
                    "round {round}: valid token got {}: {}",
                    resp.status,
                    resp.text()
                );
                valid_sent += 1;
            }
        }
        let reached = upstream.counter("requests")? - before;
        ensure!(
            reached == valid_sent,
            "{reached} requests reached the upstream, {valid_sent} valid tokens were sent"
        );
        Ok(())
    }

    /// A 300 kB JWKS (the signing key in it) and a 128k zone with the default eviction, then
    /// the documented minimum zone for one key source with `eviction=none`: the JWKS never fits
    /// either, so each worker keeps it for itself; nothing traps, nothing forged gets through.
    fn a_jwks_larger_than_the_zone_never_lets_a_forged_token_through(engine: Engine) -> Result<()> {
        for zone in ["cloudrun_oidc=128k", "cloudrun_oidc=96k eviction=none"] {
            let idp = MockIdp::start(IdpOptions::with_audience(AUDIENCE))?;
            let jwks = DocumentServer::start(Some(jwks_of_300_kb(&idp)?))?;
            let upstream = CloudRun::start(CloudRunOptions::no_auth())?;
            let config = json!({
                "issuers": [{"issuer": idp.issuer(), "audiences": [AUDIENCE],
                             "jwks_url": jwks.url("/jwks")}],
                "claims_to_headers": {"sub": "x-user-id"},
            });
            let gateway = gateway(&config, upstream.http_addr(), zone, engine)?;
            forged_never_pass(&gateway, &upstream, &idp, 10)?;
            ensure!(jwks.hits() >= 1, "{zone}: the JWKS was fetched");
            gateway.check_no_trap().map_err(|e| e.context(zone))?;
        }
        Ok(())
    }

    /// The documented minimum zone for one key source (96k) with `eviction=none`, while the
    /// filter writes everything it writes for a key source: a cold fetch that fails (back-off),
    /// then a JWKS of ~45 kB that grows to ~57 kB and shrinks again as keys rotate (the entry
    /// rewritten, unknown-`kid` leases). A value that grew would need a second node beside the
    /// first (12 + 13 pages of the 22 free): the filter's never grow, so the zone never fills.
    fn a_minimum_zone_without_eviction_never_fills(engine: Engine) -> Result<()> {
        let idp = MockIdp::start(IdpOptions::with_audience(AUDIENCE))?;
        let jwks = DocumentServer::start(None)?;
        let upstream = CloudRun::start(CloudRunOptions::no_auth())?;
        let config = json!({
            "issuers": [{"issuer": idp.issuer(), "audiences": [AUDIENCE],
                         "jwks_url": jwks.url("/jwks")}],
            "jwks_cache": {"unknown_kid_cooldown_seconds": 0},
        });
        let zone = "cloudrun_oidc=96k eviction=none";
        let gateway = gateway(&config, upstream.http_addr(), zone, engine)?;
        let token = idp.mint(&MintRequest::new("RS256").claim("aud", AUDIENCE))?;
        for _ in 0..2 {
            let resp = call(&gateway, &token)?;
            ensure!(
                resp.status == 503,
                "the JWKS is down: {} {}",
                resp.status,
                resp.text()
            );
            ensure!(call(&gateway, &forged(&token))?.status != 200);
        }
        ensure!(upstream.counter("requests")? == 0);
        jwks.serve(Some(padded_jwks(&idp, 13)?));
        // The back-off (5 s) ends; a background refresh may fetch the keys before it does.
        assert!(eventually(Duration::from_secs(30), || Ok(call(
            &gateway, &token
        )?
        .status
            == 200))?);
        forged_never_pass(&gateway, &upstream, &idp, 2)?;
        for rotation in 0..4 {
            // A new key set first; every other time the older sets leave.
            let retire_old = rotation % 2 == 1;
            let kids = idp.rotate(retire_old)?;
            let fillers = if retire_old { 13 } else { 15 };
            let body = padded_jwks(&idp, fillers)?;
            ensure!((40_000..60_000).contains(&body.len()), "{}", body.len());
            jwks.serve(Some(body));
            let rsa = kids
                .iter()
                .find(|k| k.starts_with("rsa"))
                .expect("an RSA kid");
            let token = idp.mint(&MintRequest::new("RS256").kid(rsa).claim("aud", AUDIENCE))?;
            for _ in 0..2 {
                let resp = call(&gateway, &token)?;
                ensure!(
                    resp.status == 200,
                    "rotation {rotation}: {} {}",
                    resp.status,
                    resp.text()
                );
                let resp = call(&gateway, &forged(&token))?;
                ensure!(
                    resp.status == 401,
                    "rotation {rotation}: forged got {}",
                    resp.status
                );
            }
            forged_never_pass(&gateway, &upstream, &idp, 1)?;
        }
        if engine == Engine::StandIn {
            let shm = &gateway.status()?["shm_kv"]["cloudrun_oidc"];
            let (used, capacity) = (shm["used"].as_u64(), shm["capacity"].as_u64());
            ensure!(used < capacity, "the zone filled: {shm}");
            ensure!(
                shm["entries"].as_u64() <= Some(5),
                "one key source writes 5 keys: {shm}"
            );
        }
        gateway.check_no_trap()
    }

    engine_tests!(
        a_jwks_larger_than_the_zone_never_lets_a_forged_token_through,
        a_minimum_zone_without_eviction_never_fills,
    );
}
