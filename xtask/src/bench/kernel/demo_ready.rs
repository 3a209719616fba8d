//! `demo-ready`: start-to-ready of Sluice on the demo configuration
//! (`config/envoy-demo.yaml`: L7 and tcp_proxy listeners, an L4 VIP served
//! by the kernel socket-LB, an HTTP VIP redirected to Sluice) with the
//! kernel datapath attached (`--datapath required`, the bench's cgroup)
//! beside the same configuration with `--datapath off`, one start of each
//! per round. Measured: spawn to admin `/ready` 200, and the CPU the
//! process used to get there. Not pinned to one CPU, as the demo runs:
//! the daemon loads the kernel object on a thread of its own while it
//! starts everything else.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::peers::{self, Readiness, PROXY_CPU};
use super::super::ports::{port, Slot};
use super::super::procstat;
use super::super::run::Settings;
use super::super::scenario::Scenario;
use super::cgroup::BenchCgroup;
use super::{record, Outcome};

const DEMO_YAML: &str = include_str!("../../../../config/envoy-demo.yaml");

const ON: &str = "datapath on";
const OFF: &str = "datapath off";
const VARIANTS: [&str; 2] = [ON, OFF];

pub fn run(settings: &Settings, rounds: usize) -> Result<Outcome, String> {
    for slot in [Slot::Admin, Slot::Proxy, Slot::ProxyHttp, Slot::VipHttp] {
        peers::check_port_free(port(slot))?;
    }
    let config = settings.dir.join("envoy-demo.yaml");
    std::fs::write(&config, demo_config()).map_err(|e| format!("{}: {e}", config.display()))?;
    let cgroup = BenchCgroup::enter("demo-ready")?;
    let mut samples = Vec::new();
    for round in 0..rounds {
        for variant in VARIANTS {
            let values = start_once(variant, settings, &config, cgroup.path())
                .map_err(|e| format!("demo-ready / {variant} / round {}: {e}", round + 1))?;
            println!(
                "  round {} {variant:13} ready {:6.1} ms  CPU {:5.0} ms",
                round + 1,
                values["ready ms"],
                values["CPU ms to ready"]
            );
            record(&mut samples, Scenario::DemoReady, variant, round, &values);
        }
    }
    drop(cgroup);
    Ok(Outcome {
        scenario: Scenario::DemoReady,
        variants: VARIANTS.to_vec(),
        metrics: vec![("ready ms", false), ("CPU ms to ready", false)],
        samples,
        notes: vec![format!(
            "`config/envoy-demo.yaml` with its admin and listener ports moved into the bench's \
             block and `--concurrency {}`; `{ON}`: `--datapath required` attached to the \
             bench's cgroup v2 child (fresh pins each start); `{OFF}`: `--datapath off`. \
             ready: spawn to admin `/ready` 200 (polled every 1 ms); CPU: user + system time \
             of the process at that moment (10 ms ticks). Not pinned (as the demo runs).",
            settings.concurrency
        )],
    })
}

/// The demo configuration on the bench's ports.
fn demo_config() -> String {
    DEMO_YAML
        .replace(
            "port_value: 9901",
            &format!("port_value: {}", port(Slot::Admin)),
        )
        .replace(
            "port_value: 10000",
            &format!("port_value: {}", port(Slot::Proxy)),
        )
        .replace(
            "port_value: 10001",
            &format!("port_value: {}", port(Slot::ProxyHttp)),
        )
}

/// One start of a variant: ready time and CPU used until ready.
fn start_once(
    variant: &str,
    settings: &Settings,
    config: &Path,
    cgroup: &Path,
) -> Result<BTreeMap<&'static str, f64>, String> {
    let pin_dir = format!("/sys/fs/bpf/sluice-bench-ready-{}", std::process::id());
    let mut args: Vec<String> = [
        "-c",
        &config.display().to_string(),
        "--concurrency",
        &settings.concurrency.to_string(),
        "-l",
        "error",
        "--datapath-redirect-to",
        &format!("127.0.0.1:{}", port(Slot::VipHttp)),
    ]
    .map(String::from)
    .to_vec();
    if variant == ON {
        args.extend([
            "--datapath".into(),
            "required".into(),
            "--datapath-cgroup".into(),
            cgroup.display().to_string(),
            "--datapath-pin-dir".into(),
            pin_dir.clone(),
        ]);
    } else {
        args.extend(["--datapath".into(), "off".into()]);
    }
    let running = peers::start(
        "sluice-demo",
        &settings.tools.sluice,
        &args,
        PROXY_CPU,
        false,
        settings.dir,
        Readiness::AdminReady,
    )?;
    let cpu_ms = procstat::cpu_seconds(running.pid()) * 1000.0;
    let ready_ms = running.ready_after.as_secs_f64() * 1000.0;
    running.stop();
    let _ = std::fs::remove_dir_all(&pin_dir); // only left if Sluice was killed
    Ok(BTreeMap::from([
        ("ready ms", ready_ms),
        ("CPU ms to ready", cpu_ms),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_moves_to_the_bench_ports() {
        let config = demo_config();
        for fixed in ["port_value: 9901", "port_value: 10000", "port_value: 10001"] {
            assert!(!config.contains(fixed), "{fixed} left in the demo config");
        }
        assert!(config.contains(&format!("port_value: {}", port(Slot::Admin))));
        // The virtual listeners that make the kernel datapath work stay.
        assert!(config.contains("bind_to_port: false"));
    }
}
