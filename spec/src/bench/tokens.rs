//! Fresh tokens for the engine's cold route: RS256 tokens signed before the timed rounds (on
//! every core, OpenSSL), each with its own `sub`/`jti`, written one file per wrk thread so that
//! no token is sent twice in a run.

use anyhow::{anyhow, Result};
use cloudrun_spec::jose::{self, Alg, SigningKey};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// `count` RS256 tokens with the bench's claims ([`crate::claims`]) for indices
/// `first..first + count`, signed on all cores.
pub fn sign(key: &SigningKey, first: usize, count: usize, run: u64) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(1);
    let per = count.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .step_by(per)
            .map(|start| {
                let end = (start + per).min(count);
                s.spawn(move || -> Result<Vec<String>> {
                    (start..end)
                        .map(|i| {
                            jose::sign_jwt(key, Alg::RS256, &crate::claims(first + i, run, false))
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for h in handles {
            all.extend(h.join().map_err(|_| anyhow!("signing thread panicked"))??);
        }
        Ok(all)
    })
}

/// Writes `tokens` in `threads` contiguous parts to `<dir>/<name>-<k>.txt` (k = 1..=threads,
/// wrk's thread numbers), one token a line; returns the prefix `<dir>/<name>-`.
pub fn write_per_thread(
    dir: &Path,
    name: &str,
    tokens: &[String],
    threads: usize,
) -> Result<PathBuf> {
    let per = tokens.len().div_ceil(threads.max(1)).max(1);
    for k in 1..=threads.max(1) {
        let part = tokens.chunks(per).nth(k - 1).unwrap_or_default();
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}-{k}.txt")))?);
        for token in part {
            writeln!(file, "{token}")?;
        }
        file.flush()?;
    }
    Ok(dir.join(format!("{name}-")))
}

/// Removes the files [`write_per_thread`] wrote.
pub fn remove_per_thread(prefix: &Path, threads: usize) {
    for k in 1..=threads.max(1) {
        let _ = std::fs::remove_file(format!("{}{k}.txt", prefix.display()));
    }
}

/// Tokens one round needs at `rate` requests/s for `secs`, with `margin` for a faster round and
/// for threads that do not share the load evenly.
pub fn pool_size(rate: f64, secs: f64, margin: f64) -> usize {
    (rate.max(100.0) * secs * margin).ceil() as usize + 200
}
