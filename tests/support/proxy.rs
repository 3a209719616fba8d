//! Starting the real `sluice` binary for a test: the config is a template
//! whose `${NAME}` placeholders become ports, the process logs to a file the
//! test can read, and it is killed when the handle drops.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::client::{get, Reply};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback port held by a bound, non-listening socket with
/// `SO_REUSEPORT` (and no `SO_REUSEADDR`): no other bind to port 0 on the
/// machine gets it, connections to it are refused (a dead upstream), and
/// sluice, whose listeners set `SO_REUSEPORT`, can still bind it. Without
/// this, two test processes could be handed the same "free" port and both
/// sluices would bind it through `SO_REUSEPORT`, silently sharing traffic.
pub struct PortReservation {
    _socket: socket2::Socket,
    port: u16,
}

impl PortReservation {
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Reserves a loopback port until the reservation drops.
pub fn reserve_port() -> PortReservation {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind a reserved port");
    let port = socket
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("inet address")
        .port();
    PortReservation {
        _socket: socket,
        port,
    }
}

/// Placeholder names in `template` (`${NAME}`), in order of appearance.
fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        if !names.iter().any(|n| n == &after[..end]) {
            names.push(after[..end].to_string());
        }
        rest = &after[end + 1..];
    }
    names
}

pub struct Sluice {
    child: Option<Child>,
    /// Listener ports held for this sluice (see [`PortReservation`]).
    reservations: Vec<PortReservation>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub ports: HashMap<String, u16>,
    pub admin: SocketAddr,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Path of the built `sluice` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

/// Replaces `${NAME}` placeholders; `${ADMIN}` and any name in `ports` that
/// is not given become free ports.
pub fn render(template: &str, ports: &mut HashMap<String, u16>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').expect("unterminated placeholder");
        let name = &after[..end];
        let port = *ports.entry(name.to_string()).or_insert_with(free_port);
        out.push_str(&port.to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

impl Sluice {
    /// Starts sluice on `template` with the given known ports, and waits
    /// until `/ready` answers 200.
    pub async fn start(template: &str, known: &[(&str, u16)]) -> Sluice {
        Self::start_with_args(template, known, &[]).await
    }

    pub async fn start_with_args(template: &str, known: &[(&str, u16)], args: &[&str]) -> Sluice {
        // A port from `free_port()` is released before sluice binds it, so
        // a parallel test can take it first: then retry with fresh ports.
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let mut sluice = Self::spawn(template, known, args);
            match sluice.ready_or_exit().await {
                Ok(()) => return sluice,
                Err(log)
                    if attempt < ATTEMPTS
                        && (log.contains("Address already in use")
                            || log.starts_with(FOREIGN_ADMIN)) => {}
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!()
    }

    /// Starts sluice and waits (bounded) until the listener port `name`
    /// accepts connections, for configs without an admin listener (the
    /// usual wait is on `/ready`).
    pub async fn start_waiting_for_port(
        template: &str,
        known: &[(&str, u16)],
        args: &[&str],
        name: &str,
    ) -> Sluice {
        let mut sluice = Self::spawn(template, known, args);
        let address = sluice.addr(name);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = sluice.try_wait() {
                panic!("sluice exited early ({status}):\n{}", sluice.log());
            }
            if let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(address),
            )
            .await
            {
                return sluice;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "sluice not listening on {address} in time:\n{}",
            sluice.log()
        );
    }

    /// Starts without waiting (for tests that expect failure).
    pub fn spawn(template: &str, known: &[(&str, u16)], args: &[&str]) -> Sluice {
        let mut ports: HashMap<String, u16> =
            known.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        ports.entry("ADMIN".into()).or_insert_with(free_port);
        // Listener ports are held for sluice's lifetime (the admin listener
        // does not use SO_REUSEPORT, so its port is a plain free port).
        let mut reservations = Vec::new();
        for name in placeholders(template) {
            if let std::collections::hash_map::Entry::Vacant(slot) = ports.entry(name) {
                let reservation = reserve_port();
                slot.insert(reservation.port());
                reservations.push(reservation);
            }
        }
        let config = render(template, &mut ports);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("sluice.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("sluice.log")).unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", "2", "--drain-time-s", "2", "-l", "info"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn sluice");
        let admin = SocketAddr::from(([127, 0, 0, 1], ports["ADMIN"]));
        Sluice {
            child: Some(child),
            reservations,
            dir,
            config_path,
            ports,
            admin,
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    /// 127.0.0.1:`port`, for listeners whose ports a test chose itself.
    pub fn addr_of(&self, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(name)))
    }

    /// Waits (bounded) for `/ready` to answer 200; panics with the log otherwise.
    pub async fn wait_ready(&mut self) {
        if let Err(log) = self.ready_or_exit().await {
            panic!("{log}");
        }
    }

    /// Waits (bounded) for `/ready` to answer 200; otherwise says why, with
    /// the log.
    async fn ready_or_exit(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Err(format!("sluice exited early ({status}):\n{}", self.log()));
            }
            if probe_ready(self.admin).await {
                // Make sure the admin port is this sluice's and not another
                // process's that took the port first.
                let config_path = self.config_path.to_string_lossy().into_owned();
                return match admin_text(self.admin, "/server_info").await {
                    Some(info) if info.contains(&config_path) => Ok(()),
                    _ => Err(format!("{FOREIGN_ADMIN} {}:\n{}", self.admin, self.log())),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("sluice not ready in time:\n{}", self.log()))
    }

    /// The process's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("sluice.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        get(self.admin, "admin", path).await
    }

    pub async fn admin_post(&self, path: &str) -> Reply {
        let request = hyper::Request::post(path)
            .header("host", "admin")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        super::client::request(self.admin, request, false).await
    }

    /// Polls `/stats` (bounded, 5 s) until stat `name` equals `expected`;
    /// returns the last value seen, so `assert_eq!` shows what it was.
    /// Stats are updated as requests finish, a moment after the client
    /// has its response.
    pub async fn wait_stat(&self, name: &str, expected: i64) -> Option<i64> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.stat(name).await;
            if value == Some(expected) || Instant::now() >= deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// TCP ports this process listens on (from `/proc`), so a test can
    /// see every listener the process opened, not just the ones it expects.
    pub fn listening_ports(&self) -> std::collections::BTreeSet<u16> {
        listening_ports(self.pid())
    }

    /// One stat's value from `/stats`, if present.
    pub async fn stat(&self, name: &str) -> Option<i64> {
        let text = self.admin_get("/stats").await.text();
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }
}

/// Ports of the TCP sockets in LISTEN state that process `pid` holds: its
/// socket inodes (`/proc/<pid>/fd`) matched against `/proc/net/tcp{,6}`.
pub fn listening_ports(pid: u32) -> std::collections::BTreeSet<u16> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let target = target.to_string_lossy().into_owned();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
                {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let mut ports = std::collections::BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT, st 0A is LISTEN, inode is field 9.
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                if let Some((_, port)) = fields[1].rsplit_once(':') {
                    if let Ok(port) = u16::from_str_radix(port, 16) {
                        ports.insert(port);
                    }
                }
            }
        }
    }
    ports
}

/// How a process that was expected to stop ended.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs sluice on `config` (already rendered) with `args` until it exits,
/// killing it after `limit`; stdout and stderr are kept apart so a test
/// can check where an error went. Panics if it did not exit in time.
pub fn run_until_exit(config: &str, args: &[&str], limit: Duration) -> Exited {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sluice.yaml");
    std::fs::write(&config_path, config).unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(binary())
        .arg("-c")
        .arg(&config_path)
        .args(["--concurrency", "2"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn sluice");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sluice still running after {limit:?}:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Exited {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

const FOREIGN_ADMIN: &str = "another process answers on the admin port";

/// The raw response to `GET <path>` on `admin` (bounded, never panics).
async fn admin_text(admin: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Whether `GET /ready` on `admin` answers 200. Never panics: while sluice
/// starts, the port may refuse, or (if sluice failed to bind it) belong to
/// another process that answers anything.
async fn probe_ready(admin: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        stream
            .write_all(b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(1000), exchange).await,
        Ok(Some(true))
    )
}
