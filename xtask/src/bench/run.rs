//! One measured run: write the peer's config for the scenario, start the peer
//! pinned to the proxy CPU (timing start-to-ready), warm up, run the load
//! while sampling the proxy's CPU time, read its peak RSS, stop it.

use std::path::Path;
use std::time::Duration;

use super::configs;
use super::load::{self, Load, LoadResult};
use super::peers::{self, Peer, Readiness, Running, Tools, PROXY_CPU};
use super::ports::{port, Slot};
use super::procstat;
use super::report::Run;
use super::scenario::Scenario;

/// Settings shared by every run of a bench.
pub struct Settings<'a> {
    pub tools: &'a Tools,
    pub dir: &'a Path,
    pub concurrency: usize,
    pub seconds: u64,
    pub warm_up_seconds: u64,
    /// Failed or non-2xx requests beyond this fraction of the completed
    /// ones fail a run ([`error_budget`]).
    pub max_error_fraction: f64,
}

/// Wait after ready before the idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_millis(200);

/// Connections of each load generator (documented in BENCHMARKS.md).
const HTTP1_CONNECTIONS: usize = 32;
const NEWCONN_CONNECTIONS: usize = 8;
const ONE_CONNECTION: usize = 1;
const H2_CONNECTIONS: usize = 4;
const H2_STREAMS: usize = 32;

/// The error budget of a run. A full run fails beyond 1% (its figures
/// would be wrong); `--quick` only checks every peer still works, so it
/// fails only when errors outnumber completed requests (a peer that does
/// not proxy), never on a slow or noisy round (timeouts on a loaded machine).
pub fn error_budget(quick: bool) -> f64 {
    if quick {
        1.0
    } else {
        0.01
    }
}

/// Err when a load's result shows the peer did not work: nothing completed,
/// or more errors than `max_error_fraction` allows.
pub fn check_errors(result: &LoadResult, max_error_fraction: f64) -> Result<(), String> {
    if result.units <= 0.0 || result.errors as f64 > result.units * max_error_fraction {
        return Err(format!(
            "{} errors for {} completed requests: the peer is not proxying correctly",
            result.errors, result.units
        ));
    }
    Ok(())
}

/// The backend port a proxy forwards to in this scenario.
fn backend_port(scenario: Scenario) -> u16 {
    match scenario {
        Scenario::Tcp => port(Slot::Iperf),
        Scenario::Grpc => port(Slot::BackendGrpc),
        _ => port(Slot::Backend),
    }
}

/// The port `direct` aims at (the backend itself).
fn direct_port(scenario: Scenario) -> u16 {
    match scenario {
        Scenario::Tcp => port(Slot::Iperf),
        Scenario::H2c => port(Slot::BackendH2),
        Scenario::Grpc => port(Slot::BackendGrpc),
        _ => port(Slot::Backend),
    }
}

/// The config file a peer runs in a scenario, written into `dir`; `None`
/// for `direct`.
pub fn write_config(
    peer: Peer,
    scenario: Scenario,
    settings: &Settings,
) -> Result<Option<String>, String> {
    let dir = settings.dir.display().to_string();
    let mut values = configs::standard_values(&dir, settings.concurrency, backend_port(scenario));
    let h2 = scenario == Scenario::H2c;
    values.push((
        "LISTEN_FLAGS",
        if h2 { " http2".into() } else { String::new() },
    ));
    values.push((
        "BIND_FLAGS",
        if h2 {
            " proto h2".into()
        } else {
            String::new()
        },
    ));
    let (file, template) = match (peer, scenario) {
        (Peer::Direct, _) => return Ok(None),
        (Peer::Sluice | Peer::Envoy, Scenario::Tcp) => {
            ("proxy.yaml", configs::PROXY_TCP_YAML.to_string())
        }
        (Peer::Sluice | Peer::Envoy, Scenario::Grpc) => {
            ("proxy.yaml", configs::PROXY_GRPC_YAML.to_string())
        }
        (Peer::Sluice | Peer::Envoy, Scenario::Routes1k) => {
            ("proxy.yaml", configs::routes_1k_yaml())
        }
        (Peer::Sluice | Peer::Envoy, Scenario::Clusters10k) => {
            ("proxy.yaml", configs::clusters_10k_yaml())
        }
        (Peer::Sluice | Peer::Envoy, _) => ("proxy.yaml", configs::PROXY_HTTP_YAML.to_string()),
        (Peer::Nginx, Scenario::Tcp) => ("nginx.conf", configs::NGINX_TCP.to_string()),
        (Peer::Nginx, Scenario::Grpc) => ("nginx.conf", configs::NGINX_GRPC.to_string()),
        (Peer::Nginx, _) => ("nginx.conf", configs::NGINX_PROXY.to_string()),
        (Peer::Haproxy, Scenario::Tcp) => ("haproxy.cfg", configs::HAPROXY_TCP.to_string()),
        (Peer::Haproxy, Scenario::Grpc) => ("haproxy.cfg", configs::HAPROXY_GRPC.to_string()),
        (Peer::Haproxy, _) => ("haproxy.cfg", configs::HAPROXY_HTTP.to_string()),
    };
    let path = settings.dir.join(file);
    std::fs::write(&path, configs::render(&template, &values))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path.display().to_string()))
}

