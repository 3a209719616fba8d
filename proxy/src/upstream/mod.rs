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
pub mod lb;
mod pool;
mod protocol_options;
mod stats;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Every configured cluster, by name, in configuration order.
#[derive(Debug)]
pub struct ClusterManager {
    clusters: Vec<Arc<UpstreamCluster>>,
    by_name: HashMap<String, usize>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ClusterManager {
    /// Validates and compiles `clusters`; all problems are reported at once,
    /// with paths relative to the slice (`[0].type: …`). Registers each
    /// cluster's stats in `stats`. Nothing runs until [`start`](Self::start).
    pub fn compile(
        clusters: &[Cluster],
        stats: &crate::stats::Store,
    ) -> Result<ClusterManager, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut configs = Vec::new();
        let mut by_name = HashMap::new();
        for (index, cluster) in clusters.iter().enumerate() {
            let prefix = format!("[{index}]");
            match config::compile(cluster) {
                Ok(config) => configs.push(config),
                Err(cluster_errors) => errors.extend_under(&prefix, cluster_errors),
            }
            if !cluster.name.is_empty() && by_name.insert(cluster.name.clone(), index).is_some() {
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
            .map(|config| Arc::new(UpstreamCluster::new(config, stats)))
            .collect();
        Ok(ClusterManager {
            clusters,
            by_name,
            tasks: Mutex::new(Vec::new()),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<UpstreamCluster>> {
        self.by_name.get(name).map(|index| &self.clusters[*index])
    }

    /// Clusters in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<UpstreamCluster>> {
        self.clusters.iter()
    }

    /// Starts DNS resolution (and periodic re-resolution) of DNS clusters
    /// on the current tokio runtime. STATIC clusters need nothing. The
    /// tasks stop when the manager is dropped. Calling it twice is a no-op.
    pub fn start(&self) {
        let mut tasks = self.tasks.lock().unwrap();
        if !tasks.is_empty() {
            return;
        }
        for cluster in &self.clusters {
            if cluster.discovery() != Discovery::Static {
                let weak = Arc::downgrade(cluster);
                tasks.push(tokio::spawn(cluster::refresh_dns(weak)));
            }
        }
    }

    /// Waits until every cluster finished its first resolution (Envoy's
    /// cluster warming), or `deadline` passes. Returns whether all did.
    pub async fn wait_initialized(&self, deadline: Duration) -> bool {
        let all = async {
            for cluster in &self.clusters {
                let mut initialized = cluster.initialized();
                let _ = initialized.wait_for(|done| *done).await;
            }
        };
        tokio::time::timeout(deadline, all).await.is_ok()
    }

    /// `/clusters` in Envoy's text format.
    pub fn render_text(&self) -> String {
        admin::render_text(self.clusters.iter().map(|c| c.as_ref()))
    }

    /// `/clusters?format=json` in Envoy's `ClusterStatuses` shape.
    pub fn render_json(&self) -> serde_json::Value {
        admin::render_json(self.clusters.iter().map(|c| c.as_ref()))
    }
}

impl Drop for ClusterManager {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
