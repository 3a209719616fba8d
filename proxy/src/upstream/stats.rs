//! Cluster stats under Envoy's names (`cluster.<name>.upstream_rq_total`, …),
//! resolved from the store once at compile time. Per-status-code counters
//! (`upstream_rq_200`) are created on first use, as Envoy does, and cached
//! so later responses touch only an atomic.

use std::sync::OnceLock;

use crate::stats::{Counter, Gauge, Histogram, Store};

/// Handles to every stat of one cluster.
#[derive(Debug)]
pub struct ClusterStats {
    pub upstream_cx_total: Counter,
    pub upstream_cx_active: Gauge,
    pub upstream_cx_http1_total: Counter,
    pub upstream_cx_http2_total: Counter,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_connect_timeout: Counter,
    pub upstream_cx_destroy: Counter,
    pub upstream_cx_idle_timeout: Counter,
    pub upstream_cx_max_requests: Counter,
    pub upstream_cx_none_healthy: Counter,
    pub upstream_rq_total: Counter,
    pub upstream_rq_active: Gauge,
    pub upstream_rq_completed: Counter,
    /// Incremented by the router when an upstream request times out.
    pub upstream_rq_timeout: Counter,
    /// Incremented by the router when it retries.
    pub upstream_rq_retry: Counter,
    pub upstream_rq_time: Histogram,
    pub membership_healthy: Gauge,
    pub membership_degraded: Gauge,
    pub membership_total: Gauge,
    pub membership_change: Counter,
    pub lb_healthy_panic: Counter,
    /// DNS clusters: resolutions attempted, succeeded, failed.
    pub update_attempt: Counter,
    pub update_success: Counter,
    pub update_failure: Counter,
    /// `upstream_rq_1xx` … `upstream_rq_5xx`.
    by_class: [Counter; 5],
    /// `upstream_rq_<code>` for codes 100..=599, created on first use; the
    /// table itself (500 slots, ~8 KiB) only once the cluster sees its
    /// first response, so 10,000 idle clusters do not hold 80 MiB of it.
    by_code: OnceLock<Box<[OnceLock<Counter>]>>,
    store: Store,
    prefix: String,
}

impl ClusterStats {
    /// Registers the stats of cluster `name` (Envoy uses `alt_stat_name`
    /// when set; the caller passes whichever applies).
    pub fn new(store: &Store, name: &str) -> ClusterStats {
        let prefix = format!("cluster.{name}.");
        let counter = |stat: &str| store.counter(&format!("{prefix}{stat}"));
        let gauge = |stat: &str| store.gauge(&format!("{prefix}{stat}"));
        ClusterStats {
            upstream_cx_total: counter("upstream_cx_total"),
            upstream_cx_active: gauge("upstream_cx_active"),
            upstream_cx_http1_total: counter("upstream_cx_http1_total"),
            upstream_cx_http2_total: counter("upstream_cx_http2_total"),
            upstream_cx_connect_fail: counter("upstream_cx_connect_fail"),
            upstream_cx_connect_timeout: counter("upstream_cx_connect_timeout"),
            upstream_cx_destroy: counter("upstream_cx_destroy"),
            upstream_cx_idle_timeout: counter("upstream_cx_idle_timeout"),
            upstream_cx_max_requests: counter("upstream_cx_max_requests"),
            upstream_cx_none_healthy: counter("upstream_cx_none_healthy"),
            upstream_rq_total: counter("upstream_rq_total"),
            upstream_rq_active: gauge("upstream_rq_active"),
            upstream_rq_completed: counter("upstream_rq_completed"),
            upstream_rq_timeout: counter("upstream_rq_timeout"),
            upstream_rq_retry: counter("upstream_rq_retry"),
            upstream_rq_time: store.histogram(&format!("{prefix}upstream_rq_time")),
            membership_healthy: gauge("membership_healthy"),
            membership_degraded: gauge("membership_degraded"),
            membership_total: gauge("membership_total"),
            membership_change: counter("membership_change"),
            lb_healthy_panic: counter("lb_healthy_panic"),
            update_attempt: counter("update_attempt"),
            update_success: counter("update_success"),
            update_failure: counter("update_failure"),
            by_class: std::array::from_fn(|i| counter(&format!("upstream_rq_{}xx", i + 1))),
            by_code: OnceLock::new(),
            store: store.clone(),
            prefix,
        }
    }

    /// Counts one upstream response: `upstream_rq_<class>xx`,
    /// `upstream_rq_<code>` and `upstream_rq_completed`.
    pub fn record_response(&self, status: u16) {
        self.upstream_rq_completed.inc();
        if !(100..600).contains(&status) {
            return;
        }
        self.by_class[(status / 100 - 1) as usize].inc();
        self.by_code
            .get_or_init(|| (100..600).map(|_| OnceLock::new()).collect())[(status - 100) as usize]
            .get_or_init(|| {
                self.store
                    .counter(&format!("{}upstream_rq_{status}", self.prefix))
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_count_by_class_and_code() {
        let store = Store::new();
        let stats = ClusterStats::new(&store, "backend");
        stats.record_response(200);
        stats.record_response(204);
        stats.record_response(503);
        let value = |name: &str| store.counter(name).value();
        assert_eq!(value("cluster.backend.upstream_rq_2xx"), 2);
        assert_eq!(value("cluster.backend.upstream_rq_200"), 1);
        assert_eq!(value("cluster.backend.upstream_rq_204"), 1);
        assert_eq!(value("cluster.backend.upstream_rq_5xx"), 1);
        assert_eq!(value("cluster.backend.upstream_rq_503"), 1);
        assert_eq!(value("cluster.backend.upstream_rq_completed"), 3);
        assert!(!store
            .snapshot()
            .iter()
            .any(|(name, _)| name == "cluster.backend.upstream_rq_404"));
    }
}
