//! Shared data: shm_kv zones named by key prefix, shared by every worker, strict CAS (0 = create
//! only), and a key whose zone does not exist traps.

use cloudrun_spec::testkit::gateway::*;
use serde_json::{json, Value};
use std::time::Duration;

type R = anyhow::Result<()>;

fn set(key: &str, value: &str, cas: Value) -> Value {
    json!({"do": "set_shared", "key": key, "value": value, "cas": cas})
}

fn get(key: &str) -> Value {
    json!({"do": "get_shared", "key": key})
}

fn gateway(
    server: &TestServer,
    routes: &[(&str, &str, Value)],
    zones: &[&str],
) -> anyhow::Result<Gateway> {
    let mut opts = GatewayOpts::with_probe(probe_routes_yml(&server.url(), routes))?.workers(2);
    for z in zones {
        opts = opts.shm_kv(z);
    }
    Gateway::start(&opts)
}

#[test]
fn data_set_on_one_worker_is_read_on_another() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        &[
            (
                "set",
                "/set",
                json!({"on_request_headers": [set("kv/k", "hello", json!(0))]}),
            ),
            ("get", "/get", json!({"on_request_headers": [get("kv/k")]})),
        ],
        &["kv=64k"],
    )?;
    let a = gw.get("/set", &[])?;
    let b = gw.get("/get", &[])?;
    assert_eq!(
        seen_value(&probe_seen(&a), "set_shared").as_deref(),
        Some("Ok")
    );
    // Connections alternate between the two workers.
    assert_ne!(a.header("x-spec-worker"), b.header("x-spec-worker"));
    assert_eq!(
        seen_value(&probe_seen(&b), "get_shared").as_deref(),
        Some("hello@1")
    );
    Ok(())
}

#[test]
fn cas_zero_only_creates() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        &[(
            "c",
            "/",
            json!({"on_request_headers": [set("kv/k", "v", json!(0))]}),
        )],
        &["kv=64k"],
    )?;
    let first = probe_seen(&gw.get("/", &[])?);
    let second = probe_seen(&gw.get("/", &[])?);
    assert_eq!(seen_value(&first, "set_shared").as_deref(), Some("Ok"));
    assert_eq!(
        seen_value(&second, "set_shared").as_deref(),
        Some("CasMismatch")
    );
    Ok(())
}

#[test]
fn updates_need_the_current_cas() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        &[
            (
                "create",
                "/create",
                json!({"on_request_headers": [set("kv/k", "1", json!(0)), get("kv/k")]}),
            ),
            (
                "stale",
                "/stale",
                json!({"on_request_headers": [set("kv/k", "x", json!(7))]}),
            ),
            (
                "update",
                "/update",
                json!({"on_request_headers": [set("kv/k", "2", json!(1)), get("kv/k")]}),
            ),
            (
                "replay",
                "/replay",
                json!({"on_request_headers": [set("kv/k", "3", json!(1)), get("kv/k")]}),
            ),
        ],
        &["kv=64k"],
    )?;
    let c = probe_seen(&gw.get("/create", &[])?);
    assert_eq!(seen_value(&c, "set_shared").as_deref(), Some("Ok"));
    assert_eq!(seen_value(&c, "get_shared").as_deref(), Some("1@1"));
    assert_eq!(
        seen_value(&probe_seen(&gw.get("/stale", &[])?), "set_shared").as_deref(),
        Some("CasMismatch")
    );
    let u = probe_seen(&gw.get("/update", &[])?);
    assert_eq!(seen_value(&u, "set_shared").as_deref(), Some("Ok"));
    assert_eq!(seen_value(&u, "get_shared").as_deref(), Some("2@2"));
    let r = probe_seen(&gw.get("/replay", &[])?);
    assert_eq!(seen_value(&r, "set_shared").as_deref(), Some("CasMismatch"));
    assert_eq!(seen_value(&r, "get_shared").as_deref(), Some("2@2"));
    Ok(())
}

#[test]
fn concurrent_cas_increments_lose_nothing() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        &[(
            "i",
            "/",
            json!({"on_request_headers": [{"do": "incr_shared", "key": "kv/n"}]}),
        )],
        &["kv=64k"],
    )?;
    let url = gw.url("/");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let r = cloudrun_spec::testkit::http::get(&url, &[]);
                    assert_eq!(r.map(|r| r.status).ok(), Some(200));
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    }
    let last = probe_seen(&gw.get("/", &[])?);
    assert_eq!(
        seen_value(&last, "incr_shared").as_deref(),
        Some("41"),
        "{last:?}"
    );
    Ok(())
}

#[test]
fn zones_are_chosen_by_key_prefix() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        &[(
            "z",
            "/",
            json!({"on_request_headers": [set("a/k", "in-a", json!(0)), set("b/k", "in-b", json!(0)), get("a/k"), get("b/k")]}),
        )],
        &["a=64k", "b=64k"],
    )?;
    let seen = probe_seen(&gw.get("/", &[])?);
    let gets: Vec<&String> = seen
        .iter()
        .filter(|s| s.starts_with("get_shared="))
        .collect();
    assert_eq!(gets, ["get_shared=in-a@1", "get_shared=in-b@1"], "{seen:?}");
    let status = gw.status()?;
    assert_eq!(status["shm_kv"]["a"]["entries"], 1, "{status}");
    assert_eq!(status["shm_kv"]["b"]["entries"], 1, "{status}");
    Ok(())
}

#[test]
fn a_key_without_a_zone_traps() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        &[
            (
                "get",
                "/get",
                json!({"on_request_headers": [get("nozone/k")]}),
            ),
            (
                "set",
                "/set",
                json!({"on_request_headers": [set("nozone/k", "v", json!(0))]}),
            ),
            (
                "plain",
                "/plain",
                json!({"on_request_headers": [set("no-slash", "v", json!(0))]}),
            ),
        ],
        &["kv=64k"],
    )?;
    for path in ["/get", "/set", "/plain"] {
        let resp = gw.get(path, &[])?;
        assert_eq!(resp.status, 500, "{path}: {}", resp.text());
    }
    assert!(gw.wait_for_log("could not resolve namespace", Duration::from_secs(30)));
    assert!(server.requests().is_empty());
    Ok(())
}

#[test]
fn without_any_zone_shared_data_traps() -> R {
    let server = TestServer::start()?;
    let gw = gateway(
        &server,
        &[(
            "g",
            "/",
            json!({"on_request_headers": [get("cloudrun_oidc/k")]}),
        )],
        &[],
    )?;
    assert_eq!(gw.get("/", &[])?.status, 500);
    Ok(())
}

#[test]
fn a_bad_zone_size_refuses_to_start() -> R {
    let yml = probe_kong_yml("http://127.0.0.1:9", &json!({}));
    let err = Gateway::start_failure(&GatewayOpts::with_probe(yml)?.shm_kv("kv=1k"))?;
    assert!(err.contains("too small"), "{err}");
    Ok(())
}
