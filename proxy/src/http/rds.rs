//! Route configurations that arrive over RDS, shared by every connection
//! manager that names them (`rds.route_config_name`).
//!
//! A [`RouteConfigProvider`] holds the current compiled table of one name
//! (none until RDS delivers it); the [`RouteConfigRegistry`] hands out one
//! provider per name while some listener uses it, and its live names are
//! what the xDS client subscribes to, on the stream of the provider's
//! config source (ADS, or an `api_config_source` of its own). Two
//! connection managers naming the same route configuration share one
//! provider and the source of the first (Envoy, too, shares one RDS
//! subscription per name).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use tokio::sync::watch;

use super::router::RouteTable;
use crate::config::ConfigErrors;
use crate::xds::SourceId;

/// The current route table of one RDS name.
pub struct RouteConfigProvider {
    name: String,
    source: SourceId,
    table: ArcSwapOption<RouteTable>,
    ready: watch::Sender<bool>,
}

impl RouteConfigProvider {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its routes come from.
    pub fn source(&self) -> &SourceId {
        &self.source
    }

    /// The table to route with; `None` until RDS delivered one.
    pub fn table(&self) -> Option<Arc<RouteTable>> {
        self.table.load_full()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Becomes true once a table arrived (ends listener warming).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }
}

/// One provider per route configuration name, while anyone holds it.
#[derive(Default)]
pub struct RouteConfigRegistry {
    providers: Mutex<BTreeMap<String, Weak<RouteConfigProvider>>>,
    /// Tables received for names no listener uses yet (a listener and its
    /// routes may arrive in either order).
    unclaimed: Mutex<BTreeMap<String, Arc<RouteTable>>>,
}

impl RouteConfigRegistry {
    /// The provider for `name` over ADS (see [`Self::provider_from`]).
    pub fn provider(&self, name: &str) -> Arc<RouteConfigProvider> {
        self.provider_from(name, SourceId::Ads)
    }

    /// The provider for `name`, shared with every other user of it; a new
    /// one follows `source`.
    pub fn provider_from(&self, name: &str, source: SourceId) -> Arc<RouteConfigProvider> {
        let mut providers = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = providers.get(name).and_then(Weak::upgrade) {
            return live;
        }
        let unclaimed = self
            .unclaimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let provider = Arc::new(RouteConfigProvider {
            name: name.to_string(),
            source,
            ready: watch::Sender::new(unclaimed.is_some()),
            table: ArcSwapOption::new(unclaimed),
        });
        providers.retain(|_, weak| weak.strong_count() > 0);
        providers.insert(name.to_string(), Arc::downgrade(&provider));
        provider
    }

    /// Names some listener currently routes with (the RDS subscription).
    pub fn names(&self) -> BTreeSet<String> {
        self.providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, weak)| weak.strong_count() > 0)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Names some listener routes with whose provider follows `source`.
    pub fn names_from(&self, source: &SourceId) -> BTreeSet<String> {
        self.live()
            .into_iter()
            .filter(|p| p.source() == source)
            .map(|p| p.name.clone())
            .collect()
    }

    /// `(name, source)` of every live provider.
    pub fn live_names(&self) -> BTreeSet<(String, SourceId)> {
        self.live()
            .into_iter()
            .map(|p| (p.name.clone(), p.source.clone()))
            .collect()
    }

    /// The sources live providers follow.
    pub fn sources(&self) -> BTreeSet<SourceId> {
        self.live().into_iter().map(|p| p.source.clone()).collect()
    }

    fn live(&self) -> Vec<Arc<RouteConfigProvider>> {
        self.providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Compiles and installs a route configuration from RDS; every
    /// connection manager using its name routes with it from the next
    /// request on. On error nothing changes.
    pub fn update(&self, config: &RouteConfiguration) -> Result<(), ConfigErrors> {
        let table = Arc::new(RouteTable::compile(config)?);
        let live = self
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&config.name)
            .and_then(Weak::upgrade);
        match live {
            Some(provider) => {
                provider.table.store(Some(table));
                provider.ready.send_replace(true);
            }
            None => {
                self.unclaimed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(config.name.clone(), table);
            }
        }
        Ok(())
    }

    /// RDS removed a route configuration: connection managers using it
    /// answer 404 (no route) until it comes back, as Envoy does.
    pub fn remove(&self, name: &str) {
        self.unclaimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let live = self
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .and_then(Weak::upgrade);
        if let Some(provider) = live {
            provider.table.store(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, cluster: &str) -> RouteConfiguration {
        crate::config::parse_message(&format!(
            "name: {name}\nvirtual_hosts: [{{name: v, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: {cluster}}}}}]}}]"
        ))
        .unwrap()
    }

    #[test]
    fn providers_are_shared_by_name_and_follow_updates() {
        let registry = RouteConfigRegistry::default();
        let a = registry.provider("routes");
        let b = registry.provider("routes");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.table().is_none());
        assert!(!a.is_ready());
        registry.update(&config("routes", "one")).unwrap();
        assert!(b.is_ready());
        assert_eq!(
            a.table().unwrap().cluster_names().collect::<Vec<_>>(),
            ["one"]
        );
        registry.update(&config("routes", "two")).unwrap();
        assert_eq!(
            b.table().unwrap().cluster_names().collect::<Vec<_>>(),
            ["two"]
        );
        assert_eq!(registry.names(), BTreeSet::from(["routes".to_string()]));
        drop((a, b));
        assert!(registry.names().is_empty(), "unused names are unsubscribed");
    }

    #[test]
    fn routes_that_arrive_first_wait_for_their_listener() {
        let registry = RouteConfigRegistry::default();
        registry.update(&config("early", "one")).unwrap();
        let provider = registry.provider("early");
        assert!(provider.is_ready());
        registry.remove("early");
        assert!(provider.table().is_none());
    }

    #[test]
    fn a_bad_update_changes_nothing() {
        let registry = RouteConfigRegistry::default();
        let provider = registry.provider("r");
        registry.update(&config("r", "one")).unwrap();
        let mut bad = config("r", "two");
        bad.virtual_hosts[0].domains = vec!["a.test".into(), "a.test".into()];
        assert!(registry.update(&bad).is_err());
        assert_eq!(
            provider
                .table()
                .unwrap()
                .cluster_names()
                .collect::<Vec<_>>(),
            ["one"]
        );
    }
}
