//! xDS down to the kernel: listeners, clusters and endpoints that arrive by
//! xDS become, change and leave kernel socket-LB entries. A
//! `bind_to_port: false` listener on the VIP with a `tcp_proxy` to a cluster
//! is a service. File-based LDS/CDS: a new cluster version moves its backend
//! in the maps. ADS from the real `sluicectl xds serve` (state of the world
//! and delta): an EDS cluster's new ClusterLoadAssignment moves the
//! service's backends, seen both in the pinned maps and by a client in the
//! test cgroup whose connects the kernel rewrites. Removing the listener
//! removes the service. Needs root, bpffs and cgroup v2; skips with a reason
//! otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;
#[path = "xds/harness.rs"]
mod harness;

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
    service_with(&[(backend, port)])
}

fn service_with(backends: &[(&str, u16)]) -> Value {
    let backends: Vec<Value> = backends
        .iter()
        .map(|(address, port)| json!({"address": address, "port": port}))
        .collect();
    json!([{
        "vip": VIP,
        "port": 80,
        "protocol": "tcp",
        "mode": "socket-lb",
        "backends": backends,
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

/// The daemon's bootstrap for ADS: only the control plane's static cluster.
fn ads_bootstrap(admin: u16, xds_port: u16, api_type: &str) -> String {
    harness::control_plane_bootstrap(
        "kernel-test",
        &admin.to_string(),
        xds_port,
        &harness::ads_dynamic_resources(api_type),
    )
}

/// The VIP listener as an ADS resource file.
fn vip_listener_yaml() -> String {
    format!(
        r#""@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: svc_vip
address: {{ socket_address: {{ address: {VIP}, port_value: 80 }} }}
bind_to_port: false
filter_chains:
- filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: svc
      cluster: svc
"#
    )
}

/// A loopback TCP server that greets every connection with its name and
/// closes it; stops (bounded by a minute) when dropped.
struct Greeter {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Greeter {
    fn start(name: &'static str) -> Greeter {
        use std::io::Write as _;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.write_all(name.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Greeter {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Greetings from `count` connects to the VIP from the test cgroup.
fn greetings(sandbox: &Sandbox, count: u32) -> Vec<String> {
    greetings_from_cgroup(sandbox, VIP, 80, count)
}

/// ADS → kernel: `sluicectl xds serve` serves a VIP listener, an EDS
/// cluster and its endpoints; EDS pushes move the kernel service's
/// backends, and removing the listener removes the service.
fn ads_drives_the_kernel_maps(api_type: &str) {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new(&format!("ads-{}", api_type.to_lowercase()));
    let (a, b, c) = (
        Greeter::start("A"),
        Greeter::start("B"),
        Greeter::start("C"),
    );
    let dir = harness::ResourceDir::new();
    dir.write("svc.yaml", &harness::cluster_yaml("svc", "1s", true));
    dir.write(
        "svc-endpoints.yaml",
        &harness::endpoints_yaml("svc", &[a.port]),
    );
    dir.write("vip.yaml", &vip_listener_yaml());
    let server = harness::DemoServer::start(dir.path(), 0);
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &["127.0.0.1"]);
    let daemon = Daemon::start(
        &sandbox,
        &ads_bootstrap(unused_port(), server.port, api_type),
        &hosts,
        "ads",
    );

    wait_for_services(&sandbox, &daemon, &service("127.0.0.1", a.port));
    assert_eq!(greetings(&sandbox, 3), ["A", "A", "A"]);

    // EDS: the assignment moves to B, then spreads over B and C.
    dir.write(
        "svc-endpoints.yaml",
        &harness::endpoints_yaml("svc", &[b.port]),
    );
    wait_for_services(&sandbox, &daemon, &service("127.0.0.1", b.port));
    assert_eq!(greetings(&sandbox, 3), ["B", "B", "B"]);
    dir.write(
        "svc-endpoints.yaml",
        &harness::endpoints_yaml("svc", &[b.port, c.port]),
    );
    let mut both = [("127.0.0.1", b.port), ("127.0.0.1", c.port)];
    both.sort_by_key(|(_, port)| *port);
    wait_for_services(&sandbox, &daemon, &service_with(&both));
    let seen = greetings(&sandbox, 40);
    assert!(
        seen.iter().all(|g| g == "B" || g == "C")
            && seen.contains(&"B".into())
            && seen.contains(&"C".into()),
        "40 connects over B and C reached {seen:?}"
    );

    // LDS: the listener's removal removes the kernel service.
    dir.remove("vip.yaml");
    wait_for_services(&sandbox, &daemon, &json!([]));
    let acks = server.lines_with(&["ACK", "ClusterLoadAssignment"]);
    assert!(acks.len() >= 2, "EDS pushes ACKed:\n{}", server.full_log());
}

#[test]
fn ads_state_of_the_world_drives_the_kernel_maps() {
    ads_drives_the_kernel_maps("GRPC");
}

#[test]
fn ads_delta_drives_the_kernel_maps() {
    ads_drives_the_kernel_maps("DELTA_GRPC");
}
