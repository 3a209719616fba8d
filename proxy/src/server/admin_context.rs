//! The running server as the admin API sees it: stats, state, clusters,
//! listeners, config dump, and the lifecycle commands.

use std::sync::atomic::Ordering;
use std::sync::Arc;

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
            // Not in Envoy: the kernel datapath (hooks, cgroup, pins, XDP
            // interfaces and their mode).
            "datapath": server.datapath_status.to_json(),
        })
    }

    fn server_state(&self) -> String {
        self.state_name().to_string()
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

    fn config_dump(&self, resource: Option<&str>, include_eds: bool) -> Result<Value, String> {
        super::config_dump::render(&self.0, resource, include_eds)
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
