//! `envoy.filters.network.tcp_proxy`: connect each downstream connection to
//! a host of one cluster and move bytes both ways, with half-close and an
//! idle timeout, counting `tcp.<stat_prefix>.*` stats and writing access logs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy as TcpProxyProto,
};
use tokio::net::TcpStream;

use super::relay::{relay_both, ByteCounts};
use crate::access_log::AccessLogs;
use crate::activity::Activity;
use crate::config::context::CompileContext;
use crate::config::proto::timeout_or;
use crate::config::{ConfigError, ConfigErrors};
use crate::stats::{Counter, Store};
use crate::stream_info::{ResponseFlag, StreamInfo};
use crate::upstream::ClusterManager;

/// Envoy's default `idle_timeout` for tcp_proxy: one hour.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// `tcp.<stat_prefix>.*`
#[derive(Debug, Clone)]
struct TcpStats {
    downstream_cx_total: Counter,
    downstream_cx_no_route: Counter,
    downstream_cx_rx_bytes_total: Counter,
    downstream_cx_tx_bytes_total: Counter,
    idle_timeout: Counter,
}

impl TcpStats {
    fn new(store: &Store, prefix: &str) -> Self {
        let name = |stat: &str| format!("tcp.{prefix}.{stat}");
        TcpStats {
            downstream_cx_total: store.counter(&name("downstream_cx_total")),
            downstream_cx_no_route: store.counter(&name("downstream_cx_no_route")),
            downstream_cx_rx_bytes_total: store.counter(&name("downstream_cx_rx_bytes_total")),
            downstream_cx_tx_bytes_total: store.counter(&name("downstream_cx_tx_bytes_total")),
            idle_timeout: store.counter(&name("idle_timeout")),
        }
    }
}

/// A compiled tcp_proxy filter.
pub struct TcpProxy {
    cluster: String,
    idle_timeout: Option<Duration>,
    max_connect_attempts: u32,
    access_logs: AccessLogs,
    clusters: Arc<ClusterManager>,
    stats: TcpStats,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("cluster", &self.cluster)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl TcpProxy {
    /// Compiles the filter; error paths are relative to the TcpProxy message.
    pub fn compile(
        config: &TcpProxyProto,
        context: &CompileContext,
    ) -> Result<TcpProxy, ConfigErrors> {
        let clusters = context.clusters.clone();
        let store = &context.store;
        let mut errors = ConfigErrors::default();
        if config.stat_prefix.is_empty() {
            errors.push(ConfigError::new("stat_prefix", "must not be empty"));
        }
        let cluster = match &config.cluster_specifier {
            Some(ClusterSpecifier::Cluster(name)) if !name.is_empty() => name.clone(),
            Some(ClusterSpecifier::WeightedClusters(_)) => {
                errors.push(ConfigError::new(
                    "weighted_clusters",
                    "field 'weighted_clusters' of envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy is not supported by Sluice",
                ));
                String::new()
            }
            _ => {
                errors.push(ConfigError::new("cluster", "a cluster is required"));
                String::new()
            }
        };
        if !cluster.is_empty() && clusters.get(&cluster).is_none() {
            // Envoy accepts this (the cluster may arrive later, e.g. by CDS)
            // and closes each connection while it is missing
            // (`downstream_cx_no_route`, flag `NC`); so does Sluice.
            tracing::warn!(target: "sluice::tcp", %cluster, "tcp_proxy cluster is not defined; its connections will be closed");
        }
        let access_logs = match AccessLogs::compile(&config.access_log, &context.log_writers) {
            Ok(logs) => Some(logs),
            Err(e) => {
                errors.extend_under("access_log", e);
                None
            }
        };
        let max_connect_attempts = config
            .max_connect_attempts
            .as_ref()
            .map(|v| v.value)
            .unwrap_or(1);
        if max_connect_attempts == 0 {
            errors.push(ConfigError::new(
                "max_connect_attempts",
                "must be at least 1",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TcpProxy {
            cluster,
            idle_timeout: timeout_or(&config.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT)),
            max_connect_attempts,
            access_logs: access_logs.expect("checked above"),
            clusters,
            stats: TcpStats::new(store, &config.stat_prefix),
        })
    }

    /// The cluster this filter sends connections to.
    pub fn cluster_name(&self) -> &str {
        &self.cluster
    }

    /// Proxies one accepted connection until both directions are done,
    /// the idle timeout fires, or the upstream cannot be reached.
    pub async fn serve(&self, downstream: TcpStream, remote: SocketAddr, local: SocketAddr) {
        let mut info = StreamInfo::new(Some(remote), Some(local));
        self.stats.downstream_cx_total.inc();
        let Some(cluster) = self.clusters.get(&self.cluster).filter(|c| c.is_warm()) else {
            self.stats.downstream_cx_no_route.inc();
            info.add_flag(ResponseFlag::NoClusterFound);
            self.finish(info);
            return;
        };
        info.upstream_cluster = Some(Arc::from(self.cluster.as_str()));

        let mut attempts = 0;
        let upstream = loop {
            attempts += 1;
            let Some(host) = cluster.choose_host(None) else {
                info.add_flag(ResponseFlag::NoHealthyUpstream);
                self.finish(info);
                return;
            };
            info.upstream_host = Some(host.address());
            match cluster.connect_tcp(&host).await {
                Ok(stream) => break stream,
                Err(error) => {
                    if attempts >= self.max_connect_attempts {
                        info.add_flag(error.response_flag());
                        info.upstream_transport_failure_reason =
                            Some(error.transport_failure_reason());
                        tracing::debug!(target: "sluice::tcp", cluster = %self.cluster, %error, "upstream connect failed");
                        self.finish(info);
                        return;
                    }
                }
            }
        };

        let activity = Activity::default();
        activity.touch();
        let counts = ByteCounts::default();
        {
            let relay = relay_both(&downstream, upstream.get_ref(), &activity, &counts);
            tokio::pin!(relay);
            loop {
                let wait = match self.idle_timeout {
                    Some(idle) => idle.saturating_sub(activity.idle_for()),
                    None => Duration::from_secs(86400),
                };
                tokio::select! {
                    result = &mut relay => {
                        if result.is_err() {
                            info.add_flag(ResponseFlag::UpstreamConnectionTermination);
                        }
                        break;
                    }
                    _ = tokio::time::sleep(wait) => {
                        if let Some(idle) = self.idle_timeout {
                            if activity.idle_for() >= idle {
                                self.stats.idle_timeout.inc();
                                break;
                            }
                        }
                    }
                }
            }
        }
        let received = counts.downstream_rx.load(Ordering::Relaxed);
        let sent = counts.downstream_tx.load(Ordering::Relaxed);
        info.bytes_received = received;
        info.bytes_sent = sent;
        self.stats.downstream_cx_rx_bytes_total.add(received);
        self.stats.downstream_cx_tx_bytes_total.add(sent);
        self.finish(info);
    }

    fn finish(&self, mut info: StreamInfo) {
        info.duration = Some(info.start_instant.elapsed());
        self.access_logs.log(&info);
    }
}
