//! The kernel datapath, userspace side: derives the socket-LB plan from the
//! configuration ([`plan`]), starts the eBPF programs (`sluice-ebpf`) when
//! `--datapath` allows, and keeps the kernel maps in sync with cluster
//! membership ([`sync`]) for as long as the server runs.
//!
//! `--datapath auto` (default) attaches the socket hooks only when the
//! configuration has a socket-LB service, and if the kernel refuses (no root
//! or CAP_BPF, no cgroup v2, no hook), logs once which hooks are off and why
//! and serves in userspace. `--datapath required` attaches them regardless
//! and makes start-up fail, naming the hook, when it cannot.
//!
//! L7 services (virtual listeners with `http_connection_manager`) are
//! redirected by the kernel to the daemon's `--datapath-redirect-to`
//! address ([`redirect`]), bound before the first such service reaches the
//! kernel. `--datapath-sockmap on` ([`sockmap`]) is a reason to attach as
//! well.
//!
//! Start order (no gap when a previous daemon's pins are taken over): load
//! fresh maps, fill them from the plan, attach the hooks next to the
//! previous ones, update XDP links in place, then retire the previous links.
//! UDP service listeners are socket-LB services like TCP ones; without the
//! datapath nothing serves them, which [`udp_notice`] says once each.
//! `--datapath-keep-pins` leaves everything attached and pinned on a clean
//! shutdown, so the kernel keeps forwarding across a restart. What is
//! attached (or why not) is in `/server_info` ([`status`]).

pub mod fd_table;
pub mod kernel_log;
pub mod lb_table;
pub mod maglev;
pub mod plan;
pub mod preload;
pub mod redirect;
pub mod redirect_plan;
pub mod sockmap;
pub mod startup_clock;
pub mod stats;
pub mod status;
pub mod sync;
pub mod udp_notice;

use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::listener::v3::Listener;
use futures_util::FutureExt;
use sluice_ebpf::maps::XdpMaps;
use sluice_ebpf::{Datapath, Hook, LoadOptions};
use status::{DatapathStatus, StatusCell, XdpInterfaceStatus};

use crate::listener::ListenerManager;
use crate::stats::Store;
use crate::upstream::{ClusterManager, LbPolicy};

/// How often kernel counters are added to the stats store.
const COUNTER_EXPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Default pin directory (`--datapath-pin-dir`).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sluice";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatapathMode {
    /// Userspace only.
    Off,
    /// Use the kernel hooks when there is work for them and the kernel allows.
    Auto,
    /// Fail start-up if a socket hook cannot attach.
    Required,
}

/// The daemon's `--datapath*` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DatapathFlags {
    /// Kernel datapath: off, auto (use what the kernel allows) or required.
    #[arg(long = "datapath", value_enum, default_value = "auto")]
    pub datapath_mode: DatapathMode,

    /// cgroup v2 the socket hooks attach to (default: the node's cgroup v2
    /// root, /sys/fs/cgroup/unified on hybrid hosts, else /sys/fs/cgroup).
    #[arg(long = "datapath-cgroup", value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// Where maps and links are pinned (what `sluicectl bpf` reads).
    #[arg(long = "datapath-pin-dir", value_name = "PATH", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

    /// Interface to attach XDP to (per-interface and per-service counters,
    /// IPv4/IPv6 source CIDR deny lists); native (driver) mode where the
    /// driver has it, generic otherwise; repeatable.
    #[arg(long = "datapath-xdp-iface", value_name = "NAME")]
    pub xdp_interfaces: Vec<String>,

    /// Where the daemon accepts the connections the kernel redirects from
    /// L7 service VIPs (`bind_to_port: false` listeners with
    /// http_connection_manager) and serves each with the listener of its
    /// original destination. IPv4; in a cluster, the node address.
    /// Connections to IPv6 VIPs go to --datapath-redirect6-to.
    #[arg(
        long = "datapath-redirect-to",
        value_name = "IP:PORT",
        default_value = redirect::DEFAULT_REDIRECT_TO,
        value_parser = redirect::parse_redirect_to
    )]
    pub redirect_to: SocketAddrV4,

    /// Where the daemon accepts the connections the kernel redirects from
    /// IPv6 L7 service VIPs (an IPv6 socket cannot connect to an IPv4
    /// address). Default: [::1] on the port of --datapath-redirect-to; in a
    /// cluster, the node's IPv6 address.
    #[arg(
        long = "datapath-redirect6-to",
        value_name = "[IP]:PORT",
        value_parser = redirect::parse_redirect6_to
    )]
    pub redirect6_to: Option<SocketAddrV6>,

    /// On a clean shutdown, leave the programs attached and maps and links
    /// pinned, so the kernel keeps forwarding (with the last maps) until the
    /// next start, which takes them over without a gap. Without it, a clean
    /// shutdown detaches and unpins everything.
    #[arg(long = "datapath-keep-pins")]
    pub keep_pins: bool,

    /// Local acceleration (sockops + sk_msg) for TCP connections with both
    /// ends on this node: on or off (default off: see BENCHMARKS.md).
    #[arg(long = "datapath-sockmap", value_enum, default_value = "off")]
    pub sockmap: sockmap::SockmapSwitch,
}

