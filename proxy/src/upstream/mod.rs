//! Upstream clusters: compile Envoy `Cluster` messages into live clusters
//! that resolve their endpoints (STATIC, STRICT_DNS, LOGICAL_DNS), pick a
//! host per request with Envoy's load balancers, and carry HTTP requests
//! (pooled HTTP/1.1 or multiplexed HTTP/2) and TCP connections to it, with
//! Envoy's `cluster.<name>.*` stats and `/clusters` admin output.
//!
//! Membership is an immutable snapshot swapped atomically
//! ([`UpstreamCluster::update_hosts`]); [`UpstreamCluster::subscribe`]
//! tells watchers (the kernel datapath, later EDS) when it changed.
//!
//! Error paths from [`ClusterManager::compile`] are relative to the slice
//! of clusters it was given: `[1].connect_timeout: …` is the second
//! cluster's `connect_timeout`. The caller prefixes them, e.g. with
//! `static_resources.clusters`.

mod admin;
mod body;
mod cluster;
mod config;
mod connect;
mod dns;
mod error;
mod host;
mod http1;
pub mod lb;
mod pool;
mod protocol_options;
mod stats;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;

pub use body::UpstreamBody;
pub use cluster::{Membership, ResolvedEndpoint, UpstreamCluster};
pub use config::Discovery;
pub use connect::UpstreamTcpStream;
pub use error::UpstreamError;
pub use host::{Host, HostStats, Locality};
pub use lb::LbPolicy;
pub use pool::UpstreamProtocol;
pub use stats::ClusterStats;

use crate::config::{ConfigError, ConfigErrors};
use crate::fast_hash::FastHashMap;

/// One immutable view of every cluster: bootstrap clusters in
/// configuration order, then CDS clusters in the order they arrived.
#[derive(Debug, Default)]
pub struct ClusterSet {
    clusters: Vec<Arc<UpstreamCluster>>,
    by_name: FastHashMap<String, usize>,
}

impl ClusterSet {
    pub fn get(&self, name: &str) -> Option<&Arc<UpstreamCluster>> {
        self.by_name.get(name).map(|index| &self.clusters[*index])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<UpstreamCluster>> {
        self.clusters.iter()
    }

    fn with(&self, cluster: Arc<UpstreamCluster>) -> ClusterSet {
        let mut clusters = self.clusters.clone();
        match self.by_name.get(cluster.name()) {
            Some(index) => clusters[*index] = cluster,
            None => clusters.push(cluster),
        }
        ClusterSet::from(clusters)
    }

    fn without(&self, name: &str) -> ClusterSet {
        ClusterSet::from(
            self.clusters
                .iter()
                .filter(|cluster| cluster.name() != name)
                .cloned()
                .collect::<Vec<_>>(),
        )
    }
}

impl From<Vec<Arc<UpstreamCluster>>> for ClusterSet {
    fn from(clusters: Vec<Arc<UpstreamCluster>>) -> Self {
        let by_name = clusters
            .iter()
            .enumerate()
            .map(|(index, cluster)| (cluster.name().to_string(), index))
            .collect();
        ClusterSet { clusters, by_name }
    }
}

/// What [`ClusterManager::add_or_update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterChange {
    Added,
    Updated,
}

/// Every cluster, by name. Readers (the request path) take a lock-free
/// snapshot; CDS updates swap in a new set, so a request sees either the
/// old or the new cluster, never a mix.
#[derive(Debug)]
pub struct ClusterManager {
    set: ArcSwap<ClusterSet>,
    store: crate::stats::Store,
    /// Serialises writers (CDS updates); readers never take it.
    writer: Mutex<()>,
    started: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Bumped whenever a cluster is added, replaced or removed.
    changes: watch::Sender<u64>,
}

