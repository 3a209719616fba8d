//! `cargo xtask xds-kernel`: how long an EDS push takes to reach the
//! kernel's socket-LB maps (issue 4, item 6; targets ≤ 10 ms for one
//! service, ≤ 200 ms for 10,000 endpoints).
//!
//! The real `sluicectl xds serve --timestamps` serves, over ADS, N virtual
//! (`bind_to_port: false`) `tcp_proxy` listeners on VIPs, N EDS clusters and
//! their ClusterLoadAssignments of M endpoints; the real `sluice` runs with
//! `--datapath required` on a cgroup of its own. Each push rewrites every
//! assignment with new endpoints; the time is from the control plane's log
//! line for the EDS response it sends (UNIX time, µs) to the moment this
//! process, polling the pinned `LB4_SERVICES` map every ~0.2 ms, sees every
//! service switched to its new backend slot (the syncer writes the backends
//! first and the service entry last, so a switched entry means its backends
//! are in place; they are then checked one by one, outside the timing).
//! `MAX_BACKENDS_PER_SERVICE` is 256, so 10,000 endpoints are 100 services
//! of 100. Needs root, cgroup v2 and bpffs; elsewhere it says why and exits
//! successfully without measuring.

mod rig;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use sluice_ebpf::maps::LbMaps;

#[cfg(test)]
use rig::{endpoint, vip};
use rig::{slots, start, verify, write_endpoints};

const USAGE: &str = "usage: cargo xtask xds-kernel [options]

Times EDS push (sluicectl xds serve) -> kernel socket-LB map updated (sluice).
Cases: 1 service x 10 endpoints and 100 services x 100 endpoints (10,000),
over state-of-the-world and delta ADS. Needs root, cgroup v2 and bpffs.

options:
  --pushes N         pushes per case (default 10)
  --case SxE         only this case, e.g. 1x10 or 100x100 (repeatable)
  --profile dev      use the debug build instead of release
  --no-build         use target/<profile>/sluice and sluicectl as they are
  --sluice-arg ARG   pass ARG to sluice (repeatable), e.g. --sluice-arg
                     --component-log-level --sluice-arg xds:debug,datapath:debug

The daemon's log of each case is kept in target/xds-kernel/.  -h, --help         this text";

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const BPFFS: &str = "/sys/fs/bpf";
/// Pause between two polls of the pinned map.
const POLL_PAUSE: Duration = Duration::from_micros(200);

#[derive(Debug)]
struct Options {
    pushes: usize,
    cases: Vec<(usize, usize)>,
    release: bool,
    build: bool,
    sluice_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options {
        pushes: 10,
        cases: Vec::new(),
        release: true,
        build: true,
        sluice_args: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--pushes" => {
                options.pushes = value("--pushes")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0 && *n <= 1000)
                    .ok_or("--pushes takes a number from 1 to 1000")?
            }
            "--case" => {
                let text = value("--case")?;
                let case = text
                    .split_once('x')
                    .and_then(|(s, e)| Some((s.parse().ok()?, e.parse().ok()?)))
                    .filter(|(s, e): &(usize, usize)| {
                        (1..=4000).contains(s) && (1..=256).contains(e)
                    })
                    .ok_or_else(|| {
                        format!("--case {text}: expected SERVICESxENDPOINTS, 1-4000 x 1-256")
                    })?;
                options.cases.push(case);
            }
            "--no-build" => options.build = false,
            "--sluice-arg" => options.sluice_args.push(value("--sluice-arg")?),
            "--profile" => match value("--profile")?.as_str() {
                "dev" => options.release = false,
                "release" => options.release = true,
                other => return Err(format!("--profile {other}: expected dev or release")),
            },
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if options.cases.is_empty() {
        options.cases = vec![(1, 10), (100, 100)];
    }
    Ok(Some(options))
}

/// Why this machine cannot run the measurement, if it cannot.
fn missing_privileges() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        return Some("not root (the socket-LB hooks need CAP_BPF and cgroup access)".into());
    }
    if !Path::new(CGROUP_ROOT).join("cgroup.procs").exists() {
        return Some(format!("no cgroup v2 at {CGROUP_ROOT}"));
    }
    if !Path::new(BPFFS).is_dir() {
        return Some(format!("no bpffs at {BPFFS}"));
    }
    None
}

pub fn run(args: &[String]) -> Result<(), String> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    if let Some(reason) = missing_privileges() {
        println!("xds-kernel: skipped: {reason}");
        return Ok(());
    }
    let root = crate::workspace_root();
    let mut binaries = build(&root, options.release, options.build)?;
    binaries.sluice_args = options.sluice_args.clone();
    let mut table = Vec::new();
    for &(services, endpoints) in &options.cases {
        for api_type in ["GRPC", "DELTA_GRPC"] {
            let label = format!("{services} x {endpoints} endpoints, {api_type}");
            println!("xds-kernel: {label}: {} pushes", options.pushes);
            let latencies = measure(&binaries, services, endpoints, api_type, options.pushes)
                .map_err(|e| format!("{label}: {e}"))?;
            let summary = Summary::of(&latencies);
            println!("xds-kernel: {label}: {summary}");
            table.push((services, endpoints, api_type, summary));
        }
    }
    println!("\n| services × endpoints | ADS | pushes | median | min | max |");
    println!("|---|---|---|---|---|---|");
    for (services, endpoints, api_type, s) in &table {
        println!(
            "| {services} × {endpoints} | {api_type} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            s.count, s.median_ms, s.min_ms, s.max_ms
        );
    }
    Ok(())
}

