//! End-to-end tests of the kernel datapath (socket-level load balancing):
//! the real `sluice` with `--datapath required` attached to a cgroup v2 child
//! the test creates, a client process inside that cgroup connecting to a VIP
//! that the kernel rewrites to loopback backends, and `sluicectl bpf` reading
//! the pinned maps. The VIP is 127.96.0.10, not a cluster-style 10.96.0.10:
//! this kind of machine routes 10/8 to an egress that accepts any connect,
//! and a connect the kernel does not rewrite (the removed-service check) must
//! stay on loopback, where it is refused.
//!
//! Cluster membership changes live: the cluster is STRICT_DNS on a name the
//! daemon resolves from its own `/etc/hosts` (bind-mounted in a private mount
//! namespace), which the test rewrites. XDP is tested on a veth pair whose
//! peer lives in a network namespace the test creates (counters, and a deny
//! list that drops the peer's packets). Needs root, bpffs and cgroup v2;
//! skips with a reason otherwise, except under `CI=true` where it must run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const VIP: &str = "127.96.0.10";
const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const BPFFS: &str = "/sys/fs/bpf";

fn sluice_binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

fn sluicectl_binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluicectl")
}

/// `None` when the test can run; else why not.
fn missing_privileges() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new(CGROUP_ROOT).join("cgroup.procs").exists() {
        return Some(format!("no cgroup v2 at {CGROUP_ROOT}"));
    }
    for tool in ["unshare", "python3", "mount", "ip", "nsenter"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

/// Skips (returns true) when not possible here; panics under CI=true.
fn skip() -> bool {
    let Some(reason) = missing_privileges() else {
        return false;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("datapath end-to-end tests must run under CI=true, but: {reason}");
    }
    eprintln!("skipping datapath end-to-end test: {reason}");
    true
}

fn ensure_bpffs() {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(BPFFS) && line.split(' ').nth(2) == Some("bpf"));
    if !mounted {
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf", BPFFS])
            .status()
            .unwrap();
        assert!(status.success(), "cannot mount bpffs at {BPFFS}");
    }
}

/// A cgroup v2 child and a pin directory unique to this test; removed on drop.
struct Sandbox {
    cgroup: PathBuf,
    pin_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        ensure_bpffs();
        let unique = format!("sluice-test-{name}-{}", std::process::id());
        let cgroup = Path::new(CGROUP_ROOT).join(&unique);
        std::fs::create_dir_all(&cgroup).expect("create cgroup");
        Sandbox {
            cgroup,
            pin_dir: Path::new(BPFFS).join(unique),
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Client processes have exited; an empty cgroup can be removed.
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = Command::new("rm").arg("-rf").arg(&self.pin_dir).status();
    }
}

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

/// A port nothing listens on right now (for the admin listener).
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the admin listener (HTTP/1.0, whole body).
fn admin_get(admin_port: u16, path: &str) -> String {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", admin_port)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = write!(stream, "GET {path} HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

fn config(port: u16, with_service: bool) -> String {
    let listener = if with_service {
        format!(
            "  listeners:
  - name: kube_dns_vip
    bind_to_port: false
    address: {{socket_address: {{address: {VIP}, port_value: 80}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: vip, cluster: backends}}
"
        )
    } else {
        String::new()
    };
    let admin_port = unused_port();
    format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
{listener}  clusters:
  - name: backends
    connect_timeout: 1s
    type: STRICT_DNS
    dns_refresh_rate: 0.2s
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: backends
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: backends.sluice.test, port_value: {port}}}}}}}
"
    )
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts sluice in a private mount namespace whose /etc/hosts is `hosts`.
    fn start(sandbox: &Sandbox, config_text: &str, hosts: &Path, tag: &str) -> Daemon {
        Self::start_with(sandbox, config_text, hosts, tag, &[])
    }

    fn start_with(
        sandbox: &Sandbox,
        config_text: &str,
        hosts: &Path,
        tag: &str,
        extra: &[&str],
    ) -> Daemon {
        let config_path = sandbox.dir.path().join(format!("{tag}.yaml"));
        std::fs::write(&config_path, config_text).unwrap();
        let log = sandbox.dir.path().join(format!("{tag}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(hosts)
            .arg(sluice_binary())
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", "1", "--drain-time-s", "1"])
            .args(["--datapath", "required", "--datapath-cgroup"])
            .arg(&sandbox.cgroup)
            .arg("--datapath-pin-dir")
            .arg(&sandbox.pin_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn sluice");
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sluice did not exit:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sluicectl(sandbox: &Sandbox, args: &[&str]) -> Output {
    Command::new(sluicectl_binary())
        .args(args)
        .arg("--pin-dir")
        .arg(&sandbox.pin_dir)
        .output()
        .expect("run sluicectl")
}

fn sluicectl_json(sandbox: &Sandbox, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let output = sluicectl(sandbox, &all);
    assert!(
        output.status.success(),
        "sluicectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("sluicectl prints JSON")
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
    let procs = sandbox.cgroup.join("cgroup.procs");
    let output = Command::new("sh")
        .args(["-c", "echo $$ > \"$0\" && exec python3 -c \"$1\""])
        .arg(&procs)
        .arg(&script)
        .output()
        .expect("run client");
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
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

fn write_hosts(path: &Path, addresses: &[&str]) {
    // Rewritten in place: the daemon's bind mount keeps pointing at this inode.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(file, "127.0.0.1 localhost").unwrap();
    for address in addresses {
        writeln!(file, "{address} backends.sluice.test").unwrap();
    }
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