impl DatapathFlags {
    fn cgroup(&self) -> PathBuf {
        if let Some(path) = &self.cgroup {
            return path.clone();
        }
        let hybrid = Path::new("/sys/fs/cgroup/unified");
        if hybrid.is_dir() {
            hybrid.to_path_buf()
        } else {
            PathBuf::from("/sys/fs/cgroup")
        }
    }
}

/// The running datapath; dropping it (server exit) stops the sync and
/// detaches and unpins the programs.
pub struct DatapathHandle {
    datapath: Arc<Mutex<Option<Datapath>>>,
    sync_task: tokio::task::JoinHandle<()>,
    kernel_log_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for DatapathHandle {
    fn drop(&mut self) {
        self.sync_task.abort();
        if let Some(task) = &self.kernel_log_task {
            task.abort();
        }
        let datapath = self
            .datapath
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(datapath);
    }
}

fn hooks_list() -> String {
    Hook::ALL
        .iter()
        .map(|hook| hook.attach_point())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The current listeners (bootstrap and LDS, bound and virtual) as messages.
fn listener_protos(listeners: &ListenerManager) -> Vec<Listener> {
    listeners
        .configs()
        .iter()
        .map(|listener| listener.source.clone())
        .collect()
}

fn derive_plan(
    listeners: &[Listener],
    clusters: &ClusterManager,
    redirect_to: plan::RedirectTargets,
) -> plan::Plan {
    plan::derive(
        listeners,
        |name| {
            clusters.get(name).map(|cluster| plan::ClusterBackends {
                endpoints: cluster.healthy_endpoints(),
                consistent_hashing: matches!(
                    cluster.lb_policy(),
                    LbPolicy::Maglev { .. } | LbPolicy::RingHash { .. }
                ),
            })
        },
        redirect_to,
    )
}

/// The plan for the current listeners and clusters, with redirect services
/// only if the redirect address is (or could now be made) served.
fn plan_with_redirects(
    listeners: &Arc<ListenerManager>,
    clusters: &ClusterManager,
    redirect: &mut redirect::RedirectListener,
    datapath: &Datapath,
) -> Result<plan::Plan, (String, plan::Plan)> {
    let protos = listener_protos(listeners);
    let plan = derive_plan(&protos, clusters, redirect.targets());
    if !plan.has_redirects() {
        return Ok(plan);
    }
    match redirect.ensure_serving(plan.redirect_families(), listeners, datapath) {
        (_, errors) if errors.is_empty() => Ok(plan),
        (served, errors) => Err((errors.join("; "), derive_plan(&protos, clusters, served))),
    }
}

impl DatapathMode {
    fn name(self) -> &'static str {
        match self {
            DatapathMode::Off => "off",
            DatapathMode::Auto => "auto",
            DatapathMode::Required => "required",
        }
    }
}

/// `DatapathFlags` parsed from `--datapath*` arguments alone (unit tests).
#[cfg(test)]
pub(crate) fn parse_flags(args: &[&str]) -> Result<DatapathFlags, clap::Error> {
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        datapath: DatapathFlags,
    }
    Flags::try_parse_from(std::iter::once("sluice").chain(args.iter().copied())).map(|f| f.datapath)
}

