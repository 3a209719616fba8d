//! `http.<stat_prefix>.*` stats of one connection manager, resolved once at
//! compile time so requests only touch atomics.

use crate::stats::{Counter, Gauge, Histogram, Store};

#[derive(Debug, Clone)]
pub struct HttpStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub downstream_cx_http1_total: Counter,
    pub downstream_cx_http2_total: Counter,
    pub downstream_cx_http1_active: Gauge,
    pub downstream_cx_http2_active: Gauge,
    pub downstream_cx_idle_timeout: Counter,
    pub downstream_cx_max_duration_reached: Counter,
    pub downstream_cx_drain_close: Counter,
    pub downstream_rq_total: Counter,
    pub downstream_rq_http1_total: Counter,
    pub downstream_rq_http2_total: Counter,
    pub downstream_rq_active: Gauge,
    pub downstream_rq_timeout: Counter,
    pub downstream_rq_idle_timeout: Counter,
    pub downstream_rq_max_duration_reached: Counter,
    pub downstream_rq_completed: Counter,
    /// Indexed by status class: 1xx..5xx at [0..5].
    pub downstream_rq_class: [Counter; 5],
    pub downstream_rq_time: Histogram,
    pub downstream_cx_rx_bytes_total: Counter,
    pub downstream_cx_tx_bytes_total: Counter,
    pub no_route: Counter,
    pub no_cluster: Counter,
    pub rq_redirect: Counter,
    pub rq_direct_response: Counter,
}

impl HttpStats {
    pub fn new(store: &Store, prefix: &str) -> Self {
        let counter = |stat: &str| store.counter(&format!("http.{prefix}.{stat}"));
        let gauge = |stat: &str| store.gauge(&format!("http.{prefix}.{stat}"));
        HttpStats {
            downstream_cx_total: counter("downstream_cx_total"),
            downstream_cx_active: gauge("downstream_cx_active"),
            downstream_cx_http1_total: counter("downstream_cx_http1_total"),
            downstream_cx_http2_total: counter("downstream_cx_http2_total"),
            downstream_cx_http1_active: gauge("downstream_cx_http1_active"),
            downstream_cx_http2_active: gauge("downstream_cx_http2_active"),
            downstream_cx_idle_timeout: counter("downstream_cx_idle_timeout"),
            downstream_cx_max_duration_reached: counter("downstream_cx_max_duration_reached"),
            downstream_cx_drain_close: counter("downstream_cx_drain_close"),
            downstream_rq_total: counter("downstream_rq_total"),
            downstream_rq_http1_total: counter("downstream_rq_http1_total"),
            downstream_rq_http2_total: counter("downstream_rq_http2_total"),
            downstream_rq_active: gauge("downstream_rq_active"),
            downstream_rq_timeout: counter("downstream_rq_timeout"),
            downstream_rq_idle_timeout: counter("downstream_rq_idle_timeout"),
            downstream_rq_max_duration_reached: counter("downstream_rq_max_duration_reached"),
            downstream_rq_completed: counter("downstream_rq_completed"),
            downstream_rq_class: [
                counter("downstream_rq_1xx"),
                counter("downstream_rq_2xx"),
                counter("downstream_rq_3xx"),
                counter("downstream_rq_4xx"),
                counter("downstream_rq_5xx"),
            ],
            downstream_rq_time: store.histogram(&format!("http.{prefix}.downstream_rq_time")),
            downstream_cx_rx_bytes_total: counter("downstream_cx_rx_bytes_total"),
            downstream_cx_tx_bytes_total: counter("downstream_cx_tx_bytes_total"),
            no_route: counter("no_route"),
            no_cluster: counter("no_cluster"),
            rq_redirect: counter("rq_redirect"),
            rq_direct_response: counter("rq_direct_response"),
        }
    }

    /// Counts a finished response by its status class.
    pub fn record_status(&self, status: u16) {
        let class = (status / 100) as usize;
        if (1..=5).contains(&class) {
            self.downstream_rq_class[class - 1].inc();
        }
    }
}
