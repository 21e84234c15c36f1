//! Kong's real engine for a test world: nginx + ngx_wasm_module, configured from the same kong.yml
//! the stand-in reads. What Kong's Lua would do is done here: kong.yml is validated against the
//! filters' meta.json (the stand-in's own reader), every route becomes a `location` with one
//! `proxy_wasm` line per chain entry (the service's chain first) and a `proxy_pass` with Kong's
//! proxy headers, `shm_kv` zones are declared, and object configs are encoded as Kong's cjson
//! encodes them ([`crate::gateway::cjson`]). The filter runs in the access phase, as Kong attaches it.
//!
//! Metrics are read through the probe filter (`/__metrics` on the admin listener calls
//! `proxy_get_metric` for every counter of `cloudrun_oidc`), and the error log is a file. When a
//! test's gateway stops, its log must hold no `exited on signal`, `[alert]` or `[emerg]` line
//! ([`super::gateway::Gateway`] checks): a worker crash fails the test that caused it.

use super::dns::DnsServer;
use super::engine::wasmx_nginx;
use super::gateway::{probe_wasm, GatewayOpts};
use super::http;
use super::listeners::{Listeners, Share};
use crate::gateway::kong_yml::{KongYml, Upstream};
use crate::gateway::router::Table;
use crate::gateway::schema::Filters;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// nginx reads its configuration in 4096-byte buffers: one argument (a filter's JSON config) must
/// fit. Kong passes configs through Lua instead and has no such limit.
const MAX_CONF_ARGUMENT: usize = 4000;
/// Log levels that mean the engine itself failed (a worker that `exited on signal` is an
/// `[alert]`).
pub const FATAL_LOG_LEVELS: [&str; 2] = ["[alert]", "[emerg]"];

/// Whether an error-log line is an engine failure: judged by its level field
/// (`2026/12/04 13:00:00 [alert] ...`), so that a logged value quoting `[emerg]` is not one.
pub fn is_fatal_line(line: &str) -> bool {
    line.split_whitespace()
        .nth(2)
        .is_some_and(|level| FATAL_LOG_LEVELS.contains(&level))
        || line.contains("exited on signal")
}

/// A running nginx; stopped (and its log checked) when dropped.
pub struct NginxGateway {
    child: Child,
    pub dir: PathBuf,
    /// `127.0.0.1:PORT` of the proxy listener.
    pub http: String,
    /// `127.0.0.1:PORT` of the admin listener (`/__metrics`, `/__ready`).
    pub admin: String,
    error_log: PathBuf,
    _dns: DnsServer,
    stopped: bool,
    /// The error log's length when the test asked nginx to stop.
    stop_at_line: Option<usize>,
}

/// Where a kong.yml host name goes: `HOST=IP` entries of `GatewayOpts::resolve`.
#[derive(Default)]
struct Names {
    /// host → IP, for the DNS server (callouts) and upstreams.
    hosts: BTreeMap<String, Ipv4Addr>,
    /// `host:port` → `ip:port`, for upstreams only.
    exact: BTreeMap<String, String>,
}

impl Names {
    fn parse(entries: &[String]) -> Result<Names> {
        let mut names = Names::default();
        for entry in entries {
            let (from, to) = entry
                .split_once('=')
                .ok_or_else(|| anyhow!("resolve entry {entry:?}: HOST=IP expected"))?;
            if let Ok(ip) = to.parse::<Ipv4Addr>() {
                names.hosts.insert(from.to_ascii_lowercase(), ip);
            } else {
                names
                    .exact
                    .insert(from.to_ascii_lowercase(), to.to_string());
            }
        }
        Ok(names)
    }

    /// The `ip:port` nginx connects to for a service.
    fn upstream_addr(&self, upstream: &Upstream) -> String {
        let key = format!("{}:{}", upstream.host.to_ascii_lowercase(), upstream.port);
        if let Some(addr) = self.exact.get(&key) {
            return addr.clone();
        }
        match self.hosts.get(&upstream.host.to_ascii_lowercase()) {
            Some(ip) => format!("{ip}:{}", upstream.port),
            None => format!("{}:{}", upstream.host, upstream.port),
        }
    }
}

