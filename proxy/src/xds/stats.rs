//! xDS stats under Envoy's names.
//!
//! - `control_plane.connected_state` (gauge, 1 while the stream is up),
//!   `control_plane.rate_limit_enforced` (counter) and
//!   `control_plane.pending_requests` (gauge, see [`super::rate_limit`]):
//!   per gRPC stream, under the scope of what subscribes on it, as Envoy
//!   names them (checked against Envoy 1.40 with several muxes): the ADS
//!   stream at the root (`control_plane.*`), a CDS or LDS stream of its own
//!   under `cluster_manager.cds.` / `listener_manager.lds.`, and an EDS or
//!   RDS stream of its own under each resource using it
//!   (`cluster.<name>.control_plane.*`,
//!   `http.<stat_prefix>.rds.<route_config>.control_plane.*`). So the root
//!   gauge is ADS's alone; a separate EDS control plane that dies shows in
//!   `cluster.<name>.control_plane.connected_state`.
//! - Per subscription, with Envoy's subscription stat names
//!   (`update_attempt`, `update_success`, `update_rejected`, `update_failure`,
//!   `version` — the xxHash64 of the last accepted `version_info`):
//!   `cluster_manager.cds.*` and `listener_manager.lds.*` per type, and per
//!   resource for EDS (`cluster.<name>.*`) and RDS
//!   (`http.<stat_prefix>.rds.<name>.*`), whose prefixes the sink supplies.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::stats::Store;

use super::services::DiscoveryService;

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

/// Where one stream's `control_plane.*` stats go.
struct ControlPlaneScope {
    /// Fixed prefixes (ADS: the root; CDS/LDS of their own: their scope).
    fixed: Vec<String>,
    /// EDS/RDS of their own: the prefixes of the resources subscribed.
    per_resource: bool,
    resources: Mutex<BTreeSet<String>>,
    connected: AtomicBool,
}

/// Stats recording for the xDS client (one per stream, [`XdsStats::for_service`]).
#[derive(Clone)]
pub struct XdsStats {
    store: Store,
    scope: Arc<ControlPlaneScope>,
}

impl XdsStats {
    /// The stats of the ADS stream (`control_plane.*` at the root).
    pub fn new(store: &Store) -> XdsStats {
        XdsStats::for_service(store, DiscoveryService::Aggregated)
    }

    /// The stats of a stream on `service`: ADS at the root, CDS/LDS under
    /// their managers' scope, EDS/RDS under each resource subscribed.
    pub fn for_service(store: &Store, service: DiscoveryService) -> XdsStats {
        let fixed = match service {
            DiscoveryService::Aggregated => vec![String::new()],
            DiscoveryService::Clusters => vec!["cluster_manager.cds.".to_string()],
            DiscoveryService::Listeners => vec!["listener_manager.lds.".to_string()],
            DiscoveryService::Endpoints | DiscoveryService::Routes => Vec::new(),
        };
        XdsStats {
            store: store.clone(),
            scope: Arc::new(ControlPlaneScope {
                per_resource: fixed.is_empty(),
                fixed,
                resources: Mutex::new(BTreeSet::new()),
                connected: AtomicBool::new(false),
            }),
        }
    }

    /// The store the stats are recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn scopes(&self) -> Vec<String> {
        let resources = self
            .scope
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.scope
            .fixed
            .iter()
            .chain(resources.iter())
            .cloned()
            .collect()
    }

    /// `control_plane.connected_state` of this stream.
    pub fn set_connected(&self, connected: bool) {
        self.scope.connected.store(connected, Ordering::Relaxed);
        for scope in self.scopes() {
            self.store
                .gauge(&format!("{scope}control_plane.connected_state"))
                .set(i64::from(connected));
        }
    }

    /// A resource subscribed on this stream, whose stats live under
    /// `prefix`: an EDS/RDS stream of its own reports its `control_plane.*`
    /// there too.
    pub fn resource_subscribed(&self, prefix: &str) {
        if !self.scope.per_resource {
            return;
        }
        let new = self
            .scope
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prefix.to_string());
        if new {
            let connected = self.scope.connected.load(Ordering::Relaxed);
            self.store
                .gauge(&format!("{prefix}control_plane.connected_state"))
                .set(i64::from(connected));
        }
    }

    /// `control_plane.rate_limit_enforced`: a request had to wait.
    pub fn rate_limit_enforced(&self) {
        for scope in self.scopes() {
            self.store
                .counter(&format!("{scope}control_plane.rate_limit_enforced"))
                .inc();
        }
    }

    /// `control_plane.pending_requests` changes by `delta`.
    pub fn pending_requests(&self, delta: i64) {
        for scope in self.scopes() {
            self.store
                .gauge(&format!("{scope}control_plane.pending_requests"))
                .add(delta);
        }
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
            stats.resource_subscribed(&prefix);
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
    fn control_plane_stats_are_per_stream_under_envoys_scopes() {
        let store = Store::new();
        let gauge = |name: &str| store.gauge(name).value();
        let ads = XdsStats::new(&store);
        let cds = XdsStats::for_service(&store, DiscoveryService::Clusters);
        let eds = XdsStats::for_service(&store, DiscoveryService::Endpoints);
        ads.set_connected(true);
        cds.set_connected(true);
        eds.resource_subscribed("cluster.a.");
        eds.set_connected(true);
        eds.resource_subscribed("cluster.b.");
        assert_eq!(gauge("control_plane.connected_state"), 1);
        assert_eq!(
            gauge("cluster_manager.cds.control_plane.connected_state"),
            1
        );
        assert_eq!(gauge("cluster.a.control_plane.connected_state"), 1);
        assert_eq!(
            gauge("cluster.b.control_plane.connected_state"),
            1,
            "joins connected"
        );
        eds.set_connected(false);
        assert_eq!(gauge("cluster.a.control_plane.connected_state"), 0);
        assert_eq!(gauge("cluster.b.control_plane.connected_state"), 0);
        assert_eq!(gauge("control_plane.connected_state"), 1, "ADS is its own");
        ads.resource_subscribed("cluster.c.");
        assert!(
            !store
                .gauge("cluster.c.control_plane.connected_state")
                .used(),
            "ADS reports at the root only"
        );
        eds.rate_limit_enforced();
        eds.pending_requests(2);
        assert_eq!(
            store
                .counter("cluster.a.control_plane.rate_limit_enforced")
                .value(),
            1
        );
        assert_eq!(gauge("cluster.b.control_plane.pending_requests"), 2);
        assert_eq!(
            store.counter("control_plane.rate_limit_enforced").value(),
            0
        );
    }
}
