//! `sockmap`: a local client/server pair (both in the bench's cgroup v2
//! child) with and without Sluice's local acceleration (`sluice
//! --datapath-sockmap on|off`, everything else equal), interleaved per
//! round. Loads: `iperf3` one stream (Gbit/s) and `wrk` over one keep-alive
//! connection to nginx (request/response latency p50/p99, requests/s).
//! Each "on" run checks that the kernel counted redirected bytes.

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

const ON: &str = "sockmap on";
const OFF: &str = "sockmap off";
const VARIANTS: [&str; 2] = [ON, OFF];

pub fn run(settings: &Settings, rounds: usize) -> Result<Outcome, String> {
    for port in [
        port(Slot::SockmapNginx),
        port(Slot::SockmapNginxH2),
        port(Slot::SockmapNginxGrpc),
        port(Slot::SockmapIperf),
    ] {
        peers::check_port_free(port)?;
    }
    let cgroup = BenchCgroup::enter("sockmap")?;
    let servers = start_servers(settings)?;
    let mut samples = Vec::new();
    for round in 0..rounds {
        for variant in VARIANTS {
            let values = measure(variant, settings, cgroup.path())
                .map_err(|e| format!("sockmap / {variant} / round {}: {e}", round + 1))?;
            println!(
                "  round {} {variant:12} {:6.2} Gbit/s {:8.0} req/s {:.3} ms p50 {:.3} ms p99",
                round + 1,
                values["Gbit/s"],
                values["req/s"],
                values["p50 ms"],
                values["p99 ms"]
            );
            record(&mut samples, Scenario::Sockmap, variant, round, &values);
        }
    }
    for server in servers {
        server.stop();
    }
    drop(cgroup);
    Ok(Outcome {
        scenario: Scenario::Sockmap,
        variants: VARIANTS.to_vec(),
        metrics: vec![
            ("Gbit/s", true),
            ("req/s", true),
            ("p50 ms", false),
            ("p99 ms", false),
        ],
        samples,
        notes: vec![format!(
            "Gbit/s: `iperf3` one stream; req/s, p50, p99: `wrk -t1 -c1` keep-alive to nginx \
             (one request in flight: request/response latency). Client and servers on CPU \
             {LOAD_CPU}, in the bench's cgroup v2 child; Sluice (`--datapath required`, \
             `--datapath-sockmap on|off`, no services) on CPU {PROXY_CPU}. Each `on` run \
             checks `datapath.sockmap.redirected_bytes` rose."
        )],
    })
}

/// The local nginx's config: the backend template on ports of its own (the
/// main backend nginx holds the standard ones).
fn local_nginx_config(dir: &std::path::Path) -> String {
    let mut values =
        configs::standard_values(&dir.display().to_string(), 1, port(Slot::SockmapNginx));
    values.retain(|(key, _)| !["BACKEND_H2_PORT", "BACKEND_GRPC_PORT"].contains(key));
    values.push(("BACKEND_H2_PORT", port(Slot::SockmapNginxH2).to_string()));
    values.push((
        "BACKEND_GRPC_PORT",
        port(Slot::SockmapNginxGrpc).to_string(),
    ));
    configs::render(configs::BACKEND_NGINX, &values)
}

/// nginx (one worker, small fixed body) and an iperf3 server, started
/// from inside the cgroup so their sockets are in it.
fn start_servers(settings: &Settings) -> Result<Vec<Running>, String> {
    let dir = settings.dir.join("sockmap-backend");
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("backend-nginx.conf");
    std::fs::write(&config, local_nginx_config(&dir)).map_err(|e| e.to_string())?;
    let nginx = peers::find_program("nginx").ok_or("nginx is missing")?;
    let iperf3 = peers::find_program("iperf3").ok_or("iperf3 is missing")?;
    let nginx_args: Vec<String> = [
        "-c",
        &config.display().to_string(),
        "-p",
        &dir.display().to_string(),
        "-e",
        "stderr",
    ]
    .map(String::from)
    .to_vec();
    Ok(vec![
        peers::start(
            "sockmap-nginx",
            &nginx,
            &nginx_args,
            LOAD_CPU,
            settings.tools.pin,
            settings.dir,
            Readiness::PortOpen(port(Slot::SockmapNginx)),
        )?,
        peers::start(
            "sockmap-iperf3",
            &iperf3,
            &[
                "-s".into(),
                "-p".into(),
                port(Slot::SockmapIperf).to_string(),
            ],
            LOAD_CPU,
            settings.tools.pin,
            settings.dir,
            Readiness::PortOpen(port(Slot::SockmapIperf)),
        )?,
    ])
}

