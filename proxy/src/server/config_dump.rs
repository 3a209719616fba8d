//! `/config_dump`: the bootstrap, and every cluster, listener, route
//! configuration and (with `?include_eds`) endpoint assignment in force, in
//! Envoy's `envoy.admin.v3.*ConfigDump` shapes — static ones from the
//! bootstrap, dynamic ones with their xDS version, update time, warming
//! state and (beyond Envoy, on every resource type) the last rejection.

use std::time::SystemTime;

use prost::Name;
use serde_json::{json, Value};

use super::dynamic::{Applied, DynamicState, Rejected};
use super::Server;
use crate::config::json::to_json;
use crate::xds::type_urls;

fn timestamp(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn admin_type(name: &str) -> String {
    format!("type.googleapis.com/envoy.admin.v3.{name}")
}

/// The dump, or one `resource=` section of it; `Err` names what exists.
pub fn render(server: &Server, resource: Option<&str>, include_eds: bool) -> Result<Value, String> {
    let dump = Dump { server };
    let sections = [
        ("static_clusters", dump.static_clusters()),
        (
            "dynamic_active_clusters",
            dump.dynamic(|s| &s.clusters, "cluster", type_urls::CLUSTER),
        ),
        ("static_listeners", dump.static_listeners()),
        ("dynamic_listeners", dump.dynamic_listeners()),
        ("static_route_configs", dump.static_route_configs()),
        (
            "dynamic_route_configs",
            dump.dynamic(|s| &s.route_configs, "route_config", type_urls::ROUTE),
        ),
        (
            "dynamic_endpoint_configs",
            dump.dynamic(|s| &s.endpoints, "endpoint_config", type_urls::ENDPOINT),
        ),
    ];
    let section = |name: &str| {
        sections
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    match resource {
        None => {
            let mut configs = vec![
                dump.bootstrap(),
                json!({
                    "@type": admin_type("ClustersConfigDump"),
                    "version_info": dump.version(type_urls::CLUSTER),
                    "static_clusters": section("static_clusters"),
                    "dynamic_active_clusters": section("dynamic_active_clusters"),
                }),
                json!({
                    "@type": admin_type("ListenersConfigDump"),
                    "version_info": dump.version(type_urls::LISTENER),
                    "static_listeners": section("static_listeners"),
                    "dynamic_listeners": section("dynamic_listeners"),
                }),
                json!({
                    "@type": admin_type("RoutesConfigDump"),
                    "static_route_configs": section("static_route_configs"),
                    "dynamic_route_configs": section("dynamic_route_configs"),
                }),
            ];
            if include_eds {
                configs.push(json!({
                    "@type": admin_type("EndpointsConfigDump"),
                    "dynamic_endpoint_configs": section("dynamic_endpoint_configs"),
                }));
            }
            Ok(json!({ "configs": configs }))
        }
        Some("bootstrap") => Ok(json!({ "configs": [dump.bootstrap()] })),
        Some(name) => match sections.iter().find(|(n, _)| *n == name) {
            Some((_, Value::Array(items))) => Ok(json!({ "configs": items })),
            _ => Err(format!(
                "The resource '{name}' is not supported; use bootstrap, {}",
                sections
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
    }
}

struct Dump<'a> {
    server: &'a Server,
}

impl Dump<'_> {
    fn started(&self) -> String {
        timestamp(self.server.started)
    }

    fn bootstrap(&self) -> Value {
        json!({
            "@type": admin_type("BootstrapConfigDump"),
            "bootstrap": to_json(&self.server.snapshot.bootstrap),
            "last_updated": self.started(),
        })
    }

    fn version(&self, type_url: &str) -> String {
        self.state(|s| s.versions.get(type_url).cloned())
            .flatten()
            .unwrap_or_default()
    }

    fn state<R>(&self, f: impl FnOnce(&DynamicState) -> R) -> Option<R> {
        self.server.dynamic.as_ref().map(|d| d.with_state(f))
    }

    fn static_clusters(&self) -> Value {
        let Some(resources) = &self.server.snapshot.bootstrap.static_resources else {
            return Value::Array(Vec::new());
        };
        let type_url =
            envoy_types::pb::envoy::admin::v3::clusters_config_dump::StaticCluster::type_url();
        Value::Array(
            resources
                .clusters
                .iter()
                .map(|cluster| {
                    json!({
                        "@type": type_url,
                        "cluster": to_json(cluster),
                        "last_updated": self.started(),
                    })
                })
                .collect(),
        )
    }

    fn static_listeners(&self) -> Value {
        let type_url =
            envoy_types::pb::envoy::admin::v3::listeners_config_dump::StaticListener::type_url();
        Value::Array(
            self.server
                .listeners
                .configs()
                .iter()
                .filter(|listener| self.server.static_listeners.contains(&listener.name))
                .map(|listener| {
                    json!({
                        "@type": type_url,
                        "listener": to_json(&listener.source),
                        "last_updated": self.started(),
                    })
                })
                .collect(),
        )
    }

    fn static_route_configs(&self) -> Value {
        let type_url =
            envoy_types::pb::envoy::admin::v3::routes_config_dump::StaticRouteConfig::type_url();
        let mut out = Vec::new();
        for listener in self.server.listeners.configs() {
            if !self.server.static_listeners.contains(&listener.name) {
                continue;
            }
            for chain in &listener.filter_chains {
                if let crate::listener::NetworkFilter::Http(hcm) = &chain.filter {
                    if let Some(config) = hcm.inline_route_config() {
                        out.push(json!({
                            "@type": type_url,
                            "route_config": to_json(config),
                            "last_updated": self.started(),
                        }));
                    }
                }
            }
        }
        Value::Array(out)
    }

    /// Dynamic resources of one type, each with its version and time, plus
    /// (Sluice's addition) the last rejection of each name.
    fn dynamic<T: prost::Message + Name>(
        &self,
        pick: impl FnOnce(&DynamicState) -> &std::collections::BTreeMap<String, Applied<T>>,
        field: &str,
        type_url: &str,
    ) -> Value {
        let items = self.state(|state| {
            let applied = pick(state);
            let mut items: Vec<Value> = applied
                .iter()
                .map(|(name, applied)| {
                    let mut item = json!({
                        "version_info": applied.version,
                        field: to_json(&applied.resource),
                        "last_updated": timestamp(applied.last_updated),
                    });
                    if let Some(rejected) = state.errors.get(&(type_url.to_string(), name.clone()))
                    {
                        item["error_state"] = error_state(rejected);
                    }
                    item
                })
                .collect();
            // Names that were only ever rejected.
            for ((t, name), rejected) in &state.errors {
                if t == type_url && !applied.contains_key(name) {
                    items.push(json!({ "name": name, "error_state": error_state(rejected) }));
                }
            }
            items
        });
        Value::Array(items.unwrap_or_default())
    }

    fn dynamic_listeners(&self) -> Value {
        let items = self.state(|state| {
            let mut names: Vec<&String> = state
                .listeners
                .keys()
                .chain(state.warming_listeners.keys())
                .collect();
            for (t, name) in state.errors.keys() {
                if t == type_urls::LISTENER {
                    names.push(name);
                }
            }
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|name| {
                    let mut item = json!({ "name": name });
                    let listener_state = |applied: &Applied<_>| {
                        json!({
                            "version_info": applied.version,
                            "listener": to_json(&applied.resource),
                            "last_updated": timestamp(applied.last_updated),
                        })
                    };
                    if let Some(active) = state.listeners.get(name) {
                        item["active_state"] = listener_state(active);
                    }
                    if let Some(warming) = state.warming_listeners.get(name) {
                        item["warming_state"] = listener_state(warming);
                    }
                    if let Some(rejected) = state
                        .errors
                        .get(&(type_urls::LISTENER.to_string(), name.clone()))
                    {
                        item["error_state"] = error_state(rejected);
                    }
                    item
                })
                .collect::<Vec<_>>()
        });
        Value::Array(items.unwrap_or_default())
    }
}

/// Envoy's `UpdateFailureState`.
fn error_state(rejected: &Rejected) -> Value {
    json!({
        "details": rejected.details,
        "version_info": rejected.version,
        "last_update_attempt": timestamp(rejected.last_update_attempt),
    })
}
