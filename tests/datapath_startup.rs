//! Start-up with the kernel object loaded early (`--datapath required`
//! loads it before the configuration is read, `--datapath auto` once the
//! bootstrap has a virtual listener; its maps are pinned under
//! `<pin-dir>/incoming/` while they are created): a start that fails
//! afterwards, or a configuration that ends up not using the datapath,
//! leaves no pin behind (pinned maps would hold their kernel memory until
//! the next start); and a daemon without an XDP interface, whose XDP counter
//! maps are created with one entry, still reads every service's XDP
//! counters (as zero). Needs root, bpffs and cgroup v2; skips with a reason
//! otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datapath_support::*;

/// Every file (pin) below `dir`, recursively.
fn pins_left(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut pins = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            pins.extend(pins_left(&path));
        } else {
            pins.push(path);
        }
    }
    pins
}

fn sluice(sandbox: &Sandbox, config: &str, mode: &str) -> std::process::Child {
    let config_path = sandbox.dir.path().join("sluice.yaml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(sandbox.dir.path().join("sluice.log")).unwrap();
    Command::new(sluice_binary())
        .arg("-c")
        .arg(&config_path)
        .args([
            "--concurrency",
            "1",
            "--datapath",
            mode,
            "--datapath-cgroup",
        ])
        .arg(&sandbox.cgroup)
        .arg("--datapath-pin-dir")
        .arg(&sandbox.pin_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn sluice")
}

fn log(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(sandbox.dir.path().join("sluice.log")).unwrap_or_default()
}

#[test]
fn an_invalid_configuration_read_after_the_early_load_leaves_no_pins() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("startup-invalid");
    let config = config(9, true).replace("connect_timeout", "conect_timeout");
    let mut child = sluice(&sandbox, &config, "required");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sluice still running:\n{}",
            log(&sandbox)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{}", log(&sandbox));
    assert!(
        log(&sandbox).contains("conect_timeout"),
        "{}",
        log(&sandbox)
    );
    assert_eq!(pins_left(&sandbox.pin_dir), Vec::<PathBuf>::new());
}

#[test]
fn an_early_load_the_configuration_does_not_use_leaves_no_pins() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("startup-unused");
    // A virtual listener (so `auto` loads early) on an address the kernel
    // cannot serve (0.0.0.0): no socket-LB service, nothing attached.
    let admin_port = unused_port();
    let config = format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
  listeners:
  - name: any_address
    bind_to_port: false
    address: {{socket_address: {{address: 0.0.0.0, port_value: 80}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: any, cluster: backend}}
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9}}}}}}
"
    );
    let mut child = sluice(&sandbox, &config, "auto");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !admin_get(admin_port, "/ready").contains("LIVE") {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "sluice not ready:\n{}",
            log(&sandbox)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pins = pins_left(&sandbox.pin_dir);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log(&sandbox).contains("no socket-LB service in the configuration"),
        "{}",
        log(&sandbox)
    );
    assert_eq!(pins, Vec::<PathBuf>::new(), "{}", log(&sandbox));
}

#[test]
fn without_an_xdp_interface_every_service_reads_zero_xdp_counters() {
    if skip() {
        return;
    }
    // Loaded without XDP, XDP_SERVICE_COUNTERS has one entry: services
    // with ids past it (here the second) still read, as zero.
    let sandbox = Sandbox::new("startup-noxdp");
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &["127.0.0.2"]);
    let one = config(4321, true);
    let (start, end) = (
        one.find("  - name: kube_dns_vip").unwrap(),
        one.find("  clusters:").unwrap(),
    );
    let second = one[start..end]
        .replace("kube_dns_vip", "second_vip")
        .replace("port_value: 80", "port_value: 81");
    let two = format!("{}{second}{}", &one[..end], &one[end..]);
    let daemon = Daemon::start(&sandbox, &two, &hosts, "noxdp");
    let keys = [80, 81].map(|port| format!("datapath.xdp.service.{VIP}:{port}/tcp.packets"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let counters = loop {
        let output = sluicectl(&sandbox, &["bpf", "counters", "-o", "json"]);
        let counters: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_default();
        if keys.iter().all(|key| counters.get(key).is_some()) {
            break counters;
        }
        assert!(
            Instant::now() < deadline,
            "services not in the kernel: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for key in &keys {
        assert_eq!(counters[key], 0, "{counters}");
    }
    let dump = sluicectl_json(&sandbox, &["bpf", "dump", "XDP_SERVICE_COUNTERS"]);
    let entries = dump.as_array().expect("a JSON array");
    assert_eq!(entries.len(), 2, "{dump}");
    for entry in entries {
        assert_eq!(entry["value"]["packets"], 0, "{dump}");
    }
}