/// Program, arguments and readiness check of a proxy peer.
pub fn command_of(
    peer: Peer,
    config: &str,
    settings: &Settings,
) -> (std::path::PathBuf, Vec<String>, Readiness) {
    let concurrency = settings.concurrency.to_string();
    let owned = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match peer {
        Peer::Sluice => (
            settings.tools.sluice.clone(),
            owned(&["-c", config, "--concurrency", &concurrency, "-l", "error"]),
            Readiness::AdminReady,
        ),
        Peer::Envoy => (
            settings.tools.envoy.clone(),
            owned(&[
                "-c",
                config,
                "--concurrency",
                &concurrency,
                "-l",
                "error",
                "--disable-hot-restart",
            ]),
            Readiness::AdminReady,
        ),
        Peer::Nginx => (
            peers::find_program("nginx").unwrap_or_else(|| "nginx".into()),
            owned(&[
                "-c",
                config,
                "-p",
                &settings.dir.display().to_string(),
                "-e",
                "stderr",
            ]),
            Readiness::PortOpen(port(Slot::Proxy)),
        ),
        Peer::Haproxy => (
            peers::find_program("haproxy").unwrap_or_else(|| "haproxy".into()),
            owned(&["-f", config, "-db", "-q"]),
            Readiness::PortOpen(port(Slot::Proxy)),
        ),
        Peer::Direct => unreachable!("direct has no process"),
    }
}

/// Starts a proxy peer with the scenario's config; `None` for `direct`.
pub fn start_peer(
    peer: Peer,
    scenario: Scenario,
    settings: &Settings,
) -> Result<Option<Running>, String> {
    let Some(config) = write_config(peer, scenario, settings)? else {
        return Ok(None);
    };
    let (program, args, readiness) = command_of(peer, &config, settings);
    peers::start(
        peer.name(),
        &program,
        &args,
        PROXY_CPU,
        settings.tools.pin,
        settings.dir,
        readiness,
    )
    .map(Some)
}

/// The load of every scenario but routes-1k (which sends its own path and
/// header, see `run_load`).
fn load_of(scenario: Scenario) -> Load<'static> {
    match scenario {
        Scenario::H2c => Load::H2load {
            connections: H2_CONNECTIONS,
            streams: H2_STREAMS,
            grpc: false,
        },
        Scenario::Grpc => Load::H2load {
            connections: H2_CONNECTIONS,
            streams: H2_STREAMS,
            grpc: true,
        },
        Scenario::Tcp => Load::Iperf3,
        Scenario::Http1OneConn => Load::Wrk {
            connections: ONE_CONNECTION,
            headers: &[],
            path: "/",
        },
        Scenario::Http1NewConn => Load::Wrk {
            connections: NEWCONN_CONNECTIONS,
            headers: &NEWCONN_HEADERS,
            path: "/",
        },
        _ => Load::Wrk {
            connections: HTTP1_CONNECTIONS,
            headers: &[],
            path: "/",
        },
    }
}

static NEWCONN_HEADERS: std::sync::LazyLock<Vec<(String, String)>> =
    std::sync::LazyLock::new(|| vec![("Connection".to_string(), "close".to_string())]);

