//! End-to-end test of local acceleration (`--datapath-sockmap on`): the real
//! `sluice` attaches sockops + sk_msg to a cgroup v2 child the test creates,
//! and a client/server pair inside that cgroup (one Python process, both on
//! loopback) exchanges a few MiB and a request/response loop. The data must
//! arrive intact (SHA-256 both ways), the kernel must count at least the
//! bytes sent as redirected, and `sluicectl bpf status|counters` and
//! `/stats` must show it. With sockmap off the same traffic is counted by
//! nobody. Also covers a dual-stack (`::`) server, whose accepted sockets are
//! v4-mapped IPv6, and `sluicectl bpf dump` of the sockmap maps while a
//! pair is open (both ends' keys, one namespace cookie; the values are
//! sockets, shown as null), and one 4-tuple open in two network namespaces
//! at once (each pair stays in its namespace, both accelerated). Needs root, bpffs and cgroup v2; skips with a reason
//! otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::process::Command;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::Value;

/// Bytes of the bulk transfer and the request/response loop of each pair.
const BULK_BYTES: usize = 3 * 1024 * 1024;
const ROUND_TRIPS: usize = 200;
const MESSAGE_BYTES: usize = 64;

/// A local echo pair: the server echoes everything; the client sends
/// BULK_BYTES (from a thread, reading the echo concurrently) and then
/// ROUND_TRIPS messages one at a time; prints `ok <bytes the client sent>`
/// when every byte came back intact, else an error.
const PAIR_SCRIPT: &str = r#"
import hashlib, os, socket, sys, threading
bulk, trips, size, family = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if family == 'dual':
    server = socket.socket(socket.AF_INET6)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(('::', 0))
else:
    server = socket.socket(socket.AF_INET)
    server.bind(('127.0.0.1', 0))
server.listen(1)
port = server.getsockname()[1]
def echo():
    conn, _ = server.accept()
    conn.settimeout(10)
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
    conn.close()
threading.Thread(target=echo, daemon=True).start()
client = socket.create_connection(('127.0.0.1', port), timeout=10)
payload = os.urandom(bulk)
sender = threading.Thread(target=lambda: client.sendall(payload))
sender.start()
received = bytearray()
while len(received) < bulk:
    chunk = client.recv(65536)
    if not chunk:
        break
    received += chunk
sender.join()
if hashlib.sha256(received).digest() != hashlib.sha256(payload).digest():
    print('err bulk: %d of %d bytes, or corrupted' % (len(received), bulk))
    sys.exit(0)
for i in range(trips):
    message = os.urandom(size)
    client.sendall(message)
    answer = b''
    while len(answer) < size:
        chunk = client.recv(size - len(answer))
        if not chunk:
            break
        answer += chunk
    if answer != message:
        print('err round trip %d' % i)
        sys.exit(0)
client.close()
print('ok', bulk + trips * size)
"#;

/// Runs the pair inside the test's cgroup; returns the bytes the client sent.
fn run_pair(sandbox: &Sandbox, family: &str) -> u64 {
    let procs = sandbox.cgroup.join("cgroup.procs");
    let output = Command::new("timeout")
        .args([
            "30",
            "sh",
            "-c",
            "echo $$ > \"$0\" && exec python3 -c \"$1\" \"$2\" \"$3\" \"$4\" \"$5\"",
        ])
        .arg(&procs)
        .arg(PAIR_SCRIPT)
        .arg(BULK_BYTES.to_string())
        .arg(ROUND_TRIPS.to_string())
        .arg(MESSAGE_BYTES.to_string())
        .arg(family)
        .output()
        .expect("run the local pair");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with("ok "),
        "local pair ({family}) failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout[3..].trim().parse().unwrap()
}

const CONFIG: &str = "admin:
  address: {socket_address: {address: 127.0.0.1, port_value: ADMIN_PORT}}
";

fn start(sandbox: &Sandbox, tag: &str, extra: &[&str]) -> (Daemon, u16) {
    let admin_port = unused_port();
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &[]);
    let config = CONFIG.replace("ADMIN_PORT", &admin_port.to_string());
    let daemon = Daemon::start_with(sandbox, &config, &hosts, tag, extra);
    (daemon, admin_port)
}

