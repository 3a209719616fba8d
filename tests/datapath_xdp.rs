//! End-to-end test of XDP: the real `sluice` with `--datapath-xdp-iface` on
//! one end of a veth pair whose peer lives in a network namespace the test
//! creates; per-interface and per-service counters count the peer's packets
//! (in `sluicectl bpf counters`, `/stats` and `/stats/prometheus`),
//! `/server_info` states the XDP mode, the IPv4 and IPv6 deny lists
//! (`sluicectl bpf denylist`) drop them, and with `--datapath-keep-pins` XDP
//! keeps dropping across a restart whose start updates the link in place. Needs root; skips with a reason
//! otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::process::Command;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::json;
use tokio::net::TcpListener;

/// A veth pair: `host` in this namespace (192.168.250.1/30, fd00:5c:1::1/64),
/// its peer in a network namespace of its own (192.168.250.2/30,
/// fd00:5c:1::2/64). Removed on drop.
struct VethPair {
    namespace: String,
    host: String,
}

fn run_ok(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl VethPair {
    fn new() -> VethPair {
        let id = std::process::id() % 100_000;
        let pair = VethPair {
            namespace: format!("sluice-xdp-{id}"),
            host: format!("slxh{id}"),
        };
        let peer = format!("slxn{id}");
        run_ok("ip", &["netns", "add", &pair.namespace]);
        run_ok(
            "ip",
            &[
                "link", "add", &pair.host, "type", "veth", "peer", "name", &peer,
            ],
        );
        run_ok("ip", &["link", "set", &peer, "netns", &pair.namespace]);
        run_ok(
            "ip",
            &["addr", "add", "192.168.250.1/30", "dev", &pair.host],
        );
        run_ok(
            "ip",
            &["addr", "add", "fd00:5c:1::1/64", "dev", &pair.host, "nodad"],
        );
        run_ok("ip", &["link", "set", &pair.host, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec![
                "--net=/run/netns/".to_string() + &pair.namespace,
                "ip".into(),
            ];
            all.extend(args.iter().map(|a| a.to_string()));
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            run_ok("nsenter", &all);
        };
        inside(&["addr", "add", "192.168.250.2/30", "dev", &peer]);
        inside(&["addr", "add", "fd00:5c:1::2/64", "dev", &peer, "nodad"]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        pair
    }

    /// TCP connects from inside the namespace to `host`:`port`; how many
    /// succeeded.
    fn connects_from_namespace(&self, host: &str, port: u16, count: u32) -> u32 {
        let script = format!(
            "import socket
ok = 0
for _ in range({count}):
    try:
        socket.create_connection(('{host}', {port}), timeout=0.5).close(); ok += 1
    except Exception:
        pass
print(ok)
"
        );
        let output = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.namespace))
            .args(["python3", "-c", &script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
    }
}

const HOST_V4: &str = "192.168.250.1";
const HOST_V6: &str = "fd00:5c:1::1";

/// A service on the host end of the veth (`xdp_vip`, 192.168.250.1:`port`,
/// as a node address clients elsewhere reach) and the admin listener.
fn xdp_config(admin_port: u16, port: u16) -> String {
    format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
  listeners:
  - name: xdp_vip
    bind_to_port: false
    address: {{socket_address: {{address: {HOST_V4}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: vip, cluster: backends}}
  clusters:
  - name: backends
    connect_timeout: 1s
    load_assignment:
      cluster_name: backends
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.2, port_value: 9}}}}}}
"
    )
}