/// `'text'` for nginx.conf: backslashes and quotes escaped (nginx unescapes `\\` and `\'`).
pub fn conf_quote(text: &str) -> Result<String> {
    let quoted = format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"));
    if quoted.len() > MAX_CONF_ARGUMENT {
        bail!(
            "a filter config of {} bytes does not fit in one nginx.conf argument ({MAX_CONF_ARGUMENT} \
             bytes); Kong itself passes configs through Lua and has no such limit",
            quoted.len()
        );
    }
    Ok(quoted)
}

/// Every counter of cloudrun_oidc, as the metrics reader asks for them (`cloudrun_oidc:<name>`):
/// the fixed ones and one per rate limit the routes' configurations name (`configs`).
fn metric_names<'a>(configs: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    use cloudrun_oidc::metrics::{LimitName, Metric};
    let mut names: Vec<String> = Metric::all().map(|metric| metric.name()).collect();
    for config in configs {
        let Ok(config) = cloudrun_oidc::config::FilterConfig::from_json(config) else {
            continue;
        };
        for limit in &config.rate_limits {
            if let Some(name) = LimitName::new(&limit.name) {
                names.push(Metric::RateLimitedBy(name).name());
            }
        }
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| format!("cloudrun_oidc:{name}"))
        .collect()
}

