//! Starting the real Envoy (1.40) for differential tests, on the same config
//! templates as [`super::Sluice`].
//!
//! The binary is `$SLUICE_ENVOY` (set by `cargo xtask test`), else
//! `target/envoy-venv/bin/envoy` under the workspace root, else `envoy` on
//! `PATH`. [`envoy_binary_or_skip`] returns `None` with a message when there
//! is none, and panics instead when `CI=true` (CI must run these tests).
//!
//! Each Envoy runs with `--concurrency 1 --disable-hot-restart` and a random
//! `--base-id`, so parallel tests never share hot-restart shared memory.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::client::{get, Reply};
use super::proxy::{free_port, render};

/// The Envoy binary to compare against, if one can be found.
pub fn envoy_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_ENVOY").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("target/envoy-venv/bin/envoy");
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("envoy"))
        .find(|candidate| candidate.is_file())
}

/// The Envoy binary, or `None` after printing why the test skips. Under
/// `CI=true` a missing Envoy is a failure, not a skip.
pub fn envoy_binary_or_skip() -> Option<PathBuf> {
    match envoy_binary() {
        Some(path) => Some(path),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("Envoy not found (CI=true, so differential tests must run): set SLUICE_ENVOY or run `cargo xtask test`")
        }
        None => {
            eprintln!("skipping: Envoy not found (run `cargo xtask test`)");
            None
        }
    }
}

/// A random hot-restart base id (Envoy's shared memory is keyed on it).
fn unique_base_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() % 1_000_000) as u32 + 1000
}

/// Runs `envoy --mode validate` on a config text.
pub fn envoy_validate(binary: &Path, config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    Command::new(binary)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&path)
        .args(["--disable-hot-restart", "-l", "warning", "--base-id"])
        .arg(unique_base_id().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run envoy --mode validate")
}

pub struct Envoy {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub ports: HashMap<String, u16>,
    pub admin: SocketAddr,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Envoy {
    /// Starts Envoy on `template` (placeholders as for `Sluice::start`) and
    /// waits (bounded) until its `/ready` answers 200.
    pub async fn start(binary: &Path, template: &str, known: &[(&str, u16)]) -> Envoy {
        let mut ports: HashMap<String, u16> =
            known.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        ports.entry("ADMIN".into()).or_insert_with(free_port);
        let config = render(template, &mut ports);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .arg("--base-id")
            .arg(unique_base_id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn envoy");
        let admin = SocketAddr::from(([127, 0, 0, 1], ports["ADMIN"]));
        let mut envoy = Envoy {
            child: Some(child),
            dir,
            ports,
            admin,
        };
        envoy.wait_ready().await;
        envoy
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("envoy exited early ({status}):\n{}", self.log());
            }
            if let Ok(Ok(stream)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(self.admin),
            )
            .await
            {
                drop(stream);
                if get(self.admin, "admin", "/ready").await.status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("envoy not ready in time:\n{}", self.log());
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[name]))
    }

    /// Envoy's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("envoy.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        get(self.admin, "admin", path).await
    }

    /// One stat's value from `/stats`, if present.
    pub async fn stat(&self, name: &str) -> Option<i64> {
        parse_stat(&self.admin_get("/stats").await.text(), name)
    }
}

/// One counter or gauge from Envoy's `/stats` text format.
pub fn parse_stat(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}
