//! `tcp-kernel`: one L4 service reached four ways, interleaved per round —
//! `kernel socket-LB` (a real `sluice` holding `bind_to_port: false`
//! tcp_proxy listeners, which it turns into kernel socket-LB entries: the
//! client connects to a port nothing listens on and `connect4` rewrites it
//! to the backend), `direct` (the client straight to the backend, no hooks
//! attached), `sluice tcp_proxy` (Sluice's userspace proxy) and `envoy
//! tcp_proxy`. Loads: `iperf3` bulk (Gbit/s) and `wrk` with a new
//! connection per request (connections/s, p50/p99 of connect + request).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::super::configs;
use super::super::load::Load;
use super::super::peers::{self, Readiness, Running, LOAD_CPU, PROXY_CPU};
use super::super::ports::{port, Slot};
use super::super::run::Settings;
use super::super::scenario::Scenario;
use super::cgroup::BenchCgroup;
use super::{admin_counter, record, timed, Outcome};

const NEWCONN_CONNECTIONS: usize = 8;

const USERSPACE_YAML: &str = include_str!("../../../bench/proxy-tcp-kernel.yaml");
const SOCKET_LB_YAML: &str = include_str!("../../../bench/sluice-socket-lb.yaml");

const KERNEL: &str = "kernel socket-LB";
const DIRECT: &str = "direct";
const SLUICE: &str = "sluice tcp_proxy";
const ENVOY: &str = "envoy tcp_proxy";
const VARIANTS: [&str; 4] = [KERNEL, DIRECT, SLUICE, ENVOY];

static NEWCONN_HEADERS: std::sync::LazyLock<Vec<(String, String)>> =
    std::sync::LazyLock::new(|| vec![("Connection".to_string(), "close".to_string())]);

pub fn run(settings: &Settings, rounds: usize) -> Result<Outcome, String> {
    for port in [
        port(Slot::KernelIperfBackend),
        port(Slot::ProxyHttp),
        port(Slot::VipBulk),
        port(Slot::VipHttp),
    ] {
        peers::check_port_free(port)?;
    }
    let cgroup = BenchCgroup::enter("tcp-kernel")?;
    let iperf3 = peers::find_program("iperf3").ok_or("iperf3 is missing")?;
    let iperf_server = peers::start(
        "tcp-kernel-iperf3",
        &iperf3,
        &[
            "-s".into(),
            "-p".into(),
            port(Slot::KernelIperfBackend).to_string(),
        ],
        LOAD_CPU,
        settings.tools.pin,
        settings.dir,
        Readiness::PortOpen(port(Slot::KernelIperfBackend)),
    )?;
    let mut samples = Vec::new();
    for round in 0..rounds {
        for variant in VARIANTS {
            let values = measure(variant, settings, cgroup.path())
                .map_err(|e| format!("tcp-kernel / {variant} / round {}: {e}", round + 1))?;
            println!(
                "  round {} {variant:17} {:6.2} Gbit/s {:8.0} conn/s {:.2} ms p50 {:.2} ms p99",
                round + 1,
                values["Gbit/s"],
                values["conn/s"],
                values["p50 ms"],
                values["p99 ms"]
            );
            record(&mut samples, Scenario::TcpKernel, variant, round, &values);
        }
    }
    iperf_server.stop();
    drop(cgroup);
    Ok(Outcome {
        scenario: Scenario::TcpKernel,
        variants: VARIANTS.to_vec(),
        metrics: vec![
            ("Gbit/s", true),
            ("conn/s", true),
            ("p50 ms", false),
            ("p99 ms", false),
        ],
        samples,
        notes: vec![format!(
            "Gbit/s: `iperf3` one stream; conn/s, p50, p99: `wrk -c{NEWCONN_CONNECTIONS}` with \
             `Connection: close` (one connection per request) to nginx. The kernel variant's \
             client connects to 127.0.0.1:{}/{}, where nothing \
             listens: only `connect4` rewriting it reaches the backend (each run checks \
             Sluice's `datapath.socket_lb.*.connects` counters rose). Proxies on CPU \
             {PROXY_CPU}; client and backends on CPU {LOAD_CPU}; `direct` runs with no hook \
             attached; every process in the bench's cgroup v2 child.",
            port(Slot::VipHttp),
            port(Slot::VipBulk)
        )],
    })
}

/// Starts the variant, runs both loads (each after a warm-up), stops it.
fn measure(
    variant: &'static str,
    settings: &Settings,
    cgroup: &Path,
) -> Result<BTreeMap<&'static str, f64>, String> {
    let pin_dir = format!("/sys/fs/bpf/sluice-bench-{}", std::process::id());
    let (running, bulk_port, http_port) = start_variant(variant, settings, cgroup, &pin_dir)?;
    let result = run_loads(variant, bulk_port, http_port, settings);
    let result = result.map_err(|e| match &running {
        Some(r) => format!("{e}\n{} output:\n{}", r.name, r.log_tail()),
        None => e,
    });
    if let Some(r) = running {
        r.stop();
    }
    let _ = std::fs::remove_dir_all(&pin_dir); // only left if Sluice was killed
    result
}

