//! End-to-end tests of the kernel's backend choice and IPv6 services: the
//! real `sluice` with `--datapath required` on a cgroup v2 child, clients
//! inside that cgroup, backends on loopback, counters read with `sluicectl`.
//!
//! - A MAGLEV cluster: every connect from one network namespace goes to the
//!   same backend (the key is the client's netns cookie), and different
//!   network namespaces (fresh ones from `unshare --net`) land on different
//!   backends. In a fresh netns the rewritten connect goes to that netns's
//!   own loopback and is refused, but the kernel has chosen (and counted)
//!   the backend already: the per-backend counters show the choice.
//! - Weighted random: endpoints with `load_balancing_weight` 3 and 1 share
//!   connects about 3:1 in the per-backend kernel counters.
//! - An IPv6 VIP (fd96::10: this machine has fd00::/64 on eth0, so the VIP
//!   is outside it) reaches a `[::1]` backend and `getpeername` shows the VIP.
//!
//! Needs root, bpffs and cgroup v2; skips with a reason otherwise, except
//! under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const VIP6: &str = "fd96::10";

/// Backends that greet with their name and close, one port each.
struct Backends {
    ports: Vec<u16>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn greeting_backends(host: &str, count: usize) -> Backends {
    let mut ports = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..count {
        let listener = TcpListener::bind((host, 0)).await.unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let name = format!("b{index}");
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.write_all(name.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        }));
    }
    Backends { ports, tasks }
}

/// A virtual listener on `vip`:80 to cluster `backends` with these
/// (address, port, weight) endpoints and `lb_policy`.
fn lb_config(vip: &str, lb_policy: &str, endpoints: &[(&str, u16, u32)]) -> String {
    let admin_port = unused_port();
    let endpoints: String = endpoints
        .iter()
        .map(|(address, port, weight)| {
            format!(
                "        - endpoint: {{address: {{socket_address: {{address: '{address}', port_value: {port}}}}}}}\n          load_balancing_weight: {weight}\n"
            )
        })
        .collect();
    format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
  listeners:
  - name: svc
    bind_to_port: false
    address: {{socket_address: {{address: '{vip}', port_value: 80}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: vip, cluster: backends}}
  clusters:
  - name: backends
    connect_timeout: 1s
    type: STATIC
    lb_policy: {lb_policy}
    load_assignment:
      cluster_name: backends
      endpoints:
      - lb_endpoints:
{endpoints}"
    )
}

/// Runs `connects` connects to `vip`:80 from a process in the test cgroup
/// (in a fresh network namespace with `new_netns`); each line of the result
/// is `ok <peer host> <peer port> <greeting>` or `err <exception>`.
fn connect_from_cgroup(
    sandbox: &Sandbox,
    vip: &str,
    connects: u32,
    new_netns: bool,
) -> Vec<String> {
    let family = if vip.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let script = format!(
        "import socket, sys
for _ in range({connects}):
    try:
        s = socket.socket(socket.{family}); s.settimeout(1); s.connect(('{vip}', 80))
        peer = s.getpeername()
        data = s.recv(16).decode()
        s.close()
        print('ok', peer[0], peer[1], data)
    except Exception as e:
        print('err', type(e).__name__)
    sys.stdout.flush()
"
    );
    python_in_cgroup(sandbox, &script, new_netns)
}

