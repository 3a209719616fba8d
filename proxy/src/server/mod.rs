//! The running server: compiles the bootstrap, binds listeners, starts one
//! worker thread per `--concurrency` (each with its own runtime and its own
//! `SO_REUSEPORT` sockets), serves the admin API, and runs the lifecycle
//! (ready, drain on SIGTERM or `/drain_listeners`, exit).

mod admin_context;
mod config_dump;
pub mod dynamic;
pub mod snapshot;
mod subscriptions;
mod workers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::cli::{Cli, DrainStrategy};
use crate::listener::{DrainSettings, ListenerManager};
use crate::logging::LogHandle;
use crate::stats::{Gauge, Store};
pub use snapshot::Snapshot;

/// How long to wait for clusters' first DNS resolution before listening.
const CLUSTER_INIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often EDS/RDS subscriptions are looked at besides after each update.
const SUBSCRIPTION_RECHECK: Duration = Duration::from_secs(1);

/// How long start-up waits for the first xDS clusters and listeners when
/// their config sources do not say (Envoy's default `initial_fetch_timeout`).
const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// The start-up wait for `lds_config`/`cds_config`: the longest of their
/// `initial_fetch_timeout`s (15 s when unset); `None` when one is `0s`,
/// which in Envoy means waiting for the control plane without limit.
fn initial_fetch_timeout(
    bootstrap: &envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap,
) -> Option<Duration> {
    let Some(dynamic) = &bootstrap.dynamic_resources else {
        return Some(INITIAL_FETCH_TIMEOUT);
    };
    let mut longest = Duration::ZERO;
    for source in [&dynamic.lds_config, &dynamic.cds_config]
        .into_iter()
        .flatten()
    {
        let limit = crate::config::proto::timeout_or(
            &source.initial_fetch_timeout,
            Some(INITIAL_FETCH_TIMEOUT),
        )?;
        longest = longest.max(limit);
    }
    Some(longest)
}

/// Server-wide state shared by the admin API and the lifecycle.
pub struct Server {
    pub cli: Cli,
    pub snapshot: Snapshot,
    pub listeners: Arc<ListenerManager>,
    /// Names of the bootstrap's listeners (the rest came from LDS).
    pub static_listeners: Vec<String>,
    /// What xDS delivered, when `dynamic_resources` is configured.
    pub dynamic: Option<Arc<dynamic::DynamicResources>>,
    pub store: Store,
    pub log: LogHandle,
    pub started: SystemTime,
    pub started_instant: Instant,
    pub health_check_failed: AtomicBool,
    pub live: AtomicBool,
    pub shutting_down: AtomicBool,
    pub runtime: crate::admin::Runtime,
    /// What the kernel datapath attached (the `datapath` of `/server_info`).
    pub datapath_status: crate::datapath::status::StatusCell,
    pub quit: Notify,
    state_gauge: Gauge,
    live_gauge: Gauge,
}

impl Server {
    fn drain_period(&self) -> Duration {
        Duration::from_secs(self.cli.drain_time_s)
    }

    /// `/drain_listeners`: graceful drains connections first and closes
    /// listeners after the drain period; otherwise listeners close now.
    /// As in Envoy, the server stays LIVE (`/ready` 200): only a failed
    /// health check or shutdown reports DRAINING.
    pub fn drain_listeners(&self, graceful: bool) {
        self.listeners.drain_all(graceful);
    }

    fn set_draining(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.state_gauge.set(1);
        self.live_gauge.set(0);
        self.live.store(false, Ordering::Relaxed);
    }
}

/// Runs the server until it is told to exit; returns the process exit code.
pub fn run(
    cli: Cli,
    snapshot: Snapshot,
    store: Store,
    log: LogHandle,
    preload: crate::datapath::preload::Preload,
) -> i32 {
    let main_runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("cannot start the main runtime: {error}");
            return 1;
        }
    };
    main_runtime.block_on(serve(cli, snapshot, store, log, preload))
}

