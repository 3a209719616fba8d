//! Stats: counters, gauges and histograms under Envoy's stat names
//! (`cluster.<name>.upstream_rq_total`, `http.<prefix>.downstream_rq_2xx`, …).
//!
//! Registration (name lookup) happens when configuration is compiled; the
//! request path only touches the returned handles, which are lock-free
//! atomics. Rendering for the admin API lives in submodules.

mod params;
mod prometheus;
mod quantiles;
mod tags;
mod text;

pub use params::{StatsFormat, StatsParams, StatsType};
pub use prometheus::render_prometheus;
pub use quantiles::{format_double, SUPPORTED_QUANTILES};
pub use tags::{extract_tags, TagExtraction};
pub use text::{render_json, render_text};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<CounterCell>);

#[derive(Debug, Default)]
pub struct CounterCell {
    value: AtomicU64,
    /// Set by the first write, like Envoy's "used" flag (`/stats?usedonly`).
    used: AtomicBool,
}

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.value.fetch_add(n, Ordering::Relaxed);
        mark_used(&self.0.used);
    }
    pub fn value(&self) -> u64 {
        self.0.value.load(Ordering::Relaxed)
    }
    /// Whether anything was ever added (even zero), as Envoy tracks it.
    pub fn used(&self) -> bool {
        self.0.used.load(Ordering::Relaxed)
    }
}

/// Sets a "used" flag without dirtying the cache line on every write.
#[inline]
fn mark_used(flag: &AtomicBool) {
    if !flag.load(Ordering::Relaxed) {
        flag.store(true, Ordering::Relaxed);
    }
}

/// A value that goes up and down (active connections, membership, …).
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<GaugeCell>);

#[derive(Debug, Default)]
pub struct GaugeCell {
    value: AtomicI64,
    used: AtomicBool,
}

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    #[inline]
    pub fn dec(&self) {
        self.sub(1);
    }
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.value.fetch_add(n, Ordering::Relaxed);
        mark_used(&self.0.used);
    }
    #[inline]
    pub fn sub(&self, n: i64) {
        self.0.value.fetch_sub(n, Ordering::Relaxed);
        mark_used(&self.0.used);
    }
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.value.store(v, Ordering::Relaxed);
        mark_used(&self.0.used);
    }
    pub fn value(&self) -> i64 {
        self.0.value.load(Ordering::Relaxed)
    }
    /// Whether the gauge was ever written (even to zero), as Envoy tracks it.
    pub fn used(&self) -> bool {
        self.0.used.load(Ordering::Relaxed)
    }
}

/// Envoy's default histogram bucket bounds (milliseconds for time histograms).
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// A distribution of recorded values with Envoy's default buckets.
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug, Default)]
pub struct HistogramCells {
    /// `buckets[i]` counts values `<= DEFAULT_BUCKETS[i]`, non-cumulatively;
    /// the last cell counts values above every bound.
    buckets: [AtomicU64; DEFAULT_BUCKETS.len() + 1],
    count: AtomicU64,
    /// Sum of recorded values, in thousandths (fixed point).
    sum_milli: AtomicU64,
    /// Largest recorded value, in thousandths.
    max_milli: AtomicU64,
    /// `u64::MAX - smallest recorded value` in thousandths, so that the
    /// zero default means "nothing recorded" and `fetch_max` tracks the min.
    min_milli_inverted: AtomicU64,
}

impl Histogram {
    pub fn record(&self, value: f64) {
        let cells = &self.0;
        let index = DEFAULT_BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(DEFAULT_BUCKETS.len());
        cells.buckets[index].fetch_add(1, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
        let milli = (value.max(0.0) * 1000.0) as u64;
        cells.sum_milli.fetch_add(milli, Ordering::Relaxed);
        cells.max_milli.fetch_max(milli, Ordering::Relaxed);
        cells
            .min_milli_inverted
            .fetch_max(u64::MAX - milli, Ordering::Relaxed);
    }

    /// Whether any value was recorded (Envoy's "used").
    pub fn used(&self) -> bool {
        self.count() > 0
    }

    /// Smallest and largest recorded values, if any were recorded.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        let inverted = self.0.min_milli_inverted.load(Ordering::Relaxed);
        if inverted == 0 {
            return None;
        }
        let min = (u64::MAX - inverted) as f64 / 1000.0;
        let max = self.0.max_milli.load(Ordering::Relaxed) as f64 / 1000.0;
        Some((min, max.max(min)))
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        self.0.sum_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Non-cumulative per-bucket counts; the last entry is the overflow bucket.
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.0
            .buckets
            .iter()
            .map(|cell| cell.load(Ordering::Relaxed))
            .collect()
    }
}

/// One registered stat.
#[derive(Debug, Clone)]
pub enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Metric {
    /// Whether the stat was ever written, for `usedonly`.
    pub fn used(&self) -> bool {
        match self {
            Metric::Counter(c) => c.used(),
            Metric::Gauge(g) => g.used(),
            Metric::Histogram(h) => h.used(),
        }
    }
}

/// The registry of every stat, by full Envoy name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Store {
    metrics: Arc<Mutex<BTreeMap<String, Metric>>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter named `name`, created at zero on first use.
    pub fn counter(&self, name: &str) -> Counter {
        let mut metrics = self.metrics.lock().unwrap();
        match metrics.get(name) {
            Some(Metric::Counter(c)) => c.clone(),
            _ => {
                let c = Counter::default();
                metrics.insert(name.to_string(), Metric::Counter(c.clone()));
                c
            }
        }
    }

    /// The gauge named `name`, created at zero on first use.
    pub fn gauge(&self, name: &str) -> Gauge {
        let mut metrics = self.metrics.lock().unwrap();
        match metrics.get(name) {
            Some(Metric::Gauge(g)) => g.clone(),
            _ => {
                let g = Gauge::default();
                metrics.insert(name.to_string(), Metric::Gauge(g.clone()));
                g
            }
        }
    }

    /// The histogram named `name`, created empty on first use.
    pub fn histogram(&self, name: &str) -> Histogram {
        let mut metrics = self.metrics.lock().unwrap();
        match metrics.get(name) {
            Some(Metric::Histogram(h)) => h.clone(),
            _ => {
                let h = Histogram::default();
                metrics.insert(name.to_string(), Metric::Histogram(h.clone()));
                h
            }
        }
    }

    /// A point-in-time copy of every (name, metric) pair, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, Metric)> {
        let metrics = self.metrics.lock().unwrap();
        metrics
            .iter()
            .map(|(name, metric)| (name.clone(), metric.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_one_value_per_name() {
        let store = Store::new();
        store.counter("cluster.a.upstream_rq_total").inc();
        store.counter("cluster.a.upstream_rq_total").add(2);
        assert_eq!(store.counter("cluster.a.upstream_rq_total").value(), 3);
        let g = store.gauge("server.live");
        g.set(1);
        assert_eq!(store.gauge("server.live").value(), 1);
    }

    #[test]
    fn histogram_buckets_values() {
        let h = Histogram::default();
        h.record(0.2);
        h.record(7.0);
        h.record(1e9);
        let buckets = h.bucket_counts();
        assert_eq!(buckets[0], 1);
        assert_eq!(buckets[3], 1);
        assert_eq!(*buckets.last().unwrap(), 1);
        assert_eq!(h.count(), 3);
    }
}
