//! End-to-end test of XDP: the real `sluice` with `--datapath-xdp-iface` on
//! one end of a veth pair whose peer lives in a network namespace the test
//! creates; per-interface counters count the peer's packets and the deny
//! list (`sluicectl bpf denylist`) drops them. Needs root; skips with a
//! reason otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::process::Command;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::json;
use tokio::net::TcpListener;

/// A veth pair: `host` in this namespace (192.168.250.1/30), its peer in a
/// network namespace of its own (192.168.250.2/30). Removed on drop.
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
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        pair
    }

    /// TCP connects from inside the namespace to 192.168.250.1:`port`;
    /// how many succeeded.
    fn connects_from_namespace(&self, port: u16, count: u32) -> u32 {
        let script = format!(
            "import socket
ok = 0
for _ in range({count}):
    try:
        socket.create_connection(('192.168.250.1', {port}), timeout=0.5).close(); ok += 1
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdp_counts_packets_and_drops_denied_sources() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("xdp");
    let veth = VethPair::new();
    let listener = TcpListener::bind("192.168.250.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &["127.0.0.2"]);
    let mut daemon = Daemon::start_with(
        &sandbox,
        &config(port, false),
        &hosts,
        "xdp",
        &["--datapath-xdp-iface", &veth.host],
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
    assert!(daemon.log().contains("xdp attached"), "{}", daemon.log());
    let status = sluicectl_json(&sandbox, &["bpf", "status"]);
    assert_eq!(status["xdp_interfaces"], json!([veth.host]));

    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(port, 5));
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

    // Deny the namespace's /30: every packet from it is dropped by XDP.
    let list = sluicectl_json(&sandbox, &["bpf", "denylist", "add", "192.168.250.2/30"]);
    assert_eq!(list, json!(["192.168.250.0/30"]));
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(port, 3));
    assert_eq!(passed, 0, "denied source got through");
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    assert!(
        counters[format!("datapath.xdp.{}.dropped", veth.host)]
            .as_u64()
            .unwrap()
            >= 3
    );

    let list = sluicectl_json(&sandbox, &["bpf", "denylist", "del", "192.168.250.0/30"]);
    assert_eq!(list, json!([]));
    let passed = tokio::task::block_in_place(|| veth.connects_from_namespace(port, 2));
    assert_eq!(passed, 2);
    let output = sluicectl(&sandbox, &["bpf", "denylist", "del", "192.168.250.0/30"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not in the deny list"));

    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    accept.abort();
}
