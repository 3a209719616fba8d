//! End-to-end test of the transparent L7 redirect: a `bind_to_port: false`
//! listener with `http_connection_manager` on a VIP (127.96.0.20:80) becomes
//! a kernel redirect service; a client process inside the test's cgroup v2
//! child connects to the VIP, is rewritten to the daemon's
//! `--datapath-redirect-to` address, and is served by Sluice with the VIP
//! listener's routes (two paths, two backends), stats and access log,
//! while `getpeername` shows it the VIP. A stray connection to the redirect
//! address (no original destination) is closed and counted. The listener
//! arrives by file-based LDS; removing it removes the kernel service, and
//! the VIP is no longer rewritten. Needs root, bpffs and cgroup v2; skips
//! with a reason otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::{json, Value};

const WEB_VIP: &str = "127.96.0.20";

/// A one-line HTTP/1.1 server on `address` answering every request with
/// `name`, on a thread that lives as long as the test process.
fn http_backend(address: &str, name: &'static str) -> u16 {
    let listener = TcpListener::bind((address, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_http(stream, name));
        }
    });
    port
}

fn serve_http(mut stream: TcpStream, name: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            request.drain(..end + 4);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{name}",
                name.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
}

fn bootstrap(admin: u16, dir: &Path, blue: u16, green: u16) -> String {
    let cluster = |name: &str, address: &str, port: u16| {
        format!(
            "  - name: {name}\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {address}, port_value: {port} }} }} }} }}] }}]\n"
        )
    };
    format!(
        "admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  clusters:
{}{}dynamic_resources:
  lds_config: {{ path_config_source: {{ path: {} }}, resource_api_version: V3 }}
",
        cluster("blue", "127.0.0.2", blue),
        cluster("green", "127.0.0.3", green),
        dir.join("lds.yaml").display()
    )
}

fn write_listeners(dir: &Path, version: &str, with_service: bool) {
    let resources = if with_service {
        format!(
            r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: web_vip
  address: {{ socket_address: {{ address: {WEB_VIP}, port_value: 80 }} }}
  bind_to_port: false
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: web
        access_log:
        - name: envoy.access_loggers.file
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
            path: {log}
            log_format:
              text_format_source:
                inline_string: "%DOWNSTREAM_LOCAL_ADDRESS% %REQ(:PATH)% %UPSTREAM_CLUSTER% %RESPONSE_CODE%\n"
        route_config:
          virtual_hosts:
          - name: web
            domains: ["*"]
            routes:
            - match: {{ prefix: /blue }}
              route: {{ cluster: blue }}
            - match: {{ prefix: /green }}
              route: {{ cluster: green }}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}"#,
            log = dir.join("access.log").display()
        )
    } else {
        " []".to_string()
    };
    let temporary = dir.join(".lds.yaml.tmp");
    std::fs::write(
        &temporary,
        format!("version_info: \"{version}\"\nresources:{resources}\n"),
    )
    .unwrap();
    std::fs::rename(&temporary, dir.join("lds.yaml")).unwrap();
}

fn wait_for(what: &str, daemon: &Daemon, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        match check() {
            Ok(()) => return,
            Err(state) => last = state,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} never happened; last: {last}\nsluice log:\n{}",
        daemon.log()
    );
}

fn wait_for_services(sandbox: &Sandbox, daemon: &Daemon, expected: &Value) {
    wait_for("bpf services", daemon, || {
        let output = sluicectl(sandbox, &["bpf", "services", "-o", "json"]);
        let value: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if &value == expected {
            Ok(())
        } else {
            Err(value.to_string())
        }
    });
}

/// From a process inside the cgroup: one HTTP/1.1 request per path, each
/// on its own connection to the VIP; prints `ok <peer> <body>` or `err <why>`.
fn requests_from_cgroup(sandbox: &Sandbox, paths: &[&str], v4_mapped: bool) -> Vec<String> {
    let connect = if v4_mapped {
        format!("s = socket.socket(socket.AF_INET6); s.settimeout(2); s.connect(('::ffff:{WEB_VIP}', 80))")
    } else {
        format!("s = socket.create_connection(('{WEB_VIP}', 80), timeout=2)")
    };
    let script = format!(
        "import socket, sys
for path in {paths:?}:
    try:
        {connect}
        peer = '%s:%d' % s.getpeername()[:2]
        s.sendall(('GET %s HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n' % path).encode())
        data = b''
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        print('ok', peer, data.decode().split('\\r\\n\\r\\n', 1)[-1])
    except Exception as e:
        print('err', type(e).__name__)
    sys.stdout.flush()
"
    );
    python_in_cgroup(sandbox, &script, false)
}

