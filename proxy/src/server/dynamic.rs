//! Resources from xDS, applied to the running server with the same
//! validation and compile steps as the bootstrap: CDS clusters into the
//! cluster manager, EDS assignments into their clusters, RDS route
//! configurations into the route registry, LDS listeners into the listener
//! manager (warming until their routes arrive). Each resource is accepted
//! or rejected on its own; rejected ones keep their previous version and
//! are reported back (the client NACKs naming them).
//!
//! It also remembers what it applied (version, time) and the last error per
//! resource, for `/config_dump`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use prost::Message;
use tokio::sync::watch;

use crate::config::context::CompileContext;
use crate::config::eds_validate::validate_load_assignment;
use crate::config::{validate_message, ConfigErrors};
use crate::listener::{ListenerConfig, ListenerManager};
use crate::xds::{type_urls, Resource, ResourceSink, SourceId, Subscription};

use super::subscriptions::{rds_fetch_timeouts, WARMING_TIMEOUT};

/// One applied resource, as `/config_dump` shows it.
#[derive(Debug, Clone)]
pub struct Applied<T> {
    pub resource: T,
    pub version: String,
    pub last_updated: SystemTime,
}

/// The last rejection of one resource (`error_state` in `/config_dump`).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub details: String,
    pub version: String,
    pub last_update_attempt: SystemTime,
}

/// Everything xDS delivered that is in force (or warming).
#[derive(Debug, Default)]
pub struct DynamicState {
    pub clusters: BTreeMap<String, Applied<Cluster>>,
    pub endpoints: BTreeMap<String, Applied<ClusterLoadAssignment>>,
    pub route_configs: BTreeMap<String, Applied<RouteConfiguration>>,
    pub listeners: BTreeMap<String, Applied<Listener>>,
    pub warming_listeners: BTreeMap<String, Applied<Listener>>,
    /// Keyed by (type URL, resource name).
    pub errors: BTreeMap<(String, String), Rejected>,
    /// Version of the last accepted response per type URL.
    pub versions: BTreeMap<String, String>,
}

pub struct DynamicResources {
    context: CompileContext,
    listeners: Arc<ListenerManager>,
    /// Bootstrap listeners, which LDS may not replace.
    static_listeners: Vec<String>,
    /// The bootstrap: an EDS cluster or RDS listener whose source cannot
    /// deliver (`ads: {}` without `ads_config`, an `api_config_source`
    /// naming no static cluster) is rejected (it would never get its
    /// endpoints or routes).
    bootstrap: Arc<Bootstrap>,
    /// Ticks when the EDS/RDS names wanted (by source) changed: after a
    /// cluster or listener update, or when a draining listener finally lets
    /// go of its routes ([`DynamicResources::recheck_subscriptions`]).
    subscription_changes: watch::Sender<u64>,
    /// What was wanted at the last tick.
    wanted: Mutex<BTreeSet<(&'static str, SourceId, String)>>,
    state: Mutex<DynamicState>,
    /// Becomes true once the first listener and cluster updates applied.
    initial_fetch: watch::Sender<(bool, bool)>,
    myself: Weak<DynamicResources>,
}

impl DynamicResources {
    pub fn new(
        context: CompileContext,
        listeners: Arc<ListenerManager>,
        static_listeners: Vec<String>,
        bootstrap: Arc<Bootstrap>,
    ) -> Arc<DynamicResources> {
        Arc::new_cyclic(|myself| DynamicResources {
            context,
            listeners,
            static_listeners,
            bootstrap,
            subscription_changes: watch::Sender::new(0),
            wanted: Mutex::new(BTreeSet::new()),
            state: Mutex::new(DynamicState::default()),
            initial_fetch: watch::Sender::new((false, false)),
            myself: myself.clone(),
        })
    }