fn run_load(
    scenario: Scenario,
    port: u16,
    seconds: u64,
    settings: &Settings,
) -> Result<LoadResult, String> {
    if scenario == Scenario::Routes1k {
        let (path, header) = configs::routes_1k_request();
        let headers = vec![header];
        let load = Load::Wrk {
            connections: HTTP1_CONNECTIONS,
            headers: &headers,
            path: &path,
        };
        return load::run(&load, port, seconds, settings.tools.pin, settings.dir);
    }
    load::run(
        &load_of(scenario),
        port,
        seconds,
        settings.tools.pin,
        settings.dir,
    )
}

/// One measured run of `peer` in `round` of `scenario`.
pub fn measure(
    peer: Peer,
    scenario: Scenario,
    round: usize,
    settings: &Settings,
) -> Result<Run, String> {
    let running = start_peer(peer, scenario, settings)?;
    let port = peers::target_port(peer, direct_port(scenario));
    let ready_ms = running
        .as_ref()
        .map(|r| r.ready_after.as_secs_f64() * 1000.0);
    // Idle: ready, no request yet (a short pause lets start-up work that
    // follows readiness, such as a first stats flush, finish).
    std::thread::sleep(IDLE_SETTLE);
    let idle_rss_mib = running
        .as_ref()
        .map(|r| procstat::rss_bytes(r.pid()) as f64 / 1048576.0);
    // clusters-10k measures start-up and memory: a short check load suffices.
    let (warm_up, seconds) = if scenario == Scenario::Clusters10k {
        (0, 1)
    } else {
        (settings.warm_up_seconds, settings.seconds)
    };
    if warm_up > 0 {
        run_load(scenario, port, warm_up, settings).map_err(|e| with_log(e, &running))?;
        // Let iperf3's server finish the previous test before the next one.
        if scenario == Scenario::Tcp {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let cpu_before = running.as_ref().map(|r| procstat::cpu_seconds(r.pid()));
    let result = run_load(scenario, port, seconds, settings).map_err(|e| with_log(e, &running))?;
    let cpu_after = running.as_ref().map(|r| procstat::cpu_seconds(r.pid()));
    let peak_rss_mib = running
        .as_ref()
        .map(|r| procstat::peak_rss_bytes(r.pid()) as f64 / 1048576.0);
    if let Some(r) = running {
        r.stop();
    }
    // A misconfigured peer answers errors fast; such a run measures nothing.
    check_errors(&result, settings.max_error_fraction)?;
    let cpu_seconds = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    let (rate, cpu_per_unit) = if scenario.is_bulk() {
        (
            result.rate / 1e9,
            cpu_seconds.map(|c| c / (result.units / 1e9)),
        )
    } else {
        (result.rate, cpu_seconds.map(|c| c * 1e6 / result.units))
    };
    Ok(Run {
        scenario: scenario.name(),
        peer,
        round,
        rate,
        p50_ms: result.p50_ms,
        p99_ms: result.p99_ms,
        cpu_per_unit,
        peak_rss_mib,
        idle_rss_mib,
        ready_ms,
        errors: result.errors,
    })
}

fn with_log(error: String, running: &Option<Running>) -> String {
    match running {
        Some(r) => format!("{error}\n{} output:\n{}", r.name, r.log_tail()),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(units: f64, errors: u64) -> LoadResult {
        LoadResult {
            units,
            errors,
            ..Default::default()
        }
    }

    #[test]
    fn full_runs_fail_beyond_one_percent_of_errors() {
        let budget = error_budget(false);
        assert!(check_errors(&result(1000.0, 10), budget).is_ok());
        assert!(check_errors(&result(1000.0, 11), budget).is_err());
    }

    #[test]
    fn quick_runs_fail_only_on_a_peer_that_does_not_work() {
        let budget = error_budget(true);
        // Timeouts on a loaded machine: slow, but proxying.
        assert!(check_errors(&result(1000.0, 400), budget).is_ok());
        // Mostly errors, or nothing at all: the peer is broken.
        assert!(check_errors(&result(100.0, 900), budget).is_err());
        assert!(check_errors(&result(0.0, 0), budget).is_err());
    }
}
