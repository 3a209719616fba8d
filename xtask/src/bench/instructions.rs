//! The deterministic figures: instructions executed per request by Sluice
//! and Envoy, counted by `valgrind --tool=callgrind` (this machine has no
//! hardware counters for `perf stat -e instructions`), for `http1`
//! (`instructions`: sequential keep-alive requests on one connection) and
//! `h2c` (`instructions-h2c`: `h2load -n` with the `h2c` scenario's 4
//! connections x 32 streams). Instrumentation is off during start-up and
//! warm-up (`--instr-atstart=no`) and switched on with `callgrind_control`
//! for a fixed number of requests, then dumped.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::load::{fixed_h2_requests, fixed_requests};
use super::peers::{self, Peer, Readiness, PROXY_CPU};
use super::ports::{port, Slot};
use super::run;
use super::scenario::Scenario;

/// Requests sent before counting (pools, caches, lazy init) and counted.
pub const WARM_UP_REQUESTS: usize = 200;
pub const COUNTED_REQUESTS: usize = 2000;
/// The same for h2c: more requests, as 128 streams are in flight at once
/// and each h2load run opens its 4 connections afresh.
pub const H2C_WARM_UP_REQUESTS: usize = 2000;
pub const H2C_COUNTED_REQUESTS: usize = 20000;
const H2C_CONNECTIONS: usize = 4;
const H2C_STREAMS: usize = 32;

/// What is counted: the requests of one instruction scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Sequential HTTP/1.1 keep-alive requests on one connection.
    Http1,
    /// h2c requests from h2load, 4 connections x 32 streams.
    H2c,
}

impl Workload {
    pub fn of(scenario: Scenario) -> Option<Workload> {
        match scenario {
            Scenario::Instructions => Some(Workload::Http1),
            Scenario::InstructionsH2c => Some(Workload::H2c),
            _ => None,
        }
    }

    /// The timed scenario whose config and traffic it counts.
    fn timed_scenario(self) -> Scenario {
        match self {
            Workload::Http1 => Scenario::Http1,
            Workload::H2c => Scenario::H2c,
        }
    }

    pub fn protocol(self) -> &'static str {
        self.timed_scenario().name()
    }

    pub fn counted_requests(self) -> usize {
        match self {
            Workload::Http1 => COUNTED_REQUESTS,
            Workload::H2c => H2C_COUNTED_REQUESTS,
        }
    }

    pub fn warm_up_requests(self) -> usize {
        match self {
            Workload::Http1 => WARM_UP_REQUESTS,
            Workload::H2c => H2C_WARM_UP_REQUESTS,
        }
    }

    /// How the requests are sent, for the report.
    pub fn method(self) -> String {
        match self {
            Workload::Http1 => format!(
                "{} sequential keep-alive requests after {} warm-up",
                COUNTED_REQUESTS, WARM_UP_REQUESTS
            ),
            Workload::H2c => format!(
                "`h2load -n {H2C_COUNTED_REQUESTS} -c{H2C_CONNECTIONS} -m{H2C_STREAMS}` after {H2C_WARM_UP_REQUESTS} warm-up"
            ),
        }
    }

    fn send(self, count: usize) -> Result<(), String> {
        match self {
            Workload::Http1 => fixed_requests(port(Slot::Proxy), count, Duration::from_secs(60)),
            Workload::H2c => {
                fixed_h2_requests(port(Slot::Proxy), count, H2C_CONNECTIONS, H2C_STREAMS, 300)
            }
        }
    }
}

/// Counts instructions per request for Sluice and Envoy; a failed count is
/// reported and left out, not fatal (the results of the timed scenarios of
/// a long run are still written).
pub fn count(workload: Workload, settings: &run::Settings) -> Result<BTreeMap<Peer, f64>, String> {
    let mut counts = BTreeMap::new();
    for peer in [Peer::Sluice, Peer::Envoy] {
        let config = run::write_config(peer, workload.timed_scenario(), settings)?
            .expect("proxies have configs");
        let (program, args, _) = run::command_of(peer, &config, settings);
        match per_request(
            workload,
            peer.name(),
            &program,
            &args,
            settings.tools.pin,
            settings.dir,
        ) {
            Ok(per_request) => {
                println!(
                    "  {:8} {per_request:.0} instructions per request",
                    peer.name()
                );
                counts.insert(peer, per_request);
            }
            Err(e) => eprintln!(
                "bench: instructions / {} / {} failed (left out of the report): {e}",
                workload.protocol(),
                peer.name()
            ),
        }
    }
    Ok(counts)
}

/// Instructions per request of one proxy binary running `config`.
pub fn per_request(
    workload: Workload,
    name: &str,
    program: &Path,
    args: &[String],
    pin: bool,
    dir: &Path,
) -> Result<f64, String> {
    let valgrind =
        peers::find_program("valgrind").ok_or("valgrind is missing: apt-get install valgrind")?;
    let name = format!("{name}-{}", workload.protocol());
    let out_prefix = dir.join(format!("callgrind.{name}"));
    let mut valgrind_args = vec![
        "--tool=callgrind".to_string(),
        "--instr-atstart=no".to_string(),
        format!("--callgrind-out-file={}.%p", out_prefix.display()),
        program.display().to_string(),
    ];
    valgrind_args.extend_from_slice(args);
    let running = peers::start(
        &format!("{name}-callgrind"),
        &valgrind,
        &valgrind_args,
        PROXY_CPU,
        pin,
        dir,
        Readiness::AdminReady,
    )?;
    workload.send(workload.warm_up_requests())?;
    let pid = running.pid().to_string();
    callgrind_control(&["--instr=on", &pid])?;
    workload.send(workload.counted_requests())?;
    callgrind_control(&["--instr=off", &pid])?;
    callgrind_control(&["--dump", &pid])?;
    let instructions = total_instructions(dir, &format!("callgrind.{name}.{pid}"))?;
    running.stop();
    Ok(instructions as f64 / workload.counted_requests() as f64)
}

fn callgrind_control(args: &[&str]) -> Result<(), String> {
    let output = Command::new("timeout")
        .args(["60", "callgrind_control"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The largest `totals:` (or `summary:`) over the dump files named
/// `prefix*`: the dump taken after the counted requests.
fn total_instructions(dir: &Path, prefix: &str) -> Result<u64, String> {
    let mut best = None;
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(total) = parse_totals(&text) {
            best = best.max(Some(total));
        }
    }
    best.filter(|&t| t > 0).ok_or_else(|| {
        format!(
            "no callgrind dump with instructions for {prefix} in {}",
            dir.display()
        )
    })
}

/// The largest `totals:`/`summary:` figure of a dump (callgrind writes a
/// `summary: 0` beside the real `totals:` in interactive dumps).
fn parse_totals(dump: &str) -> Option<u64> {
    dump.lines()
        .filter_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_line_is_read() {
        assert_eq!(
            parse_totals("events: Ir\nfl=x\ntotals: 123456\n"),
            Some(123456)
        );
        assert_eq!(parse_totals("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(parse_totals("events: Ir\n"), None);
        assert_eq!(
            parse_totals("summary: 0\ntotals: 109586744\n"),
            Some(109586744)
        );
    }
}
