//! xDS stats under Envoy's names.
//!
//! - `control_plane.connected_state` (gauge): 1 while the control plane is
//!   connected. Envoy has one such gauge in the root scope for every gRPC
//!   mux (ADS, and each `api_config_source` stream), all writing it, so
//!   with several streams it shows whichever wrote last. Sluice keeps the
//!   same single name and makes it deterministic: 1 only while every
//!   running gRPC stream is connected, 0 as soon as one is not (a separate
//!   EDS/RDS control plane that dies shows, and the gauge returns to 1 when
//!   it is back). The streams of one [`XdsStats`] (and its
//!   [`XdsStats::stream`] clones) share the gauge.
//! - `control_plane.rate_limit_enforced` / `control_plane.pending_requests`:
//!   see [`super::rate_limit`].
//! - Per subscription, with Envoy's subscription stat names
//!   (`update_attempt`, `update_success`, `update_rejected`, `update_failure`,
//!   `version` — the xxHash64 of the last accepted `version_info`):
//!   `cluster_manager.cds.*` and `listener_manager.lds.*` per type, and per
//!   resource for EDS (`cluster.<name>.*`) and RDS
//!   (`http.<stat_prefix>.rds.<name>.*`), whose prefixes the sink supplies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// The connection state of every running gRPC stream, behind
/// `control_plane.connected_state`.
struct ConnectedStreams {
    gauge: Gauge,
    /// Stream id → connected.
    streams: Mutex<BTreeMap<u64, bool>>,
    next_id: AtomicU64,
}

impl ConnectedStreams {
    fn set(&self, id: u64, connected: Option<bool>) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        match connected {
            Some(connected) => {
                streams.insert(id, connected);
            }
            None => {
                streams.remove(&id);
            }
        }
        let all = !streams.is_empty() && streams.values().all(|c| *c);
        self.gauge.set(i64::from(all));
    }
}

/// Stats recording for the xDS client (one per stream: see [`XdsStats::stream`]).
#[derive(Clone)]
pub struct XdsStats {
    store: Store,
    connected: Arc<ConnectedStreams>,
    stream_id: u64,
}

impl XdsStats {
    pub fn new(store: &Store) -> XdsStats {
        let connected = Arc::new(ConnectedStreams {
            gauge: store.gauge("control_plane.connected_state"),
            streams: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        });
        XdsStats {
            store: store.clone(),
            connected,
            stream_id: 0,
        }
    }

    /// The stats of another stream: same store, its own connection state
    /// in the shared `control_plane.connected_state`.
    pub fn stream(&self) -> XdsStats {
        XdsStats {
            store: self.store.clone(),
            connected: self.connected.clone(),
            stream_id: self.connected.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The store the stats are recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This stream's state in `control_plane.connected_state`.
    pub fn set_connected(&self, connected: bool) {
        self.connected.set(self.stream_id, Some(connected));
    }

    /// This stream stopped for good (its source is no longer used): it no
    /// longer counts in `control_plane.connected_state`.
    pub fn stream_stopped(&self) {
        self.connected.set(self.stream_id, None);
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

    #[test]
    fn connected_state_is_one_only_while_every_stream_is_connected() {
        let store = Store::new();
        let gauge = || store.gauge("control_plane.connected_state").value();
        let ads = XdsStats::new(&store).stream();
        let eds = ads.stream();
        ads.set_connected(true);
        assert_eq!(gauge(), 1);
        eds.set_connected(false);
        assert_eq!(gauge(), 0, "a separate EDS stream down shows");
        eds.set_connected(true);
        assert_eq!(gauge(), 1);
        eds.set_connected(false);
        eds.stream_stopped();
        assert_eq!(gauge(), 1, "a stream no longer used does not count");
        ads.set_connected(false);
        assert_eq!(gauge(), 0);
    }
}
