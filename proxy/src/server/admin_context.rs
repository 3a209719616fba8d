//! The running server as the admin API sees it: stats, state, clusters,
//! listeners, config dump, and the lifecycle commands.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prost::Name;
use serde_json::{json, Value};

use super::Server;
use crate::admin::{AdminContext, ListenerInfo, Runtime};
use crate::config::json::to_json;
use crate::logging::LogHandle;
use crate::stats::Store;

pub struct ServerAdmin(pub Arc<Server>);

impl ServerAdmin {
    fn state_name(&self) -> &'static str {
        let server = &self.0;
        if server.health_check_failed.load(Ordering::Relaxed) {
            return "DRAINING";
        }
        if server.live.load(Ordering::Relaxed) {
            "LIVE"
        } else if server.shutting_down.load(Ordering::Relaxed) {
            "DRAINING"
        } else {
            "PRE_INITIALIZING"
        }
    }

    fn last_updated(&self) -> String {
        let started: chrono::DateTime<chrono::Utc> = self.0.started.into();
        started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn static_clusters(&self) -> Vec<Value> {
        let resources = self
            .0
            .snapshot
            .bootstrap
            .static_resources
            .clone()
            .unwrap_or_default();
        resources
            .clusters
            .iter()
            .map(|cluster| {
                json!({
                    "cluster": to_json(cluster),
                    "last_updated": self.last_updated(),
                })
            })
            .collect()
    }

    fn static_listeners(&self) -> Vec<Value> {
        self.0
            .listeners
            .configs()
            .iter()
            .filter(|listener| self.0.static_listeners.contains(&listener.name))
            .map(|listener| {
                json!({
                    "listener": to_json(&listener.source),
                    "last_updated": self.last_updated(),
                })
            })
            .collect()
    }

    fn static_route_configs(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for listener in self.0.listeners.configs() {
            for chain in &listener.filter_chains {
                if let crate::listener::NetworkFilter::Http(hcm) = &chain.filter {
                    let Some(config) = hcm.inline_route_config() else {
                        continue;
                    };
                    out.push(json!({
                        "route_config": to_json(config),
                        "last_updated": self.last_updated(),
                    }));
                }
            }
        }
        out
    }

    fn bootstrap_dump(&self) -> Value {
        json!({
            "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "bootstrap": to_json(&self.0.snapshot.bootstrap),
            "last_updated": self.last_updated(),
        })
    }
}

fn admin_type(name: &str) -> String {
    format!("type.googleapis.com/envoy.admin.v3.{name}")
}

impl AdminContext for ServerAdmin {
    fn stats(&self) -> &Store {
        &self.0.store
    }

    fn server_info(&self) -> Value {
        let server = &self.0;
        let cli = &server.cli;
        let uptime = format!("{}s", server.started_instant.elapsed().as_secs());
        let node = server
            .snapshot
            .bootstrap
            .node
            .as_ref()
            .map(to_json)
            .unwrap_or_else(|| json!({}));
        json!({
            "version": crate::cli::build_version(),
            "state": self.state_name(),
            "hot_restart_version": "disabled",
            "command_line_options": {
                "base_id": cli.base_id.to_string(),
                "concurrency": cli.workers(),
                "config_path": cli.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "config_yaml": cli.config_yaml.clone().unwrap_or_default(),
                "log_level": cli.log_level,
                "component_log_level": cli.component_log_level.clone().unwrap_or_default(),
                "drain_time": format!("{}s", cli.drain_time_s),
                "drain_strategy": match cli.drain_strategy {
                    crate::cli::DrainStrategy::Gradual => "Gradual",
                    crate::cli::DrainStrategy::Immediate => "Immediate",
                },
                "mode": "Serve",
                "service_cluster": cli.service_cluster.clone().unwrap_or_default(),
                "service_node": cli.service_node.clone().unwrap_or_default(),
                "service_zone": cli.service_zone.clone().unwrap_or_default(),
                "disable_hot_restart": true,
            },
            "node": node,
            "uptime_current_epoch": uptime,
            "uptime_all_epochs": uptime,
        })
    }

    fn is_ready(&self) -> bool {
        self.state_name() == "LIVE"
    }

    fn clusters_text(&self) -> String {
        self.0.snapshot.clusters.render_text()
    }

    fn clusters_json(&self) -> Value {
        self.0.snapshot.clusters.render_json()
    }

    fn listeners(&self) -> Vec<ListenerInfo> {
        self.0
            .listeners
            .addresses()
            .into_iter()
            .map(|(name, local_address)| ListenerInfo {
                name,
                local_address,
            })
            .collect()
    }

    fn config_dump(&self, resource: Option<&str>) -> Result<Value, String> {
        use envoy_types::pb::envoy::admin::v3::{
            clusters_config_dump::StaticCluster, listeners_config_dump::StaticListener,
            routes_config_dump::StaticRouteConfig,
        };
        let typed = |type_url: String, items: Vec<Value>| -> Vec<Value> {
            items
                .into_iter()
                .map(|mut item| {
                    if let Value::Object(map) = &mut item {
                        map.insert("@type".into(), Value::String(type_url.clone()));
                    }
                    item
                })
                .collect()
        };
        match resource {
            None => Ok(json!({
                "configs": [
                    self.bootstrap_dump(),
                    {
                        "@type": admin_type("ClustersConfigDump"),
                        "static_clusters": self.static_clusters(),
                    },
                    {
                        "@type": admin_type("ListenersConfigDump"),
                        "static_listeners": self.static_listeners(),
                    },
                    {
                        "@type": admin_type("RoutesConfigDump"),
                        "static_route_configs": self.static_route_configs(),
                    },
                ]
            })),
            Some("static_clusters") => Ok(json!({
                "configs": typed(StaticCluster::type_url(), self.static_clusters())
            })),
            Some("static_listeners") => Ok(json!({
                "configs": typed(StaticListener::type_url(), self.static_listeners())
            })),
            Some("static_route_configs") => Ok(json!({
                "configs": typed(StaticRouteConfig::type_url(), self.static_route_configs())
            })),
            Some("bootstrap") => Ok(json!({ "configs": [self.bootstrap_dump()] })),
            Some(other) => Err(format!(
                "The resource '{other}' is not supported; use static_clusters, static_listeners, static_route_configs or bootstrap"
            )),
        }
    }

    fn drain_listeners(&self, graceful: bool, _inbound_only: bool) {
        // Every Sluice listener is inbound (no outbound traffic_direction
        // listeners are treated specially yet), so inbound_only drains all.
        self.0.drain_listeners(graceful);
    }

    fn set_health_check_failed(&self, failed: bool) {
        // As Envoy: a failed health check reports the server as draining
        // (`/ready` 503, `server.live` 0) so load balancers take it out.
        self.0.health_check_failed.store(failed, Ordering::Relaxed);
        self.0.live_gauge.set(if failed { 0 } else { 1 });
    }

    fn quit(&self) {
        self.0.quit.notify_one();
    }

    fn runtime(&self) -> &Runtime {
        &self.0.runtime
    }

    fn log_handle(&self) -> &LogHandle {
        &self.0.log
    }

    fn log_request(&self, info: &crate::stream_info::StreamInfo) {
        if let Some(logs) = &self.0.snapshot.admin_access_logs {
            logs.log(info);
        }
    }
}