/// Waits (bounded) until the kernel has the service with `backends` backends.
fn wait_for_backends(sandbox: &Sandbox, daemon: &Daemon, backends: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let output = sluicectl(sandbox, &["bpf", "services", "-o", "json"]);
        if output.status.success() {
            last = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            if last[0]["backends"]
                .as_array()
                .is_some_and(|b| b.len() == backends)
            {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "service never had {backends} backends; last {last}\nsluice log:\n{}",
        daemon.log()
    );
}

/// Per-backend kernel connect counters by port (IPv4 backends on 127.0.0.1).
fn backend_connects(sandbox: &Sandbox, ports: &[u16]) -> Vec<u64> {
    let counters = sluicectl_json(sandbox, &["bpf", "counters"]);
    ports
        .iter()
        .map(|port| {
            counters[format!("datapath.lb4.backend.127.0.0.1:{port}.connects")]
                .as_u64()
                .unwrap_or_else(|| panic!("no counter for port {port}: {counters}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_sticks_to_one_backend_per_network_namespace() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("maglev");
    let backends = greeting_backends("127.0.0.1", 4).await;
    let endpoints: Vec<(&str, u16, u32)> = backends
        .ports
        .iter()
        .map(|p| ("127.0.0.1", *p, 1))
        .collect();
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &[]);
    let daemon = Daemon::start(
        &sandbox,
        &lb_config(VIP, "MAGLEV", &endpoints),
        &hosts,
        "maglev",
    );
    wait_for_backends(&sandbox, &daemon, 4);
    let flags = sluicectl_json(&sandbox, &["bpf", "dump", "LB_MAGLEV"]);
    assert_eq!(
        flags.as_array().map(Vec::len),
        Some(1),
        "one table: {flags}"
    );

    // The test's own netns: 20 connects, all reach the same backend.
    let lines = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, VIP, 20, false));
    let greetings: BTreeMap<&str, usize> = lines.iter().fold(BTreeMap::new(), |mut seen, line| {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[..3], ["ok", VIP, "80"], "{line}");
        *seen.entry(parts[3]).or_default() += 1;
        seen
    });
    assert_eq!(greetings.len(), 1, "one netns, one backend: {greetings:?}");
    assert_eq!(greetings.values().sum::<usize>(), 20);

    // Fresh network namespaces: each sticks to one backend (its 5 connects
    // are counted on one backend), and they do not all pick the same one.
    let mut chosen = std::collections::BTreeSet::new();
    for namespace in 0..8 {
        let before = backend_connects(&sandbox, &backends.ports);
        let lines = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, VIP, 5, true));
        assert_eq!(lines.len(), 5, "{lines:?}");
        let after = backend_connects(&sandbox, &backends.ports);
        let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let hit: Vec<usize> = (0..delta.len()).filter(|i| delta[*i] > 0).collect();
        assert_eq!(
            hit.len(),
            1,
            "netns {namespace}: connects spread over {delta:?}"
        );
        assert_eq!(delta[hit[0]], 5, "netns {namespace}: {delta:?}");
        chosen.insert(hit[0]);
    }
    assert!(
        chosen.len() >= 2,
        "8 network namespaces all chose backend {chosen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_follows_load_balancing_weight() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("weighted");
    let backends = greeting_backends("127.0.0.1", 2).await;
    let endpoints = [
        ("127.0.0.1", backends.ports[0], 3),
        ("127.0.0.1", backends.ports[1], 1),
    ];
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &[]);
    let daemon = Daemon::start(
        &sandbox,
        &lb_config(VIP, "RANDOM", &endpoints),
        &hosts,
        "weighted",
    );
    wait_for_backends(&sandbox, &daemon, 2);
    let lines = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, VIP, 400, false));
    assert!(lines.iter().all(|l| l.starts_with("ok ")), "{lines:?}");
    let connects = backend_connects(&sandbox, &backends.ports);
    assert_eq!(connects.iter().sum::<u64>(), 400, "{connects:?}");
    // Expected 300:100; binomial σ ≈ 8.7, the bound is ±5σ.
    assert!(
        (257..=343).contains(&connects[0]),
        "weight 3:1 gave {connects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_vip_reaches_an_ipv6_backend_and_the_app_sees_the_vip() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("lb6");
    let backends = greeting_backends("::1", 2).await;
    let endpoints = [("::1", backends.ports[0], 1), ("::1", backends.ports[1], 1)];
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &[]);
    let daemon = Daemon::start(
        &sandbox,
        &lb_config(VIP6, "ROUND_ROBIN", &endpoints),
        &hosts,
        "lb6",
    );
    let services = wait_for_backends(&sandbox, &daemon, 2);
    let mut ports = backends.ports.clone();
    ports.sort(); // backends are listed sorted by address
    assert_eq!(
        services,
        json!([{
            "vip": VIP6,
            "port": 80,
            "protocol": "tcp",
            "mode": "socket-lb",
            "backends": ports.iter().map(|p| json!({"address": "::1", "port": p})).collect::<Vec<_>>(),
            "listener": "svc",
        }])
    );
    let lines = tokio::task::block_in_place(|| connect_from_cgroup(&sandbox, VIP6, 20, false));
    let mut greetings = std::collections::BTreeSet::new();
    for line in &lines {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(
            parts[..3],
            ["ok", VIP6, "80"],
            "getpeername shows the VIP: {line}"
        );
        greetings.insert(parts[3].to_string());
    }
    assert_eq!(lines.len(), 20);
    assert_eq!(
        greetings.len(),
        2,
        "random choice uses both backends: {greetings:?}"
    );
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    assert_eq!(
        counters[format!("datapath.lb6.service.[{VIP6}]:80/tcp.connects")],
        20,
        "{counters}"
    );
    let text = sluicectl(&sandbox, &["bpf", "services"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("[{VIP6}]:80/tcp socket-lb [svc] -> [::1]:")),
        "{text}"
    );
}
