//! Filter metrics (counters, gauges, histograms) shared by every worker, named the way Kong's
//! Prometheus plugin exports them: `pw_<filter>_<metric>`. Counters and histograms keep one slot
//! per worker and are summed when read; a gauge has one value.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// proxy-wasm metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    /// From the ABI's `MetricType` value.
    pub fn from_abi(v: i32) -> Option<MetricType> {
        match v {
            0 => Some(MetricType::Counter),
            1 => Some(MetricType::Gauge),
            2 => Some(MetricType::Histogram),
            _ => None,
        }
    }
}

/// Why a metric operation failed (maps to a proxy-wasm status).
#[derive(Debug, PartialEq, Eq)]
pub enum MetricError {
    NotFound,
    BadArgument,
}

#[derive(Debug)]
struct Metric {
    name: String,
    kind: MetricType,
    per_worker: Vec<i64>,
    gauge: i64,
    /// Histogram bins: upper bound (power of two) → count, plus sum, per worker.
    bins: Vec<BTreeMap<u64, u64>>,
    sums: Vec<u64>,
}

/// Every metric of every filter, in one registry.
#[derive(Debug)]
pub struct Metrics {
    workers: usize,
    inner: Mutex<Vec<Metric>>,
}

/// Kong's Prometheus name for a filter metric.
pub fn export_name(filter: &str, metric: &str) -> String {
    format!("pw_{filter}_{metric}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Metrics {
    /// A registry for `workers` workers.
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            workers: workers.max(1),
            inner: Mutex::new(Vec::new()),
        }
    }

    /// `define_metric`: the same name and type gives the same id; a different type is an error.
    pub fn define(&self, filter: &str, kind: MetricType, name: &str) -> Result<u32, MetricError> {
        let full = export_name(filter, name);
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, m)) = all.iter().enumerate().find(|(_, m)| m.name == full) {
            return if m.kind == kind {
                Ok(id as u32 + 1)
            } else {
                Err(MetricError::BadArgument)
            };
        }
        all.push(Metric {
            name: full,
            kind,
            per_worker: vec![0; self.workers],
            gauge: 0,
            bins: vec![BTreeMap::new(); self.workers],
            sums: vec![0; self.workers],
        });
        Ok(all.len() as u32)
    }

    fn with<R>(
        &self,
        id: u32,
        f: impl FnOnce(&mut Metric) -> Result<R, MetricError>,
    ) -> Result<R, MetricError> {
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let idx = (id as usize).checked_sub(1).ok_or(MetricError::NotFound)?;
        all.get_mut(idx).ok_or(MetricError::NotFound).and_then(f)
    }

    /// `increment_metric` (counters and gauges).
    pub fn increment(&self, worker: usize, id: u32, offset: i64) -> Result<(), MetricError> {
        self.with(id, |m| match m.kind {
            MetricType::Counter => {
                if offset < 0 {
                    return Err(MetricError::BadArgument);
                }
                let slot = m
                    .per_worker
                    .get_mut(worker)
                    .ok_or(MetricError::BadArgument)?;
                *slot = slot.saturating_add(offset);
                Ok(())
            }
            MetricType::Gauge => {
                m.gauge = m.gauge.saturating_add(offset);
                Ok(())
            }
            MetricType::Histogram => Err(MetricError::BadArgument),
        })
    }

    /// `record_metric` (gauges: set; histograms: observe).
    pub fn record(&self, worker: usize, id: u32, value: u64) -> Result<(), MetricError> {
        self.with(id, |m| match m.kind {
            MetricType::Counter => Err(MetricError::BadArgument),
            MetricType::Gauge => {
                m.gauge = i64::try_from(value).unwrap_or(i64::MAX);
                Ok(())
            }
            MetricType::Histogram => {
                let bound = value.max(1).checked_next_power_of_two().unwrap_or(u64::MAX);
                let bins = m.bins.get_mut(worker).ok_or(MetricError::BadArgument)?;
                *bins.entry(bound).or_insert(0) += 1;
                if let Some(s) = m.sums.get_mut(worker) {
                    *s = s.saturating_add(value);
                }
                Ok(())
            }
        })
    }

    /// `get_metric`: counters summed over workers, gauges as is; histograms cannot be read.
    pub fn get(&self, id: u32) -> Result<u64, MetricError> {
        self.with(id, |m| match m.kind {
            MetricType::Counter => Ok(m.per_worker.iter().sum::<i64>().max(0) as u64),
            MetricType::Gauge => Ok(m.gauge.max(0) as u64),
            MetricType::Histogram => Err(MetricError::BadArgument),
        })
    }

    /// JSON for `GET /__metrics`.
    pub fn to_json(&self) -> Value {
        let all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Map::new();
        for m in all.iter() {
            let v = match m.kind {
                MetricType::Counter => json!(m.per_worker.iter().sum::<i64>()),
                MetricType::Gauge => json!(m.gauge),
                MetricType::Histogram => {
                    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
                    for bins in &m.bins {
                        for (b, c) in bins {
                            *buckets.entry(*b).or_insert(0) += c;
                        }
                    }
                    let count: u64 = buckets.values().sum();
                    let buckets: Map<String, Value> = buckets
                        .into_iter()
                        .map(|(b, c)| (b.to_string(), json!(c)))
                        .collect();
                    json!({"count": count, "sum": m.sums.iter().sum::<u64>(), "buckets": buckets})
                }
            };
            out.insert(m.name.clone(), v);
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_workers() {
        let m = Metrics::new(2);
        let id = m.define("probe", MetricType::Counter, "hits").unwrap();
        assert_eq!(m.define("probe", MetricType::Counter, "hits").unwrap(), id);
        assert_eq!(
            m.define("probe", MetricType::Gauge, "hits"),
            Err(MetricError::BadArgument)
        );
        m.increment(0, id, 2).unwrap();
        m.increment(1, id, 3).unwrap();
        assert_eq!(m.get(id).unwrap(), 5);
        assert_eq!(m.to_json()["pw_probe_hits"], 5);
        assert_eq!(m.get(99), Err(MetricError::NotFound));
    }
}