/// How the object is loaded for these flags.
fn load_options(flags: &DatapathFlags) -> LoadOptions {
    LoadOptions {
        keep_pins: flags.keep_pins,
        // Off by flag is off until exit: no capacity for it.
        without_sockmap: flags.sockmap == sockmap::SockmapSwitch::Off,
        // XDP interfaces are only given at start.
        without_xdp: flags.xdp_interfaces.is_empty(),
        kernel_log_level: sluice_ebpf::kernel_log::kernel_level(),
    }
}

/// Starts the datapath for this configuration and records what it did in
/// `status_cell`. `Err(exit code)` when `--datapath required` cannot be
/// honoured.
pub fn start(
    flags: &DatapathFlags,
    preload: preload::Preload,
    listeners: Arc<ListenerManager>,
    clusters: Arc<ClusterManager>,
    store: &Store,
    status_cell: &StatusCell,
) -> Result<Option<DatapathHandle>, i32> {
    let mut status = DatapathStatus::new(
        flags.datapath_mode.name(),
        flags.pin_dir.display().to_string(),
        flags.keep_pins,
    );
    let result = start_recording(flags, preload, listeners, clusters, store, &mut status);
    status_cell.set(status);
    result
}

fn start_recording(
    flags: &DatapathFlags,
    preload: preload::Preload,
    listeners: Arc<ListenerManager>,
    clusters: Arc<ClusterManager>,
    store: &Store,
    status: &mut DatapathStatus,
) -> Result<Option<DatapathHandle>, i32> {
    let store = store.clone();
    if let Err(error) = sockmap::check_flags(flags) {
        eprintln!("{error}");
        return Err(1);
    }
    if flags.datapath_mode == DatapathMode::Off {
        status.reason = Some("--datapath off".into());
        udp_notice::warn_unserved(&listeners, "--datapath off".into());
        return Ok(None);
    }
    let sockmap_wanted = sockmap::wanted(flags)?;
    let redirect6_to = redirect::redirect6_or_default(flags.redirect6_to, flags.redirect_to);
    let initial = derive_plan(
        &listener_protos(&listeners),
        &clusters,
        plan::RedirectTargets {
            v4: Some(flags.redirect_to),
            v6: Some(redirect6_to),
        },
    );
    for (listener, reason) in &initial.not_planned {
        // A TCP listener left out is still served in userspace when a
        // connection reaches it; a UDP one is not served at all.
        tracing::info!(target: "sluice::datapath", %listener, "not a kernel service: {reason}");
    }
    if flags.datapath_mode == DatapathMode::Auto
        && initial.services.is_empty()
        && flags.xdp_interfaces.is_empty()
        && !sockmap_wanted
    {
        tracing::info!(target: "sluice::datapath", "no socket-LB service in the configuration, no --datapath-xdp-iface, no sockmap; kernel hooks not attached");
        status.reason = Some(
            "no socket-LB service in the configuration, no --datapath-xdp-iface, no sockmap".into(),
        );
        return Ok(None);
    }
    let cgroup = flags.cgroup();
    status.cgroup = Some(cgroup.display().to_string());
    // Every failure below leaves the whole kernel datapath off: `auto`
    // says so once and serves in userspace, `required` exits.
    let off = |status: &mut DatapathStatus, error: &dyn std::fmt::Display| {
        status.reason = Some(error.to_string());
        if flags.datapath_mode == DatapathMode::Required {
            eprintln!("--datapath required: {error}");
            return Err(1);
        }
        tracing::warn!(target: "sluice::datapath", "kernel datapath off ({} not attached): {error}; serving in userspace", hooks_list());
        udp_notice::warn_unserved(&listeners, format!("kernel datapath off: {error}"));
        Ok(None)
    };
    let mut clock = startup_clock::StageClock::start();
    let mut datapath = match preload.load_datapath(
        &cgroup,
        &flags.pin_dir,
        load_options(flags),
        &mut clock,
    ) {
        Ok(datapath) => datapath,
        Err(error) => {
            // Nothing was touched: a previous daemon's pinned programs keep
            // forwarding with their last maps, which nobody keeps in sync.
            let previous = sluice_ebpf::pinned_hooks(&flags.pin_dir).len();
            if previous > 0 {
                tracing::warn!(target: "sluice::datapath", pin_dir = %flags.pin_dir.display(), "{previous} hooks of a previous daemon stay attached with their last maps, not kept in sync; remove the pins to detach them");
            }
            return off(status, &error);
        }
    };
    status.took_over_pins = datapath.took_over();
    // The redirect address is served before the kernel redirects to it.
    let mut redirect = redirect::RedirectListener::new(flags.redirect_to, redirect6_to, &store);
    let initial = match plan_with_redirects(&listeners, &clusters, &mut redirect, &datapath) {
        Ok(plan) => plan,
        Err((error, _)) if flags.datapath_mode == DatapathMode::Required => {
            eprintln!("--datapath required: {error}");
            return Err(1);
        }
        Err((error, plan)) => {
            tracing::warn!(target: "sluice::datapath", "{error}; L7 services stay in userspace (not redirected)");
            plan
        }
    };
    clock.stage("plan_and_redirect_listener");
    // Maps are complete before any hook sees them.
    let mut syncer = sync::Syncer::default();
    if let Err(error) = syncer.apply(&initial, datapath.maps()) {
        return off(status, &error);
    }
    clock.stage("first_sync");
    if let Err(error) = datapath.attach_hooks() {
        return off(status, &error);
    }
    clock.stage("attach_hooks");
    for interface in &flags.xdp_interfaces {
        match datapath.attach_xdp(interface) {
            Ok(attached) => {
                let mode = attached.mode.as_str();
                tracing::info!(target: "sluice::datapath", %interface, mode, adopted = attached.adopted, "xdp attached ({mode} mode)");
                status.xdp_interfaces.push(XdpInterfaceStatus {
                    interface: interface.clone(),
                    mode: mode.into(),
                    adopted: attached.adopted,
                    error: None,
                });
            }
            Err(error) if flags.datapath_mode == DatapathMode::Required => {
                eprintln!("--datapath required: {error}");
                return Err(1);
            }
            Err(error) => {
                tracing::warn!(target: "sluice::datapath", "{error}; no XDP on {interface}");
                status.xdp_interfaces.push(XdpInterfaceStatus {
                    interface: interface.clone(),
                    mode: "off".into(),
                    adopted: false,
                    error: Some(error.to_string()),
                });
            }
        }
    }
    datapath.finish_handover();
    clock.stage("xdp_and_handover");
    if sockmap_wanted {
        sockmap::attach(flags, &cgroup, &mut datapath)?;
        clock.stage("sockmap");
    }
    let xdp_maps = match XdpMaps::open_pinned(&flags.pin_dir) {
        Ok(maps) => Some(maps),
        Err(error) => {
            tracing::warn!(target: "sluice::datapath", %error, "xdp counters not exported");
            None
        }
    };
    clock.stage("xdp_maps");
    let kernel_log_task = match datapath.take_kernel_logger() {
        Ok(logger) => kernel_log::spawn(logger),
        Err(error) => {
            tracing::warn!(target: "sluice::datapath", %error, "kernel log records not forwarded");
            None
        }
    };
    clock.stage("kernel_logger");
    clock.log();
    tracing::info!(
        target: "sluice::datapath",
        cgroup = %cgroup.display(),
        pin_dir = %flags.pin_dir.display(),
        services = initial.services.len(),
        keep_pins = flags.keep_pins,
        took_over = status.took_over_pins,
        "socket load balancing attached ({})",
        hooks_list()
    );
    status.active = true;
    status.hooks_attached = datapath.hooks().map(|hook| hook.attach_point()).collect();
    status
        .hooks_off
        .retain(|point| !status.hooks_attached.contains(point));
    let datapath = Arc::new(Mutex::new(Some(datapath)));
    let sync_task = tokio::spawn(keep_in_sync(
        listeners,
        clusters,
        syncer,
        redirect,
        datapath.clone(),
        store,
        stats::XdpExport::new(xdp_maps, &status.xdp_interfaces),
    ));
    Ok(Some(DatapathHandle {
        datapath,
        sync_task,
        kernel_log_task,
    }))
}

