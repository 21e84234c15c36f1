//! CPU time of processes from `/proc/<pid>/stat` (utime + stime): the bench's per-request CPU
//! figures, steadier than requests per second on a shared machine.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// One `/proc/<pid>/stat`: the command name, the parent pid and utime + stime in seconds.
struct Stat {
    comm: String,
    ppid: String,
    cpu_secs: f64,
}

fn read_stat(path: &std::path::Path) -> Option<Stat> {
    let stat = std::fs::read_to_string(path).ok()?;
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    Some(Stat {
        comm,
        ppid: fields.get(1)?.to_string(),
        cpu_secs: ticks / clock_ticks(),
    })
}

/// User + system CPU seconds of process `pid` so far (`None` once it has exited).
pub fn pid_cpu_secs(pid: u32) -> Option<f64> {
    read_stat(std::path::Path::new(&format!("/proc/{pid}/stat"))).map(|s| s.cpu_secs)
}

/// User + system CPU seconds of each child process of this bench, by command name.
pub fn child_cpu_secs() -> BTreeMap<String, f64> {
    let me = std::process::id().to_string();
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(stat) = read_stat(&entry.path().join("stat")) else {
            continue;
        };
        if stat.ppid == me {
            *out.entry(stat.comm).or_insert(0.0) += stat.cpu_secs;
        }
    }
    out
}

/// Adds the CPU spent between two [`child_cpu_secs`] readings.
pub fn add_cpu(
    total: &mut BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) {
    for (name, secs) in after {
        let spent = secs - before.get(name).copied().unwrap_or(0.0);
        *total.entry(name.clone()).or_insert(0.0) += spent.max(0.0);
    }
}

/// CPU seconds the whole machine has been busy (`/proc/stat`: user, nice, system, irq,
/// softirq; idle, iowait and steal left out), summed over its cores.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|i| fields.get(*i)).sum();
    Some(busy / clock_ticks())
}

/// Pids of this bench's child processes named `comm` (the stand-in's `gateway`).
pub fn child_pids(comm: &str) -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = read_stat(&entry.path().join("stat"))?;
            (stat.ppid == me && stat.comm == comm).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}
