//! End-to-end test of the transparent L7 redirect: a `bind_to_port: false`
//! listener with `http_connection_manager` on a VIP (127.96.0.20:80) becomes
//! a kernel redirect service; a client process inside the test's cgroup v2
//! child connects to the VIP, is rewritten to the daemon's
//! `--datapath-redirect-to` address, and is served by Sluice with the VIP
//! listener's routes (two paths, two backends), stats and access log,
//! while `getpeername` shows it the VIP. The same for an IPv6 VIP
//! ([fd96::20]:80, its own listener): connect6 rewrites it to the daemon's
//! `--datapath-redirect6-to` address ([::1] on the redirect port by
//! default), the original [VIP]:port is recovered by the client's IPv6
//! address, and every map entry is gone once the connections closed. A
//! stray connection to a redirect address (no original destination) is
//! closed and counted. The listeners arrive by file-based LDS; removing
//! them removes the kernel services, and the VIPs are no longer rewritten.
//! After a crash (SIGKILL) the pinned programs still redirect; the refused
//! connects leave no map entries behind (the sockops close callback
//! deletes them). Needs root, bpffs and cgroup v2; skips with a reason
//! otherwise, except under `CI=true` where it must run.

#[path = "datapath_support.rs"]
mod datapath_support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use datapath_support::*;
use serde_json::{json, Value};

const WEB_VIP: &str = "127.96.0.20";
/// Not on any interface: connect6 rewrites it before routing.
const WEB_VIP6: &str = "fd96::20";

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

/// The L7 listener `name` on `vip`:80: two routes, an access log at `log`.
fn web_listener(name: &str, vip: &str, stat_prefix: &str, log: &Path) -> String {
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: {name}
  address: {{ socket_address: {{ address: "{vip}", port_value: 80 }} }}
  bind_to_port: false
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {stat_prefix}
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
        log = log.display()
    )
}

