//! xDS down to the kernel: listeners and clusters that arrive by xDS
//! (file-based LDS/CDS, the same sink and compile path as ADS) become,
//! change and leave kernel socket-LB entries. A `bind_to_port: false`
//! listener on the VIP with a `tcp_proxy` to a cluster is a service; a new
//! cluster version moves its backend in the maps; removing the listener
//! removes the service. Needs root, bpffs and cgroup v2; skips with a reason
//! otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::path::Path;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::{json, Value};

fn bootstrap(admin: u16, dir: &Path) -> String {
    format!(
        r#"
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
dynamic_resources:
  lds_config: {{ path_config_source: {{ path: {lds} }}, resource_api_version: V3 }}
  cds_config: {{ path_config_source: {{ path: {cds} }}, resource_api_version: V3 }}
"#,
        lds = dir.join("lds.yaml").display(),
        cds = dir.join("cds.yaml").display()
    )
}

fn write_atomically(dir: &Path, file: &str, text: &str) {
    let temporary = dir.join(format!(".{file}.tmp"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join(file)).unwrap();
}

fn write_cluster(dir: &Path, version: &str, backend: &str, port: u16) {
    write_atomically(
        dir,
        "cds.yaml",
        &format!(
            r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: svc
  connect_timeout: 1s
  load_assignment:
    cluster_name: svc
    endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {backend}, port_value: {port} }} }} }} }}] }}]
"#
        ),
    );
}

fn write_listeners(dir: &Path, version: &str, with_service: bool) {
    let service = if with_service {
        format!(
            r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: svc_vip
  address: {{ socket_address: {{ address: {VIP}, port_value: 80 }} }}
  bind_to_port: false
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: svc
        cluster: svc"#
        )
    } else {
        String::new()
    };
    let resources = if with_service { service } else { " []".into() };
    write_atomically(
        dir,
        "lds.yaml",
        &format!("version_info: \"{version}\"\nresources:{resources}\n"),
    );
}

/// Waits (bounded) for `sluicectl bpf services -o json` to equal
/// `expected`; returns how long that took.
fn wait_for_services(sandbox: &Sandbox, daemon: &Daemon, expected: &Value) -> Duration {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < Duration::from_secs(15) {
        let output = sluicectl(sandbox, &["bpf", "services", "-o", "json"]);
        if output.status.success() {
            last = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            if &last == expected {
                return started.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "services never became {expected}; last {last}\nsluice log:\n{}",
        daemon.log()
    );
}

fn service(backend: &str, port: u16) -> Value {
    json!([{
        "vip": VIP,
        "port": 80,
        "protocol": "tcp",
        "mode": "socket-lb",
        "backends": [{"address": backend, "port": port}],
        "listener": "svc_vip",
    }])
}

#[test]
fn xds_listeners_and_clusters_drive_the_kernel_maps() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("xds");
    let dir = sandbox.dir.path().join("xds");
    std::fs::create_dir_all(&dir).unwrap();
    let port = unused_port();
    write_cluster(&dir, "1", "127.0.0.2", port);
    write_listeners(&dir, "1", true);
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &["127.0.0.1"]);
    let daemon = Daemon::start(&sandbox, &bootstrap(unused_port(), &dir), &hosts, "xds");

    wait_for_services(&sandbox, &daemon, &service("127.0.0.2", port));

    // CDS: a new cluster version moves the backend in the kernel.
    write_cluster(&dir, "2", "127.0.0.3", port);
    let took = wait_for_services(&sandbox, &daemon, &service("127.0.0.3", port));
    // Includes the file poll (500 ms) and sluicectl runs; for the record only.
    eprintln!("CDS file change → kernel map: {took:?}");

    // LDS: removing the listener removes the service.
    write_listeners(&dir, "2", false);
    wait_for_services(&sandbox, &daemon, &json!([]));
}
