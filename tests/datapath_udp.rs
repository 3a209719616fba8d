//! UDP service VIPs end to end: a `bind_to_port: false` listener with
//! `protocol: UDP` and the `udp_proxy` listener filter becomes a kernel
//! socket-LB service. The real `sluice` (`--datapath required`, file-based
//! LDS/CDS) on a cgroup v2 child; UDP echo backends on loopback; Python
//! clients inside the cgroup:
//!
//! - an unconnected `sendto(VIP)` gets its reply from the VIP (recvmsg
//!   hook), a connected socket sees `getpeername()` = VIP, and both backends
//!   get traffic; the same for an IPv6 VIP (fd96::10) and for IPv6 sockets
//!   sending to the v4-mapped VIP;
//! - a TCP service on the same VIP:port keeps working beside it;
//! - `sluicectl bpf services` shows `"protocol": "udp"`, the kernel counts
//!   per service, `/stats` and `/config_dump` show it;
//! - a cluster change moves new sockets; removing the listener stops the
//!   rewrite.
//!
//! Without root these skip with a reason (they must run under `CI=true`).
//! The "not served" notice (`--datapath off`, or `auto` when the kernel
//! refuses) and the rejected UDP shapes need no root.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::Value;

const VIP6: &str = "fd96::10";

/// UDP sockets that answer each datagram with their name; stopped on drop.
struct EchoBackends {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoBackends {
    fn start(backends: &[(&str, u16, &str)]) -> EchoBackends {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = backends
            .iter()
            .map(|(host, port, name)| {
                let socket = UdpSocket::bind((*host, *port)).expect("bind UDP backend");
                socket
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let (stop, name) = (stop.clone(), name.to_string());
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 512];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((_, from)) = socket.recv_from(&mut buffer) {
                            let _ = socket.send_to(name.as_bytes(), from);
                        }
                    }
                })
            })
            .collect();
        EchoBackends { stop, threads }
    }
}

impl Drop for EchoBackends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A TCP backend that greets with "tcp" and closes; stopped on drop.
struct TcpGreeter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpGreeter {
    fn start(port: u16) -> TcpGreeter {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.write_all(b"tcp");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TcpGreeter {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TcpGreeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn unused_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_atomically(dir: &Path, file: &str, text: &str) {
    let temporary = dir.join(format!(".{file}.tmp"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join(file)).unwrap();
}

fn udp_listener(name: &str, vip: &str, cluster: &str) -> String {
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: {name}
  address: {{ socket_address: {{ address: '{vip}', port_value: 53, protocol: UDP }} }}
  bind_to_port: false
  listener_filters:
  - name: envoy.filters.udp_listener.udp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig
      stat_prefix: {name}
      matcher:
        on_no_match:
          action:
            name: route
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route
              cluster: {cluster}"#
    )
}

fn write_listeners(dir: &Path, version: &str, with_udp: bool) {
    let mut resources = format!(
        r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: dns_tcp
  address: {{ socket_address: {{ address: {VIP}, port_value: 53 }} }}
  bind_to_port: false
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: dns_tcp
        cluster: dns_tcp"#
    );
    if with_udp {
        resources.push_str(&udp_listener("dns_udp", VIP, "dns"));
        resources.push_str(&udp_listener("dns_udp6", VIP6, "dns6"));
    }
    write_atomically(
        dir,
        "lds.yaml",
        &format!("version_info: \"{version}\"\nresources:{resources}\n"),
    );
}

fn cluster(name: &str, endpoints: &[(&str, u16)]) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(address, port)| {
            format!("{{ endpoint: {{ address: {{ socket_address: {{ address: '{address}', port_value: {port} }} }} }} }}")
        })
        .collect();
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  connect_timeout: 1s
  load_assignment:
    cluster_name: {name}
    endpoints: [{{ lb_endpoints: [{}] }}]"#,
        endpoints.join(", ")
    )
}

fn write_clusters(dir: &Path, version: &str, dns: &[(&str, u16)], udp6: u16, tcp: u16) {
    let resources = [
        cluster("dns", dns),
        cluster("dns6", &[("::1", udp6)]),
        cluster("dns_tcp", &[("127.0.0.1", tcp)]),
    ]
    .concat();
    write_atomically(
        dir,
        "cds.yaml",
        &format!("version_info: \"{version}\"\nresources:{resources}\n"),
    );
}

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

