//! What machine and build a bench ran on: CPU model and count, kernel,
//! memory, load average at the start, rustc, git commit, peer versions.

use std::fs;
use std::process::Command;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
    pub load_average_at_start: String,
    pub rustc: String,
    pub commit: String,
    pub versions: Vec<(String, String)>,
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

pub fn describe(envoy_version: &str) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_kib: f64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let versions = vec![
        ("envoy".to_string(), envoy_version.to_string()),
        ("nginx".to_string(), first_line("nginx", &["-v"])),
        ("haproxy".to_string(), first_line("haproxy", &["-v"])),
        ("wrk".to_string(), first_line("wrk", &["-v"])),
        ("h2load".to_string(), first_line("h2load", &["--version"])),
        ("iperf3".to_string(), first_line("iperf3", &["--version"])),
    ];
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        load_average_at_start: fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
        rustc: first_line("rustc", &["--version"]),
        commit: first_line("git", &["describe", "--always", "--dirty"]),
        versions,
    }
}

impl Machine {
    pub fn one_line(&self) -> String {
        format!(
            "{} vCPUs ({}), {:.1} GiB, Linux {}, load average at start {}",
            self.cpus, self.cpu_model, self.memory_gib, self.kernel, self.load_average_at_start
        )
    }
}