struct Binaries {
    sluice: PathBuf,
    sluicectl: PathBuf,
    /// Extra arguments for sluice.
    sluice_args: Vec<String>,
    /// Where each case's daemon log is kept.
    log_dir: PathBuf,
}

fn build(root: &Path, release: bool, run_cargo: bool) -> Result<Binaries, String> {
    let dir = root
        .join("target")
        .join(if release { "release" } else { "debug" });
    let binaries = Binaries {
        sluice: dir.join("sluice"),
        sluicectl: dir.join("sluicectl"),
        sluice_args: Vec::new(),
        log_dir: root.join("target").join("xds-kernel"),
    };
    if !run_cargo {
        for binary in [&binaries.sluice, &binaries.sluicectl] {
            if !binary.is_file() {
                return Err(format!("--no-build: {} does not exist", binary.display()));
            }
        }
        return Ok(binaries);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args([
        "build",
        "-p",
        "sluice",
        "--bin",
        "sluice",
        "--bin",
        "sluicectl",
    ]);
    if release {
        command.arg("--release");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of Sluice failed ({status})"));
    }
    Ok(binaries)
}

struct Summary {
    count: usize,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn of(latencies: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let median = if ms.len() % 2 == 1 {
            ms[ms.len() / 2]
        } else {
            (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
        };
        Summary {
            count: ms.len(),
            median_ms: median,
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.2} ms (min {:.2}, max {:.2}) over {} pushes",
            self.median_ms, self.min_ms, self.max_ms, self.count
        )
    }
}

fn measure(
    binaries: &Binaries,
    services: usize,
    endpoints: usize,
    api_type: &str,
    pushes: usize,
) -> Result<Vec<Duration>, String> {
    let rig = start(binaries, services, endpoints, api_type)?;
    let fail = |message: String| {
        format!(
            "{message}\nsluice log (tail):\n{}",
            tail(&rig.sluice_log(), 30)
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let maps = loop {
        if let Ok(maps) = LbMaps::open_pinned(&rig.pin_dir) {
            break maps;
        }
        if Instant::now() > deadline {
            return Err(fail("the daemon never pinned its maps".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    while verify(&maps, services, endpoints, 0).is_err() {
        if Instant::now() > deadline {
            let why = verify(&maps, services, endpoints, 0).unwrap_err();
            return Err(fail(format!(
                "the first assignment never reached the kernel: {why}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut latencies = Vec::new();
    for generation in 1..=pushes {
        let before = slots(&maps, services);
        let sent_before = rig.server_lines(&["sent", "ClusterLoadAssignment"]).len();
        write_endpoints(&rig.dir.join("resources"), services, endpoints, generation)?;
        // The server notices the file within its 500 ms poll; the clock that
        // counts starts at its send.
        let deadline = Instant::now() + Duration::from_secs(20);
        let switched = loop {
            let now = slots(&maps, services);
            let done = now
                .iter()
                .zip(&before)
                .all(|(now, before)| match (now, before) {
                    (Some((_, slot, count)), Some((_, old, _))) => {
                        slot != old && *count as usize == endpoints
                    }
                    _ => false,
                });
            if done {
                break SystemTime::now();
            }
            if Instant::now() > deadline {
                return Err(fail(format!("push {generation} never reached the kernel")));
            }
            std::thread::sleep(POLL_PAUSE);
        };
        verify(&maps, services, endpoints, generation).map_err(fail)?;
        let sent = loop {
            let lines = rig.server_lines(&["sent", "ClusterLoadAssignment"]);
            if let Some(line) = lines.get(sent_before) {
                break parse_time(line)?;
            }
            if Instant::now() > deadline {
                return Err(format!("no EDS send logged for push {generation}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let latency = switched.duration_since(sent).map_err(|_| {
            format!("push {generation}: the kernel changed before the send was logged")
        })?;
        latencies.push(latency);
    }
    let errors = rig.server_lines(&["NACK"]);
    if !errors.is_empty() {
        return Err(format!("the daemon rejected a push: {}", errors.join("\n")));
    }
    Ok(latencies)
}

/// The UNIX time at the start of a `--timestamps` log line.
fn parse_time(line: &str) -> Result<SystemTime, String> {
    let stamp = line.split_whitespace().next().unwrap_or_default();
    let seconds: f64 = stamp
        .parse()
        .map_err(|_| format!("no timestamp at the start of {line:?}"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How many distinct endpoints one generation has (a check for tests).
#[cfg(test)]
fn distinct_endpoints(services: usize, endpoints: usize, generation: usize) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for service in 0..services {
        for index in 0..endpoints {
            seen.insert(endpoint(generation, service, index));
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_distinct_and_moves_each_push() {
        assert_eq!(distinct_endpoints(100, 100, 1), 10_000);
        assert_ne!(endpoint(1, 5, 7), endpoint(2, 5, 7));
        assert_ne!(vip(0), vip(199));
        assert_ne!(vip(199), vip(200));
    }

    #[test]
    fn options_parse_and_reject() {
        let options = parse(&["--case".into(), "3x4".into(), "--pushes".into(), "2".into()])
            .unwrap()
            .unwrap();
        assert_eq!((options.cases, options.pushes), (vec![(3, 4)], 2));
        assert!(parse(&["--case".into(), "1x300".into()]).is_err());
        assert!(parse(&["--pushes".into(), "0".into()]).is_err());
        assert!(parse(&["--bogus".into()])
            .unwrap_err()
            .contains("unknown option"));
    }

    #[test]
    fn timestamps_parse() {
        let time = parse_time("1764000000.123456 xds: sent").unwrap();
        let micros = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros();
        assert!((micros as i128 - 1_764_000_000_123_456).abs() < 2);
        assert!(parse_time("xds: sent").is_err());
    }
}
