//! `sluice`: the proxy daemon. Parses Envoy's flags, loads and validates the
//! bootstrap, and serves (or, with `--mode validate`, only checks).

use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{version_string, Cli, Mode};
use sluice::config;
use sluice::datapath::preload::Preload;
use sluice::logging::{self, LogLevel};
use sluice::server::{self, Snapshot};
use sluice::stats::Store;

fn main() -> ExitCode {
    // While there is one thread, growing the descriptor table is free;
    // with more, each growth waits for an RCU grace period (the datapath
    // holds ~60 descriptors).
    sluice::datapath::fd_table::reserve();
    let cli = Cli::parse();
    if cli.version {
        println!("{}", version_string());
        return ExitCode::SUCCESS;
    }
    let level: LogLevel = match cli.log_level.parse() {
        Ok(level) => level,
        Err(error) => {
            eprintln!("error: --log-level: {error}");
            return ExitCode::from(1);
        }
    };
    let log = logging::init(level);
    if let Some(levels) = &cli.component_log_level {
        if let Err(error) = apply_component_levels(&log, levels) {
            eprintln!("error: --component-log-level: {error}");
            return ExitCode::from(1);
        }
    }
    let source = cli
        .config_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "--config-yaml".to_string());

    // The kernel object loads while the configuration is read and compiled
    // and the server starts (nothing is attached until it is used): from
    // here when the flags alone want the datapath, else once the bootstrap
    // says so.
    let preload = match cli.mode {
        Mode::Serve => Preload::start_from_flags(&cli.datapath),
        Mode::Validate | Mode::InitOnly => Preload::default(),
    };
    let mut bootstrap =
        match config::load_bootstrap(cli.config_path.as_deref(), cli.config_yaml.as_deref()) {
            Ok(bootstrap) => bootstrap,
            Err(errors) => return report_config_errors(&source, &errors),
        };
    apply_node_overrides(&cli, &mut bootstrap);
    let preload = match cli.mode {
        Mode::Serve => preload.or_start(&cli.datapath, &bootstrap),
        Mode::Validate | Mode::InitOnly => preload,
    };
    let store = Store::new();
    let snapshot = match Snapshot::compile(bootstrap, &store) {
        Ok(snapshot) => snapshot,
        Err(errors) => return report_config_errors(&source, &errors),
    };
    match cli.mode {
        Mode::Validate => {
            println!("configuration '{source}' OK");
            ExitCode::SUCCESS
        }
        Mode::InitOnly => ExitCode::SUCCESS,
        Mode::Serve => {
            if snapshot.dynamic_sources.is_none() {
                // The configuration cannot change any more: the descriptor
                // pool that parsed and validated it goes before the runtime
                // starts (whatever needs it later rebuilds it).
                config::descriptors::release_pool();
            }
            serve(cli, snapshot, store, log, preload)
        }
    }
}

fn serve(
    cli: Cli,
    snapshot: Snapshot,
    store: Store,
    log: logging::LogHandle,
    preload: Preload,
) -> ExitCode {
    match server::run(cli, snapshot, store, log, preload) {
        0 => ExitCode::SUCCESS,
        code => ExitCode::from(code.clamp(1, 255) as u8),
    }
}

/// `--component-log-level upstream:debug,http:trace`, as Envoy.
fn apply_component_levels(log: &logging::LogHandle, spec: &str) -> Result<(), String> {
    let mut changes = Vec::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (component, level) = item
            .split_once(':')
            .ok_or_else(|| format!("'{item}' is not COMPONENT:LEVEL"))?;
        let level: LogLevel = level.parse()?;
        changes.push((component, level));
    }
    log.set_levels(&changes)
}

fn report_config_errors(source: &str, errors: &config::ConfigErrors) -> ExitCode {
    eprintln!("error initializing configuration '{source}':");
    for error in &errors.0 {
        eprintln!("  {error}");
    }
    ExitCode::from(1)
}

/// `--service-node`, `--service-cluster` and `--service-zone` override the
/// bootstrap's node, as in Envoy.
fn apply_node_overrides(
    cli: &Cli,
    bootstrap: &mut envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap,
) {
    let node = bootstrap.node.get_or_insert_with(Default::default);
    if let Some(id) = &cli.service_node {
        node.id = id.clone();
    }
    if let Some(cluster) = &cli.service_cluster {
        node.cluster = cluster.clone();
    }
    if let Some(zone) = &cli.service_zone {
        node.locality.get_or_insert_with(Default::default).zone = zone.clone();
    }
}