/// The kernel's services by listener name, once `ready` accepts them
/// (bounded wait).
fn wait_for_services(
    sandbox: &Sandbox,
    daemon: &Daemon,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let output = sluicectl(sandbox, &["bpf", "services", "-o", "json"]);
        if output.status.success() {
            last = serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap_or_default();
            if ready(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "kernel services never got ready; last {last:?}\nsluice log:\n{}",
        daemon.log()
    );
}

fn service<'a>(services: &'a [Value], listener: &str) -> Option<&'a Value> {
    services.iter().find(|s| s["listener"] == listener)
}

fn backend_count(services: &[Value], listener: &str) -> Option<usize> {
    service(services, listener).and_then(|s| s["backends"].as_array().map(Vec::len))
}

/// From inside the cgroup: `unconnected` fresh unconnected sockets each
/// `sendto(vip:53)` once and print `u <reply source> <reply>`; `connected`
/// sockets print `c <getpeername> <reply>`; `tcp` connects print
/// `t <greeting>`; a failure prints `err <where> <exception>`.
fn clients(
    sandbox: &Sandbox,
    vip: &str,
    unconnected: u32,
    connected: u32,
    tcp: u32,
) -> Vec<String> {
    let family = if vip.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let script = format!(
        "import socket, sys
def udp():
    s = socket.socket(socket.{family}, socket.SOCK_DGRAM); s.settimeout(1); return s
for _ in range({unconnected}):
    try:
        s = udp(); s.sendto(b'q', ('{vip}', 53)); data, source = s.recvfrom(64); s.close()
        print('u', source[0], source[1], data.decode())
    except Exception as e:
        print('err u', type(e).__name__)
for _ in range({connected}):
    try:
        s = udp(); s.connect(('{vip}', 53)); peer = s.getpeername(); s.send(b'q'); data = s.recv(64); s.close()
        print('c', peer[0], peer[1], data.decode())
    except Exception as e:
        print('err c', type(e).__name__)
for _ in range({tcp}):
    try:
        s = socket.create_connection(('{vip}', 53), timeout=1); data = s.recv(16); s.close()
        print('t', data.decode())
    except Exception as e:
        print('err t', type(e).__name__)
sys.stdout.flush()
"
    );
    python_in_cgroup(sandbox, &script, false)
}

