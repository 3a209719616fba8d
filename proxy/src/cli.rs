//! Command-line flags, following Envoy's names and meanings
//! (`-c/--config-path`, `--config-yaml`, `--mode`, `--concurrency`, …).
//! Unknown flags are errors.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Load the configuration and serve traffic.
    Serve,
    /// Load and validate the configuration, then exit (0 = valid).
    Validate,
    /// Load the configuration, initialise everything, then exit.
    #[value(name = "init_only")]
    InitOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DrainStrategy {
    /// Envoy's default: connections are encouraged to close progressively
    /// over the drain period.
    Gradual,
    /// Every connection is told to close as soon as draining starts.
    Immediate,
}

/// Sluice: a kernel-accelerated, Envoy-compatible node proxy.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice", disable_version_flag = true)]
pub struct Cli {
    /// Path to an Envoy v3 bootstrap file (YAML or JSON).
    #[arg(short = 'c', long = "config-path", value_name = "FILE")]
    pub config_path: Option<PathBuf>,

    /// Bootstrap YAML merged over the `--config-path` file (or used alone).
    #[arg(long = "config-yaml", value_name = "YAML")]
    pub config_yaml: Option<String>,

    /// `serve` (default), `validate` (check the config and exit) or `init_only`.
    #[arg(long, value_enum, default_value = "serve")]
    pub mode: Mode,

    /// Number of worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Log level: trace, debug, info, warning, warn, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,

    /// Per-component levels, e.g. `upstream:debug,http:trace`.
    #[arg(long = "component-log-level", value_name = "COMPONENT:LEVEL,...")]
    pub component_log_level: Option<String>,

    /// Seconds to drain connections on shutdown or `/drain_listeners?graceful`.
    #[arg(long = "drain-time-s", default_value_t = 600)]
    pub drain_time_s: u64,

    /// How connections are asked to close while draining.
    #[arg(long = "drain-strategy", value_enum, default_value = "gradual")]
    pub drain_strategy: DrainStrategy,

    /// Accepted for compatibility: Sluice keeps no shared memory, so
    /// instances with different base ids never interfere.
    #[arg(long = "base-id", default_value_t = 0)]
    pub base_id: u32,

    /// Accepted for compatibility (Sluice has no hot restart).
    #[arg(long = "disable-hot-restart")]
    pub disable_hot_restart: bool,

    /// Overrides `node.id`.
    #[arg(long = "service-node")]
    pub service_node: Option<String>,

    /// Overrides `node.cluster`.
    #[arg(long = "service-cluster")]
    pub service_cluster: Option<String>,

    /// Overrides `node.locality.zone`.
    #[arg(long = "service-zone")]
    pub service_zone: Option<String>,

    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,

    #[command(flatten)]
    pub datapath: crate::datapath::DatapathFlags,
}

/// The build version in Envoy's shape, `<revision>/<version>/<status>/<build
/// type>/<ssl>`, as `/server_info` reports it (tools split it on '/').
pub fn build_version() -> String {
    format!(
        "{}/{}/Clean/RELEASE/BoringSSL-free",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    )
}

/// The version line `--version` prints.
pub fn version_string() -> String {
    format!(
        "sluice version: {} (envoy-compatible v3 API)",
        build_version()
    )
}

impl Cli {
    /// Worker count: `--concurrency` or the number of cores.
    pub fn workers(&self) -> usize {
        self.concurrency.filter(|n| *n > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_flags_parse() {
        let cli = Cli::try_parse_from([
            "sluice",
            "-c",
            "envoy.yaml",
            "--mode",
            "validate",
            "--concurrency",
            "2",
            "-l",
            "debug",
            "--drain-time-s",
            "5",
            "--base-id",
            "7",
            "--service-node",
            "n1",
            "--service-cluster",
            "c1",
        ])
        .unwrap();
        assert_eq!(cli.config_path.unwrap().to_str(), Some("envoy.yaml"));
        assert_eq!(cli.mode, Mode::Validate);
        assert_eq!(cli.concurrency, Some(2));
        assert_eq!(cli.drain_time_s, 5);
        assert_eq!(cli.base_id, 7);
        assert_eq!(cli.service_node.as_deref(), Some("n1"));
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(Cli::try_parse_from(["sluice", "--no-such-flag"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "--mode", "bogus"]).is_err());
    }

    #[test]
    fn init_only_mode_uses_envoy_spelling() {
        let cli = Cli::try_parse_from(["sluice", "--mode", "init_only"]).unwrap();
        assert_eq!(cli.mode, Mode::InitOnly);
    }
}