    /// Runs `f` on the current state (for `/config_dump`).
    pub fn with_state<R>(&self, f: impl FnOnce(&DynamicState) -> R) -> R {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until the first CDS and LDS responses were applied (the ones
    /// the server subscribes to), or `limit` passes (`None`: no limit, as
    /// Envoy's `initial_fetch_timeout: 0s`).
    pub async fn wait_initial_fetch(&self, cds: bool, lds: bool, limit: Option<Duration>) {
        let mut done = self.initial_fetch.subscribe();
        let fetched =
            done.wait_for(|(clusters, listeners)| (*clusters || !cds) && (*listeners || !lds));
        match limit {
            Some(limit) => {
                let _ = tokio::time::timeout(limit, fetched).await;
            }
            None => {
                let _ = fetched.await;
            }
        }
    }

    /// Ticks `subscription_changes` if the EDS/RDS names wanted changed
    /// since the last tick. Runs after every cluster or listener update and
    /// periodically (a removed listener keeps its routes while it drains).
    pub fn recheck_subscriptions(&self) {
        let wanted = super::subscriptions::wanted(&self.context);
        let mut last = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        if *last != wanted {
            *last = wanted;
            self.subscription_changes.send_modify(|n| *n += 1);
        }
    }

    fn apply_clusters(
        &self,
        updated: Vec<Resource>,
        removed: Vec<String>,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for resource in updated {
            let result = decode_valid::<Cluster>(&resource).and_then(|cluster| {
                if cluster.name != resource.name {
                    return Err(format!(
                        "resource name '{}' differs from the cluster's name '{}'",
                        resource.name, cluster.name
                    ));
                }
                if let Some(error) =
                    super::subscriptions::cluster_source_error(&self.bootstrap, &cluster)
                {
                    return Err(error);
                }
                let unchanged = self.with_state(|s| {
                    s.clusters
                        .get(&cluster.name)
                        .is_some_and(|applied| applied.resource == cluster)
                });
                if !unchanged {
                    self.context
                        .clusters
                        .add_or_update(&cluster)
                        .map_err(|e| e.to_string())?;
                    self.reapply_endpoints(&cluster);
                }
                Ok(cluster)
            });
            self.record(
                type_urls::CLUSTER,
                &resource,
                result,
                &mut errors,
                |state, applied| {
                    state
                        .clusters
                        .insert(applied.resource.name.clone(), applied);
                },
            );
        }
        for name in removed {
            if self.context.clusters.remove(&name) {
                tracing::info!(target: "sluice::upstream", cluster = %name, "cluster removed by CDS");
            }
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.clusters.remove(&name);
            state.errors.remove(&(type_urls::CLUSTER.to_string(), name));
        }
        self.initial_fetch
            .send_modify(|(clusters, _)| *clusters = true);
        errors
    }

    /// A (re)added EDS cluster takes the assignment already received.
    fn reapply_endpoints(&self, cluster: &Cluster) {
        let Some(live) = self.context.clusters.get(&cluster.name) else {
            return;
        };
        let Some(service) = live.eds_service_name() else {
            return;
        };
        let known = self.with_state(|s| s.endpoints.get(service).map(|a| a.resource.clone()));
        if let Some(assignment) = known {
            if let Err(error) = live.apply_load_assignment(&assignment) {
                tracing::warn!(target: "sluice::upstream", cluster = %cluster.name, %error, "stored assignment no longer applies");
            }
        }
    }

    fn apply_endpoints(
        &self,
        updated: Vec<Resource>,
        removed: Vec<String>,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for resource in updated {
            let result = decode_valid_assignment(&resource).and_then(|assignment| {
                for cluster in self.context.clusters.snapshot().iter() {
                    if cluster.eds_service_name() == Some(assignment.cluster_name.as_str()) {
                        cluster
                            .apply_load_assignment(&assignment)
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok(assignment)
            });
            self.record(
                type_urls::ENDPOINT,
                &resource,
                result,
                &mut errors,
                |state, applied| {
                    state
                        .endpoints
                        .insert(applied.resource.cluster_name.clone(), applied);
                },
            );
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for name in removed {
            state.endpoints.remove(&name);
        }
        errors
    }

    fn apply_routes(&self, updated: Vec<Resource>, removed: Vec<String>) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for resource in updated {
            let result = decode_valid::<RouteConfiguration>(&resource).and_then(|config| {
                self.context
                    .routes
                    .update(&config)
                    .map_err(|e| e.to_string())?;
                Ok(config)
            });
            self.record(
                type_urls::ROUTE,
                &resource,
                result,
                &mut errors,
                |state, applied| {
                    state
                        .route_configs
                        .insert(applied.resource.name.clone(), applied);
                },
            );
        }
        for name in removed {
            self.context.routes.remove(&name);
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .route_configs
                .remove(&name);
        }
        errors
    }

    fn apply_listeners(
        &self,
        updated: Vec<Resource>,
        removed: Vec<String>,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for resource in updated {
            let result = decode_valid::<Listener>(&resource).and_then(|listener| {
                if self.static_listeners.contains(&listener.name) {
                    return Err(format!(
                        "'{}' is a static listener defined in the bootstrap; LDS cannot replace it",
                        listener.name
                    ));
                }
                if let Some(error) =
                    super::subscriptions::listener_source_error(&self.bootstrap, &listener)
                {
                    return Err(error);
                }
                let unchanged = self.with_state(|s| {
                    s.listeners
                        .get(&listener.name)
                        .or_else(|| s.warming_listeners.get(&listener.name))
                        .is_some_and(|applied| applied.resource == listener)
                });
                if !unchanged {
                    let config = ListenerConfig::compile(&listener, &self.context)
                        .map_err(|e| e.to_string())?;
                    self.warm_then_activate(config, &resource.version)?;
                }
                Ok(listener)
            });
            let warming = result
                .as_ref()
                .is_ok_and(|l| self.with_state(|s| s.warming_listeners.contains_key(&l.name)));
            self.record(
                type_urls::LISTENER,
                &resource,
                result,
                &mut errors,
                |state, applied| {
                    if !warming {
                        state
                            .listeners
                            .insert(applied.resource.name.clone(), applied);
                    }
                },
            );
        }
        for name in removed {
            self.listeners.remove(&name);
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.listeners.remove(&name);
            state.warming_listeners.remove(&name);
        }
        self.initial_fetch
            .send_modify(|(_, listeners)| *listeners = true);
        errors
    }

    /// A listener whose RDS routes have arrived starts at once; otherwise
    /// it warms until they do (or the warming timeout passes), as Envoy's.
    fn warm_then_activate(&self, config: ListenerConfig, version: &str) -> Result<(), String> {
        let providers = config.route_providers();
        if providers.iter().all(|p| p.is_ready()) {
            let name = config.name.clone();
            self.listeners.add_or_update(config)?;
            // A newer version that is ready at once supersedes a warming one.
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .warming_listeners
                .remove(&name);
            return Ok(());
        }
        let name = config.name.clone();
        let listener = config.source.clone();
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .warming_listeners
            .insert(
                name.clone(),
                Applied {
                    resource: listener,
                    version: version.to_string(),
                    last_updated: SystemTime::now(),
                },
            );
        let myself = self.myself.clone();
        let limits = rds_fetch_timeouts(&config.source);
        tokio::spawn(async move {
            // Each route configuration warms on its own clock, as Envoy's
            // init targets do; the listener starts when all are done.
            let waits = providers.iter().map(|provider| {
                let limit = limits
                    .get(provider.name())
                    .copied()
                    .unwrap_or(Some(WARMING_TIMEOUT));
                let mut ready = provider.ready();
                async move {
                    let arrived = ready.wait_for(|ready| *ready);
                    match limit {
                        Some(limit) => {
                            let _ = tokio::time::timeout(limit, arrived).await;
                        }
                        None => {
                            let _ = arrived.await;
                        }
                    }
                }
            });
            futures_util::future::join_all(waits).await;
            let Some(this) = myself.upgrade() else { return };
            let still_wanted = {
                let mut state = this.state.lock().unwrap_or_else(|e| e.into_inner());
                match state.warming_listeners.remove(&name) {
                    Some(applied) if applied.resource == config.source => {
                        state.listeners.insert(name.clone(), applied);
                        true
                    }
                    Some(other) => {
                        // Superseded by a newer version while warming.
                        state.warming_listeners.insert(name.clone(), other);
                        false
                    }
                    None => false,
                }
            };
            if still_wanted {
                if let Err(error) = this.listeners.add_or_update(config) {
                    tracing::warn!(target: "sluice::listener", listener = %name, %error, "warmed listener failed to start");
                }
            }
        });
        Ok(())
    }

    /// Records the outcome for one resource: applied, or rejected with its
    /// error (reported to the control plane and kept for `/config_dump`).
    fn record<T>(
        &self,
        type_url: &str,
        resource: &Resource,
        result: Result<T, String>,
        errors: &mut Vec<(String, String)>,
        store: impl FnOnce(&mut DynamicState, Applied<T>),
    ) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (type_url.to_string(), resource.name.clone());
        match result {
            Ok(value) => {
                state.errors.remove(&key);
                state
                    .versions
                    .insert(type_url.to_string(), resource.version.clone());
                store(
                    &mut state,
                    Applied {
                        resource: value,
                        version: resource.version.clone(),
                        last_updated: SystemTime::now(),
                    },
                );
            }
            Err(details) => {
                tracing::warn!(target: "sluice::config", resource = %resource.name, kind = type_urls::short(type_url), %details, "xDS resource rejected");
                errors.push((resource.name.clone(), details.clone()));
                state.errors.insert(
                    key,
                    Rejected {
                        details,
                        version: resource.version.clone(),
                        last_update_attempt: SystemTime::now(),
                    },
                );
            }
        }
    }
}

/// Decodes a resource and runs the same validation as the bootstrap.
fn decode_valid<T: Message + prost::Name + Default>(resource: &Resource) -> Result<T, String> {
    let message = crate::config::proto::unpack::<T>(&resource.body).map_err(|e| e.to_string())?;
    validate_message(&message).map_err(|errors: ConfigErrors| errors.to_string())?;
    Ok(message)
}

/// [`decode_valid`] for an EDS assignment: the same checks and errors,
/// without the reflective walk when the assignment is valid (10,000
/// endpoints per push).
fn decode_valid_assignment(resource: &Resource) -> Result<ClusterLoadAssignment, String> {
    let assignment = crate::config::proto::unpack::<ClusterLoadAssignment>(&resource.body)
        .map_err(|e| e.to_string())?;
    validate_load_assignment(&assignment).map_err(|errors: ConfigErrors| errors.to_string())?;
    Ok(assignment)
}

impl ResourceSink for DynamicResources {
    fn apply(
        &self,
        type_url: &str,
        updated: Vec<Resource>,
        removed: Vec<String>,
        _state_of_the_world: bool,
    ) -> Vec<(String, String)> {
        if type_url == type_urls::CLUSTER || type_url == type_urls::LISTENER {
            let errors = if type_url == type_urls::CLUSTER {
                self.apply_clusters(updated, removed)
            } else {
                self.apply_listeners(updated, removed)
            };
            self.recheck_subscriptions();
            return errors;
        }
        match type_url {
            type_urls::ENDPOINT => self.apply_endpoints(updated, removed),
            type_urls::ROUTE => self.apply_routes(updated, removed),
            other => updated
                .into_iter()
                .map(|r| {
                    (
                        r.name,
                        format!("resource type {other} is not supported by Sluice"),
                    )
                })
                .collect(),
        }
    }

    fn subscriptions(&self, type_url: &str) -> Subscription {
        super::subscriptions::subscriptions(&self.context, type_url, &SourceId::Ads)
    }

    fn source_subscriptions(&self, type_url: &str, source: &SourceId) -> Subscription {
        super::subscriptions::subscriptions(&self.context, type_url, source)
    }

    fn api_sources(&self) -> BTreeSet<(&'static str, SourceId)> {
        super::subscriptions::api_sources(&self.context)
    }

    fn subscription_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.subscription_changes.subscribe())
    }

    fn resource_stats_prefix(&self, type_url: &str, name: &str) -> Option<String> {
        match type_url {
            type_urls::ENDPOINT => Some(format!("cluster.{name}.")),
            // Envoy: `http.<stat_prefix>.rds.<route_config_name>.` of the
            // connection manager that uses it (the first one, if several;
            // a warming listener's too: its routes arrive while it warms).
            type_urls::ROUTE => self.active_rds_stats_prefix(name).or_else(|| {
                self.with_state(|s| {
                    s.warming_listeners
                        .values()
                        .find_map(|l| super::subscriptions::rds_stats_prefix(&l.resource, name))
                })
            }),
            _ => None,
        }
    }
}

impl DynamicResources {
    fn active_rds_stats_prefix(&self, name: &str) -> Option<String> {
        self.listeners.configs().iter().find_map(|listener| {
            listener
                .filter_chains
                .iter()
                .find_map(|chain| match &chain.filter {
                    crate::listener::NetworkFilter::Http(hcm)
                        if hcm.route_provider().is_some_and(|p| p.name() == name) =>
                    {
                        Some(format!("http.{}.rds.{name}.", hcm.stat_prefix()))
                    }
                    _ => None,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener_with_rds(config_source: &str) -> Listener {
        crate::config::parse_message(&format!(
            r#"name: l
address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}
filter_chains:
- filters:
  - name: hcm
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: l
      rds: {{route_config_name: r, config_source: {config_source}}}
      http_filters: [{{name: router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
        ))
        .unwrap()
    }

    #[test]
    fn rds_warming_follows_initial_fetch_timeout() {
        let limit = |source: &str| rds_fetch_timeouts(&listener_with_rds(source))["r"];
        assert_eq!(limit("{ads: {}}"), Some(WARMING_TIMEOUT));
        assert_eq!(
            limit("{ads: {}, initial_fetch_timeout: 2s}"),
            Some(Duration::from_secs(2))
        );
        // 0s: wait for the routes without limit, as Envoy.
        assert_eq!(limit("{ads: {}, initial_fetch_timeout: 0s}"), None);
    }
}
