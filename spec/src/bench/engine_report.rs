//! The engine bench's figures: per route and round, the best of the rounds, the ratios, the
//! host-call costs; rendered as Markdown tables and as the `engine_*` keys of summary.json.

use super::engine::EngineArgs;
use super::engine_algs;
use super::engine_world::Route;
use super::hostcalls::{self, Case};
use super::stats::{round, us, Table};
use super::wrk;
use cloudrun_spec::jose::Alg;
use serde_json::{json, Map, Value};

/// One route in one round.
#[derive(Clone)]
pub struct RoundFigure {
    pub outcome: wrk::Outcome,
    /// Workers' CPU µs per request.
    pub cpu_us: f64,
    /// The whole machine's busy CPU µs per request (wrk, upstream, kernel, workers, others).
    pub machine_cpu_us: f64,
    /// Workers that did at least a tenth of the work (wrk's connections land on workers by
    /// `reuseport` hashing: both may share one).
    pub busy_workers: usize,
}

/// A route and its rounds.
pub struct Measured {
    pub route: Route,
    pub rounds: Vec<RoundFigure>,
}

impl Measured {
    pub fn best_rps(&self) -> f64 {
        self.rounds
            .iter()
            .map(|r| r.outcome.rps())
            .fold(f64::NAN, f64::max)
    }

    pub fn best_cpu_us(&self) -> f64 {
        self.rounds
            .iter()
            .map(|r| r.cpu_us)
            .fold(f64::NAN, f64::min)
    }

    pub fn best_machine_cpu_us(&self) -> f64 {
        self.rounds
            .iter()
            .map(|r| r.machine_cpu_us)
            .fold(f64::NAN, f64::min)
    }
}

/// Everything the engine part measured.
pub struct Figures {
    pub measured: Vec<Measured>,
    pub args: EngineArgs,
    /// The engine's nginx, or the stand-in.
    pub gateway: String,
    pub upstream: String,
    /// Fresh route req/s in the calibration run, and the tokens signed per round from it.
    pub calibration_rps: f64,
    pub pool_per_round: usize,
    /// OpenSSL's median µs to verify one of the fresh tokens, per algorithm.
    pub openssl_us: Vec<(Alg, f64)>,
    pub signing_secs: f64,
    pub wall_secs: f64,
}

/// The engine part's outcome.
pub enum Report {
    /// Not run, and why.
    Skipped(String),
    Measured(Box<Figures>),
}

impl Figures {
    fn get(&self, key: &str) -> Option<&Measured> {
        self.measured.iter().find(|m| m.route.key == key)
    }

    fn rps(&self, key: &str) -> f64 {
        self.get(key).map(Measured::best_rps).unwrap_or(f64::NAN)
    }

    fn cpu_us(&self, key: &str) -> f64 {
        self.get(key).map(Measured::best_cpu_us).unwrap_or(f64::NAN)
    }

    fn machine_cpu_us(&self, key: &str) -> f64 {
        self.get(key)
            .map(Measured::best_machine_cpu_us)
            .unwrap_or(f64::NAN)
    }

    /// Each host call's CPU µs, from its route and the baseline route.
    fn hostcall_costs(&self) -> Vec<(Case, f64)> {
        let base = self.cpu_us(&hostcalls::BASELINE.route().0);
        hostcalls::cases()
            .into_iter()
            .filter_map(|case| {
                let route = self.cpu_us(&case.route().0);
                route.is_finite().then(|| {
                    let cost =
                        hostcalls::per_call_us(route, base, self.args.engine_hostcall_repeat);
                    (case, cost)
                })
            })
            .collect()
    }

    /// `key`'s req/s over the empty filter's, round by round (same round: same machine state).
    fn per_round_vs_empty(&self, key: &str) -> Vec<f64> {
        let (Some(route), Some(empty)) = (self.get(key), self.get("empty")) else {
            return Vec::new();
        };
        route
            .rounds
            .iter()
            .zip(&empty.rounds)
            .map(|(r, e)| r.outcome.rps() / e.outcome.rps())
            .collect()
    }

