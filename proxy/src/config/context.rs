//! What compile steps need from the rest of the proxy: the stats store to
//! resolve stat handles in, the clusters routes and tcp_proxy refer to, the
//! shared access-log writers, and the RDS route configurations.

use std::sync::Arc;

use crate::access_log::AccessLogWriters;
use crate::http::rds::RouteConfigRegistry;
use crate::stats::Store;
use crate::upstream::ClusterManager;

#[derive(Clone)]
pub struct CompileContext {
    pub store: Store,
    pub clusters: Arc<ClusterManager>,
    pub log_writers: AccessLogWriters,
    /// Route configurations from RDS, by name.
    pub routes: Arc<RouteConfigRegistry>,
}

#[cfg(test)]
impl CompileContext {
    /// A context with one STATIC cluster `backend` (127.0.0.1:1), for unit
    /// tests of compile steps that reference clusters.
    pub fn with_backend_cluster() -> CompileContext {
        let store = Store::new();
        let cluster = crate::config::parse_message(
            "name: backend\nload_assignment: {cluster_name: backend, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}",
        )
        .expect("test cluster parses");
        CompileContext {
            clusters: Arc::new(
                ClusterManager::compile(&[cluster], &store).expect("test cluster compiles"),
            ),
            log_writers: AccessLogWriters::new(&store),
            routes: Arc::default(),
            store,
        }
    }
}
