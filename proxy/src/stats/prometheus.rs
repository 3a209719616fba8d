//! `/stats/prometheus`: every stat, tag-extracted ([`super::tags`]) into an
//! `envoy_`-prefixed metric name with labels, rendered in the Prometheus text
//! format by the `prometheus` crate's `TextEncoder`. Families come in Envoy's
//! order: counters, then gauges, then histograms, each sorted by name.
//! Histograms use Envoy's bucket bounds with cumulative counts, `+Inf`,
//! `_sum` and `_count`.

use std::collections::{BTreeMap, HashMap};

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use super::params::StatsParams;
use super::tags::extract_tags;
use super::{Metric, Store, DEFAULT_BUCKETS};

/// Renders the selected stats in the Prometheus text exposition format.
pub fn render_prometheus(store: &Store, params: &StatsParams) -> String {
    // Keyed by (type order, metric name) so the output is in Envoy's order.
    let mut families: BTreeMap<(u8, String), MetricFamily> = BTreeMap::new();
    let mut kinds: HashMap<String, u8> = HashMap::new();
    for (stat_name, metric) in store.snapshot() {
        if !params.selects(&stat_name, &metric) {
            continue;
        }
        let extraction = extract_tags(&stat_name);
        let name = format!("envoy_{}", sanitize(&extraction.name));
        let (kind, metric_type) = match metric {
            Metric::Counter(_) => (0, MetricType::COUNTER),
            Metric::Gauge(_) => (1, MetricType::GAUGE),
            Metric::Histogram(_) => (2, MetricType::HISTOGRAM),
        };
        // One name, one type: a later stat of another type under the same
        // extracted name would make the exposition invalid, so it is left out.
        if *kinds.entry(name.clone()).or_insert(kind) != kind {
            tracing::debug!(stat = %stat_name, "prometheus: metric name reused with another type");
            continue;
        }
        let mut sample = proto::Metric::default();
        sample.set_label(
            extraction
                .tags
                .iter()
                .map(|(tag, value)| {
                    let mut pair = proto::LabelPair::default();
                    pair.set_name(sanitize(tag));
                    pair.set_value(value.clone());
                    pair
                })
                .collect(),
        );
        match &metric {
            Metric::Counter(c) => {
                let mut counter = proto::Counter::default();
                counter.set_value(c.value() as f64);
                sample.set_counter(counter);
            }
            Metric::Gauge(g) => {
                let mut gauge = proto::Gauge::default();
                gauge.set_value(g.value() as f64);
                sample.set_gauge(gauge);
            }
            Metric::Histogram(h) => {
                let mut histogram = proto::Histogram::default();
                let mut cumulative = 0u64;
                let buckets = DEFAULT_BUCKETS
                    .iter()
                    .zip(h.bucket_counts())
                    .map(|(bound, count)| {
                        cumulative += count;
                        let mut bucket = proto::Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(cumulative);
                        bucket
                    })
                    .collect();
                histogram.set_bucket(buckets);
                histogram.set_sample_count(h.count());
                histogram.set_sample_sum(h.sum());
                sample.set_histogram(histogram);
            }
        }
        families
            .entry((kind, name.clone()))
            .or_insert_with(|| {
                let mut family = MetricFamily::default();
                family.set_name(name);
                family.set_field_type(metric_type);
                family
            })
            .mut_metric()
            .push(sample);
    }
    let families: Vec<MetricFamily> = families.into_values().collect();
    let mut out = Vec::new();
    // Families are never empty and always named, the encoder's only errors.
    if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
        tracing::error!(%error, "prometheus encoding failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Envoy's Prometheus name sanitizer: anything outside `[a-zA-Z0-9_]`
/// becomes `_`, and a leading digit gets a `_` in front.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(store: &Store) -> String {
        render_prometheus(store, &StatsParams::default())
    }

    fn sample_store() -> Store {
        let store = Store::new();
        store.counter("cluster.backend.upstream_rq_total").add(5);
        store.counter("cluster.other.upstream_rq_total").add(2);
        store.counter("cluster.backend.upstream_rq_200").add(4);
        store.counter("http.ingress_http.downstream_rq_2xx").add(3);
        store
            .counter("listener.0.0.0.0_10000.downstream_cx_total")
            .inc();
        store.counter("tcp.ingress_tcp.downstream_cx_total").add(6);
        store.gauge("server.live").set(1);
        let h = store.histogram("cluster.backend.upstream_rq_time");
        h.record(0.3);
        h.record(7.0);
        h.record(7.0);
        store
    }

    #[test]
    fn renders_envoys_names_labels_and_types() {
        let text = render(&sample_store());
        for line in [
            "# TYPE envoy_cluster_upstream_rq_total counter",
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 5",
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"other\"} 2",
            "envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend\"} 4",
            "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress_http\"} 3",
            "envoy_listener_downstream_cx_total{envoy_listener_address=\"0.0.0.0_10000\"} 1",
            "envoy_tcp_downstream_cx_total{envoy_tcp_prefix=\"ingress_tcp\"} 6",
            "# TYPE envoy_server_live gauge",
            "envoy_server_live 1",
            "# TYPE envoy_cluster_upstream_rq_time histogram",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"0.5\"} 1",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"5\"} 1",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"10\"} 3",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"3600000\"} 3",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"+Inf\"} 3",
            "envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"backend\"} 14.3",
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"backend\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Counters first, then gauges, then histograms.
        let position = |needle: &str| text.find(needle).unwrap();
        assert!(position("# TYPE envoy_tcp_") < position("# TYPE envoy_server_live"));
        assert!(
            position("# TYPE envoy_server_live")
                < position("# TYPE envoy_cluster_upstream_rq_time")
        );
        assert!(!text.contains("# HELP"));
    }

    #[test]
    fn output_parses_with_a_prometheus_parser() {
        let text = render(&sample_store());
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        let rq = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "envoy_cluster_upstream_rq"
                    && s.labels.get("envoy_response_code") == Some("200")
            })
            .expect("upstream_rq sample");
        assert_eq!(rq.labels.get("envoy_cluster_name"), Some("backend"));
        assert!(matches!(rq.value, prometheus_parse::Value::Counter(v) if v == 4.0));
        let histogram = scrape
            .samples
            .iter()
            .find(|s| s.metric == "envoy_cluster_upstream_rq_time")
            .expect("histogram sample");
        match &histogram.value {
            prometheus_parse::Value::Histogram(buckets) => {
                assert_eq!(buckets.len(), DEFAULT_BUCKETS.len() + 1);
                assert_eq!(buckets.last().unwrap().count, 3.0);
            }
            other => panic!("not a histogram: {other:?}"),
        }
        assert!(scrape
            .samples
            .iter()
            .any(|s| s.metric == "envoy_server_live"
                && matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0)));
    }

    #[test]
    fn filter_and_usedonly_apply() {
        let store = sample_store();
        store.counter("cluster.idle.upstream_cx_total");
        let pairs = vec![
            ("filter".to_string(), "^cluster\\.".to_string()),
            ("usedonly".to_string(), String::new()),
        ];
        let text = render_prometheus(&store, &StatsParams::parse(&pairs).unwrap());
        assert!(!text.contains("server_live"));
        assert!(!text.contains("upstream_cx_total"));
        assert!(text.contains("envoy_cluster_upstream_rq_total"));
        assert_eq!(
            render_prometheus(&Store::new(), &StatsParams::default()),
            ""
        );
    }

    #[test]
    fn sanitizes_names_like_envoy() {
        assert_eq!(sanitize("envoy.cluster_name"), "envoy_cluster_name");
        assert_eq!(sanitize("a-b:c"), "a_b_c");
        assert_eq!(sanitize("9lives"), "_9lives");
        let store = Store::new();
        store.counter("cluster.my-svc.upstream_rq_total").inc();
        store.counter("custom.weird-name").inc();
        let text = render(&store);
        assert!(text.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"my-svc\"} 1"));
        assert!(text.contains("envoy_custom_weird_name 1"));
    }
}