/// The http-level part of Kong's setup: the filter runs in the access phase as Kong attaches
/// it, underscored header names pass, and maps that compute what Kong's Lua puts in its
/// `$upstream_*` variables (kong/runloop/handler.lua) from the client's request.
const KONG_HTTP: &str = "    underscores_in_headers on;
    proxy_wasm_request_headers_in_access on;
    map $http_via $kong_via { \"\" \"1.1 kong/3.9.3\"; default \"$http_via, 1.1 kong/3.9.3\"; }
    map $http_upgrade $kong_upgrade { \"~*^websocket$\" websocket; default \"\"; }
    map $http_upgrade $kong_connection { \"~*^websocket$\" \"keep-alive, Upgrade\"; default keep-alive; }
    map $http_te $kong_te { \"~*(^|,)\\s*trailers\\s*(,|$)\" trailers; default \"\"; }
    map $request_uri $kong_forwarded_path { \"~^(?<kong_path>[^?]*)\" $kong_path; default \"\"; }
";

/// Kong's `$upstream_*` variables for one location, set in the rewrite phase, before the filter
/// (access phase) can touch a header they are made from, as Kong's Lua sets them before it
/// attaches the chain. Kong's defaults trust no client IP: the forwarded proto, host and port
/// are the request's own, the client's `X-Forwarded-*` other than `-For` are not believed.
/// `stripped_prefix`: the route's path when the route strips it.
fn kong_vars(out: &mut String, stripped_prefix: Option<&str>) {
    let prefix = stripped_prefix.filter(|p| *p != "/").unwrap_or_default();
    let _ = write!(
        out,
        "            set $upstream_te $kong_te;\n\
         \x20           set $upstream_via $kong_via;\n\
         \x20           set $upstream_upgrade $kong_upgrade;\n\
         \x20           set $upstream_connection $kong_connection;\n\
         \x20           set $upstream_x_forwarded_for $proxy_add_x_forwarded_for;\n\
         \x20           set $upstream_x_forwarded_proto $scheme;\n\
         \x20           set $upstream_x_forwarded_host $host;\n\
         \x20           set $upstream_x_forwarded_port $server_port;\n\
         \x20           set $upstream_x_forwarded_path $kong_forwarded_path;\n\
         \x20           set $upstream_x_forwarded_prefix {};\n",
        conf_value(prefix)
    );
}

/// `'text'` for nginx.conf (`''`: empty).
fn conf_value(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Kong's proxy settings for one location: kong/templates/nginx_kong.lua (3.9.3), with nginx
/// variables for the ones Kong's Lua sets: `$upstream_*` from [`kong_vars`], `$request_id` for
/// `$kong_request_id`, the service's host for `$upstream_host`.
fn proxy_block(out: &mut String, upstream_name: &str, upstream: &Upstream) {
    let default_port = if upstream.tls { 443 } else { 80 };
    let host = if upstream.port == default_port {
        upstream.host.clone()
    } else {
        format!("{}:{}", upstream.host, upstream.port)
    };
    let scheme = if upstream.tls { "https" } else { "http" };
    let _ = write!(
        out,
        "            proxy_http_version 1.1;\n\
         \x20           proxy_set_header TE $upstream_te;\n\
         \x20           proxy_set_header Via $upstream_via;\n\
         \x20           proxy_set_header Host {host};\n\
         \x20           proxy_set_header Upgrade $upstream_upgrade;\n\
         \x20           proxy_set_header Connection $upstream_connection;\n\
         \x20           proxy_set_header X-Forwarded-For $upstream_x_forwarded_for;\n\
         \x20           proxy_set_header X-Forwarded-Proto $upstream_x_forwarded_proto;\n\
         \x20           proxy_set_header X-Forwarded-Host $upstream_x_forwarded_host;\n\
         \x20           proxy_set_header X-Forwarded-Port $upstream_x_forwarded_port;\n\
         \x20           proxy_set_header X-Forwarded-Path $upstream_x_forwarded_path;\n\
         \x20           proxy_set_header X-Forwarded-Prefix $upstream_x_forwarded_prefix;\n\
         \x20           proxy_set_header X-Real-IP $remote_addr;\n\
         \x20           proxy_set_header X-Kong-Request-Id $request_id;\n\
         \x20           proxy_pass_header Server;\n\
         \x20           proxy_pass_header Date;\n\
         \x20           proxy_ssl_server_name on;\n\
         \x20           proxy_ssl_name {};\n\
         \x20           proxy_pass {scheme}://{upstream_name};\n",
        upstream.host
    );
}

/// The rewrite Kong's path handling (`v0`) does for a route: strip the matched prefix and/or
/// prepend the service's path.
fn rewrite_line(prefix: &str, strip: bool, service_path: Option<&str>) -> Option<String> {
    let base = service_path.unwrap_or("/").trim_end_matches('/');
    let escaped: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect();
    match (strip, base.is_empty()) {
        (false, true) => None,
        (false, false) => Some(format!("rewrite ^(.*)$ {base}$1 break;")),
        (true, _) => Some(format!("rewrite ^{escaped}/?(.*)$ {base}/$1 break;")),
    }
}

/// The whole nginx.conf for `opts` (filters already copied to `dir/filters`).
pub fn nginx_conf(
    opts: &GatewayOpts,
    dir: &Path,
    ports: (u16, u16),
    dns: &str,
    running_as_root: bool,
) -> Result<String> {
    let yml = KongYml::parse(&opts.kong_yml)?;
    let mut filters = Filters::new(&dir.join("filters"));
    let table = Table::build(&yml, &mut filters)?;
    let names = Names::parse(&opts.resolve)?;
    let workers = if opts.workers == 0 { 2 } else { opts.workers };
    // WASMX_LOG_LEVEL=debug shows the engine's own trace (this nginx is built --with-debug).
    let env_level = std::env::var("WASMX_LOG_LEVEL")
        .ok()
        .filter(|l| !l.is_empty());
    let level = env_level
        .as_deref()
        .or(opts.log_level.as_deref())
        .unwrap_or("notice");
    let d = dir.display();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "daemon off;\nmaster_process on;\nworker_processes {workers};"
    );
    if running_as_root {
        out.push_str("user root;\n");
    }
    let _ = writeln!(
        out,
        "pid {d}/nginx.pid;\nerror_log {d}/error.log {level};\nworking_directory {d};\n\
         worker_rlimit_core 1g;\nevents {{ worker_connections 4096; }}\n\nwasm {{"
    );
    for (name, _, _) in &opts.filters {
        let _ = writeln!(out, "    module {name} {d}/filters/{name}.wasm;");
    }
    let _ = writeln!(out, "    module spec_metrics {};", probe_wasm()?.display());
    // For profiling with `perf`: wasmtime writes /tmp/perf-<pid>.map for the compiled code.
    if let Some(profiler) = std::env::var("WASMX_WASMTIME_PROFILER")
        .ok()
        .filter(|p| !p.is_empty())
    {
        let _ = writeln!(out, "    wasmtime {{ flag profiler {profiler}; }}");
    }
    for zone in &opts.shm_kv {
        // `NAME=SIZE[ eviction=MODE]`, checked as the stand-in checks it; Kong writes the
        // variable's value after the name the same way.
        let decl = crate::host::shared_data::ZoneDecl::parse(zone)
            .map_err(|e| anyhow!("shm_kv {zone:?}: {e}"))?;
        let (_, value) = zone.split_once('=').unwrap_or_default();
        let _ = writeln!(out, "    shm_kv {} {};", decl.name, value.trim());
    }
    let _ = writeln!(
        out,
        "    resolver {dns} ipv6=off valid=1s;\n    resolver_timeout 5s;"
    );
    let ca = opts
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let _ = writeln!(
        out,
        "    tls_trusted_certificate {};\n    tls_verify_cert on;\n    tls_verify_host on;\n}}\n",
        ca.display()
    );
    let _ = writeln!(
        out,
        "http {{\n    access_log off;\n    client_body_temp_path {d}/tmp/body;\n    proxy_temp_path {d}/tmp/proxy;\n    \
         fastcgi_temp_path {d}/tmp/fastcgi;\n    uwsgi_temp_path {d}/tmp/uwsgi;\n    scgi_temp_path {d}/tmp/scgi;\n"
    );
    out.push_str(KONG_HTTP);
    for (i, service) in table.services.iter().enumerate() {
        let _ = writeln!(
            out,
            "    upstream service_{i} {{\n        server {};\n        keepalive 64;\n    }}",
            names.upstream_addr(&service.upstream)
        );
    }
    let _ = writeln!(
        out,
        "\n    server {{\n        listen 127.0.0.1:{} reuseport;\n        add_header x-spec-worker $pid always;\n",
        ports.0
    );
    let mut locations: Vec<(&str, &crate::gateway::router::Route)> = table
        .routes
        .iter()
        .flat_map(|r| r.paths.iter().map(move |p| (p.as_str(), r)))
        .collect();
    locations.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let mut seen = std::collections::BTreeSet::new();
    for (path, route) in locations {
        if !seen.insert(path) {
            bail!("two routes share the path {path:?}");
        }
        let service = table
            .services
            .get(route.service)
            .context("route without service")?;
        let _ = writeln!(out, "        location ^~ {path} {{");
        for entry in &route.chain {
            let roots = table
                .roots
                .get(&*entry.filter)
                .context("chain without roots")?;
            let root = roots
                .get(entry.root_id as usize - 1)
                .context("chain entry without root")?;
            let config =
                String::from_utf8(root.config.clone()).context("a filter config is not UTF-8")?;
            let _ = writeln!(
                out,
                "            proxy_wasm {} {};",
                entry.filter,
                conf_quote(&config)?
            );
        }
        // Before the rewrite: its `break` ends the rewrite phase's directives.
        kong_vars(&mut out, route.strip_path.then_some(path));
        if let Some(line) = rewrite_line(path, route.strip_path, service.upstream.path.as_deref()) {
            let _ = writeln!(out, "            {line}");
        }
        proxy_block(
            &mut out,
            &format!("service_{}", route.service),
            &service.upstream,
        );
        out.push_str("        }\n");
    }
    if !seen.contains("/") {
        out.push_str(
            "        location / {\n            default_type application/json;\n            \
             return 404 '{\"message\":\"no Route matched with those values\"}';\n        }\n",
        );
    }
    out.push_str("    }\n");
    let configs = table
        .roots
        .get("cloudrun_oidc")
        .into_iter()
        .flatten()
        .map(|root| root.config.as_slice());
    let reader =
        json!({"on_request_headers": [{"do": "metrics_json", "names": metric_names(configs)}]});
    let _ = writeln!(
        out,
        "\n    server {{\n        listen 127.0.0.1:{};\n        location = /__ready {{ return 200 'ready'; }}\n        \
         location = /__metrics {{ proxy_wasm spec_metrics {}; }}\n    }}\n}}",
        ports.1,
        conf_quote(&reader.to_string())?
    );
    Ok(out)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The DNS table of a world: every `HOST=IP` entry.
fn dns_names(opts: &GatewayOpts) -> Result<BTreeMap<String, Ipv4Addr>> {
    Ok(Names::parse(&opts.resolve)?.hosts)
}

impl NginxGateway {
    /// Writes the prefix directory, starts nginx and waits until both listeners answer.
    /// Filters must already be in `dir/filters`.
    pub fn start(opts: &GatewayOpts, dir: &Path) -> Result<NginxGateway> {
        let nginx = wasmx_nginx()?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        let names = dns_names(opts)?;
        let dns = DnsServer::start(names)?;
        // Bound here and inherited by nginx: the ports are ours from bind to use.
        let listeners = Listeners::bind(&[Share::ReusePort, Share::Alone])?;
        let ports = (listeners.port(0)?, listeners.port(1)?);
        let conf = nginx_conf(opts, dir, ports, &dns.addr, running_as_root())?;
        std::fs::write(dir.join("nginx.conf"), &conf)?;
        let error_log = dir.join("error.log");
        let _ = std::fs::remove_file(&error_log);
        let mut command = Command::new(&nginx);
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        listeners.hand_to(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("spawn {}", nginx.display()))?;
        let mut gateway = NginxGateway {
            child,
            dir: dir.to_path_buf(),
            http: format!("127.0.0.1:{}", ports.0),
            admin: format!("127.0.0.1:{}", ports.1),
            error_log,
            _dns: dns,
            stopped: false,
            stop_at_line: None,
        };
        match gateway.wait_ready() {
            Ok(()) => Ok(gateway),
            Err(e) => {
                let log = gateway.log_lines().join("\n");
                gateway.stop();
                Err(anyhow!("{e:#}\n{log}"))
            }
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited with {status} before serving");
            }
            let ready = http::get_timeout(
                &format!("http://{}/__ready", self.admin),
                &[],
                Duration::from_secs(2),
            );
            if matches!(ready, Ok(r) if r.status == 200) && !self.worker_pids().is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nginx did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the master is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The master's children: the workers (and cache helpers, none here).
    pub fn worker_pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Peak and current resident memory of the workers, summed (`VmHWM`, `VmRSS` from /proc).
    pub fn memory(&self) -> Value {
        let field = |pid: u32, name: &str| -> u64 {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with(name))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<u64>().ok())
                })
                .unwrap_or(0)
                * 1024
        };
        let workers = self.worker_pids();
        json!({
            "vm_hwm_bytes": workers.iter().map(|p| field(*p, "VmHWM:")).sum::<u64>(),
            "vm_rss_bytes": workers.iter().map(|p| field(*p, "VmRSS:")).sum::<u64>(),
            "workers": workers.len(),
        })
    }

    /// The error log so far.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.error_log)
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Lines that mean the engine failed (a worker crash, an alert, an emergency). Not one: a
    /// worker killed (signal 9) after the test asked nginx to stop. On a fast shutdown the master
    /// SIGKILLs workers that take more than about a second to exit, which a loaded machine can
    /// make them do; a crash has another signal (11, 6).
    pub fn fatal_lines(&self) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .enumerate()
            .filter(|(i, l)| {
                let stopping = self.stop_at_line.is_some_and(|at| *i >= at);
                is_fatal_line(l) && !(stopping && l.contains("exited on signal 9"))
            })
            .map(|(_, l)| l)
            .collect()
    }

    /// `Err` listing the fatal lines, if any.
    pub fn check_log(&self) -> Result<()> {
        let fatal = self.fatal_lines();
        if fatal.is_empty() {
            Ok(())
        } else {
            bail!(
                "the real engine's error log has {} fatal line(s):\n{}",
                fatal.len(),
                fatal.join("\n")
            )
        }
    }

    /// `GET /__metrics`: every cloudrun_oidc counter (`pw_cloudrun_oidc_<name>`), summed over
    /// workers by the engine.
    pub fn metrics(&self) -> Result<Value> {
        let resp = http::get(&format!("http://{}/__metrics", self.admin), &[])?;
        if resp.status != 200 {
            bail!(
                "metrics reader answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        resp.json()
    }

    /// Stops nginx (fast shutdown, then SIGKILL to every process after 10 s).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.stop_at_line = Some(self.log_lines().len());
        let workers = self.worker_pids();
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for worker in workers {
            // SAFETY: as above, for the master's workers.
            unsafe {
                libc::kill(worker as i32, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NginxGateway {
    /// Stops nginx ([`super::gateway::Gateway`] checks its log first).
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_configs_for_nginx_conf() {
        assert_eq!(conf_quote(r#"{"a":"b\nc"}"#).unwrap(), r#"'{"a":"b\\nc"}'"#);
        assert_eq!(conf_quote("it's").unwrap(), r"'it\'s'");
        assert!(conf_quote(&"x".repeat(5000)).is_err());
    }

    #[test]
    fn fatal_lines_are_judged_by_their_level() {
        assert!(is_fatal_line(
            "2026/12/04 13:00:00 [alert] 1#0: worker process 2 exited on signal 11"
        ));
        assert!(is_fatal_line(
            "2026/12/04 13:00:00 [emerg] 1#0: bind() failed"
        ));
        assert!(!is_fatal_line(
            r#"2026/12/04 13:00:00 [info] 1#0: *7 refused (kid="x\n[emerg] forged")"#
        ));
    }

    #[test]
    fn locations_run_the_filter_as_kong_does_with_kongs_proxy_headers() {
        assert!(KONG_HTTP.contains("proxy_wasm_request_headers_in_access on;"));
        assert!(KONG_HTTP.contains("underscores_in_headers on;"));
        let mut out = String::new();
        kong_vars(&mut out, Some("/orders"));
        let upstream = Upstream {
            tls: false,
            host: "svc.test".into(),
            port: 8080,
            path: None,
        };
        proxy_block(&mut out, "service_0", &upstream);
        for name in crate::gateway::proxy::KONG_SET_HEADERS {
            let line = out
                .lines()
                .find(|l| {
                    l.trim()
                        .strip_prefix("proxy_set_header ")
                        .and_then(|rest| rest.split_whitespace().next())
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .unwrap_or_else(|| panic!("no proxy_set_header for {name}:\n{out}"));
            assert!(line.ends_with(';'), "{line}");
        }
        assert!(out.contains("proxy_set_header Host svc.test:8080;"));
        assert!(out.contains("set $upstream_x_forwarded_prefix '/orders';"));
        let mut out = String::new();
        kong_vars(&mut out, Some("/"));
        assert!(out.contains("set $upstream_x_forwarded_prefix '';"));
    }

    #[test]
    fn rewrites_like_kong_path_handling() {
        assert_eq!(rewrite_line("/orders", false, None), None);
        assert_eq!(
            rewrite_line("/orders", true, None).as_deref(),
            Some("rewrite ^/orders/?(.*)$ /$1 break;")
        );
        assert_eq!(
            rewrite_line("/a.b", false, Some("/base/")).as_deref(),
            Some("rewrite ^(.*)$ /base$1 break;")
        );
    }
}
