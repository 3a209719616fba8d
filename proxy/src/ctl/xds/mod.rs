//! `sluicectl xds serve DIR`: a demo xDS control plane. It serves the Envoy
//! YAML resources in a folder over gRPC, ADS and the per-type services
//! (LDS, CDS, EDS, RDS on streams of their own), state-of-the-world and
//! delta, and pushes new versions when files change (polled every 500 ms).
//! It is an ordinary xDS server: Envoy and Sluice connect to it the same way.
//!
//! - [`snapshot`]: the folder → an immutable set of resources with versions.
//! - [`services`]: the gRPC services, all answering from one snapshot.
//! - [`sotw_stream`] / [`delta_stream`]: one client stream of each protocol.
//!
//! The protocol log (streams, subscriptions, every response sent, ACK and
//! NACK) goes to stderr; `--timestamps` prefixes each line with the UNIX
//! time in microseconds, so a push can be timed against its effect (the
//! EDS-to-kernel measurement, `cargo xtask xds-kernel`, does).

/// Writes one protocol log line (see [`log_line`]).
macro_rules! xds_log {
    ($($arg:tt)*) => { $crate::ctl::xds::log_line(format_args!($($arg)*)) };
}

pub mod delta_stream;
pub mod services;
pub mod snapshot;
pub mod sotw_stream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use tokio::sync::watch;

use services::DiscoveryServer;
use snapshot::Snapshot;

/// How often the folder is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Args, Debug)]
pub struct XdsCommand {
    #[command(subcommand)]
    pub action: XdsAction,
}

#[derive(Subcommand, Debug)]
pub enum XdsAction {
    /// Serve the Envoy YAML resources in DIR over ADS and the per-type
    /// services (LDS, CDS, EDS, RDS), SotW and delta.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Folder of Envoy v3 resources: one per file ("@type" at the top) or
    /// `resources:` lists; *.yaml, *.yml and *.json are read.
    pub dir: PathBuf,
    /// TCP port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 18000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub address: IpAddr,
    /// Prefix each log line on stderr with the UNIX time (seconds, to the
    /// microsecond), e.g. to time a push against its effect.
    #[arg(long)]
    pub timestamps: bool,
}

/// `--timestamps` was given.
static TIMESTAMPS: AtomicBool = AtomicBool::new(false);

/// Writes one protocol log line to stderr, prefixed with the UNIX time
/// (`1764000000.123456 `) under `--timestamps`.
pub fn log_line(line: std::fmt::Arguments<'_>) {
    if TIMESTAMPS.load(Ordering::Relaxed) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!("{}.{:06} {line}", now.as_secs(), now.subsec_micros());
    } else {
        eprintln!("{line}");
    }
}

/// Runs a `sluicectl xds …` command.
pub fn run(command: XdsCommand) -> ExitCode {
    match command.action {
        XdsAction::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    TIMESTAMPS.store(args.timestamps, Ordering::Relaxed);
    let initial = snapshot::load(&args.dir).map_err(|errors| {
        format!(
            "cannot serve {}:\n  {}",
            args.dir.display(),
            errors.join("\n  ")
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.address, args.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", args.address, args.port))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        println!(
            "xds: serving {} resources from {} on {local} (ADS and LDS/CDS/EDS/RDS, state-of-the-world and delta)",
            initial.len(),
            args.dir.display()
        );
        print_summary(&initial);
        let (publish, snapshots) = watch::channel(Arc::new(initial));
        tokio::spawn(watch_folder(args.dir.clone(), publish));
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(DiscoveryServer::new(snapshots).into_service(), incoming, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| format!("server failed: {e}"))
    })
}

fn print_summary(snapshot: &Snapshot) {
    for (type_url, resources) in &snapshot.types {
        let names: Vec<&str> = resources.keys().map(String::as_str).collect();
        println!(
            "xds:   {} version {}: {}",
            crate::xds::type_urls::short(type_url),
            snapshot.type_version(type_url),
            names.join(", ")
        );
    }
}

/// Polls the folder; publishes a new snapshot when a valid change lands.
/// A change that does not load is reported and the last good one stays.
async fn watch_folder(dir: PathBuf, publish: watch::Sender<Arc<Snapshot>>) {
    // Not the start-up fingerprint: a change between the first load and
    // now must still be seen (reload publishes only real differences).
    let mut last = None;
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = snapshot::fingerprint(&dir).ok();
        if now == last {
            continue;
        }
        last = now;
        reload(&dir, &publish);
        if publish.is_closed() {
            return;
        }
    }
}

fn reload(dir: &Path, publish: &watch::Sender<Arc<Snapshot>>) {
    match snapshot::load(dir) {
        Ok(snapshot) if **publish.borrow() == snapshot => {}
        Ok(snapshot) => {
            println!(
                "xds: {} changed; pushing {} resources",
                dir.display(),
                snapshot.len()
            );
            print_summary(&snapshot);
            publish.send_replace(Arc::new(snapshot));
        }
        Err(errors) => xds_log!(
            "xds: {} changed but does not load; still serving the previous resources:\n  {}",
            dir.display(),
            errors.join("\n  ")
        ),
    }
}
