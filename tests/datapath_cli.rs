//! Black-box tests of the datapath flags and `sluicectl bpf` errors that need
//! no privileges: bad values (mode, redirect address) are rejected, `--datapath required` fails start-up
//! naming what is missing, `--datapath auto` says once what is off and serves
//! in userspace, and `sluicectl` explains a missing pin directory.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run_until_exit, Sluice};

/// A service VIP (socket-LB candidate) plus a bound TCP listener.
const CONFIG: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${ADMIN} } }
static_resources:
  listeners:
  - name: vip
    bind_to_port: false
    address: { socket_address: { address: 10.96.0.10, port_value: 80 } }
    filter_chains:
    - filters:
      - name: tcp
        typed_config: { '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: vip, cluster: backend }
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9 } } }
"#;

fn not_bpffs_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn an_unknown_datapath_mode_is_rejected() {
    let exited = run_until_exit(
        &CONFIG.replace("${ADMIN}", "0"),
        &["--datapath", "fast"],
        Duration::from_secs(10),
    );
    assert!(!exited.status.success());
    assert!(
        exited
            .stderr
            .contains("invalid value 'fast' for '--datapath"),
        "{}",
        exited.stderr
    );
}

#[test]
fn a_bad_redirect_address_is_rejected() {
    for (value, message) in [
        ("nonsense", "'nonsense' is not IP:PORT"),
        ("127.0.0.1", "'127.0.0.1' is not IP:PORT"),
        ("127.0.0.1:0", "the redirect port cannot be 0"),
        ("0.0.0.0:15001", "not 0.0.0.0"),
        ("[::1]:15001", "the redirect address must be IPv4"),
    ] {
        let exited = run_until_exit(
            &CONFIG.replace("${ADMIN}", "0"),
            &["--datapath-redirect-to", value],
            Duration::from_secs(10),
        );
        assert_eq!(exited.status.code(), Some(2), "{value}: {}", exited.stderr);
        assert!(
            exited.stderr.contains("--datapath-redirect-to") && exited.stderr.contains(message),
            "{value}: {}",
            exited.stderr
        );
    }
}

#[test]
fn a_bad_ipv6_redirect_address_is_rejected() {
    for (value, message) in [
        ("::1", "'::1' is not [IP]:PORT"),
        ("[::1]:0", "the redirect port cannot be 0"),
        ("[::]:15001", "not [::] or a v4-mapped one"),
        ("[::ffff:127.0.0.1]:15001", "not [::] or a v4-mapped one"),
        ("127.0.0.1:15001", "the IPv6 redirect address must be IPv6"),
    ] {
        let exited = run_until_exit(
            &CONFIG.replace("${ADMIN}", "0"),
            &["--datapath-redirect6-to", value],
            Duration::from_secs(10),
        );
        assert_eq!(exited.status.code(), Some(2), "{value}: {}", exited.stderr);
        assert!(
            exited.stderr.contains("--datapath-redirect6-to") && exited.stderr.contains(message),
            "{value}: {}",
            exited.stderr
        );
    }
}

