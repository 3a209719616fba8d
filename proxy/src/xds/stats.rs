//! xDS stats under Envoy's names.
//!
//! - `control_plane.connected_state` (gauge): 1 while the ADS stream is up.
//!   Per-type streams (LDS/CDS with their own `api_config_source`) write
//!   the same gauge, so with several streams it shows the state of the one
//!   that last connected or broke.
//! - Per subscription, with Envoy's subscription stat names
//!   (`update_attempt`, `update_success`, `update_rejected`, `update_failure`,
//!   `version` — the xxHash64 of the last accepted `version_info`):
//!   `cluster_manager.cds.*` and `listener_manager.lds.*` per type, and per
//!   resource for EDS (`cluster.<name>.*`) and RDS
//!   (`http.<stat_prefix>.rds.<name>.*`), whose prefixes the sink supplies.

use std::collections::BTreeSet;

use crate::stats::{Gauge, Store};

use super::resource::{type_urls, ResourceSink, Subscription};

/// The prefix of a type's own subscription stats, if Envoy keeps them per type.
pub fn type_prefix(type_url: &str) -> Option<&'static str> {
    match type_url {
        type_urls::CLUSTER => Some("cluster_manager.cds."),
        type_urls::LISTENER => Some("listener_manager.lds."),
        _ => None,
    }
}

/// Envoy's `version` gauge: the xxHash64 of `version_info` (as a u64; the
/// store's gauges are i64, so the bits are kept as they are).
pub fn version_hash(version_info: &str) -> i64 {
    xxhash_rust::xxh64::xxh64(version_info.as_bytes(), 0) as i64
}

/// What happened to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateEvent {
    /// A request went out or a response arrived.
    Attempt,
    /// A response was accepted whole, at this version.
    Success,
    /// A response was rejected (NACKed), in whole or in part.
    Rejected,
    /// The stream failed.
    Failure,
}

/// Stats recording for the xDS client.
#[derive(Clone)]
pub struct XdsStats {
    store: Store,
    connected_state: Gauge,
}

impl XdsStats {
    pub fn new(store: &Store) -> XdsStats {
        XdsStats {
            store: store.clone(),
            connected_state: store.gauge("control_plane.connected_state"),
        }
    }

    /// `control_plane.connected_state`.
    pub fn set_connected(&self, connected: bool) {
        self.connected_state.set(i64::from(connected));
    }

    /// Records `event` under `prefix` (which ends in `.`); on success also
    /// sets the `version` gauge.
    pub fn record(&self, prefix: &str, event: UpdateEvent, version_info: Option<&str>) {
        let name = match event {
            UpdateEvent::Attempt => "update_attempt",
            UpdateEvent::Success => "update_success",
            UpdateEvent::Rejected => "update_rejected",
            UpdateEvent::Failure => "update_failure",
        };
        self.store.counter(&format!("{prefix}{name}")).inc();
        if event == UpdateEvent::Success {
            if let Some(version) = version_info {
                self.store
                    .gauge(&format!("{prefix}version"))
                    .set(version_hash(version));
            }
        }
    }

    /// Records `event` for a type's own subscription, if it has one.
    pub fn record_type(&self, type_url: &str, event: UpdateEvent, version_info: Option<&str>) {
        if let Some(prefix) = type_prefix(type_url) {
            self.record(prefix, event, version_info);
        }
    }
}

/// Per-resource subscriptions (EDS, RDS) that start: Envoy counts one
/// `update_attempt` when each starts. `tracked` holds the names already
/// started and is updated to `wanted` (a name dropped and added again
/// starts anew, as Envoy creates a new subscription for it).
pub fn record_started_subscriptions(
    stats: &XdsStats,
    sink: &dyn ResourceSink,
    type_url: &str,
    tracked: &mut BTreeSet<String>,
    wanted: &Subscription,
) {
    let names = wanted.name_set();
    for name in names.difference(tracked) {
        if let Some(prefix) = sink.resource_stats_prefix(type_url, name) {
            stats.record(&prefix, UpdateEvent::Attempt, None);
        }
    }
    *tracked = names;
}

/// A stream failed: as Envoy reports a connection failure to every
/// subscription, each type that was ever requested and each started
/// per-resource subscription counts `update_failure` and `update_attempt`.
pub fn record_stream_failure(
    stats: &XdsStats,
    sink: &dyn ResourceSink,
    type_url: &str,
    requested: bool,
    started: &BTreeSet<String>,
) {
    if requested {
        stats.record_type(type_url, UpdateEvent::Failure, None);
        stats.record_type(type_url, UpdateEvent::Attempt, None);
    }
    for name in started {
        if let Some(prefix) = sink.resource_stats_prefix(type_url, name) {
            stats.record(&prefix, UpdateEvent::Failure, None);
            stats.record(&prefix, UpdateEvent::Attempt, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_under_envoy_names() {
        let store = Store::new();
        let stats = XdsStats::new(&store);
        stats.set_connected(true);
        stats.record_type(type_urls::CLUSTER, UpdateEvent::Attempt, None);
        stats.record_type(type_urls::CLUSTER, UpdateEvent::Success, Some("v1"));
        stats.record_type(type_urls::LISTENER, UpdateEvent::Rejected, None);
        stats.record_type(type_urls::ENDPOINT, UpdateEvent::Success, Some("x"));
        stats.record("cluster.backend.", UpdateEvent::Success, Some("7"));
        assert_eq!(store.gauge("control_plane.connected_state").value(), 1);
        assert_eq!(
            store.counter("cluster_manager.cds.update_attempt").value(),
            1
        );
        assert_eq!(
            store.counter("cluster_manager.cds.update_success").value(),
            1
        );
        assert_eq!(
            store.gauge("cluster_manager.cds.version").value(),
            version_hash("v1")
        );
        assert_eq!(
            store
                .counter("listener_manager.lds.update_rejected")
                .value(),
            1
        );
        assert_eq!(store.counter("cluster.backend.update_success").value(), 1);
        // Envoy's documented example: the hash of "" is xxh64 seed 0.
        assert_eq!(version_hash(""), 0xef46db3751d8e999_u64 as i64);
    }
}
