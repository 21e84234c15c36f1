//! Workers like nginx's: `--workers N`, connections spread round-robin (`x-spec-worker`), one
//! filter instance per worker shared by every route, one root context per chain entry per worker
//! with its own configuration.

use cloudrun_spec::http1;
use cloudrun_spec::testkit::gateway::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::{BufReader, Read, Write};
use std::time::Duration;

type R = anyhow::Result<()>;

#[test]
fn requests_are_spread_over_all_workers() -> R {
    let server = TestServer::start()?;
    let yml = probe_kong_yml(&server.url(), &json!({}));
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(3))?;
    let mut workers = BTreeSet::new();
    for _ in 0..9 {
        let resp = gw.get("/", &[])?;
        assert_eq!(resp.status, 200);
        workers.insert(resp.header("x-spec-worker").unwrap_or("?").to_string());
    }
    let want: BTreeSet<String> = ["0", "1", "2"].iter().map(|s| s.to_string()).collect();
    assert_eq!(workers, want);
    for w in 0..3 {
        assert_eq!(gw.instances_created(w, "probe")?, 1, "worker {w}");
    }
    Ok(())
}

#[test]
fn the_default_is_two_workers() -> R {
    let server = TestServer::start()?;
    let yml = probe_kong_yml(&server.url(), &json!({}));
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?)?;
    let status = gw.status()?;
    assert_eq!(
        status["workers"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    Ok(())
}

/// One request on an open keep-alive connection; returns (status, x-spec-worker, x-probe-seen).
fn keepalive_get(
    conn: &mut BufReader<std::net::TcpStream>,
    path: &str,
) -> anyhow::Result<(u16, String, String)> {
    write!(conn.get_mut(), "GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n")?;
    let (head, mut body) = http1::read_response_head(conn, 1 << 20)?;
    let status = head.status;
    let value = |name: &str| http1::header(&head.headers, name).unwrap_or_default();
    let (worker, seen) = (value("x-spec-worker"), value("x-probe-seen"));
    let len: usize = http1::header(&head.headers, "content-length")
        .unwrap_or_else(|| "0".into())
        .parse()?;
    let mut more = vec![0u8; len.saturating_sub(body.len())];
    conn.read_exact(&mut more)?;
    body.extend_from_slice(&more);
    Ok((status, worker, seen))
}

fn connect(gw: &Gateway) -> anyhow::Result<BufReader<std::net::TcpStream>> {
    let s = std::net::TcpStream::connect(&gw.http)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(BufReader::new(s))
}

#[test]
fn a_client_connection_is_kept_alive_on_one_worker() -> R {
    let server = TestServer::start()?;
    let yml = probe_kong_yml(&server.url(), &json!({}));
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(2))?;
    let mut conn = connect(&gw)?;
    let mut workers = BTreeSet::new();
    for _ in 0..4 {
        let (status, worker, _) = keepalive_get(&mut conn, "/k")?;
        assert_eq!(status, 200);
        workers.insert(worker);
    }
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(server.requests_to("/k").len(), 4);
    Ok(())
}

#[test]
fn routes_share_the_instance_of_their_worker() -> R {
    let server = TestServer::start()?;
    let count = json!({"on_request_headers": [{"do": "static_incr"}]});
    let yml = probe_routes_yml(
        &server.url(),
        &[("a", "/a", count.clone()), ("b", "/b", count)],
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(2))?;
    // One connection stays on one worker: the Rust static counts across both routes.
    let mut conn = connect(&gw)?;
    let mut statics = Vec::new();
    for path in ["/a", "/b", "/a", "/b"] {
        let (status, _, seen) = keepalive_get(&mut conn, path)?;
        assert_eq!(status, 200);
        let rec = seen
            .split("; ")
            .find(|s| s.starts_with("static="))
            .unwrap_or("")
            .to_string();
        statics.push(rec);
    }
    assert_eq!(statics, ["static=1", "static=2", "static=3", "static=4"]);
    // The other worker has its own instance (its own statics).
    let mut other = connect(&gw)?;
    let (_, w1, seen) = keepalive_get(&mut other, "/b")?;
    let (_, w0, _) = keepalive_get(&mut conn, "/a")?;
    assert_ne!(w0, w1);
    assert!(seen.contains("static=1"), "{seen}");
    for w in 0..2 {
        assert_eq!(gw.instances_created(w, "probe")?, 1);
    }
    Ok(())
}

#[test]
fn each_chain_entry_has_its_own_root_context_and_config_on_every_worker() -> R {
    let server = TestServer::start()?;
    let yml = probe_routes_yml(
        &server.url(),
        &[
            (
                "a",
                "/a",
                json!({"on_request_headers": [{"do": "mark", "value": "config-a"}]}),
            ),
            (
                "b",
                "/b",
                json!({"on_request_headers": [{"do": "mark", "value": "config-b"}]}),
            ),
        ],
    );
    let gw = Gateway::start(&GatewayOpts::with_probe(yml)?.workers(2))?;
    for _ in 0..2 {
        let a = probe_seen(&gw.get("/a", &[])?);
        let b = probe_seen(&gw.get("/b", &[])?);
        assert_eq!(seen_value(&a, "mark").as_deref(), Some("config-a"), "{a:?}");
        assert_eq!(seen_value(&b, "mark").as_deref(), Some("config-b"), "{b:?}");
    }
    // on_configure ran once per root context per worker: roots #1 and #2 on workers 0 and 1.
    assert_eq!(gw.wait_log_count("probe on_configure root #", 4), 4);
    assert_eq!(gw.wait_log_count("probe on_vm_start", 4), 4);
    let lines = gw.stderr_lines();
    let mut configured = BTreeSet::new();
    for l in lines
        .iter()
        .filter(|l| l.contains("probe on_configure root #"))
    {
        let worker = l
            .split('#')
            .nth(1)
            .and_then(|r| r.split(':').next())
            .unwrap_or("?");
        let root = l.rsplit('#').next().unwrap_or("?");
        configured.insert(format!("{worker}/{root}"));
    }
    let want: BTreeSet<String> = ["0/1", "0/2", "1/1", "1/2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(configured, want, "{lines:#?}");
    assert_eq!(gw.count_log("probe on_configure root #"), 4);
    // on_vm_start ran for each root context of the first instance only.
    assert_eq!(gw.count_log("probe on_vm_start"), 4, "{lines:#?}");
    Ok(())
}