/// The body of an admin GET.
fn admin_body(admin_port: u16, path: &str) -> String {
    let response = admin_get(admin_port, path);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The value of the stat `name` in `/stats` (bounded wait until it reaches
/// `at_least`, since counters are exported once a second).
fn wait_for_stat(admin_port: u16, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = admin_body(admin_port, &format!("/stats?filter=^{name}$"));
        let value = stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdp_counts_per_interface_and_service_states_its_mode_and_drops_denied_sources() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("xdp");
    let veth = VethPair::new();
    let listener = TcpListener::bind((HOST_V4, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let listener6 = TcpListener::bind((HOST_V6, port)).await.unwrap();
    let accept = tokio::spawn(async move {
        loop {
            tokio::select! {
                Ok((stream, _)) = listener.accept() => drop(stream),
                Ok((stream, _)) = listener6.accept() => drop(stream),
            }
        }
    });
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &["127.0.0.2"]);
    let admin_port = unused_port();
    let mut daemon = Daemon::start_with(
        &sandbox,
        &xdp_config(admin_port, port),
        &hosts,
        "xdp",
        &["--datapath-xdp-iface", &veth.host, "--datapath-keep-pins"],
    );
    // Ready when the XDP link is pinned.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sandbox
        .pin_dir
        .join("links")
        .join(format!("xdp-{}", veth.host))
        .exists()
    {
        assert!(
            Instant::now() < deadline,
            "xdp not attached:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // veth has native XDP: the log, /server_info and sluicectl say so.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("all listeners started") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        daemon.log().contains("xdp attached (native mode)"),
        "{}",
        daemon.log()
    );
    let info: serde_json::Value =
        serde_json::from_str(&admin_body(admin_port, "/server_info")).unwrap();
    let datapath = &info["datapath"];
    assert_eq!(datapath["active"], true, "{datapath}");
    assert_eq!(
        datapath["xdp_interfaces"],
        json!([{"interface": veth.host, "mode": "native", "adopted": false}])
    );
    assert_eq!(datapath["hooks_attached"].as_array().unwrap().len(), 9);
    assert_eq!(datapath["hooks_off"], json!([]));
    assert_eq!(
        datapath["pin_dir"],
        json!(sandbox.pin_dir.display().to_string())
    );
    let status = sluicectl_json(&sandbox, &["bpf", "status"]);
    assert_eq!(status["xdp_interfaces"], json!([veth.host]));
    assert_eq!(
        status["xdp"],
        json!([{"interface": veth.host, "mode": "native"}])
    );

    // 5 connects to the service address: counted per interface and per service.
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V4, port, 5));
    assert_eq!(passed, 5);
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    let packets = counters[format!("datapath.xdp.{}.packets", veth.host)]
        .as_u64()
        .unwrap();
    assert!(packets >= 10, "SYN + ACK at least per connect: {counters}");
    assert!(
        counters[format!("datapath.xdp.{}.bytes", veth.host)]
            .as_u64()
            .unwrap()
            > packets * 40
    );
    assert_eq!(counters[format!("datapath.xdp.{}.dropped", veth.host)], 0);
    let service = format!("datapath.xdp.service.{HOST_V4}:{port}/tcp");
    let service_packets = counters[format!("{service}.packets")].as_u64().unwrap();
    assert!(
        (10..=packets).contains(&service_packets),
        "per-service packets: {counters}"
    );
    assert!(counters[format!("{service}.bytes")].as_u64().unwrap() >= service_packets * 54);
    // Packets to another port of the same address are not the service's.
    let other = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V4, 9, 1));
    assert_eq!(other, 0);
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    assert_eq!(counters[format!("{service}.packets")], service_packets);

    // The same counters in /stats and, as labels, in /stats/prometheus.
    let interface_stat = format!("datapath.xdp.interface.{}.packets", veth.host);
    assert!(wait_for_stat(admin_port, &interface_stat, packets) >= packets);
    let service_stat = "datapath.xdp.service.xdp_vip.packets";
    assert_eq!(
        wait_for_stat(admin_port, service_stat, service_packets),
        service_packets
    );
    let prometheus = admin_body(admin_port, "/stats/prometheus");
    assert!(
        prometheus.contains(&format!(
            "envoy_datapath_xdp_service_packets{{sluice_service=\"xdp_vip\"}} {service_packets}"
        )),
        "{prometheus}"
    );
    assert!(
        prometheus.contains(&format!(
            "envoy_datapath_xdp_interface_dropped{{sluice_xdp_interface=\"{}\"}} 0",
            veth.host
        )),
        "{prometheus}"
    );

    // Deny the namespace's /30: every packet from it is dropped by XDP.
    let list = sluicectl_json(&sandbox, &["bpf", "denylist", "add", "192.168.250.2/30"]);
    assert_eq!(list, json!(["192.168.250.0/30"]));
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V4, port, 3));
    assert_eq!(passed, 0, "denied source got through");
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    let dropped = counters[format!("datapath.xdp.{}.dropped", veth.host)]
        .as_u64()
        .unwrap();
    assert!(dropped >= 3);
    // IPv6 is not covered by an IPv4 entry...
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V6, port, 2));
    assert_eq!(passed, 2);
    // ...but by an IPv6 one.
    let list = sluicectl_json(&sandbox, &["bpf", "denylist", "add", "fd00:5c:1::2/64"]);
    assert_eq!(list, json!(["192.168.250.0/30", "fd00:5c:1::/64"]));
    // `bpf dump` shows the XDP maps as the kernel has them.
    assert_eq!(
        sluicectl_json(&sandbox, &["bpf", "dump", "XDP_DENY4"]),
        json!([{"key": "192.168.250.0/30", "value": 1}])
    );
    assert_eq!(
        sluicectl_json(&sandbox, &["bpf", "dump", "XDP_DENY6"]),
        json!([{"key": "fd00:5c:1::/64", "value": 1}])
    );
    let dumped = sluicectl_json(&sandbox, &["bpf", "dump", "XDP_COUNTERS"]);
    assert_eq!(dumped[0]["interface"], json!(veth.host), "{dumped}");
    assert!(dumped[0]["value"]["dropped"].as_u64().unwrap() >= dropped);
    let dumped = sluicectl_json(&sandbox, &["bpf", "dump", "XDP_SERVICE_COUNTERS"]);
    assert!(
        dumped[0]["value"]["packets"].as_u64().unwrap() > 0,
        "{dumped}"
    );
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V6, port, 3));
    assert_eq!(passed, 0, "denied IPv6 source got through");
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    assert!(
        counters[format!("datapath.xdp.{}.dropped", veth.host)]
            .as_u64()
            .unwrap()
            >= dropped + 3
    );

    let list = sluicectl_json(&sandbox, &["bpf", "denylist", "del", "192.168.250.0/30"]);
    assert_eq!(list, json!(["fd00:5c:1::/64"]));
    let list = sluicectl_json(&sandbox, &["bpf", "denylist", "del", "fd00:5c:1::/64"]);
    assert_eq!(list, json!([]));
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V4, port, 2));
    assert_eq!(passed, 2);
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V6, port, 2));
    assert_eq!(passed, 2);
    let output = sluicectl(&sandbox, &["bpf", "denylist", "del", "192.168.250.0/30"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not in the deny list"));

    // --datapath-keep-pins: XDP keeps dropping with no daemon running...
    sluicectl_json(&sandbox, &["bpf", "denylist", "add", "fd00:5c:1::/64"]);
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V6, port, 2));
    assert_eq!(passed, 0, "XDP detached with the daemon");
    // ...and the next start updates the XDP link in place (same mode), with
    // the deny list carried over.
    let admin_port = unused_port();
    let mut daemon = Daemon::start_with(
        &sandbox,
        &xdp_config(admin_port, port),
        &hosts,
        "xdp-second",
        &["--datapath-xdp-iface", &veth.host],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !daemon.log().contains("all listeners started") {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let info: serde_json::Value =
        serde_json::from_str(&admin_body(admin_port, "/server_info")).unwrap();
    assert_eq!(
        info["datapath"]["xdp_interfaces"],
        json!([{"interface": veth.host, "mode": "native", "adopted": true}])
    );
    assert_eq!(info["datapath"]["took_over_pins"], true);
    assert_eq!(
        sluicectl_json(&sandbox, &["bpf", "denylist", "list"]),
        json!(["fd00:5c:1::/64"])
    );
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V6, port, 2));
    assert_eq!(passed, 0, "deny list lost in the take-over");
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(HOST_V4, port, 2));
    assert_eq!(passed, 2);

    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    assert!(
        !sandbox.pin_dir.exists(),
        "pins left after a clean shutdown"
    );
    accept.abort();
}
