//! The compiled, immutable configuration the proxy serves from: clusters,
//! listeners and the admin endpoint, built from one bootstrap by the same
//! compile steps xDS resources will go through.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;

use crate::access_log::{AccessLogWriters, AccessLogs};
use crate::config::context::CompileContext;
use crate::config::{ConfigError, ConfigErrors};
use crate::listener::{self, ListenerConfig};
use crate::stats::Store;
use crate::upstream::ClusterManager;

pub struct Snapshot {
    pub bootstrap: Bootstrap,
    pub clusters: Arc<ClusterManager>,
    /// The bootstrap's listeners, handed to the listener manager at start.
    pub listeners: Vec<ListenerConfig>,
    /// What later (xDS) compiles need: stats, clusters, log writers.
    pub context: CompileContext,
    /// xDS sources from `dynamic_resources`, if any.
    pub dynamic_sources: Option<crate::xds::config::DynamicSources>,
    pub admin_address: Option<SocketAddr>,
    pub admin_access_logs: Option<AccessLogs>,
}

impl Snapshot {
    /// Compiles a (parsed, schema-valid) bootstrap, reporting every problem
    /// with its path from the bootstrap root.
    pub fn compile(bootstrap: Bootstrap, store: &Store) -> Result<Snapshot, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        // Borrowed, not cloned: 10,000 clusters are ~40 MiB of prost structs.
        let no_resources = Default::default();
        let resources = bootstrap.static_resources.as_ref().unwrap_or(&no_resources);

        let log_writers = AccessLogWriters::new(store);
        let clusters = match ClusterManager::compile(&resources.clusters, store) {
            Ok(clusters) => Arc::new(clusters),
            Err(e) => {
                errors.extend_under("static_resources.clusters", e);
                return Err(errors);
            }
        };

        let context = CompileContext {
            store: store.clone(),
            clusters: clusters.clone(),
            log_writers,
            routes: Arc::default(),
        };
        let mut listeners: Vec<ListenerConfig> = Vec::new();
        for (i, proto) in resources.listeners.iter().enumerate() {
            let path = format!("static_resources.listeners[{i}]");
            match ListenerConfig::compile(proto, &context) {
                Ok(listener) => {
                    if listeners.iter().any(|l| l.name == listener.name) {
                        errors.push(ConfigError::new(
                            format!("{path}.name"),
                            format!("duplicate listener name '{}'", listener.name),
                        ));
                    } else if listener.bind_to_port
                        && listeners
                            .iter()
                            .any(|l| l.bind_to_port && l.address == listener.address)
                    {
                        errors.push(ConfigError::new(
                            format!("{path}.address"),
                            format!(
                                "listener '{}' has the same address {} as another listener",
                                listener.name, listener.address
                            ),
                        ));
                    }
                    listeners.push(listener);
                }
                Err(e) => errors.extend_under(&path, e),
            }
        }

        let mut admin_address = None;
        let mut admin_access_logs = None;
        if let Some(admin) = &bootstrap.admin {
            match admin.address.as_ref().map(listener::socket_address_of) {
                Some(Ok(address)) => admin_address = Some(address),
                Some(Err(e)) => errors.push(e.under("admin.address")),
                None => {}
            }
            match AccessLogs::compile(&admin.access_log, &context.log_writers) {
                Ok(logs) => admin_access_logs = Some(logs),
                Err(e) => errors.extend_under("admin.access_log", e),
            }
        }

        let dynamic_sources = match crate::xds::config::dynamic_sources(&bootstrap) {
            Ok(sources) if !sources.is_empty() => Some(sources),
            Ok(_) => None,
            Err(e) => {
                errors.0.extend(e.0);
                None
            }
        };
        errors
            .0
            .extend(super::subscriptions::check_bootstrap(&bootstrap).0);
        errors.into_result(Snapshot {
            dynamic_sources,
            bootstrap,
            clusters,
            listeners,
            context,
            admin_address,
            admin_access_logs,
        })
    }
}
