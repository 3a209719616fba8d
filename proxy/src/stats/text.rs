//! `/stats` in Envoy's text and JSON shapes.
//!
//! Text: `name: value` lines for counters and gauges sorted by name, then the
//! histograms sorted by name as `name: P0(interval,cumulative) P25(…) …`, or
//! `name: No recorded values`. Sluice keeps no interval (per-flush) view, so
//! interval values are `nan` (`null` in JSON), which Envoy also prints for an
//! interval without samples.

use serde_json::{json, Value};

use super::params::StatsParams;
use super::quantiles::{cumulative_quantiles, format_double, SUPPORTED_QUANTILES};
use super::{Histogram, Metric, Store};

/// `SUPPORTED_QUANTILES` as the percentages Envoy prints.
const SUPPORTED_PERCENTILES: [f64; 10] =
    [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];

/// Renders `/stats` as text.
pub fn render_text(store: &Store, params: &StatsParams) -> String {
    let metrics = store.snapshot();
    let mut out = String::new();
    for (name, metric) in metrics.iter().filter(|(n, m)| params.selects(n, m)) {
        match metric {
            Metric::Counter(c) => out.push_str(&format!("{name}: {}\n", c.value())),
            Metric::Gauge(g) => out.push_str(&format!("{name}: {}\n", g.value())),
            Metric::Histogram(_) => {}
        }
    }
    for (name, metric) in metrics.iter().filter(|(n, m)| params.selects(n, m)) {
        if let Metric::Histogram(h) = metric {
            out.push_str(&format!("{name}: {}\n", quantile_summary(h)));
        }
    }
    out
}

/// Envoy's one-line histogram summary.
fn quantile_summary(histogram: &Histogram) -> String {
    if !histogram.used() {
        return "No recorded values".to_string();
    }
    SUPPORTED_PERCENTILES
        .iter()
        .zip(cumulative_quantiles(histogram))
        .map(|(percent, cumulative)| {
            format!(
                "P{}(nan,{})",
                format_double(*percent),
                format_double(cumulative)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders `/stats?format=json`: `{"stats":[{"name":…,"value":…},…,
/// {"histograms":{"supported_quantiles":[…],"computed_quantiles":[…]}}]}`.
pub fn render_json(store: &Store, params: &StatsParams) -> Value {
    let metrics = store.snapshot();
    let mut stats: Vec<Value> = Vec::new();
    let mut histograms: Vec<Value> = Vec::new();
    for (name, metric) in metrics.iter().filter(|(n, m)| params.selects(n, m)) {
        match metric {
            Metric::Counter(c) => stats.push(json!({"name": name, "value": c.value()})),
            Metric::Gauge(g) => stats.push(json!({"name": name, "value": g.value()})),
            Metric::Histogram(h) => {
                let values: Vec<Value> = cumulative_quantiles(h)
                    .into_iter()
                    .map(|cumulative| {
                        json!({"cumulative": json_number(cumulative), "interval": Value::Null})
                    })
                    .collect();
                histograms.push(json!({"name": name, "values": values}));
            }
        }
    }
    if !histograms.is_empty() {
        let supported: Vec<Value> = SUPPORTED_PERCENTILES
            .iter()
            .map(|p| json_number(*p))
            .collect();
        stats.push(json!({"histograms": {
            "supported_quantiles": supported,
            "computed_quantiles": histograms,
        }}));
    }
    debug_assert_eq!(SUPPORTED_PERCENTILES.len(), SUPPORTED_QUANTILES.len());
    json!({ "stats": stats })
}

/// A JSON number printed as Envoy prints it: integral values without `.0`,
/// `NaN` as `null`.
fn json_number(value: f64) -> Value {
    if value.is_nan() || value.is_infinite() {
        Value::Null
    } else if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> StatsParams {
        let pairs: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StatsParams::parse(&pairs).unwrap()
    }

    fn sample_store() -> Store {
        let store = Store::new();
        store.counter("cluster.backend.upstream_rq_total").add(5);
        store.gauge("server.live").set(1);
        store.counter("http.ingress_http.downstream_rq_2xx").add(3);
        store
            .histogram("cluster.backend.upstream_rq_time")
            .record(7.0);
        store.histogram("http.ingress_http.downstream_rq_time");
        store
    }

    #[test]
    fn text_lists_counters_and_gauges_sorted_then_histograms() {
        let text = render_text(&sample_store(), &params(&[]));
        let expected = "cluster.backend.upstream_rq_total: 5\n\
             http.ingress_http.downstream_rq_2xx: 3\n\
             server.live: 1\n\
             cluster.backend.upstream_rq_time: P0(nan,7) P25(nan,7) P50(nan,7) P75(nan,7) \
             P90(nan,7) P95(nan,7) P99(nan,7) P99.5(nan,7) P99.9(nan,7) P100(nan,7)\n\
             http.ingress_http.downstream_rq_time: No recorded values\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn text_honours_filter_type_and_usedonly() {
        let store = sample_store();
        assert_eq!(
            render_text(&store, &params(&[("filter", "rq_total")])),
            "cluster.backend.upstream_rq_total: 5\n"
        );
        assert_eq!(
            render_text(&store, &params(&[("type", "Gauges")])),
            "server.live: 1\n"
        );
        let used = render_text(&store, &params(&[("usedonly", ""), ("type", "Histograms")]));
        assert!(used.starts_with("cluster.backend.upstream_rq_time: P0(nan,7)"));
        assert!(!used.contains("downstream_rq_time"));
    }

    #[test]
    fn json_has_envoys_shape() {
        let value = render_json(&sample_store(), &params(&[]));
        let stats = value["stats"].as_array().unwrap();
        assert_eq!(
            stats[0],
            json!({"name": "cluster.backend.upstream_rq_total", "value": 5})
        );
        assert_eq!(stats[2], json!({"name": "server.live", "value": 1}));
        let histograms = &stats[3]["histograms"];
        assert_eq!(
            histograms["supported_quantiles"],
            json!([0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100])
        );
        let computed = histograms["computed_quantiles"].as_array().unwrap();
        assert_eq!(computed[0]["name"], "cluster.backend.upstream_rq_time");
        assert_eq!(
            computed[0]["values"][0],
            json!({"cumulative": 7, "interval": null})
        );
        assert_eq!(computed[1]["values"][0]["cumulative"], Value::Null);
        assert_eq!(stats.len(), 4);
    }

    #[test]
    fn json_omits_histograms_object_when_none_selected() {
        let value = render_json(&sample_store(), &params(&[("type", "Counters")]));
        assert_eq!(value["stats"].as_array().unwrap().len(), 2);
    }
}