impl ClusterManager {
    /// Validates and compiles the bootstrap's `clusters`; all problems are
    /// reported at once, with paths relative to the slice (`[0].type: …`).
    /// Registers each cluster's stats in `stats`. Nothing runs until
    /// [`start`](Self::start).
    pub fn compile(
        clusters: &[Cluster],
        stats: &crate::stats::Store,
    ) -> Result<ClusterManager, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut configs = Vec::new();
        let mut names = HashMap::new();
        for (index, cluster) in clusters.iter().enumerate() {
            let prefix = format!("[{index}]");
            match config::compile(cluster) {
                Ok(config) => configs.push(config),
                Err(cluster_errors) => errors.extend_under(&prefix, cluster_errors),
            }
            if !cluster.name.is_empty() && names.insert(cluster.name.clone(), index).is_some() {
                errors.push(ConfigError::new(
                    format!("{prefix}.name"),
                    format!("duplicate cluster name '{}'", cluster.name),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let clusters: Vec<Arc<UpstreamCluster>> = configs
            .into_iter()
            .map(|config| Arc::new(UpstreamCluster::new(config, stats, false)))
            .collect();
        Ok(ClusterManager {
            set: ArcSwap::from_pointee(ClusterSet::from(clusters)),
            store: stats.clone(),
            writer: Mutex::new(()),
            started: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            changes: watch::Sender::new(0),
        })
    }

    /// The cluster named `name` in the current set.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamCluster>> {
        self.set.load().get(name).cloned()
    }

    /// A consistent view of every cluster.
    pub fn snapshot(&self) -> Arc<ClusterSet> {
        self.set.load_full()
    }

    /// Tells when the set of clusters changed (added, replaced, removed).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Adds a cluster from CDS, or replaces the CDS cluster of that name.
    /// Bootstrap clusters cannot be replaced (as in Envoy). A replaced EDS
    /// cluster keeps its hosts until the next assignment; in-flight
    /// requests finish on the old cluster. Error paths are relative to the
    /// Cluster message.
    pub fn add_or_update(&self, cluster: &Cluster) -> Result<ClusterChange, ConfigErrors> {
        let config = config::compile(cluster)?;
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.set.load_full();
        let previous = current.get(&cluster.name).cloned();
        if previous.as_ref().is_some_and(|p| !p.added_via_api()) {
            return Err(ConfigError::new(
                "name",
                format!(
                    "'{}' is a static cluster defined in the bootstrap; CDS cannot replace it",
                    cluster.name
                ),
            )
            .into());
        }
        let fresh = Arc::new(UpstreamCluster::new(config, &self.store, true));
        if let Some(previous) = &previous {
            if fresh.discovery() == Discovery::Eds && previous.discovery() == Discovery::Eds {
                fresh.inherit_hosts(previous);
            }
        }
        if self.started.load(Ordering::Acquire) {
            self.spawn_discovery(&fresh);
        }
        self.set.store(Arc::new(current.with(fresh)));
        self.changes.send_modify(|version| *version += 1);
        Ok(if previous.is_some() {
            ClusterChange::Updated
        } else {
            ClusterChange::Added
        })
    }

    /// Removes a CDS cluster; bootstrap clusters stay. Returns whether one
    /// was removed. Requests already using it finish; its DNS task stops.
    pub fn remove(&self, name: &str) -> bool {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.set.load_full();
        match current.get(name) {
            Some(cluster) if cluster.added_via_api() => {
                self.set.store(Arc::new(current.without(name)));
                self.changes.send_modify(|version| *version += 1);
                true
            }
            _ => false,
        }
    }

    /// Starts DNS resolution (and periodic re-resolution) of DNS clusters
    /// on the current tokio runtime; clusters added later start at once.
    /// STATIC and EDS clusters need nothing. Calling it twice is a no-op.
    pub fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        for cluster in self.set.load().iter() {
            self.spawn_discovery(cluster);
        }
    }

    fn spawn_discovery(&self, cluster: &Arc<UpstreamCluster>) {
        let weak = Arc::downgrade(cluster);
        let task = match cluster.discovery() {
            Discovery::StrictDns | Discovery::LogicalDns => {
                tokio::spawn(cluster::refresh_dns(weak))
            }
            // An EDS cluster warms until its first assignment, or until its
            // `initial_fetch_timeout` passes (then it serves with no hosts).
            Discovery::Eds if !cluster.is_initialized() => {
                let Some(limit) = cluster.eds_initial_fetch_timeout() else {
                    return;
                };
                tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    if let Some(cluster) = weak.upgrade() {
                        if !cluster.is_initialized() {
                            tracing::warn!(target: "sluice::upstream", cluster = %cluster.name(), "no endpoints within initial_fetch_timeout ({limit:?}); the cluster serves without hosts");
                            cluster.mark_initialized();
                        }
                    }
                })
            }
            _ => return,
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    /// Waits until every current cluster finished its first resolution
    /// (Envoy's cluster warming), or `deadline` passes. Returns whether all did.
    pub async fn wait_initialized(&self, deadline: Duration) -> bool {
        let set = self.snapshot();
        let all = async {
            for cluster in set.iter() {
                let mut initialized = cluster.initialized();
                let _ = initialized.wait_for(|done| *done).await;
            }
        };
        tokio::time::timeout(deadline, all).await.is_ok()
    }

    /// `/clusters` in Envoy's text format.
    pub fn render_text(&self) -> String {
        let set = self.snapshot();
        admin::render_text(set.iter().map(|c| c.as_ref()))
    }

    /// `/clusters?format=json` in Envoy's `ClusterStatuses` shape.
    pub fn render_json(&self) -> serde_json::Value {
        let set = self.snapshot();
        admin::render_json(set.iter().map(|c| c.as_ref()))
    }
}

impl Drop for ClusterManager {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}