    /// One line with the per-round ratios of the hot and fresh routes.
    fn per_round_line(&self) -> String {
        let list = |key: &str| {
            self.per_round_vs_empty(key)
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        format!(
            "Per round, req/s over the empty filter's in the same round: hot {}, fresh {} (req/s \
             ratios move from run to run far more than CPU per request: BENCHMARKS.md).\n\n",
            list("hot"),
            list("fresh")
        )
    }

    fn fresh_exhausted(&self) -> bool {
        self.get("fresh")
            .is_some_and(|m| m.rounds.iter().any(|r| r.outcome.exhausted))
    }

    fn main_table(&self) -> String {
        let (nf, empty) = (self.rps("no_filter"), self.rps("empty"));
        let mut t = Table::new(
            &format!(
                "On {}: {} workers, wrk with {} connections on loopback, plain nginx upstream, \
                 best of {} interleaved rounds of {} s",
                self.args.gateway_name(),
                self.args.engine_workers,
                self.args.engine_connections,
                self.args.engine_rounds.max(1),
                self.args.engine_seconds
            ),
            &[
                "route",
                "requests/s",
                "vs no filter",
                "vs an empty filter",
                "workers' CPU µs/request",
                "vs an empty filter, by workers' CPU",
                "machine CPU µs/request",
                "cores busy",
                "per round (req/s)",
            ],
        );
        let empty_cpu = self.cpu_us("empty");
        for key in ["no_filter", "empty", "hot", "fresh"] {
            let Some(m) = self.get(key) else { continue };
            let rps = m.best_rps();
            let vs_empty = |x: f64| {
                if key == "no_filter" {
                    "—".to_string()
                } else {
                    format!("{x:.2}")
                }
            };
            t.row(vec![
                m.route.label.clone(),
                format!("{rps:.0}"),
                format!("{:.2}", rps / nf),
                vs_empty(rps / empty),
                us(m.best_cpu_us()),
                vs_empty(empty_cpu / m.best_cpu_us()),
                us(m.best_machine_cpu_us()),
                format!("{:.2}", rps * m.best_machine_cpu_us() / 1e6),
                m.rounds
                    .iter()
                    .map(|r| format!("{:.0}", r.outcome.rps()))
                    .collect::<Vec<_>>()
                    .join(" / "),
            ]);
        }
        t.render()
    }

    /// Per algorithm: what a new token costs the workers over the hot path, and that over
    /// OpenSSL's verification of the same signatures. RS256 is the fresh route.
    fn verify_costs(&self) -> Vec<(Alg, f64, f64)> {
        let hot = self.cpu_us("hot");
        self.openssl_us
            .iter()
            .filter_map(|(alg, openssl)| {
                let cost = self.cpu_us(&engine_algs::route_key(*alg)) - hot;
                cost.is_finite().then_some((*alg, cost, *openssl))
            })
            .collect()
    }

    fn verify_table(&self) -> String {
        let mut t = Table::new(
            &format!(
                "A new token per algorithm on {}: workers' CPU over the hot path, against OpenSSL",
                self.args.gateway_name()
            ),
            &[
                "alg",
                "workers' CPU µs/request",
                "new token − hot (µs)",
                "OpenSSL verify (µs)",
                "ratio",
            ],
        );
        for (alg, cost, openssl) in self.verify_costs() {
            t.row(vec![
                alg.name().into(),
                us(self.cpu_us(&engine_algs::route_key(alg))),
                us(cost),
                us(openssl),
                format!("{:.1}×", cost / openssl),
            ]);
        }
        t.render()
    }

    fn hostcall_table(&self) -> String {
        let mut t = Table::new(
            &format!(
                "Host calls on {}: CPU µs per call in the gateway's workers ((route − \
                 baseline) / {} calls per request)",
                self.args.gateway_name(),
                self.args.engine_hostcall_repeat
            ),
            &[
                "host call",
                "ABI function",
                "what",
                "µs per call",
                "route CPU µs/request",
            ],
        );
        t.row(vec![
            "baseline".into(),
            "—".into(),
            hostcalls::BASELINE.what.into(),
            "—".into(),
            us(self.cpu_us(&hostcalls::BASELINE.route().0)),
        ]);
        for (case, cost) in self.hostcall_costs() {
            t.row(vec![
                case.name.into(),
                format!("`{}`", case.abi),
                case.what.into(),
                format!("{cost:.3}"),
                us(self.cpu_us(&case.route().0)),
            ]);
        }
        t.render()
    }

    fn render(&self) -> String {
        let mut out = self.main_table();
        out.push('\n');
        out.push_str(&self.per_round_line());
        out.push_str(&format!(
            "Gateway: {}. Upstream: {}. Requests carry 10 headers (wrk's `Host` included). Fresh \
             tokens: {} signed per round ({:.0} s on all cores) from a calibration at {:.0} req/s \
             × {} s × {}; none is sent twice.{} Workers' CPU: utime + stime of the gateway's workers \
             (`/proc/<pid>/stat`) over each run ÷ its requests, best round; \"by workers' CPU\" is the \
             ratio if they were the only thing running. Machine CPU: every busy core-second \
             (`/proc/stat`) over the run ÷ its requests: wrk, the upstream and the kernel share \
             the same cores; cores busy = req/s × machine CPU per request (below the core count, \
             the run is bound by each connection's round trip, not by CPU). Engine part: {:.0} s.\n\n",
            self.gateway,
            self.upstream,
            self.pool_per_round,
            self.signing_secs,
            self.calibration_rps,
            self.args.engine_seconds,
            self.args.engine_fresh_margin,
            if self.fresh_exhausted() {
                " **A round ran out of fresh tokens: its rate understates (raise --engine-fresh-margin).**"
            } else {
                ""
            },
            self.wall_secs
        ));
        if self.openssl_us.len() > 1 {
            out.push_str(&self.verify_table());
            out.push_str(&format!(
                "\nEach algorithm other than RS256 loads the fresh route for {} s per round with \
                 {} tokens of its own (a load that runs out stops early; CPU per request stays \
                 valid); best round. \"new token − hot\" is everything a new token adds in the \
                 workers (parsing, verification, claims, the cache insert); OpenSSL is this \
                 process verifying the same signatures (median of 200).\n\n",
                self.args.engine_alg_seconds,
                engine_algs::POOL_PER_ROUND
            ));
        }
        if self.args.engine_hostcall_seconds > 0 {
            out.push_str(&self.hostcall_table());
            out.push_str(&format!(
                "\nProbe filter routes, {} s per round, best round. A call's cost includes the \
                 Rust SDK's side (allocating and copying what the host returns).\n\n",
                self.args.engine_hostcall_seconds
            ));
        }
        out
    }

    fn summary(&self) -> Map<String, Value> {
        let machine = crate::machine();
        let prefix = self.args.prefix();
        let mut s = Map::new();
        // Keys are written as on the engine; the stand-in's get its own prefix.
        let mut put = |k: &str, v: f64| {
            let key = k.replacen("engine", prefix, 1);
            s.insert(key, json!(round(v)));
        };
        for key in ["no_filter", "empty", "hot", "fresh"] {
            put(&format!("engine_rps_{key}"), self.rps(key));
            put(&format!("engine_cpu_us_{key}"), self.cpu_us(key));
            put(
                &format!("engine_machine_cpu_us_{key}"),
                self.machine_cpu_us(key),
            );
        }
        let empty_cpu = self.cpu_us("empty");
        put("engine_hot_vs_empty_cpu", empty_cpu / self.cpu_us("hot"));
        put(
            "engine_fresh_vs_empty_cpu",
            empty_cpu / self.cpu_us("fresh"),
        );
        let (nf, empty) = (self.rps("no_filter"), self.rps("empty"));
        put("engine_hot_vs_empty", self.rps("hot") / empty);
        put("engine_fresh_vs_empty", self.rps("fresh") / empty);
        put("engine_empty_vs_no_filter", empty / nf);
        put("engine_hot_vs_no_filter", self.rps("hot") / nf);
        put("engine_fresh_vs_no_filter", self.rps("fresh") / nf);
        for (case, cost) in self.hostcall_costs() {
            put(&format!("engine_hostcall_us_{}", case.name), cost);
        }
        for (alg, cost, openssl) in self.verify_costs() {
            let name = alg.name().to_ascii_lowercase();
            put(&format!("engine_new_token_us_{name}"), cost);
            put(&format!("engine_openssl_us_{name}"), openssl);
            put(
                &format!("engine_new_token_vs_openssl_{name}"),
                cost / openssl,
            );
        }
        if self.args.engine_hostcall_seconds > 0 {
            put(
                "engine_cpu_us_probe_baseline",
                self.cpu_us(&hostcalls::BASELINE.route().0),
            );
        }
        put("engine_fresh_calibration_rps", self.calibration_rps);
        put("engine_fresh_tokens_per_round", self.pool_per_round as f64);
        put("engine_bench_seconds", self.wall_secs);
        let rounds = self.per_round();
        s.insert(
            prefix.into(),
            json!({
                "gateway": self.gateway,
                "upstream": self.upstream,
                "workers": self.args.engine_workers,
                "connections": self.args.engine_connections,
                "rounds": self.args.engine_rounds.max(1),
                "seconds": self.args.engine_seconds,
                "hostcall_seconds": self.args.engine_hostcall_seconds,
                "hostcall_repeat": self.args.engine_hostcall_repeat,
                "fresh_out_of_tokens": self.fresh_exhausted(),
                "hot_vs_empty_per_round": self.per_round_vs_empty("hot").iter().map(|x| round(*x)).collect::<Vec<_>>(),
                "fresh_vs_empty_per_round": self.per_round_vs_empty("fresh").iter().map(|x| round(*x)).collect::<Vec<_>>(),
                "per_round": rounds,
                "commit": machine["commit"],
                "dirty": machine["dirty"],
                "date_utc": machine["date_utc"],
            }),
        );
        s
    }

    /// Every round of every route, for summary.json.
    fn per_round(&self) -> Map<String, Value> {
        self.measured
            .iter()
            .map(|m| {
                let per: Vec<Value> = m
                    .rounds
                    .iter()
                    .map(|r| {
                        json!({
                            "rps": round(r.outcome.rps()),
                            "cpu_us": round(r.cpu_us),
                            "machine_cpu_us": round(r.machine_cpu_us),
                            "requests": r.outcome.requests,
                            "p50_ms": round(r.outcome.p50_us / 1000.0),
                            "p99_ms": round(r.outcome.p99_us / 1000.0),
                            "busy_workers": r.busy_workers,
                            "tokens_used": r.outcome.tokens_used,
                            "out_of_tokens": r.outcome.exhausted,
                        })
                    })
                    .collect();
                (m.route.key.clone(), Value::Array(per))
            })
            .collect()
    }
}

impl Report {
    /// The tables (or why there are none), Markdown.
    pub fn render(&self) -> String {
        match self {
            Report::Skipped(why) => format!("### Kong's engine\n\nNot measured: {why}\n\n"),
            Report::Measured(f) => f.render(),
        }
    }

    /// The `engine_*` keys of summary.json.
    pub fn summary(&self) -> Map<String, Value> {
        match self {
            Report::Skipped(why) => {
                let mut s = Map::new();
                s.insert("engine".into(), json!({ "skipped": why }));
                s
            }
            Report::Measured(f) => f.summary(),
        }
    }
}
