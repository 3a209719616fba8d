//! What compile steps need from the rest of the proxy: the stats store to
//! resolve stat handles in, the clusters routes and tcp_proxy refer to, and
//! the shared access-log writers.

use std::sync::Arc;

use crate::access_log::AccessLogWriters;
use crate::stats::Store;
use crate::upstream::ClusterManager;

#[derive(Clone)]
pub struct CompileContext {
    pub store: Store,
    pub clusters: Arc<ClusterManager>,
    pub log_writers: AccessLogWriters,
}
