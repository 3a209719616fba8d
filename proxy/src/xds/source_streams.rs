//! The EDS and RDS sources of their own: one gRPC stream per distinct
//! `api_config_source` (and type) that clusters and listeners name, and one
//! watch per `path_config_source` file, started when the first user appears
//! and stopped when the last one goes, as the sink's
//! [`ResourceSink::api_sources`] says after every change.
//!
//! Each stream is an ordinary [`run_xds_stream`] (SotW or delta, ACK/NACK,
//! backoff, resume) whose subscriptions are the names that use its source;
//! each file an ordinary [`run_file_sources`] poll.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::oneshot;

use super::config::{api_stream_config, FileSource};
use super::file_source::run_file_sources;
use super::resource::{type_urls, ResourceSink};
use super::source::SourceId;
use super::stats::XdsStats;
use super::{run_xds_stream, StreamConfig};
use crate::stats::Store;

type StreamKey = (&'static str, SourceId);

/// The running EDS/RDS streams of their own.
pub struct SourceStreams {
    bootstrap: Arc<Bootstrap>,
    node: Node,
    sink: Arc<dyn ResourceSink>,
    store: Store,
    /// Running stream → its stop signal.
    running: Mutex<BTreeMap<StreamKey, oneshot::Sender<()>>>,
}

impl SourceStreams {
    pub fn new(
        bootstrap: Arc<Bootstrap>,
        node: Node,
        sink: Arc<dyn ResourceSink>,
        store: Store,
    ) -> Arc<SourceStreams> {
        Arc::new(SourceStreams {
            bootstrap,
            node,
            sink,
            store,
            running: Mutex::new(BTreeMap::new()),
        })
    }

    /// Starts the streams of sources newly in use and stops those no longer
    /// used. Must run inside a tokio runtime.
    pub fn reconcile(&self) {
        let wanted = self.sink.api_sources();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|key, _| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(
                    "xDS: {} stream ({}) no longer used; stopping it",
                    type_urls::short(key.0),
                    key.1.describe()
                );
            }
            keep // dropping the sender stops the stream
        });
        for key in wanted {
            if running.contains_key(&key) {
                continue;
            }
            if let SourceId::File(path) = &key.1 {
                running.insert(key.clone(), self.start_file(key.0, path.clone()));
                continue;
            }
            let config = match self.stream_config(&key) {
                Ok(config) => config,
                Err(error) => {
                    tracing::error!(
                        "xDS: cannot start a {} stream: {error}",
                        type_urls::short(key.0)
                    );
                    continue;
                }
            };
            let (stop, stopped) = oneshot::channel();
            let stats = XdsStats::for_service(&self.store, config.service);
            let (node, sink) = (self.node.clone(), self.sink.clone());
            tracing::info!(
                server = %config.uri,
                "xDS: starting a {} stream of its own ({})",
                type_urls::short(key.0),
                key.1.describe()
            );
            tokio::spawn(async move {
                run_xds_stream(config, node, sink, stats, async {
                    let _ = stopped.await;
                })
                .await;
            });
            running.insert(key, stop);
        }
    }

    /// Polls the EDS/RDS file `path` until stopped.
    fn start_file(&self, type_url: &'static str, path: std::path::PathBuf) -> oneshot::Sender<()> {
        tracing::info!(
            "xDS: watching {} for {} resources",
            path.display(),
            type_urls::short(type_url)
        );
        let (stop, stopped) = oneshot::channel();
        let (sink, store) = (self.sink.clone(), self.store.clone());
        tokio::spawn(async move {
            let files = vec![FileSource { type_url, path }];
            run_file_sources(files, sink, &store, async {
                let _ = stopped.await;
            })
            .await;
        });
        stop
    }

    /// The sources with a running stream.
    pub fn running(&self) -> BTreeSet<StreamKey> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn stream_config(&self, (type_url, source): &StreamKey) -> Result<StreamConfig, String> {
        let path = match *type_url {
            type_urls::ENDPOINT => "eds_cluster_config.eds_config.api_config_source",
            _ => "rds.config_source.api_config_source",
        };
        api_stream_config(&self.bootstrap, source, type_url, path)
            .ok_or_else(|| format!("{} is not a stream of its own", source.describe()))?
            .map_err(|e| e.to_string())
    }

    /// Reconciles now and after every subscription change, until the sink
    /// stops announcing changes.
    pub async fn run(self: Arc<Self>) {
        let Some(mut changes) = self.sink.subscription_changes() else {
            self.reconcile();
            return;
        };
        loop {
            self.reconcile();
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use envoy_types::pb::envoy::config::core::v3::ConfigSource;

    use super::*;
    use crate::config::parse_message;
    use crate::xds::{Resource, Subscription};

    /// A sink whose sources of their own are set by the test.
    #[derive(Default)]
    struct Sources(Mutex<BTreeSet<StreamKey>>);

    impl ResourceSink for Sources {
        fn apply(
            &self,
            _: &str,
            _: Vec<Resource>,
            _: Vec<String>,
            _: bool,
        ) -> Vec<(String, String)> {
            Vec::new()
        }
        fn subscriptions(&self, _: &str) -> Subscription {
            Subscription::Names(BTreeSet::new())
        }
        fn api_sources(&self) -> BTreeSet<StreamKey> {
            self.0.lock().unwrap().clone()
        }
    }

    fn api(cluster: &str) -> SourceId {
        let source = parse_message::<ConfigSource>(&format!(
            "api_config_source: {{api_type: GRPC, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: {cluster}}}}}]}}"
        ))
        .unwrap();
        crate::xds::source::subscription_source(Some(&source), "x").unwrap()
    }

    #[tokio::test]
    async fn one_stream_per_source_in_use_started_and_stopped_as_users_come_and_go() {
        // The control plane's port is closed: the streams only retry.
        let bootstrap = parse_message::<Bootstrap>(
            "static_resources: {clusters: [{name: xds, load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}}]}",
        )
        .unwrap();
        let sink = Arc::new(Sources::default());
        let store = Store::new();
        let streams = SourceStreams::new(
            Arc::new(bootstrap),
            Node::default(),
            sink.clone(),
            store.clone(),
        );
        let eds = (type_urls::ENDPOINT, api("xds"));
        let rds = (type_urls::ROUTE, api("xds"));
        let unknown = (type_urls::ENDPOINT, api("nope"));
        *sink.0.lock().unwrap() = BTreeSet::from([eds.clone(), rds.clone(), unknown]);
        streams.reconcile();
        assert_eq!(
            streams.running(),
            BTreeSet::from([eds.clone(), rds.clone()]),
            "a source naming no static cluster gets no stream"
        );
        *sink.0.lock().unwrap() = BTreeSet::from([rds.clone()]);
        streams.reconcile();
        assert_eq!(streams.running(), BTreeSet::from([rds]));
        sink.0.lock().unwrap().clear();
        streams.reconcile();
        assert!(streams.running().is_empty());
    }
}