/// Waits (bounded) until `sluicectl bpf status` reports the pins.
fn wait_for_status(sandbox: &Sandbox, daemon: &Daemon, sockmap_enabled: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let output = sluicectl(sandbox, &["bpf", "status", "-o", "json"]);
        if output.status.success() {
            last = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            let connect4_attached = last["hooks"][0]["attached"] == true;
            if connect4_attached && last["sockmap"]["enabled"] == sockmap_enabled {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "status never showed sockmap enabled={sockmap_enabled}; last {last}\nsluice log:\n{}",
        daemon.log()
    );
}

fn sockmap_counter(sandbox: &Sandbox, name: &str) -> u64 {
    let counters = sluicectl_json(sandbox, &["bpf", "counters"]);
    counters
        .get(format!("datapath.sockmap.{name}"))
        .map_or(0, |v| v.as_u64().unwrap())
}

#[test]
fn local_pairs_skip_the_stack_with_sockmap_on_and_data_arrives_intact() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("sockmap");
    let (mut daemon, admin_port) = start(&sandbox, "on", &["--datapath-sockmap", "on"]);
    let status = wait_for_status(&sandbox, &daemon, true);
    assert_eq!(status["sockmap"]["sockops"]["attached"], true, "{status}");
    assert_eq!(status["sockmap"]["sk_msg"]["attached"], true, "{status}");
    let text = String::from_utf8(sluicectl(&sandbox, &["bpf", "status"]).stdout).unwrap();
    assert!(
        text.contains("sk_msg (sockmap)") && text.contains("attached to SOCKMAP_SOCKETS"),
        "{text}"
    );
    assert!(
        daemon.log().contains("sockmap acceleration on"),
        "{}",
        daemon.log()
    );

    let sent = run_pair(&sandbox, "ipv4");
    let redirected = sockmap_counter(&sandbox, "redirected_bytes");
    assert!(
        redirected >= sent,
        "redirected {redirected} bytes, the client alone sent {sent}: {}",
        sluicectl_json(&sandbox, &["bpf", "counters"])
    );
    // Both ends of the pair were paired (the listener is not a connection).
    assert!(sockmap_counter(&sandbox, "sockets_added") >= 2);

    // A dual-stack server accepts the IPv4 client as a v4-mapped IPv6 socket.
    let sent_dual = run_pair(&sandbox, "dual");
    let redirected_dual = sockmap_counter(&sandbox, "redirected_bytes") - redirected;
    assert!(
        redirected_dual >= sent_dual,
        "dual-stack: redirected {redirected_dual} of {sent_dual}"
    );
    // Closed sockets leave the map by themselves.
    let status = sluicectl_json(&sandbox, &["bpf", "status"]);
    assert_eq!(status["sockmap"]["sockets"], 0, "{status}");

    dump_shows_an_open_pair(&sandbox);
    one_four_tuple_in_two_namespaces_stays_apart(&sandbox);

    // The same counter on /stats and /stats/prometheus (exported every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = String::new();
    while Instant::now() < deadline {
        stats = admin_get(admin_port, "/stats");
        let exported = stats
            .lines()
            .find_map(|line| line.strip_prefix("datapath.sockmap.redirected_bytes: "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if exported >= sent + sent_dual {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stats.contains("datapath.sockmap.redirected_messages: "),
        "{stats}"
    );
    let prometheus = admin_get(admin_port, "/stats/prometheus");
    assert!(
        prometheus.contains("datapath_sockmap_redirected_bytes"),
        "{prometheus}"
    );

    // A clean shutdown detaches and unpins sockmap too.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    assert!(
        !sandbox.pin_dir.exists(),
        "pins left after a clean shutdown"
    );
}

/// `sluicectl bpf dump` of the sockmap maps: run from inside the cgroup by
/// a process that holds a local pair open, so both ends are in
/// `SOCKMAP_SOCKETS` while it runs.
fn dump_shows_an_open_pair(sandbox: &Sandbox) {
    let script = format!(
        "import json, socket, subprocess
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(1)
client = socket.create_connection(server.getsockname(), timeout=2)
accepted, _ = server.accept()
client.sendall(b'x'); accepted.recv(1)
dump = lambda name: json.loads(subprocess.run([{ctl:?}, 'bpf', 'dump', name, '-o', 'json', '--pin-dir', {pins:?}], capture_output=True, text=True, timeout=10).stdout)
print(json.dumps({{'client': '%s:%d' % client.getsockname(), 'server': '%s:%d' % server.getsockname(), 'sockets': dump('SOCKMAP_SOCKETS'), 'counters': dump('SOCKMAP_COUNTERS'), 'tainted': dump('SOCKMAP_TAINTED')}}))
",
        ctl = sluicectl_binary(),
        pins = sandbox.pin_dir.display().to_string(),
    );
    let lines = python_in_cgroup(sandbox, &script, false);
    let result: Value = serde_json::from_str(&lines[0]).expect("the script prints JSON");
    let (client, server) = (&result["client"], &result["server"]);
    let sockets = result["sockets"].as_array().expect("an array of entries");
    let mut cookies = Vec::new();
    for (local, remote) in [(client, server), (server, client)] {
        let entry = sockets
            .iter()
            .find(|entry| entry["key"]["local"] == *local && entry["key"]["remote"] == *remote)
            .unwrap_or_else(|| panic!("no entry {local} -> {remote}: {result}"));
        assert_eq!(entry["value"], Value::Null, "{result}");
        cookies.push(entry["key"]["netns_cookie"].as_u64().expect("a cookie"));
    }
    assert_eq!(
        cookies[0], cookies[1],
        "both ends in one namespace: {result}"
    );
    let counters = &result["counters"][0];
    assert_eq!(counters["key"], 0, "{result}");
    assert!(
        counters["value"]["sockets_added"].as_u64().unwrap() >= 2,
        "{result}"
    );
    assert!(result["tainted"].is_array(), "{result}");
}

/// Two network namespaces each hold a loopback pair with the same 4-tuple
/// (127.0.0.1:40000 -> 127.0.0.1:9000) at the same time: each server must
/// get its own client's bytes, never the other namespace's.
const TWO_NAMESPACES_SCRIPT: &str = r#"
import os, socket, sys, time
tag, sync = sys.argv[1], sys.argv[2]
other = 'B' if tag == 'A' else 'A'
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', 9000)); server.listen(1)
client = socket.socket()
client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
client.bind(('127.0.0.1', 40000)); client.connect(('127.0.0.1', 9000))
accepted, _ = server.accept()
open(os.path.join(sync, tag), 'w').close()
deadline = time.time() + 10
while not os.path.exists(os.path.join(sync, other)):
    if time.time() > deadline:
        print('err: the other namespace never connected'); sys.exit(0)
    time.sleep(0.01)
accepted.settimeout(3)
message = (tag * 4096).encode()
client.sendall(message)
received = b''
try:
    while len(received) < len(message):
        chunk = accepted.recv(65536)
        if not chunk:
            break
        received += chunk
except socket.timeout:
    pass
print('ok' if received == message else 'err: %s received %d bytes starting %r' % (tag, len(received), received[:8]))
"#;

fn one_four_tuple_in_two_namespaces_stays_apart(sandbox: &Sandbox) {
    let sync = sandbox.dir.path().join("two-namespaces");
    std::fs::create_dir_all(&sync).unwrap();
    let redirected_before = sockmap_counter(sandbox, "redirected_messages");
    let spawn = |tag: &str| {
        Command::new("timeout")
            .args([
                "20",
                "unshare",
                "--net",
                "sh",
                "-c",
                "echo $$ > \"$0\" && ip link set lo up && exec python3 -c \"$1\" \"$2\" \"$3\"",
            ])
            .arg(sandbox.cgroup.join("cgroup.procs"))
            .arg(TWO_NAMESPACES_SCRIPT)
            .arg(tag)
            .arg(&sync)
            .output()
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| spawn("A"));
        let b = scope.spawn(|| spawn("B"));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (tag, output) in [("A", a), ("B", b)] {
        let output = output.expect("run a namespace's pair");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout.trim(),
            "ok",
            "namespace {tag}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        sockmap_counter(sandbox, "redirected_messages") >= redirected_before + 2,
        "both namespaces' pairs were accelerated"
    );
}

#[test]
fn with_sockmap_off_nothing_is_redirected() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("sockmap-off");
    let (daemon, _) = start(&sandbox, "off", &[]);
    let status = wait_for_status(&sandbox, &daemon, false);
    assert_eq!(status["sockmap"]["sockops"]["attached"], false, "{status}");
    assert!(
        daemon
            .log()
            .contains("sockmap acceleration off (the default"),
        "{}",
        daemon.log()
    );
    run_pair(&sandbox, "ipv4");
    assert_eq!(sockmap_counter(&sandbox, "redirected_bytes"), 0);
    drop(daemon);
}
