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

pub struct Sluice {
    child: Option<Child>,
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
        let mut sluice = Self::spawn(template, known, args);
        sluice.wait_ready().await;
        sluice
    }

    /// Starts without waiting (for tests that expect failure).
    pub fn spawn(template: &str, known: &[(&str, u16)], args: &[&str]) -> Sluice {
        let mut ports: HashMap<String, u16> =
            known.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        ports.entry("ADMIN".into()).or_insert_with(free_port);
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
            dir,
            config_path,
            ports,
            admin,
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(name)))
    }

    /// Waits (bounded) for `/ready` to answer 200; panics with the log otherwise.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                panic!("sluice exited early ({status}):\n{}", self.log());
            }
            if let Ok(Ok(stream)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(self.admin),
            )
            .await
            {
                drop(stream);
                let reply = get(self.admin, "admin", "/ready").await;
                if reply.status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("sluice not ready in time:\n{}", self.log());
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

    /// One stat's value from `/stats`, if present.
    pub async fn stat(&self, name: &str) -> Option<i64> {
        let text = self.admin_get("/stats").await.text();
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }
}