/// Re-derives and applies the plan whenever a listener or cluster is
/// added, replaced or removed (bootstrap, LDS, CDS) or any cluster's
/// membership or health changes (DNS, EDS), and exports the kernel counters
/// every second.
async fn keep_in_sync(
    listeners: Arc<ListenerManager>,
    clusters: Arc<ClusterManager>,
    mut syncer: sync::Syncer,
    mut redirect: redirect::RedirectListener,
    datapath: Arc<Mutex<Option<Datapath>>>,
    store: Store,
    mut xdp_export: stats::XdpExport,
) {
    let mut listener_changes = listeners.subscribe();
    let mut cluster_set_changes = clusters.subscribe();
    let mut receivers: Vec<_> = clusters
        .snapshot()
        .iter()
        .map(|cluster| cluster.subscribe())
        .collect();
    let mut export = stats::CounterExport::default();
    let mut tick = tokio::time::interval(COUNTER_EXPORT_INTERVAL);
    loop {
        let membership_changed = async {
            if receivers.is_empty() {
                return std::future::pending().await;
            }
            let changes = receivers.iter_mut().map(|rx| rx.changed().boxed());
            futures_util::future::select_all(changes).await.0
        };
        let resync = tokio::select! {
            result = membership_changed => {
                if result.is_err() {
                    // A removed cluster's channel closed: watch the current set.
                    receivers = clusters.snapshot().iter().map(|c| c.subscribe()).collect();
                }
                true
            }
            result = cluster_set_changes.changed() => {
                if result.is_err() {
                    return; // the cluster manager is gone: the server is exiting
                }
                receivers = clusters.snapshot().iter().map(|c| c.subscribe()).collect();
                true
            }
            result = listener_changes.changed() => {
                if result.is_err() {
                    return;
                }
                true
            }
            _ = tick.tick() => false,
        };
        if resync {
            // One sync covers every change so far: an EDS response that
            // changed 100 clusters wakes this loop once, not 100 times.
            for receiver in &mut receivers {
                receiver.borrow_and_update();
            }
        }
        let mut guard = datapath.lock().unwrap_or_else(|e| e.into_inner());
        let Some(datapath) = guard.as_mut() else {
            return;
        };
        if resync {
            let started = std::time::Instant::now();
            let plan = match plan_with_redirects(&listeners, &clusters, &mut redirect, datapath) {
                Ok(plan) => plan,
                Err((error, plan)) => {
                    tracing::error!(target: "sluice::datapath", "{error}; L7 services stay in userspace (not redirected)");
                    plan
                }
            };
            let derived = started.elapsed();
            match syncer.apply(&plan, datapath.maps()) {
                Ok(()) => {
                    tracing::debug!(target: "sluice::datapath", services = plan.services.len(), ?derived, written = ?(started.elapsed() - derived), "kernel maps synced")
                }
                Err(error) => tracing::error!(target: "sluice::datapath", "{error}"),
            }
        } else {
            export.export(&store, &syncer, datapath.maps());
            xdp_export.export(&mut export, &store, &syncer, datapath.maps());
            if let Some(maps) = datapath.sockmap_maps() {
                export.export_sockmap(&store, maps);
            }
        }
    }
}
