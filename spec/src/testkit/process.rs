//! Starting a spec binary, waiting for its `listening ...` line, and stopping it on drop.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root (the directory holding the top-level `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The public test data: `VECTORS_DIR` when set, else `../shared/vectors` beside the repository
/// (the project keeps no copy). Panics, naming the place, when it is missing: a test that needs
/// it fails instead of skipping (CI always has `../shared`).
pub fn vectors_dir() -> PathBuf {
    let dir = match std::env::var_os("VECTORS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => repo_root()
            .parent()
            .map(|p| p.join("shared/vectors"))
            .unwrap_or_default(),
    };
    assert!(
        dir.join("README.md").is_file(),
        "the public test data is not at {} (../shared/vectors beside the repository, or \
         VECTORS_DIR)",
        dir.display()
    );
    dir
}

/// Path of a binary of this crate built by cargo for the running test: integration tests live in
/// `target/<profile>/deps/`, the binaries one level up.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe
        .parent()
        .context("test binary has no parent dir")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not built (cargo builds it for this crate's integration tests)",
            path.display()
        );
    }
    Ok(path)
}

/// A running spec binary. Killed when dropped; its stderr is kept for assertions.
pub struct SpecProcess {
    pub name: String,
    child: Child,
    /// Addresses from the `listening` line: `http`, and `control` or `admin`.
    pub addrs: HashMap<String, String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl SpecProcess {
    /// Starts `bin` with `args` and waits (up to 60 s) for its `listening k=v ...` line.
    pub fn start(bin: &str, args: &[String]) -> Result<SpecProcess> {
        let path = bin_path(bin)?;
        let mut child = Command::new(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", path.display()))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            let echo = std::env::var_os("SPEC_ECHO_LOGS").is_some();
            let tag = bin.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("[{tag}] {line}");
                    }
                    if let Ok(mut lines) = sink.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let line = loop {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                break line;
            }
            if let Some(status) = child.try_wait()? {
                let log = stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
                bail!("{bin} exited with {status} before listening:\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{bin} did not print its listening line within 60 s");
            }
        };
        let addrs = parse_listening_line(&line)
            .ok_or_else(|| anyhow!("{bin}: unexpected first line {line:?}"))?;
        Ok(SpecProcess {
            name: bin.to_string(),
            child,
            addrs,
            stderr,
        })
    }

    /// An address from the listening line (`http`, `control`, `admin`).
    pub fn addr(&self, key: &str) -> Result<&str> {
        self.addrs
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("{} has no {key} address", self.name))
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process now (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpecProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `listening http=127.0.0.1:1 control=127.0.0.1:2` → {http, control}.
fn parse_listening_line(line: &str) -> Option<HashMap<String, String>> {
    let rest = line.trim().strip_prefix("listening ")?;
    let map: HashMap<String, String> = rest
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.contains_key("http").then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines() {
        let m = parse_listening_line("listening http=127.0.0.1:1 admin=127.0.0.1:2\n").unwrap();
        assert_eq!(m["http"], "127.0.0.1:1");
        assert_eq!(m["admin"], "127.0.0.1:2");
        assert!(parse_listening_line("hello").is_none());
        assert!(parse_listening_line("listening control=1").is_none());
    }
}
