//! The `sluice` command line, black-box: Envoy's flags, `--mode validate`
//! on every shipped example and on broken configs, exit codes.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(support::proxy::binary())
        .args(args)
        .output()
        .expect("run sluice")
}

fn validate_text(yaml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    sluice(&["--mode", "validate", "-c", path.to_str().unwrap()])
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn version_prints_and_exits_zero() {
    let output = sluice(&["--version"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("sluice version:"));
}

#[test]
fn unknown_flags_are_rejected() {
    let output = sluice(&["--no-such-flag"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--no-such-flag"));
}

#[test]
fn bad_log_level_is_rejected() {
    let output = sluice(&["-l", "loud", "--mode", "validate", "--config-yaml", "{}"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("log-level"), "{}", stderr(&output));
}

#[test]
fn every_shipped_example_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let output = sluice(&["--mode", "validate", "-c", path.to_str().unwrap()]);
            assert!(
                output.status.success(),
                "{} failed validation:\n{}",
                path.display(),
                stderr(&output)
            );
            assert!(String::from_utf8_lossy(&output.stdout).contains("OK"));
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "expected the five example configs, found {checked}"
    );
}

const CLUSTER_WITH_BAD_TIMEOUT: &str = r#"
static_resources:
  clusters:
  - name: ok
    connect_timeout: 1s
    load_assignment:
      cluster_name: ok
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
  - name: bad
    connect_timeout: 5x
"#;

#[test]
fn invalid_duration_names_its_path_and_value() {
    let output = validate_text(CLUSTER_WITH_BAD_TIMEOUT);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("static_resources.clusters[1].connect_timeout"),
        "{text}"
    );
    assert!(text.contains("5x"), "{text}");
}

#[test]
fn unknown_field_is_rejected_with_its_path() {
    let output =
        validate_text("static_resources:\n  clusters:\n  - name: a\n    conect_timeout: 1s\n");
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("static_resources.clusters[0]"), "{text}");
    assert!(text.contains("conect_timeout"), "{text}");
}

#[test]
fn unsupported_field_is_an_error_not_ignored() {
    let output = validate_text(
        r#"
static_resources:
  clusters:
  - name: a
    connect_timeout: 1s
    health_checks:
    - timeout: 1s
      interval: 5s
      unhealthy_threshold: 2
      healthy_threshold: 2
      http_health_check: { path: /healthz }
"#,
    );
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("health_checks"), "{text}");
    assert!(text.contains("not supported"), "{text}");
}

#[test]
fn route_to_unknown_cluster_is_rejected() {
    let output = validate_text(
        r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, route: { cluster: nowhere } }]
          http_filters:
          - name: router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
"#,
    );
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("static_resources.listeners[0]"), "{text}");
    assert!(text.contains("nowhere"), "{text}");
}

#[test]
fn config_yaml_alone_is_a_config() {
    let output = sluice(&[
        "--mode",
        "validate",
        "--config-yaml",
        "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn missing_config_is_an_error() {
    let output = sluice(&["--mode", "validate", "-c", "/nonexistent/sluice.yaml"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("/nonexistent/sluice.yaml"));
}
