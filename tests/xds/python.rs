//! The independent Python ADS server (`tests/xds/server.py`, on PyPI's
//! grpcio + xds-protos) as a test fixture: it plays a JSON script and
//! records every request as a JSON line, which tests read back.
//!
//! The interpreter is `$SLUICE_XDS_PYTHON`, else `target/xds-venv/bin/python`
//! (`.ci/run` creates it). Without one the tests skip with a message; under
//! `CI=true` they fail instead.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::harness::wait_for;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A Python with grpcio and xds-protos, or `None` after saying why the test skips.
pub fn python_or_skip() -> Option<PathBuf> {
    let python = std::env::var_os("SLUICE_XDS_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/xds-venv/bin/python"));
    let usable = Command::new(&python)
        .args(["-c", "import grpc, envoy.service.discovery.v3.ads_pb2_grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return Some(python);
    }
    let why = format!(
        "{} lacks grpcio/xds-protos (python3 -m venv target/xds-venv && target/xds-venv/bin/pip install grpcio xds-protos)",
        python.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("Python xDS server unavailable under CI=true: {why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// A running `server.py`, killed on drop.
pub struct PythonAds {
    child: Child,
    pub port: u16,
    records: Arc<Mutex<Vec<Value>>>,
    _script: tempfile::NamedTempFile,
}

impl PythonAds {
    pub fn start(python: &Path, script: &Value) -> PythonAds {
        let script_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(script_file.path(), script.to_string()).unwrap();
        let mut child = Command::new(python)
            .arg(workspace_root().join("tests/xds/server.py"))
            .arg(script_file.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server.py");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("server.py prints its port");
        let port = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["listening"].as_u64())
            .unwrap_or_else(|| panic!("no port in {first:?}")) as u16;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        PythonAds {
            child,
            port,
            records,
            _script: script_file,
        }
    }

    /// The requests received on stream `stream`, in order.
    pub fn requests(&self, stream: u64) -> Vec<Value> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["stream"].as_u64() == Some(stream) && r.get("request").is_some())
            .map(|r| r["request"].clone())
            .collect()
    }

    /// Requests of one type on one stream.
    pub fn requests_of(&self, stream: u64, type_url: &str) -> Vec<Value> {
        self.requests(stream)
            .into_iter()
            .filter(|r| r["type_url"].as_str() == Some(type_url))
            .collect()
    }

    /// Waits until stream `stream` has at least `count` requests of `type_url`.
    pub fn wait_requests(&self, stream: u64, type_url: &str, count: usize) -> Vec<Value> {
        wait_for(
            &format!("{count} {type_url} requests on stream {stream}"),
            Duration::from_secs(15),
            || self.requests_of(stream, type_url).len() >= count,
        );
        self.requests_of(stream, type_url)
    }
}

impl Drop for PythonAds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
