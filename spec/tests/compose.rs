//! `docker-compose.yml` (real Kong 3.9 + the mocks) is checked without Docker: Debian's
//! `docker-compose config -q` validates it, and the tests below check that every file it refers
//! to exists, that Kong's environment is the one docs/KONG_HOST.md calls for, and that every
//! `host:port` in `kong/kong.yml` is served by a compose service of that name on that port
//! (and by the test world, which plays the same topology on 127.0.0.1).

use cloudrun_spec::testkit::repo_root;
use cloudrun_spec::testkit::world;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const FILTER: &str = "cloudrun_oidc";

fn root() -> PathBuf {
    repo_root()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn kong_yml() -> Value {
    yaml("kong/kong.yml")
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_object()
        .expect("docker-compose.yml has no services")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A service's command as words (list form or a whitespace-split string).
fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(words) => words
            .iter()
            .map(|w| match w {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The value after `--flag` in a command.
fn flag(cmd: &[String], name: &str) -> Option<String> {
    cmd.iter()
        .position(|w| w == name)
        .and_then(|i| cmd.get(i + 1))
        .cloned()
}

/// A service's environment as a map (map or `KEY=VALUE` list form).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `(context dir, Dockerfile path)` of a service's `build`, relative to the repository.
fn build_of(service: &Value) -> Option<(PathBuf, PathBuf)> {
    match &service["build"] {
        Value::String(ctx) => Some((root().join(ctx), root().join(ctx).join("Dockerfile"))),
        Value::Object(b) => {
            let ctx = root().join(b.get("context").and_then(Value::as_str).unwrap_or("."));
            let file = b
                .get("dockerfile")
                .and_then(Value::as_str)
                .unwrap_or("Dockerfile");
            Some((ctx.clone(), ctx.join(file)))
        }
        _ => None,
    }
}

/// `COPY` instructions of a Dockerfile: (sources, destination), without `--from=` copies.
fn copies(dockerfile: &Path) -> Vec<(Vec<String>, String)> {
    let text = std::fs::read_to_string(dockerfile)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dockerfile.display()));
    text.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|args| !args.contains("--from="))
        .filter_map(|args| {
            let mut words: Vec<String> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .map(str::to_string)
                .collect();
            let dest = words.pop()?;
            Some((words, dest))
        })
        .collect()
}

/// `(host, port)` of an `http(s)://host[:port]/...` URL or a `host[:port]` authority.
fn host_port(s: &str) -> (String, u16) {
    let (default_port, rest) = if let Some(r) = s.strip_prefix("https://") {
        (443, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (80, r)
    } else {
        (80, s)
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().unwrap_or_else(|_| panic!("bad port in {s:?}")),
        ),
        None => (authority.to_string(), default_port),
    }
}

/// Every filter kong.yml declares, in a filter chain or (Kong 3.9+) as a plugin, on a service or
/// a route: (the service's URL, the filter's name, its config).
fn filter_declarations(kong: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for service in kong["services"].as_array().into_iter().flatten() {
        let url = service["url"].as_str().unwrap_or_default().to_string();
        let routes = service["routes"].as_array().into_iter().flatten();
        for entity in std::iter::once(service).chain(routes) {
            let chained = entity["filter_chains"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|chain| chain["filters"].as_array().into_iter().flatten());
            let plugins = entity["plugins"].as_array().into_iter().flatten();
            for filter in chained.chain(plugins) {
                if let Some(name) = filter["name"].as_str() {
                    out.push((url.clone(), name.to_string(), filter["config"].clone()));
                }
            }
        }
    }
    out
}

/// Every `cloudrun_oidc` filter config in kong.yml, with the service it protects.
fn filter_configs(kong: &Value) -> Vec<(String, Value)> {
    filter_declarations(kong)
        .into_iter()
        .filter(|(_, name, _)| name == FILTER)
        .map(|(url, _, config)| (url, config))
        .collect()
}

/// Every filter name kong.yml declares.
fn filter_names(kong: &Value) -> BTreeSet<String> {
    filter_declarations(kong)
        .into_iter()
        .map(|(_, name, _)| name)
        .collect()
}

/// Every `host:port` kong.yml makes Kong talk to, with where it was found.
fn kong_yml_endpoints(kong: &Value) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for service in kong["services"].as_array().into_iter().flatten() {
        if let Some(url) = service["url"].as_str() {
            let (h, p) = host_port(url);
            out.push((h, p, format!("service url {url}")));
        }
    }
    for (_, config) in filter_configs(kong) {
        for issuer in config["issuers"].as_array().into_iter().flatten() {
            for field in ["issuer", "discovery_url", "jwks_url", "callout_host"] {
                if let Some(v) = issuer[field].as_str() {
                    let (h, p) = host_port(v);
                    out.push((h, p, format!("issuers[].{field} {v}")));
                }
            }
        }
        let google = &config["google_id_token"];
        if google.is_object() {
            let source = google["source"].as_str().unwrap_or("metadata");
            if source == "metadata" {
                let host = google["metadata_host"]
                    .as_str()
                    .unwrap_or("metadata.google.internal");
                let (h, p) = host_port(host);
                out.push((h, p, format!("google_id_token.metadata_host {host}")));
            } else if source == "external_account" {
                let account = &google["external_account"];
                let source = &account["credential_source"];
                for (field, url) in [
                    ("token_url", &account["token_url"]),
                    (
                        "service_account_impersonation_url",
                        &account["service_account_impersonation_url"],
                    ),
                    ("credential_source.url", &source["url"]),
                    ("credential_source.region_url", &source["region_url"]),
                    (
                        "credential_source.imdsv2_session_token_url",
                        &source["imdsv2_session_token_url"],
                    ),
                ] {
                    if let Some(url) = url.as_str() {
                        let (h, p) = host_port(url);
                        out.push((
                            h,
                            p,
                            format!("google_id_token.external_account.{field} {url}"),
                        ));
                    }
                }
            } else if let Some(url) = google["token_url"].as_str() {
                let (h, p) = host_port(url);
                out.push((h, p, format!("google_id_token.token_url {url}")));
            }
        }
    }
    out
}

