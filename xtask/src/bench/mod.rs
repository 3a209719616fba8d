//! `cargo xtask bench`: Sluice side by side with Envoy 1.40, nginx, HAProxy
//! and `direct` (client straight to the backend) on the same backend, load
//! generator and CPU pinning, in interleaved rounds (every peer once per
//! round), reporting medians, min–max and medians of per-round ratios
//! Sluice/peer as a table on stdout, a JSON file and a PNG chart under
//! `target/bench/`, and (full runs) the results section of BENCHMARKS.md.
//! Timings are never asserted: this is not part of the test suite.

mod chart;
mod configs;
mod instructions;
mod kernel;
mod load;
mod machine;
mod peers;
mod ports;
mod procstat;
mod report;
mod run;
mod scenario;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use peers::{Peer, Readiness, Tools, LOAD_CPU, PROXY_CPU};
use ports::{port, Slot};
use report::{Run, ScenarioSummary};

/// Instructions per request by peer, for each instruction scenario run.
type InstructionCounts = BTreeMap<Scenario, BTreeMap<Peer, f64>>;
use scenario::Scenario;

use crate::workspace_root;

const USAGE: &str = "usage: cargo xtask bench [SCENARIO…] [options]

scenarios (default: all): http1 http1-1conn http1-newconn h2c grpc tcp routes-1k clusters-10k
  instructions instructions-h2c (callgrind counts; skipped by --quick) tcp-kernel sockmap
  demo-ready (the last three need root and cgroup v2, else they are skipped)
  (tls is reserved for a feature still to come)

options:
  --quick             one round, 1 s runs, no instruction count, BENCHMARKS.md untouched
  --rounds N          interleaved rounds (default 5; each round runs every peer once)
  --duration S        seconds of measured load per run (default 5; warm-up 1 s before)
  --concurrency N     proxy worker threads/processes (default 1)
  --profile P         Sluice build profile: release (default) or dev (reuses the
                      debug binary the tests build; numbers then mean little)
  --no-doc            do not update BENCHMARKS.md (full runs update it by default)
  --no-pin            do not pin with taskset

environment:
  SLUICE_BENCH_BINARY  bench this Sluice binary instead of building one (e.g. the
                       build before a change, for a before/after pair)";

/// The marked section of BENCHMARKS.md the harness rewrites.
const DOC_BEGIN: &str = "<!-- cargo xtask bench: results begin -->";
const DOC_END: &str = "<!-- cargo xtask bench: results end -->";
const DOC_HISTORY: &str = "## 2026-11-25 — first figures";
/// The chart BENCHMARKS.md shows (copied from target/bench by full runs).
const DOC_CHART: &str = "xtask/bench/ratios.png";

#[derive(Debug, PartialEq)]
struct Options {
    scenarios: Vec<Scenario>,
    rounds: usize,
    seconds: u64,
    warm_up_seconds: u64,
    concurrency: usize,
    release: bool,
    quick: bool,
    update_doc: bool,
    pin: bool,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        scenarios: Vec::new(),
        rounds: 5,
        seconds: 5,
        warm_up_seconds: 1,
        concurrency: 1,
        release: true,
        quick: false,
        update_doc: true,
        pin: true,
    };
    let mut explicit = (false, false);
    let mut iter = args.iter();
    let number = |flag: &str, value: Option<&String>| -> Result<u64, String> {
        let value = value.ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        match value.parse::<u64>() {
            Ok(n) if (1..=3600).contains(&n) => Ok(n),
            _ => Err(format!(
                "{flag} {value}: expected a whole number from 1 to 3600"
            )),
        }
    };
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--rounds" => {
                options.rounds = number(arg, iter.next())? as usize;
                explicit.0 = true;
            }
            "--duration" => {
                options.seconds = number(arg, iter.next())?;
                explicit.1 = true;
            }
            "--concurrency" => options.concurrency = number(arg, iter.next())? as usize,
            "--profile" => match iter.next().map(String::as_str) {
                Some("release") => options.release = true,
                Some("dev") => options.release = false,
                other => {
                    return Err(format!(
                        "--profile {}: expected release or dev",
                        other.unwrap_or("(missing)")
                    ))
                }
            },
            "--no-doc" => options.update_doc = false,
            "--no-pin" => options.pin = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option '{flag}'\n{USAGE}"))
            }
            name => options.scenarios.push(Scenario::parse(name)?),
        }
    }
    if options.quick {
        options.update_doc = false;
        if !explicit.0 {
            options.rounds = 1;
        }
        if !explicit.1 {
            options.seconds = 1;
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = Scenario::ALL
            .into_iter()
            .filter(|s| !(options.quick && s.is_instructions()))
            .collect();
    }
    options.scenarios.dedup();
    Ok(options)
}

pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse_options(args)?;
    let started = Instant::now();
    let root = workspace_root();
    let needs_valgrind = options.scenarios.iter().any(|s| s.is_instructions());
    let extra: &[(&str, &str)] = if needs_valgrind {
        &[("valgrind", "valgrind")]
    } else {
        &[]
    };
    peers::ensure_packages(extra)?;
    let tools = prepare_tools(&root, &options)?;
    let machine = machine::describe(&tools.envoy_version);
    let dir = root
        .join("target/bench")
        .join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("{}: {e}", dir.display()))?;

    // This run's loopback ports: a free block, held until the run ends.
    let base = ports::reserve()?;
    let pinning = if tools.pin {
        format!("proxy on CPU {PROXY_CPU}; load generator and backend on CPU {LOAD_CPU} (taskset)")
    } else {
        "no CPU pinning".to_string()
    };
    println!("bench: machine: {}", machine.one_line());
    println!("bench: pinning: {pinning}");
    println!(
        "bench: Sluice {} build, --concurrency {}, {} round(s) of {} s after {} s warm-up; ports {base}-{}; work dir {}",
        if options.release { "release" } else { "dev (debug)" },
        options.concurrency,
        options.rounds,
        options.seconds,
        options.warm_up_seconds,
        base + ports::BLOCK_SIZE - 1,
        dir.display()
    );
    let backend = start_backends(&tools, &dir, &options)?;

    let settings = run::Settings {
        tools: &tools,
        dir: &dir,
        concurrency: options.concurrency,
        seconds: options.seconds,
        warm_up_seconds: options.warm_up_seconds,
        max_error_fraction: run::error_budget(options.quick),
    };
    let mut runs: Vec<Run> = Vec::new();
    let mut summaries: Vec<ScenarioSummary> = Vec::new();
    let mut instruction_counts: InstructionCounts = BTreeMap::new();
    for &scenario in &options.scenarios {
        if let Some(workload) = instructions::Workload::of(scenario) {
            println!("\nbench: {} — {}", scenario.name(), scenario.describe());
            instruction_counts.insert(scenario, instructions::count(workload, &settings)?);
            continue;
        }
        if scenario.is_kernel() {
            kernel::run(scenario, &settings, options.rounds, options.update_doc)?;
            continue;
        }
        println!("\nbench: {} — {}", scenario.name(), scenario.describe());
        for round in 0..options.rounds {
            for peer in scenario.peers() {
                let run = run::measure(peer, scenario, round, &settings).map_err(|e| {
                    format!(
                        "{} / {} / round {}: {e}",
                        scenario.name(),
                        peer.name(),
                        round + 1
                    )
                })?;
                print_progress(&run, scenario);
                runs.push(run);
            }
        }
        let summary = report::summarise(scenario, &runs);
        print!("\n{}", report::markdown_table(scenario, &summary));
        summaries.push(summary);
    }
    drop(backend);

    println!(
        "\nbench: machine: {}\nbench: pinning: {pinning}",
        machine.one_line()
    );
    for summary in &summaries {
        let scenario = Scenario::parse(summary.scenario)?;
        print!("\n{}", report::markdown_table(scenario, summary));
    }
    for (scenario, counts) in &instruction_counts {
        if let Some(workload) = instructions::Workload::of(*scenario).filter(|_| !counts.is_empty())
        {
            print!(
                "\ninstructions per {} request (callgrind, {}):\n{}",
                workload.protocol(),
                workload.method(),
                report::instructions_text(counts)
            );
        }
    }
    let outputs = write_outputs(
        &root,
        &options,
        &machine,
        &pinning,
        &runs,
        &summaries,
        &instruction_counts,
    )?;
    println!(
        "\nbench: wrote {} in {:.0} s",
        outputs,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_progress(run: &Run, scenario: Scenario) {
    let unit = if scenario.is_bulk() {
        "Gbit/s"
    } else {
        "req/s"
    };
    let optional =
        |v: Option<f64>, suffix: &str| v.map_or(String::new(), |v| format!(" {v:.2}{suffix}"));
    println!(
        "  round {} {:8} {:>10.1} {unit}{}{}{}{}{}{}{}",
        run.round + 1,
        run.peer.name(),
        run.rate,
        optional(run.p50_ms, " ms p50"),
        optional(run.p99_ms, " ms p99"),
        optional(
            run.cpu_per_unit,
            if scenario.is_bulk() {
                " CPU-s/GB"
            } else {
                " CPU-ms/1k"
            }
        ),
        optional(run.peak_rss_mib, " MiB peak"),
        optional(run.idle_rss_mib, " MiB idle"),
        optional(run.ready_ms, " ms to ready"),
        if run.errors > 0 {
            format!(" ({} errors)", run.errors)
        } else {
            String::new()
        },
    );
}

/// Builds Sluice and returns its binary.
fn build_sluice(root: &Path, options: &Options) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(root)
        .args(["build", "-p", "sluice", "--bin", "sluice"]);
    if options.release {
        build.arg("--release");
    }
    println!(
        "bench: building Sluice ({})",
        if options.release { "release" } else { "dev" }
    );
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of Sluice failed ({status})"));
    }
    Ok(root
        .join("target")
        .join(if options.release { "release" } else { "debug" })
        .join("sluice"))
}

