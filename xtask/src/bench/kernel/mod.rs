//! The kernel-datapath scenarios of `cargo xtask bench`: `tcp-kernel` (an L4
//! service through the kernel socket-LB beside direct, Sluice's userspace
//! `tcp_proxy` and Envoy's), `sockmap` (a local client/server pair with
//! and without local acceleration) and `demo-ready` (start-to-ready on the
//! demo configuration with and without the kernel datapath). Both need root and cgroup v2: the
//! harness creates a cgroup v2 child, moves itself into it for the scenario
//! (so every load generator and server it starts is inside, where Sluice
//! attaches its hooks) and back out afterwards; without them the scenario is
//! skipped with the reason printed.
//!
//! Each scenario has its own variants and metrics, so it keeps its own
//! results: interleaved rounds (every variant once per round), medians with
//! min–max and medians of per-round ratios against its first variant, printed
//! as a table, written to `target/bench/kernel.json` and (full runs) to
//! their own marked section of BENCHMARKS.md.

mod cgroup;
mod demo_ready;
mod sockmap;
mod tcp_kernel;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::load::{self, Load, LoadResult};
use super::report::median;
use super::run::Settings;
use super::scenario::Scenario;

pub use cgroup::missing_privileges;

/// Marked section of BENCHMARKS.md these scenarios rewrite.
const DOC_BEGIN: &str = "<!-- cargo xtask bench kernel: results begin -->";
const DOC_END: &str = "<!-- cargo xtask bench kernel: results end -->";
/// The section goes before this heading when it does not exist yet.
const DOC_BEFORE: &str = "## 2026-11-25 — first figures";

/// One metric of one variant in one round.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub scenario: &'static str,
    pub variant: &'static str,
    pub round: usize,
    pub metric: &'static str,
    pub value: f64,
}