/// The `0.0.0.0:PORT` a compose service's server listens on (`--listen`).
fn listen_port(service: &Value) -> Option<u16> {
    let listen = flag(&command(service), "--listen")?;
    listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

#[test]
fn docker_compose_accepts_the_file() {
    let file = root().join("docker-compose.yml");
    let out = match Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .args(["config", "-q"])
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "docker-compose could not be run ({e}): `make setup` installs it \
             (apt-get install docker-compose)"
        ),
    };
    assert!(
        out.status.success(),
        "docker-compose config -q refused docker-compose.yml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_file_compose_refers_to_exists() {
    let compose = compose();
    for (name, service) in services(&compose) {
        if let Some((ctx, dockerfile)) = build_of(&service) {
            assert!(
                ctx.is_dir(),
                "{name}: build context {} is missing",
                ctx.display()
            );
            assert!(
                dockerfile.is_file(),
                "{name}: Dockerfile {} is missing",
                dockerfile.display()
            );
            for (sources, dest) in copies(&dockerfile) {
                for src in sources {
                    assert!(
                        ctx.join(&src).exists(),
                        "{name}: {} copies {src} (to {dest}), which does not exist in the build \
                         context {}",
                        dockerfile.display(),
                        ctx.display()
                    );
                }
            }
        } else {
            assert!(
                service["image"].is_string(),
                "{name} has neither build nor image"
            );
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume
                .as_str()
                .expect("volumes are written as src:dst[:mode]");
            let src = spec.split(':').next().unwrap_or_default();
            if src.starts_with('.') || src.starts_with('/') {
                let path = root().join(src);
                assert!(path.exists(), "{name}: volume source {src} does not exist");
            }
        }
    }
}

