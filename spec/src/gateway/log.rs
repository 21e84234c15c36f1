//! nginx-style error log lines on stderr:
//! `2026/11/22 10:00:00 [error] 123#0: *5 [proxy-wasm]["cloudrun_oidc" #1] message`.
//! Like Kong (`log_level = notice`), `debug` and `info` lines are dropped unless
//! `SPEC_LOG_LEVEL=debug|info` is set.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

fn rank(level: &str) -> u8 {
    match level {
        "debug" => 0,
        "info" => 1,
        "notice" => 2,
        "warn" => 3,
        "error" => 4,
        "crit" => 5,
        "alert" => 6,
        _ => 7,
    }
}

/// The process's log threshold: one per gateway process, like nginx's `error_log` level.
static THRESHOLD: OnceLock<u8> = OnceLock::new();

fn threshold() -> u8 {
    *THRESHOLD.get_or_init(|| {
        std::env::var("SPEC_LOG_LEVEL")
            .map(|l| rank(&l))
            .unwrap_or(2)
    })
}

/// Sets the level from `--log-level` (before anything is logged).
pub fn set_level(level: &str) -> anyhow::Result<()> {
    let r = rank(level);
    if r == 7 {
        anyhow::bail!("--log-level {level:?}: expected debug, info, notice, warn, error or crit");
    }
    let _ = THRESHOLD.set(r);
    Ok(())
}

/// `YYYY/MM/DD HH:MM:SS` (UTC) for a Unix time.
pub fn timestamp(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil_time(i64::try_from(secs).unwrap_or(i64::MAX));
    format!("{y:04}/{m:02}/{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// Year, month, day, hour, minute and second (UTC) of a Unix time; also what mock-aws writes
/// its ISO 8601 times with.
pub fn civil_time(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Writes one error-log line (if `level` passes the threshold).
pub fn emit(level: &str, worker: usize, conn: Option<u64>, msg: &str) {
    if rank(level) < threshold() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let conn = conn.map(|c| format!("*{c} ")).unwrap_or_default();
    let line = format!(
        "{} [{level}] {}#{worker}: {conn}{msg}\n",
        timestamp(now),
        std::process::id()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_nginx() {
        assert_eq!(super::timestamp(0), "1970/01/01 00:00:00");
        assert_eq!(super::timestamp(1_795_860_000), "2026/11/28 10:00:00");
    }
}
