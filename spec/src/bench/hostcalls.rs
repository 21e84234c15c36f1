//! Host-call costs on Kong's engine: routes of the engine bench's gateway whose probe filter
//! makes one proxy-wasm host call `n` times per request (the probe's `repeat` action), and a
//! baseline route making none; `(CPU per request of the route − baseline) / n` is one call's
//! CPU cost in the nginx workers, guest side (the Rust SDK's copies) included.

use serde_json::{json, Value};

/// A shared-data key in the `cloudrun_oidc` zone, written by the probe at configure time.
pub const SHARED_KEY: &str = "cloudrun_oidc/bench-probe";

/// One host call measured.
pub struct Case {
    /// Summary key suffix: `engine_hostcall_us_<name>`.
    pub name: &'static str,
    /// The proxy-wasm ABI function.
    pub abi: &'static str,
    /// What the call does here.
    pub what: &'static str,
    /// The probe's `repeat` action, without `n`.
    action: fn() -> Value,
}

impl Case {
    /// Route name and path of this case on the gateway.
    pub fn route(&self) -> (String, String) {
        (format!("hc_{}", self.name), format!("/hc/{}", self.name))
    }

    /// The probe config of this case's route: the call `n` times in `on_request_headers`.
    pub fn probe_config(&self, n: u64) -> Value {
        let mut action = (self.action)();
        action["do"] = json!("repeat");
        action["n"] = json!(n);
        let mut config = json!({ "on_request_headers": [action] });
        if self.name == "increment_metric" {
            config["on_configure"] = json!([{"do": "define_metric", "name": "bench_counter"}]);
        }
        if self.name == "get_shared_data" {
            // A value about the size of a cached token, read back on every call.
            config["on_configure"] = json!([{
                "do": "set_shared", "key": SHARED_KEY, "value": "v".repeat(900), "cas": null
            }]);
        }
        config
    }
}

/// The baseline: the probe filter with a `repeat` of nothing.
pub const BASELINE: Case = Case {
    name: "none",
    abi: "—",
    what: "probe filter, no call (baseline)",
    action: || json!({"call": "none"}),
};

/// Every host call measured, in the order of the table.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "get_header",
            abi: "proxy_get_header_map_value",
            what: "one request header by name (`authorization`)",
            action: || json!({"call": "get_header", "name": "authorization"}),
        },
        Case {
            name: "get_header_pairs",
            abi: "proxy_get_header_map_pairs",
            what: "every request header (10 sent)",
            action: || json!({"call": "get_pairs"}),
        },
        Case {
            name: "replace_header",
            abi: "proxy_replace_header_map_value",
            what: "replace an existing request header (`x-request-id`)",
            action: || json!({"call": "replace_header", "name": "x-request-id", "value": "replaced-by-probe"}),
        },
        Case {
            name: "get_property",
            abi: "proxy_get_property",
            what: "`request.path`",
            action: || json!({"call": "property", "path": "request.path"}),
        },
        Case {
            name: "get_shared_data",
            abi: "proxy_get_shared_data",
            what: "a 900-byte value in the `cloudrun_oidc` shm_kv zone",
            action: || json!({"call": "get_shared", "key": SHARED_KEY}),
        },
        Case {
            name: "get_set_shared_data",
            abi: "proxy_get_shared_data + proxy_set_shared_data",
            what: "replace a 900-byte value: read its CAS, then set with it",
            action: || json!({"call": "cas_shared", "key": format!("{SHARED_KEY}-set"), "value": "w".repeat(900)}),
        },
        Case {
            name: "log_disabled",
            abi: "proxy_log",
            what: "a debug line, error_log at notice (dropped)",
            action: || json!({"call": "log", "level": "debug", "msg": "bench: a line nobody reads"}),
        },
        Case {
            name: "increment_metric",
            abi: "proxy_increment_metric",
            what: "a counter, by 1",
            action: || json!({"call": "increment_metric", "name": "bench_counter"}),
        },
        Case {
            name: "get_current_time",
            abi: "proxy_get_current_time_nanoseconds",
            what: "the clock",
            action: || json!({"call": "time"}),
        },
    ]
}

/// One call's CPU cost in µs from the CPU per request of its route and of the baseline route.
pub fn per_call_us(route_cpu_us: f64, baseline_cpu_us: f64, n: u64) -> f64 {
    (route_cpu_us - baseline_cpu_us) / n.max(1) as f64
}