#[test]
fn required_datapath_fails_start_up_and_says_why() {
    let pins = not_bpffs_dir();
    let pin_dir = pins.path().join("sluice");
    let exited = run_until_exit(
        &CONFIG.replace("${ADMIN}", "0"),
        &[
            "--datapath",
            "required",
            "--datapath-pin-dir",
            pin_dir.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
    assert!(
        exited.stderr.contains("--datapath required: pin directory")
            && exited.stderr.contains("is not on a bpf filesystem"),
        "{}",
        exited.stderr
    );
}

#[test]
fn required_datapath_names_a_missing_cgroup() {
    let exited = run_until_exit(
        &CONFIG.replace("${ADMIN}", "0"),
        &[
            "--datapath",
            "required",
            "--datapath-cgroup",
            "/nonexistent/cgroup",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
    assert!(
        exited
            .stderr
            .contains("--datapath required: cannot open cgroup v2 /nonexistent/cgroup"),
        "{}",
        exited.stderr
    );
}

#[tokio::test]
async fn auto_datapath_logs_once_what_is_off_and_serves_in_userspace() {
    let pins = not_bpffs_dir();
    let pin_dir = pins.path().join("sluice");
    let sluice = Sluice::start_with_args(
        CONFIG,
        &[],
        &[
            "--datapath",
            "auto",
            "--datapath-pin-dir",
            pin_dir.to_str().unwrap(),
        ],
    )
    .await;
    let log = sluice.log();
    assert_eq!(
        log.matches("kernel datapath off (cgroup/connect4, cgroup/sendmsg4, cgroup/getpeername4, cgroup/recvmsg4, cgroup/connect6, cgroup/sendmsg6, cgroup/getpeername6, cgroup/recvmsg6, cgroup/sock_ops not attached)").count(),
        1,
        "{log}"
    );
    assert!(log.contains("is not on a bpf filesystem"), "{log}");
}

#[tokio::test]
async fn off_datapath_says_nothing_about_the_kernel() {
    let sluice = Sluice::start_with_args(CONFIG, &[], &["--datapath", "off"]).await;
    assert!(!sluice.log().contains("datapath"), "{}", sluice.log());
}

fn sluicectl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sluicectl_explains_a_missing_pin_directory() {
    let output = sluicectl(&["bpf", "services", "--pin-dir", "/nonexistent/pins"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("map LB4_SERVICES: cannot open pin /nonexistent/pins/LB4_SERVICES")
            && stderr.contains("--datapath-pin-dir /nonexistent/pins"),
        "{stderr}"
    );
}

#[test]
fn sluicectl_dump_of_an_unknown_map_lists_the_known_ones() {
    let output = sluicectl(&[
        "bpf",
        "dump",
        "NO_SUCH_MAP",
        "--pin-dir",
        "/nonexistent/pins",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown map 'NO_SUCH_MAP'"), "{stderr}");
    for known in [
        "LB4_SERVICES",
        "LB4_REVERSE_SK",
        "LB6_REVERSE_SK",
        "REDIRECT_ORIGINAL_DST",
        "REDIRECT_BY_COOKIE",
        "REDIRECT6_ORIGINAL_DST",
        "REDIRECT6_BY_COOKIE",
        "XDP_DENY6",
        "SOCKMAP_SOCKETS",
        "SOCKMAP_TAINTED",
        "SOCKMAP_COUNTERS",
    ] {
        assert!(stderr.contains(known), "{known} not listed: {stderr}");
    }
    // A known map without a daemon: the missing pin, not "unknown".
    let output = sluicectl(&[
        "bpf",
        "dump",
        "REDIRECT6_BY_COOKIE",
        "--pin-dir",
        "/nonexistent/pins",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open pin"), "{stderr}");
}

#[test]
fn sluicectl_status_without_a_daemon_shows_nothing_attached() {
    let output = sluicectl(&[
        "bpf",
        "status",
        "--pin-dir",
        "/nonexistent/pins",
        "-o",
        "json",
    ]);
    assert!(output.status.success());
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(status["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|hook| hook["attached"] == false));
}

#[test]
fn sluicectl_rejects_bad_usage() {
    let output = sluicectl(&["bpf", "frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    let output = sluicectl(&["bpf", "services", "-o", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'yaml'"));
}

#[test]
fn sluicectl_rejects_a_bad_cidr_before_looking_for_the_daemon() {
    for (cidr, message) in [
        ("300.1.1.1/8", "'300.1.1.1/8' is not an IPv4 or IPv6 CIDR"),
        ("10.0.0.0/40", "'10.0.0.0/40': prefix length must be 0..=32"),
        ("10.0.0.0/x", "'10.0.0.0/x': prefix length must be 0..=32"),
        ("fd00::/129", "'fd00::/129': prefix length must be 0..=128"),
        ("fd00::gg/64", "'fd00::gg/64' is not an IPv4 or IPv6 CIDR"),
        ("fd00::/", "'fd00::/': prefix length must be 0..=128"),
    ] {
        let output = sluicectl(&[
            "bpf",
            "denylist",
            "add",
            cidr,
            "--pin-dir",
            "/nonexistent/pins",
        ]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

#[test]
fn a_bad_sockmap_value_is_rejected() {
    let exited = run_until_exit(
        &CONFIG.replace("${ADMIN}", "0"),
        &["--datapath-sockmap", "maybe"],
        Duration::from_secs(10),
    );
    assert_eq!(exited.status.code(), Some(2), "{}", exited.stderr);
    assert!(
        exited
            .stderr
            .contains("invalid value 'maybe' for '--datapath-sockmap"),
        "{}",
        exited.stderr
    );
}

#[test]
fn sockmap_on_with_the_datapath_off_is_refused() {
    let exited = run_until_exit(
        &CONFIG.replace("${ADMIN}", "0"),
        &["--datapath", "off", "--datapath-sockmap", "on"],
        Duration::from_secs(20),
    );
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
    assert!(
        exited
            .stderr
            .contains("--datapath-sockmap on needs the kernel datapath"),
        "{}",
        exited.stderr
    );
}
