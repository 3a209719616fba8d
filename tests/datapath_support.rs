//! Shared harness of the datapath end-to-end tests (`tests/datapath.rs`,
//! `tests/datapath_xdp.rs`): privilege checks that skip with a reason (and
//! fail under `CI=true`), a cgroup v2 child and pin directory per test, the
//! real `sluice` started in a private mount namespace with its own
//! `/etc/hosts`, and `sluicectl` helpers. Included with `#[path]` by each.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const VIP: &str = "127.96.0.10";
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
pub const BPFFS: &str = "/sys/fs/bpf";

pub fn sluice_binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

pub fn sluicectl_binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluicectl")
}

/// `None` when the test can run; else why not.
pub fn missing_privileges() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new(CGROUP_ROOT).join("cgroup.procs").exists() {
        return Some(format!("no cgroup v2 at {CGROUP_ROOT}"));
    }
    for tool in ["unshare", "python3", "mount", "ip", "nsenter", "setpriv"] {
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
pub fn skip() -> bool {
    let Some(reason) = missing_privileges() else {
        return false;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("datapath end-to-end tests must run under CI=true, but: {reason}");
    }
    eprintln!("skipping datapath end-to-end test: {reason}");
    true
}

pub fn ensure_bpffs() {
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
pub struct Sandbox {
    pub cgroup: PathBuf,
    pub pin_dir: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
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

/// A port nothing listens on right now (for the admin listener).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the admin listener (HTTP/1.0, whole body).
pub fn admin_get(admin_port: u16, path: &str) -> String {
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

pub fn config(port: u16, with_service: bool) -> String {
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

pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts sluice in a private mount namespace whose /etc/hosts is `hosts`.
    pub fn start(sandbox: &Sandbox, config_text: &str, hosts: &Path, tag: &str) -> Daemon {
        Self::start_with(sandbox, config_text, hosts, tag, &[])
    }

    pub fn start_with(
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
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

pub fn sluicectl(sandbox: &Sandbox, args: &[&str]) -> Output {
    Command::new(sluicectl_binary())
        .args(args)
        .arg("--pin-dir")
        .arg(&sandbox.pin_dir)
        .output()
        .expect("run sluicectl")
}

pub fn sluicectl_json(sandbox: &Sandbox, args: &[&str]) -> Value {
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

pub fn write_hosts(path: &Path, addresses: &[&str]) {
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

/// Connects `count` times to `vip:port` from a process inside the sandbox's
/// cgroup (where the socket-LB hooks apply) and reads up to 16 bytes each
/// time: the greetings received, or `err <exception>` per failed attempt.
pub fn greetings_from_cgroup(sandbox: &Sandbox, vip: &str, port: u16, count: u32) -> Vec<String> {
    let script = format!(
        "import socket, sys
for _ in range({count}):
    try:
        s = socket.create_connection(('{vip}', {port}), timeout=1)
        print(s.recv(16).decode() or 'empty')
        s.close()
    except Exception as e:
        print('err', type(e).__name__)
    sys.stdout.flush()
"
    );
    python_in_cgroup(sandbox, &script, false)
}

/// Runs a Python `script` in a process inside the test's cgroup (where the
/// socket hooks apply), in a fresh network namespace of its own with
/// `new_netns` (gone when it exits); returns its stdout lines.
pub fn python_in_cgroup(sandbox: &Sandbox, script: &str, new_netns: bool) -> Vec<String> {
    let mut command = Command::new(if new_netns { "unshare" } else { "sh" });
    if new_netns {
        command.args(["--net", "sh"]);
    }
    let output = command
        .args(["-c", "echo $$ > \"$0\" && exec python3 -c \"$1\""])
        .arg(sandbox.cgroup.join("cgroup.procs"))
        .arg(script)
        .output()
        .expect("run client");
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
