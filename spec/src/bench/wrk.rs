//! Load with `wrk` (Debian's package): keep-alive connections on loopback for a fixed time, one
//! Lua script per run. The script sets the request's headers, can give every request a token of
//! its own (read from one file per wrk thread: no token is sent twice), and prints the result as
//! one JSON line that [`run`] reads.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The line the script's `done` prints before its JSON.
const RESULT_MARK: &str = "BENCH_WRK ";

/// Where `wrk` is (`PATH`), if installed.
pub fn find() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wrk"))
            .find(|p| p.is_file())
    })
}

/// One wrk run.
pub struct Run<'a> {
    /// `http://127.0.0.1:PORT/path`.
    pub url: String,
    pub duration: Duration,
    pub connections: usize,
    /// Headers of every request (`Host` is wrk's).
    pub headers: &'a [(String, String)],
    /// Fresh tokens: `<prefix><thread>.txt` (thread 1..=threads), one token a line, each sent
    /// once as `Authorization: Bearer`; a thread whose file runs out stops.
    pub token_files: Option<PathBuf>,
}

impl Run<'_> {
    /// wrk threads: one per connection, at most two (the machine has two cores).
    pub fn threads(&self) -> usize {
        self.connections.clamp(1, 2)
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub requests: u64,
    pub seconds: f64,
    /// Answers other than 2xx/3xx.
    pub bad_status: u64,
    /// connect + read + write errors and timeouts.
    pub socket_errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Tokens sent from the files (0 without `token_files`).
    pub tokens_used: u64,
    /// A thread ran out of tokens and stopped early: the rate understates.
    pub exhausted: bool,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }
}

/// A Lua string literal.
fn lua_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// The Lua script for `run`.
pub fn script(run: &Run<'_>) -> String {
    let mut s = String::from("-- written by `make bench` (spec/src/bench/wrk.rs)\n");
    for (name, value) in run.headers {
        let _ = writeln!(
            s,
            "wrk.headers[{}] = {}",
            lua_string(name),
            lua_string(value)
        );
    }
    s.push_str(
        r#"local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
"#,
    );
    if let Some(prefix) = &run.token_files {
        let _ = writeln!(
            s,
            "local prefix = {}",
            lua_string(&prefix.display().to_string())
        );
        s.push_str(
            r#"local reqs, n, i = {}, 0, 0
used, exhausted = 0, 0
function init(args)
  local f = assert(io.open(prefix .. id .. ".txt", "r"))
  for token in f:lines() do
    wrk.headers["Authorization"] = "Bearer " .. token
    n = n + 1
    reqs[n] = wrk.format()
  end
  f:close()
end
function request()
  i = i + 1
  if i > n then
    -- Out of fresh tokens: stop rather than send one twice.
    exhausted = 1
    wrk.thread:stop()
    return reqs[n]
  end
  used = i
  return reqs[i]
end
"#,
        );
    }
    s.push_str(
        r#"function done(summary, latency, requests)
  local used, exhausted = 0, 0
  for _, t in ipairs(threads) do
    used = used + (tonumber(t:get("used")) or 0)
    exhausted = exhausted + (tonumber(t:get("exhausted")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_WRK {"requests":%.0f,"duration_us":%.0f,"status":%.0f,"socket":%.0f,"p50":%.0f,"p99":%.0f,"used":%.0f,"exhausted":%.0f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), used, exhausted))
end
"#,
    );
    s
}

/// Runs wrk (`bin`) with the script written to `dir`; the outcome from the script's JSON line.
pub fn run(bin: &Path, dir: &Path, run: &Run<'_>) -> Result<Outcome> {
    let script_path = dir.join("wrk-bench.lua");
    std::fs::write(&script_path, script(run))?;
    let secs = run.duration.as_secs_f64().max(1.0).round() as u64;
    let out = Command::new(bin)
        .arg(format!("-t{}", run.threads()))
        .arg(format!("-c{}", run.connections.max(1)))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script_path)
        .arg(&run.url)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix(RESULT_MARK)) else {
        bail!(
            "wrk on {} printed no result ({}):\n{stdout}\n{}",
            run.url,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let v: Value = serde_json::from_str(line).context("wrk's result line")?;
    let n = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    Ok(Outcome {
        requests: n("requests") as u64,
        seconds: n("duration_us") / 1e6,
        bad_status: n("status") as u64,
        socket_errors: n("socket") as u64,
        p50_us: n("p50"),
        p99_us: n("p99"),
        tokens_used: n("used") as u64,
        exhausted: n("exhausted") > 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_lua_strings() {
        assert_eq!(lua_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(lua_string("é\n"), "\"\\195\\169\\10\"");
    }
}