#[test]
fn every_service_has_a_healthcheck_and_kong_waits_for_them() {
    let compose = compose();
    let all = services(&compose);
    for (name, service) in &all {
        assert!(
            service["healthcheck"]["test"].is_array() || service["healthcheck"]["test"].is_string(),
            "{name} has no healthcheck"
        );
    }
    let kong = &all["kong"];
    assert_eq!(
        kong["healthcheck"]["test"],
        serde_json::json!(["CMD", "kong", "health"]),
        "kong's healthcheck is `kong health`"
    );
    for (name, _) in all.iter().filter(|(n, _)| *n != "kong") {
        assert_eq!(
            kong["depends_on"][name]["condition"], "service_healthy",
            "kong should wait for {name} to be healthy"
        );
    }
    let ports: Vec<&str> = kong["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        ports.contains(&"8000:8000"),
        "kong publishes the proxy on 8000"
    );
    assert!(
        ports.contains(&"8001:8001"),
        "kong publishes the admin API on 8001"
    );
}

#[test]
fn kong_environment_is_the_documented_one() {
    let compose = compose();
    let all = services(&compose);
    let kong = all.get("kong").expect("no kong service");
    let env = environment(kong);
    let documented = format!("{}\n{}", read("docs/KONG_HOST.md"), read("README.md"));
    for key in env.keys().filter(|k| k.starts_with("KONG_")) {
        assert!(
            documented.contains(key.as_str()),
            "{key} is named neither in docs/KONG_HOST.md nor in README.md"
        );
    }
    let get = |k: &str| env.get(k).map(String::as_str).unwrap_or_default();
    assert_eq!(get("KONG_DATABASE"), "off", "DB-less");
    assert_eq!(get("KONG_WASM"), "on");
    assert_eq!(
        get("KONG_NGINX_WASM_PROXY_WASM_LUA_RESOLVER"),
        "on",
        "tick callouts must resolve compose names (KONG_HOST.md)"
    );

    // Every shared-data namespace the configs use has its zone.
    let kong_yml = kong_yml();
    for (url, config) in filter_configs(&kong_yml) {
        let ns = config["shm_namespace"].as_str().unwrap_or(FILTER);
        let var = format!("KONG_NGINX_WASM_SHM_KV_{}", ns.to_ascii_uppercase());
        assert!(
            !get(&var).is_empty(),
            "{url}: shm_namespace {ns} needs {var} (a missing zone traps: 500)"
        );
    }

    // The declarative config is kong/kong.yml, mounted (and copied into the image) there.
    let declarative = get("KONG_DECLARATIVE_CONFIG");
    let mounts: Vec<String> = kong["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    assert!(
        mounts.iter().any(|m| {
            let mut parts = m.split(':');
            let (src, dst) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            Path::new(src).ends_with("kong/kong.yml") && dst == declarative
        }),
        "kong/kong.yml should be mounted at KONG_DECLARATIVE_CONFIG={declarative}: {mounts:?}"
    );

    // The filter files land in KONG_WASM_FILTERS_PATH under the name kong.yml uses.
    let dir = get("KONG_WASM_FILTERS_PATH")
        .trim_end_matches('/')
        .to_string();
    assert!(!dir.is_empty(), "KONG_WASM_FILTERS_PATH is not set");
    let (_, dockerfile) = build_of(kong).expect("kong is built from this repository");
    let text = read(
        dockerfile
            .strip_prefix(root())
            .expect("Dockerfile inside the repository")
            .to_str()
            .unwrap_or_default(),
    );
    assert!(text.contains("FROM kong:3.9"), "the Kong image is kong:3.9");
    let dests: Vec<String> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("COPY "))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    for file in [format!("{FILTER}.wasm"), format!("{FILTER}.meta.json")] {
        let want = format!("{dir}/{file}");
        assert!(
            dests.contains(&want),
            "{} should put {file} at {want} (KONG_WASM_FILTERS_PATH): {dests:?}",
            dockerfile.display()
        );
    }
    assert!(
        dests.iter().any(|d| d == declarative),
        "{} should copy kong.yml to {declarative} too (a working image without the mount)",
        dockerfile.display()
    );
}