/// What a scenario measured: its samples and how to present them.
pub struct Outcome {
    pub scenario: Scenario,
    /// Variants in table order; ratios are the first one / each other.
    pub variants: Vec<&'static str>,
    /// Metrics in column order, with whether higher is better.
    pub metrics: Vec<(&'static str, bool)>,
    pub samples: Vec<Sample>,
    /// Lines under the table (what was checked, how it ran).
    pub notes: Vec<String>,
}

/// Runs a kernel scenario; `Ok(None)` when skipped (reason printed).
pub fn run(
    scenario: Scenario,
    settings: &Settings,
    rounds: usize,
    update_doc: bool,
) -> Result<Option<Outcome>, String> {
    println!("\nbench: {} — {}", scenario.name(), scenario.describe());
    if let Some(reason) = missing_privileges() {
        println!("bench: {} skipped: {reason}", scenario.name());
        return Ok(None);
    }
    let outcome = match scenario {
        Scenario::TcpKernel => tcp_kernel::run(settings, rounds)?,
        Scenario::Sockmap => sockmap::run(settings, rounds)?,
        Scenario::DemoReady => demo_ready::run(settings, rounds)?,
        other => return Err(format!("{} is not a kernel scenario", other.name())),
    };
    let table = markdown(&outcome);
    print!("\n{table}");
    write_json(settings.dir, &outcome)?;
    if update_doc {
        update_section(&outcome, &table)?;
    }
    Ok(Some(outcome))
}

/// Median, min and max of one variant's metric over rounds.
fn spread(outcome: &Outcome, variant: &str, metric: &str) -> Option<(f64, f64, f64)> {
    let values: Vec<f64> = outcome
        .samples
        .iter()
        .filter(|s| s.variant == variant && s.metric == metric)
        .map(|s| s.value)
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    median(&values).map(|m| (m, min, max))
}

/// Median over rounds of `reference / variant` for one metric.
fn ratio(outcome: &Outcome, reference: &str, variant: &str, metric: &str) -> Option<f64> {
    let value = |name: &str, round: usize| {
        outcome
            .samples
            .iter()
            .find(|s| s.variant == name && s.metric == metric && s.round == round)
            .map(|s| s.value)
    };
    let rounds = outcome.samples.iter().map(|s| s.round).max()?;
    let per_round: Vec<f64> = (0..=rounds)
        .filter_map(|round| {
            let (a, b) = (value(reference, round)?, value(variant, round)?);
            (b > 0.0).then_some(a / b)
        })
        .collect();
    median(&per_round)
}

fn number(value: f64) -> String {
    if value >= 1000.0 {
        let whole = format!("{value:.0}");
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The scenario's Markdown table: medians (min–max), then ratio rows.
pub fn markdown(outcome: &Outcome) -> String {
    let rounds = outcome
        .samples
        .iter()
        .map(|s| s.round + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**{}** — {} ({rounds} rounds)\n",
        outcome.scenario.name(),
        outcome.scenario.describe()
    );
    let names: Vec<&str> = outcome.metrics.iter().map(|(m, _)| *m).collect();
    let _ = writeln!(out, "| variant | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(names.len()));
    for variant in &outcome.variants {
        let cells: Vec<String> = names
            .iter()
            .map(|metric| match spread(outcome, variant, metric) {
                Some((m, lo, hi)) if lo == hi => number(m),
                Some((m, lo, hi)) => format!("{} ({}–{})", number(m), number(lo), number(hi)),
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(out, "| {variant} | {} |", cells.join(" | "));
    }
    let reference = outcome.variants[0];
    for variant in &outcome.variants[1..] {
        let cells: Vec<String> = names
            .iter()
            .map(|metric| {
                ratio(outcome, reference, variant, metric)
                    .map_or("–".into(), |r| format!("{r:.2}×"))
            })
            .collect();
        let _ = writeln!(out, "| *{reference} / {variant}* | {} |", cells.join(" | "));
    }
    let directions: Vec<String> = outcome
        .metrics
        .iter()
        .map(|(m, higher)| format!("{m} {}", if *higher { "↑" } else { "↓" }))
        .collect();
    let _ = writeln!(out, "\nBetter: {}.", directions.join(", "));
    for note in &outcome.notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn write_json(dir: &Path, outcome: &Outcome) -> Result<(), String> {
    let path = dir
        .parent()
        .unwrap_or(dir)
        .join(format!("kernel-{}.json", outcome.scenario.name()));
    let json = serde_json::json!({
        "scenario": outcome.scenario.name(),
        "variants": outcome.variants,
        "metrics": outcome.metrics.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        "samples": outcome.samples,
        "notes": outcome.notes,
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("bench: wrote {}", path.display());
    Ok(())
}

/// Replaces this scenario's table inside the kernel section of BENCHMARKS.md
/// (each scenario's table is kept between its own sub-markers, so running one
/// scenario leaves the other's last figures in place).
fn update_section(outcome: &Outcome, table: &str) -> Result<(), String> {
    let path = crate::workspace_root().join("BENCHMARKS.md");
    let document =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = outcome.scenario.name();
    let (begin, end) = (
        format!("<!-- kernel scenario {name} begin -->"),
        format!("<!-- kernel scenario {name} end -->"),
    );
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let body = format!(
        "Measured {date}, Sluice commit `{}`.\n\n{}",
        commit(),
        table.trim_end()
    );
    let mut section = match (document.find(DOC_BEGIN), document.find(DOC_END)) {
        (Some(a), Some(b)) if a < b => document[a + DOC_BEGIN.len()..b].trim().to_string(),
        _ => "## Kernel datapath (`cargo xtask bench tcp-kernel sockmap`, root)".to_string(),
    };
    section = super::report::replace_section(&section, &begin, &end, &body, "\u{0}");
    std::fs::write(
        &path,
        super::report::replace_section(&document, DOC_BEGIN, DOC_END, section.trim(), DOC_BEFORE),
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A counter from Sluice's admin `/stats` (`name: value` lines), if present.
pub fn admin_counter(admin_port: u16, name: &str) -> Option<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", admin_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// A warm-up run, a pause (the iperf3 server must finish the previous test
/// before it takes the next), then the measured run.
pub fn timed(load: &Load, port: u16, settings: &Settings) -> Result<LoadResult, String> {
    if settings.warm_up_seconds > 0 {
        load::run(
            load,
            port,
            settings.warm_up_seconds,
            settings.tools.pin,
            settings.dir,
        )?;
        std::thread::sleep(Duration::from_millis(200));
    }
    load::run(
        load,
        port,
        settings.seconds,
        settings.tools.pin,
        settings.dir,
    )
}

/// Records the metrics of one load run.
pub fn record(
    samples: &mut Vec<Sample>,
    scenario: Scenario,
    variant: &'static str,
    round: usize,
    values: &BTreeMap<&'static str, f64>,
) {
    for (metric, value) in values {
        samples.push(Sample {
            scenario: scenario.name(),
            variant,
            round,
            metric,
            value: *value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        let mut samples = Vec::new();
        for (round, (a, b)) in [(10.0, 10.0), (9.0, 10.0), (12.0, 10.0)]
            .into_iter()
            .enumerate()
        {
            for (variant, value) in [("kernel", a), ("direct", b)] {
                samples.push(Sample {
                    scenario: "tcp-kernel",
                    variant,
                    round,
                    metric: "Gbit/s",
                    value,
                });
            }
        }
        Outcome {
            scenario: Scenario::TcpKernel,
            variants: vec!["kernel", "direct"],
            metrics: vec![("Gbit/s", true), ("p99 ms", false)],
            samples,
            notes: vec!["checked".into()],
        }
    }

    #[test]
    fn ratios_are_medians_of_per_round_ratios_against_the_first_variant() {
        let o = outcome();
        assert_eq!(ratio(&o, "kernel", "direct", "Gbit/s"), Some(1.0));
        assert_eq!(spread(&o, "kernel", "Gbit/s"), Some((10.0, 9.0, 12.0)));
        assert_eq!(ratio(&o, "kernel", "direct", "p99 ms"), None);
        let table = markdown(&o);
        assert!(
            table.contains("| kernel | 10.0 (9.00–12.0) | – |"),
            "{table}"
        );
        assert!(
            table.contains("| *kernel / direct* | 1.00× | – |"),
            "{table}"
        );
        assert!(table.contains("Better: Gbit/s ↑, p99 ms ↓."), "{table}");
    }
}