fn measure(
    variant: &'static str,
    settings: &Settings,
    cgroup: &Path,
) -> Result<BTreeMap<&'static str, f64>, String> {
    let pin_dir = format!("/sys/fs/bpf/sluice-bench-sockmap-{}", std::process::id());
    let config = settings.dir.join("sluice-sockmap.yaml");
    std::fs::write(
        &config,
        format!(
            "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}\n",
            port(Slot::Admin)
        ),
    )
    .map_err(|e| e.to_string())?;
    let args: Vec<String> = [
        "-c",
        &config.display().to_string(),
        "--concurrency",
        &settings.concurrency.to_string(),
        "-l",
        "error",
        "--datapath",
        "required",
        "--datapath-cgroup",
        &cgroup.display().to_string(),
        "--datapath-pin-dir",
        &pin_dir,
        "--datapath-sockmap",
        if variant == ON { "on" } else { "off" },
    ]
    .map(String::from)
    .to_vec();
    let running = peers::start(
        "sluice-sockmap",
        &settings.tools.sluice,
        &args,
        PROXY_CPU,
        settings.tools.pin,
        settings.dir,
        Readiness::AdminReady,
    )?;
    let result = run_loads(variant, settings);
    let result =
        result.map_err(|e| format!("{e}\n{} output:\n{}", running.name, running.log_tail()));
    running.stop();
    let _ = std::fs::remove_dir_all(&pin_dir); // only left if Sluice was killed
    result
}

/// Both loads against the pair; for `on`, checks the kernel redirected.
fn run_loads(variant: &str, settings: &Settings) -> Result<BTreeMap<&'static str, f64>, String> {
    let bulk = timed(&Load::Iperf3, port(Slot::SockmapIperf), settings)?;
    let latency = timed(
        &Load::Wrk {
            connections: 1,
            headers: &[],
            path: "/",
        },
        port(Slot::SockmapNginx),
        settings,
    )?;
    super::super::run::check_errors(&latency, settings.max_error_fraction)?;
    if variant == ON {
        std::thread::sleep(Duration::from_millis(1200)); // kernel counters reach /stats each second
        let redirected = admin_counter(port(Slot::Admin), "datapath.sockmap.redirected_bytes");
        if redirected.is_none_or(|bytes| bytes == 0) {
            return Err(format!(
                "datapath.sockmap.redirected_bytes is {redirected:?}: nothing went socket to socket"
            ));
        }
    }
    Ok(BTreeMap::from([
        ("Gbit/s", bulk.rate / 1e9),
        ("req/s", latency.rate),
        ("p50 ms", latency.p50_ms.unwrap_or(f64::NAN)),
        ("p99 ms", latency.p99_ms.unwrap_or(f64::NAN)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen_ports(config: &str) -> Vec<String> {
        config
            .lines()
            .filter_map(|line| line.trim().strip_prefix("listen 127.0.0.1:"))
            .map(|rest| rest.split([' ', ';']).next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_local_nginx_listens_on_no_port_of_the_main_backend() {
        crate::bench::ports::reserve().unwrap();
        let dir = std::path::Path::new("/tmp/x");
        let main = configs::render(
            configs::BACKEND_NGINX,
            &configs::standard_values("/tmp/x", 1, port(Slot::Backend)),
        );
        let main_ports = listen_ports(&main);
        let local_ports = listen_ports(&local_nginx_config(dir));
        assert_eq!((main_ports.len(), local_ports.len()), (3, 3));
        for local in &local_ports {
            assert!(
                !main_ports.contains(local),
                "{local} in both: {main_ports:?}"
            );
        }
    }
}