async fn serve(
    cli: Cli,
    mut snapshot: Snapshot,
    store: Store,
    log: LogHandle,
    preload: crate::datapath::preload::Preload,
) -> i32 {
    let workers = cli.workers();
    let runtime = runtime_from_bootstrap(&snapshot.bootstrap);
    let worker_channels = match workers::start(workers) {
        Ok(channels) => channels,
        Err(error) => {
            eprintln!("cannot start workers: {error}");
            return 1;
        }
    };
    let drain = DrainSettings {
        period: Duration::from_secs(cli.drain_time_s),
        immediate: cli.drain_strategy == DrainStrategy::Immediate,
    };
    let bootstrap_listeners = std::mem::take(&mut snapshot.listeners);
    let static_listeners: Vec<String> =
        bootstrap_listeners.iter().map(|l| l.name.clone()).collect();
    let listener_manager = Arc::new(ListenerManager::new(worker_channels, drain));
    // EDS/RDS streams of their own named by static clusters or listeners
    // need the dynamic side even without `dynamic_resources`.
    let runs_dynamic =
        snapshot.dynamic_sources.is_some() || subscriptions::uses_api_sources(&snapshot.context);
    let dynamic = runs_dynamic.then(|| {
        dynamic::DynamicResources::new(
            snapshot.context.clone(),
            listener_manager.clone(),
            static_listeners.clone(),
            Arc::new(snapshot.bootstrap.clone()),
        )
    });
    let server = Arc::new(Server {
        state_gauge: store.gauge("server.state"),
        live_gauge: store.gauge("server.live"),
        static_listeners,
        dynamic,
        listeners: listener_manager,
        cli,
        snapshot,
        store: store.clone(),
        log,
        started: SystemTime::now(),
        started_instant: Instant::now(),
        health_check_failed: AtomicBool::new(false),
        live: AtomicBool::new(false),
        shutting_down: AtomicBool::new(false),
        runtime,
        datapath_status: Default::default(),
        quit: Notify::new(),
    });
    server.state_gauge.set(2); // PRE_INITIALIZING
    store.gauge("server.concurrency").set(workers as i64);

    // Admin first, as Envoy: operators can look while clusters initialise.
    if let Some(address) = server.snapshot.admin_address {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => {
                tracing::info!(target: "sluice::admin", "admin address: {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
                let context: Arc<dyn crate::admin::AdminContext> =
                    Arc::new(admin_context::ServerAdmin(server.clone()));
                tokio::spawn(crate::admin::serve(
                    listener,
                    context,
                    std::future::pending::<()>(),
                ));
            }
            Err(error) => {
                eprintln!("cannot bind admin address {address}: {error}");
                return 1;
            }
        }
    }

    server.snapshot.clusters.start();
    // EDS/RDS streams of their own start with the clusters, so static EDS
    // clusters warm from them (as Envoy initializes secondary clusters).
    let runs_dynamic = start_source_streams(&server);
    // ADS and the other xDS clients start before the cluster wait too: a
    // static EDS cluster over ADS warms from them (Envoy's ADS mux starts
    // with the cluster manager), instead of holding start-up for its
    // whole timeout.
    if runs_dynamic {
        spawn_dynamic_clients(&server);
    }
    server.state_gauge.set(3); // INITIALIZING
    server
        .snapshot
        .clusters
        .wait_initialized(CLUSTER_INIT_TIMEOUT)
        .await;

    for listener in bootstrap_listeners {
        if let Err(error) = server.listeners.add_or_update(listener) {
            eprintln!("{error}");
            return 1;
        }
    }
    if let (true, Some(dynamic)) = (runs_dynamic, &server.dynamic) {
        // The bootstrap listeners' RDS names, now that they exist.
        dynamic.recheck_subscriptions();
        wait_for_first_dynamic_resources(&server).await;
    }

    // Kernel datapath (socket LB), derived from the listeners and clusters
    // in force and kept in sync with them; detached when serve() returns.
    let _datapath = match crate::datapath::start(
        &server.cli.datapath,
        preload,
        server.listeners.clone(),
        server.snapshot.clusters.clone(),
        &store,
        &server.datapath_status,
    ) {
        Ok(datapath) => datapath,
        Err(exit_code) => return exit_code,
    };
    server.state_gauge.set(0); // LIVE
    server.live_gauge.set(1);
    server.live.store(true, Ordering::Relaxed);
    tracing::info!(target: "sluice::main", workers, "all listeners started; server is live");
    spawn_uptime(server.clone());

    let exit_code = wait_for_exit(&server).await;
    flush_access_logs(&server.store).await;
    exit_code
}

/// Starts the EDS/RDS streams of their own (one per distinct
/// `api_config_source` clusters and listeners name, following them as they
/// change). Returns whether the dynamic side runs.
fn start_source_streams(server: &Arc<Server>) -> bool {
    let Some(dynamic) = server.dynamic.as_ref() else {
        return false;
    };
    let source_streams = crate::xds::source_streams::SourceStreams::new(
        Arc::new(server.snapshot.bootstrap.clone()),
        server.snapshot.bootstrap.node.clone().unwrap_or_default(),
        dynamic.clone(),
        server.store.clone(),
    );
    tokio::spawn(source_streams.run());
    let weak = Arc::downgrade(dynamic);
    tokio::spawn(async move {
        // A removed listener holds its routes until it drained: look again
        // now and then, so what nothing uses any more is unsubscribed.
        let mut every = tokio::time::interval(SUBSCRIPTION_RECHECK);
        loop {
            every.tick().await;
            let Some(dynamic) = weak.upgrade() else { break };
            dynamic.recheck_subscriptions();
        }
    });
    true
}