/// How many lines say each reply, for lines `<kind> <host> <port> <reply>`
/// that must all come from `vip`:53.
fn replies_from_vip(
    lines: &[String],
    kind: &str,
    vip: &str,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for line in lines.iter().filter(|l| l.starts_with(&format!("{kind} "))) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(
            &fields[1..3],
            [vip, "53"],
            "{line}: the app must see the VIP ({lines:?})"
        );
        *seen.entry(fields[3].to_string()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn udp_service_vips_are_served_by_the_kernel_and_follow_lds_and_cds() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("udp");
    let dir = sandbox.dir.path().join("xds");
    std::fs::create_dir_all(&dir).unwrap();
    let (udp_port, udp6_port, tcp_port) = (unused_udp_port(), unused_udp_port(), unused_port());
    let _echo = EchoBackends::start(&[
        ("127.0.0.1", udp_port, "b1"),
        ("127.0.0.2", udp_port, "b2"),
        ("::1", udp6_port, "b6"),
    ]);
    let _tcp = TcpGreeter::start(tcp_port);
    let dns = [("127.0.0.1", udp_port), ("127.0.0.2", udp_port)];
    write_clusters(&dir, "1", &dns, udp6_port, tcp_port);
    write_listeners(&dir, "1", true);
    let admin = unused_port();
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &[]);
    let daemon = Daemon::start(&sandbox, &bootstrap(admin, &dir), &hosts, "udp");

    let services = wait_for_services(&sandbox, &daemon, |s| {
        backend_count(s, "dns_udp") == Some(2) && s.len() == 3
    });
    let udp = service(&services, "dns_udp").unwrap();
    assert_eq!(
        (&udp["vip"], &udp["port"], &udp["protocol"], &udp["mode"]),
        (
            &Value::from(VIP),
            &Value::from(53),
            &Value::from("udp"),
            &Value::from("socket-lb")
        ),
        "{services:?}"
    );
    let tcp = service(&services, "dns_tcp").unwrap();
    assert_eq!(
        (&tcp["port"], &tcp["protocol"]),
        (&Value::from(53), &Value::from("tcp"))
    );
    assert_eq!(service(&services, "dns_udp6").unwrap()["protocol"], "udp");

    // Unconnected and connected UDP, and TCP on the same VIP:port.
    let lines = clients(&sandbox, VIP, 16, 4, 2);
    assert!(
        !lines.iter().any(|l| l.starts_with("err")),
        "{lines:?}\n{}",
        daemon.log()
    );
    let unconnected = replies_from_vip(&lines, "u", VIP);
    assert_eq!(unconnected.values().sum::<usize>(), 16, "{lines:?}");
    assert!(
        unconnected.contains_key("b1") && unconnected.contains_key("b2"),
        "both backends get traffic: {lines:?}"
    );
    assert_eq!(
        replies_from_vip(&lines, "c", VIP).values().sum::<usize>(),
        4,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| *l == "t tcp").count(),
        2,
        "{lines:?}"
    );
    let lines6 = clients(&sandbox, VIP6, 3, 1, 0);
    assert_eq!(
        replies_from_vip(&lines6, "u", VIP6).get("b6"),
        Some(&3),
        "{lines6:?}"
    );
    assert_eq!(
        replies_from_vip(&lines6, "c", VIP6).get("b6"),
        Some(&1),
        "{lines6:?}"
    );

    // Per-service kernel counters: one per sendto of an unconnected socket,
    // one per connect; the TCP service counts apart.
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    assert_eq!(
        counters[format!("datapath.lb4.service.{VIP}:53/udp.connects")],
        20,
        "{counters}"
    );
    assert_eq!(
        counters[format!("datapath.lb4.service.{VIP}:53/tcp.connects")],
        2,
        "{counters}"
    );
    assert_eq!(
        counters[format!("datapath.lb6.service.[{VIP6}]:53/udp.connects")],
        4,
        "{counters}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stats = String::new();
    while Instant::now() < deadline && !stats.contains("datapath.socket_lb.dns_udp.connects: 20") {
        std::thread::sleep(Duration::from_millis(100));
        stats = admin_get(admin, "/stats");
    }
    assert!(
        stats.contains("datapath.socket_lb.dns_udp.connects: 20"),
        "{stats}"
    );
    let dump = admin_get(admin, "/config_dump");
    assert!(
        dump.contains("\"name\": \"dns_udp\"")
            && dump.contains("envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig")
            && dump.contains("\"protocol\": \"UDP\""),
        "{dump}"
    );

    // Dual-stack apps (IPv6 sockets, v4-mapped VIP) get the same service.
    let mapped = format!("::ffff:{VIP}");
    let lines = clients(&sandbox, &mapped, 4, 1, 0);
    assert!(!lines.iter().any(|l| l.starts_with("err")), "{lines:?}");
    assert_eq!(
        replies_from_vip(&lines, "u", &mapped)
            .values()
            .sum::<usize>(),
        4,
        "{lines:?}"
    );
    assert_eq!(
        replies_from_vip(&lines, "c", &mapped)
            .values()
            .sum::<usize>(),
        1,
        "{lines:?}"
    );

    // A cluster change moves new sockets.
    write_clusters(&dir, "2", &dns[1..], udp6_port, tcp_port);
    wait_for_services(&sandbox, &daemon, |s| {
        backend_count(s, "dns_udp") == Some(1)
    });
    let lines = clients(&sandbox, VIP, 6, 0, 0);
    assert_eq!(
        replies_from_vip(&lines, "u", VIP).get("b2"),
        Some(&6),
        "{lines:?}"
    );

    // Removing the UDP listeners stops the rewrite; TCP stays.
    write_listeners(&dir, "2", false);
    wait_for_services(&sandbox, &daemon, |s| {
        s.len() == 1 && service(s, "dns_tcp").is_some()
    });
    let lines = clients(&sandbox, VIP, 1, 0, 1);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("err u"),
        "nothing answers on the VIP itself: {lines:?}"
    );
    assert_eq!(lines[1], "t tcp", "{lines:?}");
}

