//! End-to-end test of kernel socket-level load balancing: the real `sluice`
//! with `--datapath required` attached to a cgroup v2 child the test
//! creates, a client process inside that cgroup connecting to a VIP that the
//! kernel rewrites to loopback backends, and `sluicectl bpf` reading the
//! pinned maps. The VIP is 127.96.0.10, not a cluster-style 10.96.0.10:
//! this kind of machine routes 10/8 to an egress that accepts any connect,
//! and a connect the kernel does not rewrite (the removed-service check) must
//! stay on loopback, where it is refused.
//!
//! Cluster membership changes live: the cluster is STRICT_DNS on a name the
//! daemon resolves from its own `/etc/hosts` (bind-mounted in a private mount
//! namespace), which the test rewrites. Needs root, bpffs and cgroup v2;
//! skips with a reason otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Loopback backends sharing one port on 127.0.0.2 and 127.0.0.3 (a DNS
/// cluster has one port); each greets with its own name and closes.
struct Backends {
    port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn greeting_backends() -> Backends {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let Ok(second) = TcpListener::bind(("127.0.0.3", port)).await else {
            continue;
        };
        let tasks = [(first, "A"), (second, "B")]
            .into_iter()
            .map(|(listener, name)| {
                tokio::spawn(async move {
                    loop {
                        let Ok((mut stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = stream.write_all(name.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                })
            })
            .collect();
        return Backends { port, tasks };
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// Waits (bounded) until `sluicectl bpf services -o json` equals `expected`.
fn wait_for_services(sandbox: &Sandbox, daemon: &Daemon, expected: &Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let output = sluicectl(sandbox, &["bpf", "services", "-o", "json"]);
        if output.status.success() {
            last = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            if &last == expected {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "services never became {expected}; last {last}\nsluice log:\n{}",
        daemon.log()
    );
}

/// Connects `count` times to VIP:80 from a process inside the cgroup; each
/// result is (peer address the app sees, greeting) or an error string.
fn connect_from_cgroup(sandbox: &Sandbox, count: u32) -> Vec<Result<(String, String), String>> {
    connect_from_cgroup_as(sandbox, count, false)
}

/// As [`connect_from_cgroup`]; with `v4_mapped`, from an IPv6 socket to
/// `::ffff:<VIP>` (as dual-stack runtimes do), which only the `*6` hooks see.
fn connect_from_cgroup_as(
    sandbox: &Sandbox,
    count: u32,
    v4_mapped: bool,
) -> Vec<Result<(String, String), String>> {
    let connect = if v4_mapped {
        format!(
            "s = socket.socket(socket.AF_INET6); s.settimeout(1); s.connect(('::ffff:{VIP}', 80))"
        )
    } else {
        format!("s = socket.create_connection(('{VIP}', 80), timeout=1)")
    };
    let script = format!(
        "import socket, sys
for _ in range({count}):
    try:
        {connect}
        peer = '%s:%d' % s.getpeername()[:2]
        data = s.recv(16).decode()
        s.close()
        print('ok', peer, data)
    except Exception as e:
        print('err', type(e).__name__)
    sys.stdout.flush()
"
    );
    python_in_cgroup(sandbox, &script, false)
        .iter()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["ok", peer, data] => Ok((peer.to_string(), data.to_string())),
                ["ok", peer] => Ok((peer.to_string(), String::new())),
                other => Err(other.join(" ")),
            }
        })
        .collect()
}

fn services_json(port: u16, backends: &[&str]) -> Value {
    json!([{
        "vip": VIP,
        "port": 80,
        "protocol": "tcp",
        "mode": "socket-lb",
        "backends": backends.iter().map(|a| json!({"address": a, "port": port})).collect::<Vec<_>>(),
        "listener": "kube_dns_vip",
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_socket_lb_follows_cluster_membership_and_survives_a_crash() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("lb");
    let backends = greeting_backends().await;
    let port = backends.port;
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &["127.0.0.2", "127.0.0.3"]);
    let mut daemon = Daemon::start(&sandbox, &config(port, true), &hosts, "first");
    wait_for_services(
        &sandbox,
        &daemon,
        &services_json(port, &["127.0.0.2", "127.0.0.3"]),
    );

    // The app connects to the VIP, reaches a loopback backend, and sees the VIP.
    let results = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, 30));
    let vip_peer = format!("{VIP}:80");
    let mut seen = std::collections::BTreeSet::new();
    for result in &results {
        let (peer, greeting) = result.as_ref().expect("connect through the kernel");
        assert_eq!(peer, &vip_peer, "getpeername shows the VIP");
        seen.insert(greeting.clone());
    }
    assert_eq!(results.len(), 30);
    assert_eq!(
        seen,
        ["A", "B"].map(String::from).into(),
        "random choice uses both backends"
    );

    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    assert_eq!(
        counters[format!("datapath.lb4.service.{VIP}:80/tcp.connects")],
        30,
        "{counters}"
    );
    let a = counters[format!("datapath.lb4.backend.127.0.0.2:{port}.connects")]
        .as_u64()
        .unwrap();
    let b = counters[format!("datapath.lb4.backend.127.0.0.3:{port}.connects")]
        .as_u64()
        .unwrap();
    assert_eq!(a + b, 30, "{counters}");

    // The same kernel counters as Sluice stats (exported every second).
    let admin_port: u16 = std::fs::read_to_string(sandbox.dir.path().join("first.yaml"))
        .unwrap()
        .split("port_value: ")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .and_then(|port| port.parse().ok())
        .expect("admin port in the config");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = String::new();
    while Instant::now() < deadline {
        stats = admin_get(admin_port, "/stats");
        if stats.contains("datapath.socket_lb.kube_dns_vip.connects: 30") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stats.contains("datapath.socket_lb.kube_dns_vip.connects: 30"),
        "{stats}"
    );
    assert!(stats.contains("datapath.socket_lb.kube_dns_vip.no_backend: 0"));
    // Per backend, the same split the kernel counted (one batched read per
    // export; polled, as the admin may read between two stats of a pass).
    let backend_stat = |stats: &str, address: &str| {
        let name = format!(
            "datapath.socket_lb.backend.{}_{port}.connects: ",
            address.replace('.', "_")
        );
        stats
            .lines()
            .find_map(|line| line.strip_prefix(name.as_str()))
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let split = loop {
        let stats = admin_get(admin_port, "/stats");
        let split = (
            backend_stat(&stats, "127.0.0.2"),
            backend_stat(&stats, "127.0.0.3"),
        );
        if split == (Some(a), Some(b)) || Instant::now() > deadline {
            break split;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(split, (Some(a), Some(b)), "per-backend connects in /stats");
    let prometheus = admin_get(admin_port, "/stats/prometheus");
    assert!(
        prometheus.contains("datapath_socket_lb_kube_dns_vip_connects"),
        "{prometheus}"
    );

    let status = sluicectl_json(&sandbox, &["bpf", "status"]);
    let attached: Vec<&str> = status["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["attached"] == true)
        .map(|h| h["hook"].as_str().unwrap())
        .collect();
    assert_eq!(
        attached,
        [
            "cgroup/connect4",
            "cgroup/sendmsg4",
            "cgroup/getpeername4",
            "cgroup/recvmsg4",
            "cgroup/connect6",
            "cgroup/sendmsg6",
            "cgroup/getpeername6",
            "cgroup/recvmsg6",
            "cgroup/sock_ops",
        ]
    );

    // An IPv6 socket reaching the IPv4 service through a v4-mapped address.
    let results = tokio::task::block_in_place(|| connect_from_cgroup_as(&sandbox, 5, true));
    for result in &results {
        let (peer, greeting) = result
            .as_ref()
            .expect("v4-mapped connect through the kernel");
        assert_eq!(peer, &format!("::ffff:{VIP}:80"));
        assert!(greeting == "A" || greeting == "B", "{greeting}");
    }

    // A membership change (DNS now answers only 127.0.0.3) reaches the kernel.
    write_hosts(&hosts, &["127.0.0.3"]);
    wait_for_services(&sandbox, &daemon, &services_json(port, &["127.0.0.3"]));
    let results = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, 10));
    for result in &results {
        assert_eq!(result.as_ref().unwrap().1, "B");
    }

    // A crashed daemon leaves the kernel forwarding with the last maps, and
    // sluicectl still reads them.
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit();
    let results = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, 3));
    for result in &results {
        assert_eq!(result.as_ref().unwrap().1, "B", "{results:?}");
    }
    assert_eq!(
        sluicectl_json(&sandbox, &["bpf", "services"]),
        services_json(port, &["127.0.0.3"])
    );

    // The next start, without the service, replaces the pins: the VIP is no
    // longer rewritten (nothing listens on it: refused).
    let mut daemon = Daemon::start(&sandbox, &config(port, false), &hosts, "second");
    wait_for_services(&sandbox, &daemon, &json!([]));
    let results = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, 1));
    assert_eq!(results, [Err("err ConnectionRefusedError".to_string())]);

    // A clean shutdown detaches and unpins.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    assert!(
        !sandbox.pin_dir.exists(),
        "pins left after a clean shutdown"
    );
    let output = sluicectl(&sandbox, &["bpf", "services"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot open pin"));
    drop(backends);
}