/// Starts the xDS clients: ADS, per-type streams, file sources.
fn spawn_dynamic_clients(server: &Arc<Server>) {
    let Some(dynamic) = &server.dynamic else {
        return;
    };
    let empty = crate::xds::config::DynamicSources::default();
    let sources = server.snapshot.dynamic_sources.as_ref().unwrap_or(&empty);
    let sink: Arc<dyn crate::xds::ResourceSink> = dynamic.clone();
    let node = server.snapshot.bootstrap.node.clone().unwrap_or_default();
    for stream in sources.grpc_streams() {
        let (stream, node, sink, stats) = (
            stream.clone(),
            node.clone(),
            sink.clone(),
            crate::xds::stats::XdsStats::for_service(&server.store, stream.service),
        );
        tokio::spawn(async move {
            crate::xds::run_xds_stream(stream, node, sink, stats, std::future::pending::<()>())
                .await;
        });
    }
    if !sources.files.is_empty() {
        let (files, store, sink) = (sources.files.clone(), server.store.clone(), sink.clone());
        tokio::spawn(async move {
            crate::xds::file_source::run_file_sources(
                files,
                sink,
                &store,
                std::future::pending::<()>(),
            )
            .await;
        });
    }
}

/// Waits, as Envoy does before going live, for the first clusters and
/// listeners of the xDS sources (bounded by the initial fetch timeout).
async fn wait_for_first_dynamic_resources(server: &Arc<Server>) {
    let Some(dynamic) = &server.dynamic else {
        return;
    };
    let empty = crate::xds::config::DynamicSources::default();
    let sources = server.snapshot.dynamic_sources.as_ref().unwrap_or(&empty);
    let wants_clusters = sources.delivers(crate::xds::type_urls::CLUSTER);
    let wants_listeners = sources.delivers(crate::xds::type_urls::LISTENER);
    dynamic
        .wait_initial_fetch(
            wants_clusters,
            wants_listeners,
            initial_fetch_timeout(&server.snapshot.bootstrap),
        )
        .await;
    server
        .snapshot
        .clusters
        .wait_initialized(CLUSTER_INIT_TIMEOUT)
        .await;
}

/// Waits for a signal or `/quitquitquit`. SIGTERM/SIGINT drain first:
/// listeners close, in-flight requests finish (up to `--drain-time-s`).
async fn wait_for_exit(server: &Arc<Server>) -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return 1,
    };
    let mut sigint = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(_) => return 1,
    };
    tokio::select! {
        _ = sigterm.recv() => tracing::info!(target: "sluice::main", "caught SIGTERM"),
        _ = sigint.recv() => tracing::info!(target: "sluice::main", "caught SIGINT"),
        _ = server.quit.notified() => {
            tracing::info!(target: "sluice::main", "exiting on /quitquitquit");
            return 0;
        }
    }
    server.listeners.shutdown();
    server.set_draining();
    let deadline = Instant::now() + server.drain_period();
    while Instant::now() < deadline && server.listeners.active_connections() > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = server.quit.notified() => break,
        }
    }
    0
}

/// The layered runtime of `layered_runtime` (static and admin layers), or
/// Envoy's default layering when the bootstrap has none.
fn runtime_from_bootstrap(
    bootstrap: &envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap,
) -> crate::admin::Runtime {
    use crate::admin::{Runtime, RuntimeLayer};
    use envoy_types::pb::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
    // Envoy 1.40 without `layered_runtime` has no layers at all, so
    // `/runtime_modify` answers 503 "No admin layer specified".
    let Some(layered) = &bootstrap.layered_runtime else {
        return Runtime::new(Vec::new());
    };
    let mut layers = Vec::new();
    for layer in &layered.layers {
        match &layer.layer_specifier {
            Some(LayerSpecifier::StaticLayer(values)) => {
                let json = crate::config::json::to_json(values);
                match RuntimeLayer::static_from_json(&layer.name, &json) {
                    Ok(layer) => layers.push(layer),
                    Err(error) => {
                        tracing::warn!(target: "sluice::runtime", layer = %layer.name, %error, "runtime layer ignored")
                    }
                }
            }
            Some(LayerSpecifier::AdminLayer(_)) => layers.push(RuntimeLayer::admin(&layer.name)),
            // Validation rejects disk and RTDS layers before we get here.
            _ => {}
        }
    }
    Runtime::new(layers)
}

/// Gives access-log writer threads a moment to write what is queued.
async fn flush_access_logs(store: &Store) {
    let buffered = store.gauge("filesystem.write_total_buffered");
    let deadline = Instant::now() + Duration::from_secs(2);
    while buffered.value() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn_uptime(server: Arc<Server>) {
    let uptime = server.store.gauge("server.uptime");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            uptime.set(server.started_instant.elapsed().as_secs() as i64);
        }
    });
}
