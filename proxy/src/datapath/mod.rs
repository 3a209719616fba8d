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
//! `--datapath-sockmap on` ([`sockmap`]) is a reason to attach as well.

pub mod plan;
pub mod sockmap;
pub mod stats;
pub mod sync;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::listener::v3::Listener;
use futures_util::FutureExt;
use sluice_ebpf::{Datapath, Hook};

use crate::listener::ListenerManager;
use crate::stats::Store;
use crate::upstream::ClusterManager;

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

    /// Interface to attach XDP to (per-interface counters, source CIDR deny
    /// list); repeatable.
    #[arg(long = "datapath-xdp-iface", value_name = "NAME")]
    pub xdp_interfaces: Vec<String>,

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
}

impl Drop for DatapathHandle {
    fn drop(&mut self) {
        self.sync_task.abort();
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

fn derive_plan(listeners: &[Listener], clusters: &ClusterManager) -> plan::Plan {
    plan::derive(listeners, |name| {
        clusters.get(name).map(|cluster| {
            cluster
                .healthy_endpoints()
                .into_iter()
                .map(|(address, _weight)| address)
                .collect::<Vec<SocketAddr>>()
        })
    })
}

/// Starts the datapath for this configuration. `Err(exit code)` when
/// `--datapath required` cannot be honoured.
pub fn start(
    flags: &DatapathFlags,
    listeners: Arc<ListenerManager>,
    clusters: Arc<ClusterManager>,
    store: &Store,
) -> Result<Option<DatapathHandle>, i32> {
    let store = store.clone();
    if let Err(error) = sockmap::check_flags(flags) {
        eprintln!("{error}");
        return Err(1);
    }
    if flags.datapath_mode == DatapathMode::Off {
        return Ok(None);
    }
    let sockmap_wanted = sockmap::wanted(flags)?;
    let initial = derive_plan(&listener_protos(&listeners), &clusters);
    for (listener, reason) in &initial.not_planned {
        tracing::info!(target: "sluice::datapath", %listener, "stays in userspace: {reason}");
    }
    if flags.datapath_mode == DatapathMode::Auto
        && initial.services.is_empty()
        && flags.xdp_interfaces.is_empty()
        && !sockmap_wanted
    {
        tracing::info!(target: "sluice::datapath", "no socket-LB service in the configuration, no --datapath-xdp-iface, no sockmap; kernel hooks not attached");
        return Ok(None);
    }
    let cgroup = flags.cgroup();
    let mut datapath = match Datapath::start(&cgroup, &flags.pin_dir) {
        Ok(datapath) => datapath,
        Err(error) if flags.datapath_mode == DatapathMode::Required => {
            eprintln!("--datapath required: {error}");
            return Err(1);
        }
        Err(error) => {
            tracing::warn!(target: "sluice::datapath", "kernel datapath off ({} not attached): {error}; serving in userspace", hooks_list());
            return Ok(None);
        }
    };
    let mut syncer = sync::Syncer::default();
    if let Err(error) = syncer.apply(&initial, datapath.maps()) {
        if flags.datapath_mode == DatapathMode::Required {
            eprintln!("--datapath required: {error}");
            return Err(1);
        }
        tracing::warn!(target: "sluice::datapath", "kernel datapath off: {error}; serving in userspace");
        return Ok(None);
    }
    for interface in &flags.xdp_interfaces {
        match datapath.attach_xdp(interface) {
            Ok(mode) => {
                tracing::info!(target: "sluice::datapath", %interface, mode, "xdp attached ({mode} mode)")
            }
            Err(error) if flags.datapath_mode == DatapathMode::Required => {
                eprintln!("--datapath required: {error}");
                return Err(1);
            }
            Err(error) => {
                tracing::warn!(target: "sluice::datapath", "{error}; no XDP on {interface}")
            }
        }
    }
    if sockmap_wanted {
        sockmap::attach(flags, &cgroup, &mut datapath)?;
    }
    tracing::info!(
        target: "sluice::datapath",
        cgroup = %cgroup.display(),
        pin_dir = %flags.pin_dir.display(),
        services = initial.services.len(),
        "socket load balancing attached ({})",
        hooks_list()
    );
    let datapath = Arc::new(Mutex::new(Some(datapath)));
    let sync_task = tokio::spawn(keep_in_sync(
        listeners,
        clusters,
        syncer,
        datapath.clone(),
        store,
    ));
    Ok(Some(DatapathHandle {
        datapath,
        sync_task,
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
    datapath: Arc<Mutex<Option<Datapath>>>,
    store: Store,
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
        let mut guard = datapath.lock().unwrap_or_else(|e| e.into_inner());
        let Some(datapath) = guard.as_mut() else {
            return;
        };
        if resync {
            let plan = derive_plan(&listener_protos(&listeners), &clusters);
            match syncer.apply(&plan, datapath.maps()) {
                Ok(()) => {
                    tracing::debug!(target: "sluice::datapath", services = plan.services.len(), "kernel maps synced")
                }
                Err(error) => tracing::error!(target: "sluice::datapath", "{error}"),
            }
        } else {
            export.export(&store, &syncer, datapath.maps());
            if let Some(maps) = datapath.sockmap_maps() {
                export.export_sockmap(&store, maps);
            }
        }
    }
}