fn static_udp_config(admin: u16, listener_extra: &str, udp_proxy_extra: &str) -> String {
    format!(
        "admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: dns
    address: {{socket_address: {{address: {VIP}, port_value: 53, protocol: UDP}}}}
{listener_extra}    listener_filters:
    - name: envoy.filters.udp_listener.udp_proxy
      typed_config:
        '@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig
        stat_prefix: dns
        cluster: dns
{udp_proxy_extra}  clusters:
  - name: dns
    connect_timeout: 1s
    load_assignment:
      cluster_name: dns
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 5353}}}}}}}}]}}]
"
    )
}

#[test]
fn udp_listener_shapes_sluice_cannot_serve_are_rejected_by_name() {
    let virtual_listener = "    bind_to_port: false\n";
    let cases = [
        ("", "", "static_resources.listeners[0].bind_to_port: a bound UDP listener needs userspace UDP proxying"),
        (virtual_listener, "        session_filters: [{name: s}]\n", "listeners[0].listener_filters[0].typed_config.session_filters: field 'session_filters'"),
        (virtual_listener, "        hash_policies: [{source_ip: true}]\n", "listeners[0].listener_filters[0].typed_config.hash_policies: field 'hash_policies'"),
        (virtual_listener, "        use_per_packet_load_balancing: true\n", "typed_config.use_per_packet_load_balancing: field 'use_per_packet_load_balancing'"),
        (virtual_listener, "        idle_timeout: 5s\n", "typed_config.idle_timeout: field 'idle_timeout'"),
        (
            "    bind_to_port: false\n    filter_chains: [{filters: [{name: t, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: dns}}]}]\n",
            "",
            "static_resources.listeners[0].filter_chains: a UDP listener has no filter chains",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (index, (listener_extra, udp_proxy_extra, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("{index}.yaml"));
        std::fs::write(
            &path,
            static_udp_config(unused_port(), listener_extra, udp_proxy_extra),
        )
        .unwrap();
        let output = Command::new(sluice_binary())
            .arg("-c")
            .arg(&path)
            .args(["--mode", "validate"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr).to_string()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(
            !output.status.success(),
            "case {index} was accepted: {text}"
        );
        assert!(
            text.contains(expected),
            "case {index}: expected {expected:?} in:\n{text}"
        );
    }
    let path = dir.path().join("good.yaml");
    std::fs::write(
        &path,
        static_udp_config(unused_port(), virtual_listener, ""),
    )
    .unwrap();
    let output = Command::new(sluice_binary())
        .arg("-c")
        .arg(&path)
        .args(["--mode", "validate"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs sluice on `config` with `args` until its log contains `expected`
/// (bounded); returns the log.
fn log_until(config: &str, args: &[&str], expected: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("udp.yaml");
    std::fs::write(&path, config).unwrap();
    let log_path = dir.path().join("sluice.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(sluice_binary())
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains(expected) {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(&log_path).unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn without_the_kernel_datapath_a_udp_service_listener_is_said_to_be_unserved() {
    let config = || static_udp_config(unused_port(), "    bind_to_port: false\n", "");
    let expected = "UDP service listener not served: --datapath off";
    let text = log_until(&config(), &["--datapath", "off"], expected);
    assert!(text.contains(expected), "{text}");
    assert!(text.contains("listener=dns"), "{text}");
    assert_eq!(text.matches(expected).count(), 1, "said once: {text}");
    // `auto` when the kernel refuses (here: no such cgroup) says the same.
    let expected = "UDP service listener not served: kernel datapath off:";
    let text = log_until(
        &config(),
        &[
            "--datapath",
            "auto",
            "--datapath-cgroup",
            "/nonexistent/sluice-udp-test",
        ],
        expected,
    );
    assert!(text.contains(expected), "{text}");
    assert_eq!(text.matches(expected).count(), 1, "said once: {text}");
}
