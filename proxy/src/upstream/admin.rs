//! `/clusters` of the admin API, in Envoy's text format
//! (`backend::127.0.0.1:8080::cx_active::0`) and JSON shape
//! (`ClusterStatuses`: zero counters omit `value`, uint64 values are
//! strings, gauges carry `"type": "GAUGE"`).
//!
//! Circuit breakers are not configurable yet, so Envoy's default
//! thresholds are reported.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64};

use serde_json::{json, Map, Value};

use super::cluster::UpstreamCluster;
use super::host::{Host, HostStats};

const DEFAULT_THRESHOLDS: [(&str, u64); 4] = [
    ("max_connections", 1024),
    ("max_pending_requests", 1024),
    ("max_requests", 1024),
    ("max_retries", 3),
];

enum HostMetric<'a> {
    Counter(&'a AtomicU64),
    Gauge(&'a AtomicI64),
    /// A gauge Sluice does not track yet (always zero).
    ZeroGauge,
}

/// Envoy's per-host stats in its text order.
fn host_metrics(stats: &HostStats) -> [(&'static str, HostMetric<'_>); 9] {
    [
        ("cx_active", HostMetric::Gauge(&stats.cx_active)),
        (
            "cx_connect_fail",
            HostMetric::Counter(&stats.cx_connect_fail),
        ),
        ("cx_total", HostMetric::Counter(&stats.cx_total)),
        ("rq_active", HostMetric::Gauge(&stats.rq_active)),
        ("rq_error", HostMetric::Counter(&stats.rq_error)),
        ("rq_pending_active", HostMetric::ZeroGauge),
        ("rq_success", HostMetric::Counter(&stats.rq_success)),
        ("rq_timeout", HostMetric::Counter(&stats.rq_timeout)),
        ("rq_total", HostMetric::Counter(&stats.rq_total)),
    ]
}

fn metric_value(metric: &HostMetric<'_>) -> i64 {
    match metric {
        HostMetric::Counter(counter) => HostStats::get(counter) as i64,
        HostMetric::Gauge(gauge) => HostStats::get_gauge(gauge),
        HostMetric::ZeroGauge => 0,
    }
}

pub(crate) fn render_text<'a>(clusters: impl Iterator<Item = &'a UpstreamCluster>) -> String {
    let mut out = String::new();
    for cluster in clusters {
        let name = cluster.name();
        let _ = writeln!(
            out,
            "{name}::observability_name::{}",
            cluster.observability_name()
        );
        for priority in ["default_priority", "high_priority"] {
            for (threshold, value) in DEFAULT_THRESHOLDS {
                let _ = writeln!(out, "{name}::{priority}::{threshold}::{value}");
            }
        }
        let _ = writeln!(out, "{name}::added_via_api::{}", cluster.added_via_api());
        for host in cluster.membership().hosts() {
            render_host_text(&mut out, name, host);
        }
    }
    out
}

fn render_host_text(out: &mut String, cluster: &str, host: &Host) {
    let prefix = format!("{cluster}::{}", host.address());
    for (stat, metric) in host_metrics(host.stats()) {
        let _ = writeln!(out, "{prefix}::{stat}::{}", metric_value(&metric));
    }
    let locality = host.locality();
    let _ = writeln!(out, "{prefix}::hostname::{}", host.hostname());
    let _ = writeln!(out, "{prefix}::health_flags::{}", host.health_flags());
    let _ = writeln!(out, "{prefix}::weight::{}", host.weight());
    let _ = writeln!(out, "{prefix}::region::{}", locality.region);
    let _ = writeln!(out, "{prefix}::zone::{}", locality.zone);
    let _ = writeln!(out, "{prefix}::sub_zone::{}", locality.sub_zone);
    let _ = writeln!(out, "{prefix}::canary::false");
    let _ = writeln!(out, "{prefix}::priority::0");
    let _ = writeln!(out, "{prefix}::success_rate::-1");
    let _ = writeln!(out, "{prefix}::local_origin_success_rate::-1");
}

pub(crate) fn render_json<'a>(clusters: impl Iterator<Item = &'a UpstreamCluster>) -> Value {
    let statuses: Vec<Value> = clusters.map(cluster_json).collect();
    json!({ "cluster_statuses": statuses })
}

fn cluster_json(cluster: &UpstreamCluster) -> Value {
    let thresholds: Map<String, Value> = DEFAULT_THRESHOLDS
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect();
    let mut high = thresholds.clone();
    high.insert("priority".into(), json!("HIGH"));
    let hosts: Vec<Value> = cluster
        .membership()
        .hosts()
        .iter()
        .map(|h| host_json(h))
        .collect();
    let mut status = json!({
        "name": cluster.name(),
        "host_statuses": hosts,
        "circuit_breakers": { "thresholds": [thresholds, high] },
        "observability_name": cluster.observability_name(),
    });
    // Envoy's JSON omits false booleans (proto3 defaults).
    if cluster.added_via_api() {
        status["added_via_api"] = json!(true);
    }
    status
}

fn host_json(host: &Host) -> Value {
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    for (name, metric) in host_metrics(host.stats()) {
        let value = metric_value(&metric);
        let mut entry = Map::new();
        let gauge = !matches!(metric, HostMetric::Counter(_));
        if gauge {
            entry.insert("type".into(), json!("GAUGE"));
        }
        if value != 0 {
            entry.insert("value".into(), json!(value.to_string()));
        }
        entry.insert("name".into(), json!(name));
        if gauge {
            gauges.push(Value::Object(entry));
        } else {
            counters.push(Value::Object(entry));
        }
    }
    counters.extend(gauges);
    let eds_health = if host.eds_healthy() {
        "HEALTHY"
    } else {
        "UNHEALTHY"
    };
    let mut health = json!({ "eds_health_status": eds_health });
    if !host.is_healthy() && host.eds_healthy() {
        health["failed_active_health_check"] = json!(true);
    }
    let mut locality = Map::new();
    let l = host.locality();
    for (key, value) in [
        ("region", &l.region),
        ("zone", &l.zone),
        ("sub_zone", &l.sub_zone),
    ] {
        if !value.is_empty() {
            locality.insert(key.into(), json!(value));
        }
    }
    let mut status = json!({
        "address": { "socket_address": {
            "address": host.address().ip().to_string(),
            "port_value": host.address().port(),
        }},
        "stats": counters,
        "health_status": health,
        "weight": host.weight(),
    });
    if !host.hostname().is_empty() {
        status["hostname"] = json!(host.hostname());
    }
    status["locality"] = Value::Object(locality);
    status
}