#[test]
fn kong_yml_declares_only_the_filter_the_image_ships() {
    let names = filter_names(&kong_yml());
    assert_eq!(
        names,
        BTreeSet::from([FILTER.to_string()]),
        "kong.yml declares filters other than {FILTER}"
    );
    // Filter names: letters, digits and `_` only (KONG_HOST.md).
    assert!(FILTER
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
}

#[test]
fn every_kong_yml_host_is_a_compose_service_on_that_port() {
    let compose = compose();
    let all = services(&compose);
    let kong = kong_yml();
    let depends = &all["kong"]["depends_on"];
    for (host, port, what) in kong_yml_endpoints(&kong) {
        let service = all
            .get(&host)
            .unwrap_or_else(|| panic!("kong.yml {what}: no compose service named {host}"));
        assert_eq!(
            listen_port(service),
            Some(port),
            "kong.yml {what}: compose service {host} does not listen on {port}"
        );
        let listen = flag(&command(service), "--listen").unwrap_or_default();
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{host} must listen on 0.0.0.0 inside its container, not {listen}"
        );
        assert!(
            depends[&host].is_object(),
            "kong talks to {host} ({what}) and should depend on it"
        );
    }
}

#[test]
fn compose_plays_the_issuers_and_audiences_kong_yml_names() {
    let compose = compose();
    let all = services(&compose);
    let kong = kong_yml();
    for (service_url, config) in filter_configs(&kong) {
        for issuer in config["issuers"].as_array().into_iter().flatten() {
            let iss = issuer["issuer"].as_str().expect("issuer is a string");
            let (host, _) = host_port(iss);
            let cmd = command(&all[&host]);
            assert_eq!(
                flag(&cmd, "--issuer").as_deref(),
                Some(iss),
                "compose service {host} should be started with --issuer {iss}"
            );
        }
        let audience = config["google_id_token"]["audience"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            audience, service_url,
            "the Google token's audience must be the Cloud Run service URL"
        );
        let (host, _) = host_port(audience);
        let cmd = command(&all[&host]);
        assert_eq!(
            flag(&cmd, "--audience").as_deref(),
            Some(audience),
            "{host} must expect audience {audience}"
        );
        // Cloud Run checks Google's keys from a compose service that serves them.
        let jwks = flag(&cmd, "--google-jwks").expect("cloudrun needs --google-jwks");
        let (jh, jp) = host_port(&jwks);
        assert_eq!(
            all.get(&jh).and_then(listen_port),
            Some(jp),
            "{host}: --google-jwks {jwks} is not served by a compose service"
        );
        assert!(jwks.ends_with("/oauth2/v3/certs"), "{jwks}");
    }
}

#[test]
fn compose_mock_idp_matches_the_test_world() {
    let compose = compose();
    let all = services(&compose);
    let cmd = command(&all["mock-idp"]);
    assert_eq!(flag(&cmd, "--issuer").as_deref(), Some(world::IDP_ISSUER));
    assert_eq!(flag(&cmd, "--roles").as_deref(), Some(world::IDP_ROLES));
    assert_eq!(
        flag(&cmd, "--token-audience").as_deref(),
        Some(world::IDP_TOKEN_AUDIENCE)
    );
    assert_eq!(
        flag(&cmd, "--client-id").as_deref(),
        Some(world::IDP_CLIENT.0)
    );
    assert_eq!(
        flag(&cmd, "--client-secret").as_deref(),
        Some(world::IDP_CLIENT.1)
    );
    let cmd = command(&all["partner-idp"]);
    assert_eq!(
        flag(&cmd, "--issuer").as_deref(),
        Some(world::PARTNER_ISSUER)
    );
    assert_eq!(
        flag(&cmd, "--token-audience").as_deref(),
        Some(world::PARTNER_TOKEN_AUDIENCE)
    );
}

#[test]
fn the_test_world_serves_every_kong_yml_host() {
    let kong = kong_yml();
    let needed: BTreeSet<(String, u16)> = kong_yml_endpoints(&kong)
        .into_iter()
        .map(|(h, p, _)| (h, p))
        .collect();
    let played: BTreeSet<(String, u16)> = world::TOPOLOGY
        .iter()
        .map(|(h, p)| (h.to_string(), *p))
        .collect();
    assert_eq!(needed, played, "world::TOPOLOGY and kong.yml disagree");
    for (name, port) in world::CLOUDRUNS {
        let url = format!("http://{name}:{port}");
        assert!(
            filter_configs(&kong)
                .iter()
                .any(|(_, c)| c["google_id_token"]["audience"] == url.as_str()),
            "no route sends Google tokens for {url}"
        );
    }
}