/// Both loads against the started variant.
fn run_loads(
    variant: &str,
    bulk_port: u16,
    http_port: u16,
    settings: &Settings,
) -> Result<BTreeMap<&'static str, f64>, String> {
    let bulk = timed(&Load::Iperf3, bulk_port, settings)?;
    let newconn = timed(
        &Load::Wrk {
            connections: NEWCONN_CONNECTIONS,
            headers: &NEWCONN_HEADERS,
            path: "/",
        },
        http_port,
        settings,
    )?;
    super::super::run::check_errors(&newconn, settings.max_error_fraction)?;
    if variant == KERNEL {
        check_kernel_counted()?;
    }
    Ok(BTreeMap::from([
        ("Gbit/s", bulk.rate / 1e9),
        ("conn/s", newconn.rate),
        ("p50 ms", newconn.p50_ms.unwrap_or(f64::NAN)),
        ("p99 ms", newconn.p99_ms.unwrap_or(f64::NAN)),
    ]))
}

/// The kernel, not something else, served the kernel variant's connects.
fn check_kernel_counted() -> Result<(), String> {
    // Kernel counters reach /stats once a second.
    std::thread::sleep(Duration::from_millis(1200));
    for listener in ["bench_vip_bulk", "bench_vip_http"] {
        let name = format!("datapath.socket_lb.{listener}.connects");
        match admin_counter(port(Slot::Admin), &name) {
            Some(n) if n > 0 => {}
            other => return Err(format!("{name} is {other:?}: the kernel did not serve it")),
        }
    }
    Ok(())
}

/// The variant's process (none for direct) and the ports its client uses.
fn start_variant(
    variant: &str,
    settings: &Settings,
    cgroup: &Path,
    pin_dir: &str,
) -> Result<(Option<Running>, u16, u16), String> {
    let dir = settings.dir.display().to_string();
    let mut values = configs::standard_values(&dir, settings.concurrency, port(Slot::Backend));
    values.extend([
        ("BULK_PORT", port(Slot::Proxy).to_string()),
        ("HTTP_PORT", port(Slot::ProxyHttp).to_string()),
        ("VIP_BULK_PORT", port(Slot::VipBulk).to_string()),
        ("VIP_HTTP_PORT", port(Slot::VipHttp).to_string()),
        (
            "IPERF_BACKEND_PORT",
            port(Slot::KernelIperfBackend).to_string(),
        ),
    ]);
    let concurrency = settings.concurrency.to_string();
    let write = |file: &str, template: &str| -> Result<String, String> {
        let path = settings.dir.join(file);
        std::fs::write(&path, configs::render(template, &values))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path.display().to_string())
    };
    let proxy_args = |config: &str, extra: &[&str]| -> Vec<String> {
        ["-c", config, "--concurrency", &concurrency, "-l", "error"]
            .iter()
            .chain(extra)
            .map(|arg| arg.to_string())
            .collect()
    };
    let (program, args, ports) = match variant {
        DIRECT => return Ok((None, port(Slot::KernelIperfBackend), port(Slot::Backend))),
        KERNEL => {
            let config = write("sluice-socket-lb.yaml", SOCKET_LB_YAML)?;
            let cgroup = cgroup.display().to_string();
            let args = proxy_args(
                &config,
                &[
                    "--datapath",
                    "required",
                    "--datapath-cgroup",
                    &cgroup,
                    "--datapath-pin-dir",
                    pin_dir,
                ],
            );
            (
                settings.tools.sluice.clone(),
                args,
                (port(Slot::VipBulk), port(Slot::VipHttp)),
            )
        }
        SLUICE => {
            let config = write("proxy-tcp-kernel.yaml", USERSPACE_YAML)?;
            let args = proxy_args(&config, &["--datapath", "off"]);
            (
                settings.tools.sluice.clone(),
                args,
                (port(Slot::Proxy), port(Slot::ProxyHttp)),
            )
        }
        _ => {
            let config = write("proxy-tcp-kernel.yaml", USERSPACE_YAML)?;
            let args = proxy_args(&config, &["--disable-hot-restart"]);
            (
                settings.tools.envoy.clone(),
                args,
                (port(Slot::Proxy), port(Slot::ProxyHttp)),
            )
        }
    };
    let running = peers::start(
        variant.split(' ').next().unwrap_or(variant),
        &program,
        &args,
        PROXY_CPU,
        settings.tools.pin,
        settings.dir,
        Readiness::AdminReady,
    )?;
    Ok((Some(running), ports.0, ports.1))
}