fn stat(admin: u16, name: &str) -> Option<u64> {
    admin_get(
        admin,
        &format!("/stats?filter=^{}$", name.replace('.', "\\.")),
    )
    .lines()
    .find_map(|line| line.strip_prefix(&format!("{name}: ")))
    .and_then(|value| value.trim().parse().ok())
}

fn wait_for_stat(daemon: &Daemon, admin: u16, name: &str, expected: u64) {
    wait_for(&format!("{name} == {expected}"), daemon, || {
        match stat(admin, name) {
            Some(value) if value == expected => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn http_vip_is_redirected_to_sluice_and_routed_by_its_listener() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("redirect");
    let dir = sandbox.dir.path().join("xds");
    std::fs::create_dir_all(&dir).unwrap();
    let blue = http_backend("127.0.0.2", "blue");
    let green = http_backend("127.0.0.3", "green");
    write_listeners(&dir, "1", true);
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &[]);
    let admin = unused_port();
    let redirect_port = unused_port();
    let redirect_to = format!("127.0.0.1:{redirect_port}");
    let daemon = Daemon::start_with(
        &sandbox,
        &bootstrap(admin, &dir, blue, green),
        &hosts,
        "redirect",
        &["--datapath-redirect-to", &redirect_to],
    );
    wait_for_services(
        &sandbox,
        &daemon,
        &json!([{
            "vip": WEB_VIP,
            "port": 80,
            "protocol": "tcp",
            "mode": "redirect",
            "backends": [{"address": "127.0.0.1", "port": redirect_port}],
            "listener": "web_vip",
        }]),
    );

    // Routed by path to two backends; the app sees the VIP as its peer.
    let vip_peer = format!("{WEB_VIP}:80");
    let results = requests_from_cgroup(&sandbox, &["/blue", "/green", "/blue/x", "/green"], false);
    assert_eq!(
        results,
        ["blue", "green", "blue", "green"].map(|body| format!("ok {vip_peer} {body}")),
        "sluice log:\n{}",
        daemon.log()
    );
    // The same through an IPv6 socket and a v4-mapped VIP (connect6).
    let results = requests_from_cgroup(&sandbox, &["/green"], true);
    assert_eq!(results, [format!("ok ::ffff:{vip_peer} green")]);

    // Served as the VIP listener: its stats, its access log, the original
    // destination as the local address.
    wait_for_stat(
        &daemon,
        admin,
        "listener.127.96.0.20_80.downstream_cx_total",
        5,
    );
    wait_for_stat(&daemon, admin, "http.web.downstream_rq_2xx", 5);
    wait_for_stat(&daemon, admin, "cluster.blue.upstream_rq_total", 2);
    wait_for_stat(&daemon, admin, "cluster.green.upstream_rq_total", 3);
    wait_for_stat(&daemon, admin, "datapath.redirect.downstream_cx_total", 5);
    // Kernel counters, exported every second.
    wait_for_stat(&daemon, admin, "datapath.socket_lb.web_vip.redirects", 5);
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    let service = format!("datapath.lb4.service.{WEB_VIP}:80/tcp");
    assert_eq!(counters[format!("{service}.redirects")], 5, "{counters}");
    assert_eq!(counters[format!("{service}.connects")], 5, "{counters}");
    let log_path = dir.join("access.log");
    wait_for("access log lines", &daemon, || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.lines().count() == 5 {
            Ok(())
        } else {
            Err(log)
        }
    });
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        log.lines().next(),
        Some(format!("{vip_peer} /blue blue 200").as_str()),
        "{log}"
    );

    // Every recorded original destination was consumed or cleaned up.
    wait_for("REDIRECT_ORIGINAL_DST empty", &daemon, || {
        let entries = sluicectl_json(&sandbox, &["bpf", "dump", "REDIRECT_ORIGINAL_DST"]);
        if entries == json!([]) {
            Ok(())
        } else {
            Err(entries.to_string())
        }
    });

    // A connection to the redirect address the kernel did not redirect has
    // no original destination: closed and counted.
    let mut stray = TcpStream::connect(("127.0.0.1", redirect_port)).unwrap();
    stray
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stray.write_all(b"GET /blue HTTP/1.1\r\nHost: web\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stray.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    wait_for_stat(
        &daemon,
        admin,
        "datapath.redirect.no_original_destination",
        1,
    );

    // LDS removes the listener: the kernel stops redirecting the VIP
    // (nothing listens on it: refused).
    write_listeners(&dir, "2", false);
    wait_for_services(&sandbox, &daemon, &json!([]));
    let results = requests_from_cgroup(&sandbox, &["/blue"], false);
    assert_eq!(results, ["err ConnectionRefusedError"]);
}
