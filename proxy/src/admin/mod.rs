//! The admin HTTP API on Envoy's paths, methods and response shapes:
//! `/stats`, `/stats/prometheus`, `/server_info`, `/ready`, `/clusters`,
//! `/config_dump`, `/listeners`, `/logging`, `/runtime`, the POST-only
//! commands (`/healthcheck/fail`, `/drain_listeners`, `/quitquitquit`, …).
//!
//! The server knows nothing about the proxy's internals: it talks to an
//! [`AdminContext`], which the server implements.

mod handlers;
mod query;
mod runtime;
mod server;

#[cfg(test)]
mod tests;

pub use handlers::handle;
pub use runtime::{Runtime, RuntimeLayer, RuntimeLayerKind};
pub use server::serve;

use std::net::SocketAddr;

use crate::logging::LogHandle;

/// One active listener, for `/listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    pub name: String,
    pub local_address: SocketAddr,
}

/// What the admin API reads from and does to the running server.
pub trait AdminContext: Send + Sync + 'static {
    /// Every stat.
    fn stats(&self) -> &crate::stats::Store;
    /// `/server_info` in Envoy's shape: `version`, `state`
    /// (`LIVE`/`DRAINING`/`PRE_INITIALIZING`), `uptime_current_epoch`,
    /// `uptime_all_epochs`, `hot_restart_version`, `command_line_options`,
    /// `node`. `/ready` prints its `state`.
    fn server_info(&self) -> serde_json::Value;
    /// The `state` of [`Self::server_info`] alone, which `/ready` prints.
    /// Readiness probes come often: a context that can say it without
    /// building all of `server_info` (which renders the node through the
    /// descriptor pool) should.
    fn server_state(&self) -> String {
        self.server_info()["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// Whether `/ready` answers 200 (LIVE) rather than 503.
    fn is_ready(&self) -> bool;
    /// `/clusters` as text (`cluster::host::stat::value` lines).
    fn clusters_text(&self) -> String;
    /// `/clusters?format=json`.
    fn clusters_json(&self) -> serde_json::Value;
    /// Active listeners in configuration order.
    fn listeners(&self) -> Vec<ListenerInfo>;
    /// `/config_dump`, or `/config_dump?resource=<field>`; `Err` is a 404
    /// message (unknown resource).
    fn config_dump(
        &self,
        resource: Option<&str>,
        include_eds: bool,
    ) -> Result<serde_json::Value, String>;
    /// `POST /drain_listeners[?graceful][&inboundonly]`.
    fn drain_listeners(&self, graceful: bool, inbound_only: bool);
    /// `POST /healthcheck/fail` (true) and `/healthcheck/ok` (false).
    fn set_health_check_failed(&self, failed: bool);
    /// `POST /quitquitquit`: begin shutdown. Called after the reply is
    /// built; the admin server finishes sending it while shutting down.
    fn quit(&self);
    /// The layered runtime behind `/runtime` and `/runtime_modify`.
    fn runtime(&self) -> &Runtime;
    /// Log levels behind `/logging`.
    fn log_handle(&self) -> &LogHandle;
    /// Writes one admin request to `admin.access_log`.
    fn log_request(&self, info: &crate::stream_info::StreamInfo);
}