/// Builds Sluice (or takes SLUICE_BENCH_BINARY), installs Envoy (the test suite's venv), checks pinning.
fn prepare_tools(root: &Path, options: &Options) -> Result<Tools, String> {
    let sluice = match std::env::var_os("SLUICE_BENCH_BINARY") {
        // A prebuilt binary (e.g. the build before a change), used as is.
        Some(binary) => {
            println!("bench: Sluice binary from SLUICE_BENCH_BINARY: {binary:?}");
            PathBuf::from(binary)
        }
        None => build_sluice(root, options)?,
    };
    let entry =
        crate::test_suite::ensure_envoy(root).map_err(|e| format!("cannot install Envoy: {e}"))?;
    let envoy = peers::real_envoy_binary(Path::new(&entry));
    let envoy_version = Command::new(&envoy)
        .arg("--version")
        .output()
        .map(|o| {
            // "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL" → "1.40.0 (<sha>/…)"
            let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
            text.split_once("version: ")
                .map_or(text.clone(), |(_, v)| v.to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = options.pin && cpus >= 2;
    if options.pin && !pin {
        println!("bench: only {cpus} CPU: running without pinning");
    }
    Ok(Tools {
        sluice,
        envoy,
        envoy_version,
        pin,
    })
}

/// The backend nginx (and an iperf3 server when tcp runs), on the load CPU.
fn start_backends(
    tools: &Tools,
    dir: &Path,
    options: &Options,
) -> Result<Vec<peers::Running>, String> {
    let values = configs::standard_values(&dir.display().to_string(), 1, port(Slot::Backend));
    configs::write_grpc_messages(dir)?;
    let config = dir.join("backend-nginx.conf");
    std::fs::write(&config, configs::render(configs::BACKEND_NGINX, &values))
        .map_err(|e| e.to_string())?;
    let nginx = peers::find_program("nginx").ok_or("nginx is missing")?;
    let args: Vec<String> = vec![
        "-c".into(),
        config.display().to_string(),
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        "stderr".into(),
    ];
    let mut running = vec![peers::start(
        "backend-nginx",
        &nginx,
        &args,
        LOAD_CPU,
        tools.pin,
        dir,
        Readiness::PortOpen(port(Slot::Backend)),
    )?];
    if options.scenarios.contains(&Scenario::Tcp) {
        let iperf3 = peers::find_program("iperf3").ok_or("iperf3 is missing")?;
        let args: Vec<String> = vec!["-s".into(), "-p".into(), port(Slot::Iperf).to_string()];
        running.push(peers::start(
            "backend-iperf3",
            &iperf3,
            &args,
            LOAD_CPU,
            tools.pin,
            dir,
            Readiness::PortOpen(port(Slot::Iperf)),
        )?);
    }
    Ok(running)
}

/// One instruction scenario's counts as JSON (`{}` when it did not run).
fn instruction_json(counts: &InstructionCounts, scenario: Scenario) -> BTreeMap<&'static str, f64> {
    counts
        .get(&scenario)
        .map(|c| c.iter().map(|(p, v)| (p.name(), *v)).collect())
        .unwrap_or_default()
}

/// JSON and PNG under target/bench/, and (full runs) BENCHMARKS.md.
fn write_outputs(
    root: &Path,
    options: &Options,
    machine: &machine::Machine,
    pinning: &str,
    runs: &[Run],
    summaries: &[ScenarioSummary],
    instruction_counts: &InstructionCounts,
) -> Result<String, String> {
    let out = root.join("target/bench");
    let json_path = out.join("bench.json");
    let json = serde_json::json!({
        "machine": machine,
        "pinning": pinning,
        "options": {
            "rounds": options.rounds, "seconds": options.seconds,
            "warm_up_seconds": options.warm_up_seconds, "concurrency": options.concurrency,
            "sluice_profile": if options.release { "release" } else { "dev" }, "quick": options.quick,
        },
        "scenarios": summaries,
        "instructions_per_request": instruction_json(instruction_counts, Scenario::Instructions),
        "instructions_per_h2c_request": instruction_json(instruction_counts, Scenario::InstructionsH2c),
        "runs": runs,
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let mut written = vec![json_path.display().to_string()];
    if !summaries.is_empty() {
        let chart_path = out.join("ratios.png");
        let title = format!(
            "Sluice / peer, medians of per-round ratios ({} rounds, --concurrency {})",
            options.rounds, options.concurrency
        );
        chart::draw(&chart_path, &title, summaries)?;
        written.push(chart_path.display().to_string());
        if options.update_doc {
            let doc_chart = root.join(DOC_CHART);
            std::fs::copy(&chart_path, &doc_chart)
                .map_err(|e| format!("{}: {e}", doc_chart.display()))?;
            update_doc(
                &root.join("BENCHMARKS.md"),
                options,
                machine,
                pinning,
                summaries,
                instruction_counts,
            )?;
            written.push("BENCHMARKS.md".into());
            written.push(DOC_CHART.into());
        }
    }
    Ok(written.join(", "))
}

fn update_doc(
    path: &PathBuf,
    options: &Options,
    machine: &machine::Machine,
    pinning: &str,
    summaries: &[ScenarioSummary],
    instruction_counts: &InstructionCounts,
) -> Result<(), String> {
    let document = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| {
            // "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL" → "1.40.0 (<sha>/…)"
            let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
            text.split_once("version: ")
                .map_or(text.clone(), |(_, v)| v.to_string())
        })
        .unwrap_or_default();
    let mut body = format!(
        "## {date} — `cargo xtask bench` (latest full run)\n\n\
         Machine: {}. Pinning: {pinning}. Sluice commit `{}` ({}), release build;\n\
         versions: {}. `--concurrency {}`, {} interleaved rounds (every peer once per round, in order),\n\
         {} s of load per run after a {} s warm-up, every peer started afresh for each run.\n\
         Ratios are Sluice / peer per round, median over rounds (below 1 is better for\n\
         latency, CPU and memory; above 1 for throughput). The machine is shared: absolute\n\
         numbers are context, the ratios are the figure.\n\n\
         ![Sluice / peer ratios]({DOC_CHART})\n\n",
        machine.one_line(),
        machine.commit,
        machine.rustc,
        machine.versions.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join("; "),
        options.concurrency,
        options.rounds,
        options.seconds,
        options.warm_up_seconds,
    );
    for summary in summaries {
        body.push_str(&report::markdown_table(
            Scenario::parse(summary.scenario)?,
            summary,
        ));
        body.push('\n');
    }
    for (scenario, counts) in instruction_counts {
        if let Some(workload) = instructions::Workload::of(*scenario).filter(|_| !counts.is_empty())
        {
            body.push_str(&format!(
                "**{}** — per `{}` request, `valgrind --tool=callgrind`, {} (this VM has no `perf` instruction counter):\n\n{}\n",
                scenario.name(),
                workload.protocol(),
                workload.method(),
                report::instructions_text(counts)
            ));
        }
    }
    let updated =
        report::replace_section(&document, DOC_BEGIN, DOC_END, body.trim_end(), DOC_HISTORY);
    std::fs::write(path, updated).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_five_rounds_of_every_scenario() {
        let o = parse_options(&[]).unwrap();
        assert_eq!(
            (o.rounds, o.seconds, o.concurrency, o.release, o.update_doc),
            (5, 5, 1, true, true)
        );
        assert_eq!(o.scenarios, Scenario::ALL.to_vec());
    }

    #[test]
    fn quick_is_one_short_round_without_instructions_or_doc() {
        let o = parse_options(&args(&["--quick", "--profile", "dev"])).unwrap();
        assert_eq!(
            (o.rounds, o.seconds, o.release, o.update_doc),
            (1, 1, false, false)
        );
        assert!(!o.scenarios.contains(&Scenario::Instructions));
        assert!(!o.scenarios.contains(&Scenario::InstructionsH2c));
        let o = parse_options(&args(&["--quick", "--rounds", "2", "http1"])).unwrap();
        assert_eq!((o.rounds, o.scenarios.clone()), (2, vec![Scenario::Http1]));
    }

    #[test]
    fn bad_options_are_rejected() {
        for bad in [
            &["--rounds"][..],
            &["--rounds", "0"],
            &["--duration", "x"],
            &["--profile", "fast"],
            &["--frobnicate"],
            &["tls"],
        ] {
            assert!(parse_options(&args(bad)).is_err(), "{bad:?}");
        }
        assert!(parse_options(&args(&["tls"]))
            .unwrap_err()
            .contains("not available yet"));
        assert_eq!(
            parse_options(&args(&["tcp-kernel", "sockmap"]))
                .unwrap()
                .scenarios,
            vec![Scenario::TcpKernel, Scenario::Sockmap]
        );
    }
}