fn write_listeners(dir: &Path, version: &str, with_service: bool) {
    let resources = if with_service {
        web_listener("web_vip", WEB_VIP, "web", &dir.join("access.log"))
            + &web_listener("web_vip6", WEB_VIP6, "web6", &dir.join("access6.log"))
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

/// How the client in the cgroup reaches a VIP.
#[derive(Clone, Copy)]
enum Client {
    /// An IPv4 socket to the IPv4 VIP (connect4).
    V4,
    /// An IPv6 socket to the v4-mapped IPv4 VIP (connect6, IPv4 maps).
    V4Mapped,
    /// An IPv6 socket to the IPv6 VIP (connect6, IPv6 maps).
    V6,
}

/// From a process inside the cgroup: one HTTP/1.1 request per path, each
/// on its own connection to the VIP; prints `ok <peer> <body>` or `err <why>`.
fn requests_from_cgroup(sandbox: &Sandbox, paths: &[&str], client: Client) -> Vec<String> {
    let connect = match client {
        Client::V4Mapped => format!(
            "s = socket.socket(socket.AF_INET6); s.settimeout(2); s.connect(('::ffff:{WEB_VIP}', 80))"
        ),
        Client::V4 => format!("s = socket.create_connection(('{WEB_VIP}', 80), timeout=2)"),
        Client::V6 => format!(
            "s = socket.socket(socket.AF_INET6); s.settimeout(2); s.connect(('{WEB_VIP6}', 80))"
        ),
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
    let mut daemon = Daemon::start_with(
        &sandbox,
        &bootstrap(admin, &dir, blue, green),
        &hosts,
        "redirect",
        &["--datapath-redirect-to", &redirect_to],
    );
    wait_for_services(
        &sandbox,
        &daemon,
        &json!([
            {
                "vip": WEB_VIP,
                "port": 80,
                "protocol": "tcp",
                "mode": "redirect",
                "backends": [{"address": "127.0.0.1", "port": redirect_port}],
                "listener": "web_vip",
            },
            {
                "vip": WEB_VIP6,
                "port": 80,
                "protocol": "tcp",
                "mode": "redirect",
                "backends": [{"address": "::1", "port": redirect_port}],
                "listener": "web_vip6",
            },
        ]),
    );

    // Routed by path to two backends; the app sees the VIP as its peer.
    let vip_peer = format!("{WEB_VIP}:80");
    let results = requests_from_cgroup(
        &sandbox,
        &["/blue", "/green", "/blue/x", "/green"],
        Client::V4,
    );
    assert_eq!(
        results,
        ["blue", "green", "blue", "green"].map(|body| format!("ok {vip_peer} {body}")),
        "sluice log:\n{}",
        daemon.log()
    );
    // The same through an IPv6 socket and a v4-mapped VIP (connect6).
    let results = requests_from_cgroup(&sandbox, &["/green"], Client::V4Mapped);
    assert_eq!(results, [format!("ok ::ffff:{vip_peer} green")]);
    // An IPv6 VIP: redirected to [::1] on the redirect port, served by its
    // own listener, the IPv6 VIP as the peer.
    let results = requests_from_cgroup(&sandbox, &["/blue", "/green"], Client::V6);
    assert_eq!(
        results,
        ["blue", "green"].map(|body| format!("ok {WEB_VIP6}:80 {body}")),
        "sluice log:\n{}",
        daemon.log()
    );

    // Served as the VIP listeners: their stats, their access logs, the
    // original destination as the local address.
    wait_for_stat(
        &daemon,
        admin,
        "listener.127.96.0.20_80.downstream_cx_total",
        5,
    );
    wait_for_stat(
        &daemon,
        admin,
        "listener.fd96::20_80.downstream_cx_total",
        2,
    );
    wait_for_stat(&daemon, admin, "http.web.downstream_rq_2xx", 5);
    wait_for_stat(&daemon, admin, "http.web6.downstream_rq_2xx", 2);
    wait_for_stat(&daemon, admin, "cluster.blue.upstream_rq_total", 3);
    wait_for_stat(&daemon, admin, "cluster.green.upstream_rq_total", 4);
    wait_for_stat(&daemon, admin, "datapath.redirect.downstream_cx_total", 7);
    // Kernel counters, exported every second.
    wait_for_stat(&daemon, admin, "datapath.socket_lb.web_vip.redirects", 5);
    wait_for_stat(&daemon, admin, "datapath.socket_lb.web_vip6.redirects", 2);
    let counters = sluicectl_json(&sandbox, &["bpf", "counters"]);
    let service = format!("datapath.lb4.service.{WEB_VIP}:80/tcp");
    assert_eq!(counters[format!("{service}.redirects")], 5, "{counters}");
    assert_eq!(counters[format!("{service}.connects")], 5, "{counters}");
    let service6 = format!("datapath.lb6.service.[{WEB_VIP6}]:80/tcp");
    assert_eq!(counters[format!("{service6}.redirects")], 2, "{counters}");
    assert_eq!(counters[format!("{service6}.connects")], 2, "{counters}");
    let log = access_log(&daemon, &dir.join("access.log"), 5);
    assert_eq!(
        log.lines().next(),
        Some(format!("{vip_peer} /blue blue 200").as_str()),
        "{log}"
    );
    let log = access_log(&daemon, &dir.join("access6.log"), 2);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            format!("[{WEB_VIP6}]:80 /blue blue 200"),
            format!("[{WEB_VIP6}]:80 /green green 200")
        ],
        "{log}"
    );

    // Every recorded original destination was consumed or cleaned up, by
    // client address and by cookie, in both families.
    for map in [
        "REDIRECT_ORIGINAL_DST",
        "REDIRECT6_ORIGINAL_DST",
        "REDIRECT_BY_COOKIE",
        "REDIRECT6_BY_COOKIE",
    ] {
        wait_for(&format!("{map} empty"), &daemon, || {
            let entries = sluicectl_json(&sandbox, &["bpf", "dump", map]);
            if entries == json!([]) {
                Ok(())
            } else {
                Err(entries.to_string())
            }
        });
    }
    // The reverse entries getpeername read show the VIPs (an LRU: they
    // stay after close).
    let reverse6 = sluicectl_json(&sandbox, &["bpf", "dump", "LB6_REVERSE_SK"]);
    let backend6 = format!("[::1]:{redirect_port}");
    let vips6: Vec<&Value> = reverse6
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["key"]["backend"] == backend6.as_str())
        .map(|entry| &entry["value"])
        .collect();
    assert_eq!(vips6, [&json!(format!("[{WEB_VIP6}]:80")); 2], "{reverse6}");
    let reverse4 = sluicectl_json(&sandbox, &["bpf", "dump", "LB4_REVERSE_SK"]);
    assert!(
        reverse4
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["value"] == vip_peer.as_str())
            .count()
            >= 4,
        "{reverse4}"
    );

    // A connection to a redirect address the kernel did not redirect has
    // no original destination: closed and counted (IPv4 and IPv6).
    for (host, count) in [("127.0.0.1", 1), ("::1", 2)] {
        let mut stray = TcpStream::connect((host, redirect_port)).unwrap();
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
            count,
        );
    }

    // LDS removes the listeners: the kernel stops redirecting the VIPs
    // (nothing listens on the IPv4 one: refused; the IPv6 one is not
    // routed here).
    write_listeners(&dir, "2", false);
    wait_for_services(&sandbox, &daemon, &json!([]));
    let results = requests_from_cgroup(&sandbox, &["/blue"], Client::V4);
    assert_eq!(results, ["err ConnectionRefusedError"]);
    let results = requests_from_cgroup(&sandbox, &["/blue"], Client::V6);
    assert!(results[0].starts_with("err "), "{results:?}");
    wait_for_stat(&daemon, admin, "datapath.redirect.downstream_cx_total", 9);

    // The services again, then a crash: the pinned programs keep
    // redirecting to a redirect address nobody serves. The refused
    // connects never establish; closing them deletes what connect recorded.
    write_listeners(&dir, "3", true);
    let redirects = |sandbox: &Sandbox| {
        let counters = sluicectl_json(sandbox, &["bpf", "counters"]);
        let service6 = format!("datapath.lb6.service.[{WEB_VIP6}]:80/tcp.redirects");
        let service4 = format!("datapath.lb4.service.{WEB_VIP}:80/tcp.redirects");
        (counters[service4].as_u64(), counters[service6].as_u64())
    };
    wait_for("the services back", &daemon, || match redirects(&sandbox) {
        (Some(_), Some(_)) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let before = redirects(&sandbox);
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit();
    for client in [Client::V4, Client::V6] {
        let results = requests_from_cgroup(&sandbox, &["/blue"], client);
        assert_eq!(results, ["err ConnectionRefusedError"]);
    }
    let after = redirects(&sandbox);
    assert_eq!(
        (
            after.0.unwrap() - before.0.unwrap(),
            after.1.unwrap() - before.1.unwrap()
        ),
        (1, 1),
        "the kernel redirected both after the crash"
    );
    for map in [
        "REDIRECT_BY_COOKIE",
        "REDIRECT6_BY_COOKIE",
        "REDIRECT_ORIGINAL_DST",
        "REDIRECT6_ORIGINAL_DST",
    ] {
        let entries = sluicectl_json(&sandbox, &["bpf", "dump", map]);
        assert_eq!(entries, json!([]), "{map} after refused connects");
    }
}

/// The access log at `path` once it has `lines` lines.
fn access_log(daemon: &Daemon, path: &Path, lines: usize) -> String {
    wait_for("access log lines", daemon, || {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().count() == lines {
            Ok(())
        } else {
            Err(log)
        }
    });
    std::fs::read_to_string(path).unwrap()
}

/// `--datapath-redirect6-to` on an address this host does not have: with
/// `--datapath required` (what the test daemon runs with) the IPv6 L7 VIP
/// cannot be redirected, so start-up fails naming the address.
#[test]
fn an_ipv6_redirect_address_that_cannot_be_bound_fails_a_required_start() {
    if skip() {
        return;
    }
    let sandbox = Sandbox::new("redirect6-unbound");
    let dir = sandbox.dir.path().join("xds");
    std::fs::create_dir_all(&dir).unwrap();
    write_listeners(&dir, "1", true);
    let hosts = sandbox.dir.path().join("hosts");
    write_hosts(&hosts, &[]);
    let redirect_port = unused_port();
    let unbound = format!("[fd96::1]:{redirect_port}");
    let mut daemon = Daemon::start_with(
        &sandbox,
        &bootstrap(unused_port(), &dir, 9, 9),
        &hosts,
        "redirect6-unbound",
        &[
            "--datapath-redirect-to",
            &format!("127.0.0.1:{redirect_port}"),
            "--datapath-redirect6-to",
            &unbound,
        ],
    );
    let status = daemon.wait_exit();
    let log = daemon.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("--datapath required: redirect address: ") && log.contains(&unbound),
        "{log}"
    );
}
