//! The deterministic figure: instructions executed per `http1` request by
//! Sluice and Envoy, counted by `valgrind --tool=callgrind` (this machine has
//! no hardware counters for `perf stat -e instructions`). Instrumentation is
//! off during start-up and warm-up (`--instr-atstart=no`) and switched on with
//! `callgrind_control` for a fixed number of sequential keep-alive requests
//! on one connection, then dumped.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::load::fixed_requests;
use super::peers::{self, Readiness, PROXY_CPU};
use super::ports::{port, Slot};

/// Requests sent before counting (pools, caches, lazy init) and counted.
pub const WARM_UP_REQUESTS: usize = 200;
pub const COUNTED_REQUESTS: usize = 2000;

/// Instructions per request of one proxy binary running `config`.
pub fn per_request(
    name: &str,
    program: &Path,
    args: &[String],
    pin: bool,
    dir: &Path,
) -> Result<f64, String> {
    let valgrind =
        peers::find_program("valgrind").ok_or("valgrind is missing: apt-get install valgrind")?;
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
    let timeout = Duration::from_secs(60);
    fixed_requests(port(Slot::Proxy), WARM_UP_REQUESTS, timeout)?;
    let pid = running.pid().to_string();
    callgrind_control(&["--instr=on", &pid])?;
    fixed_requests(port(Slot::Proxy), COUNTED_REQUESTS, timeout)?;
    callgrind_control(&["--instr=off", &pid])?;
    callgrind_control(&["--dump", &pid])?;
    let instructions = total_instructions(dir, &format!("callgrind.{name}.{pid}"))?;
    running.stop();
    Ok(instructions as f64 / COUNTED_REQUESTS as f64)
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
