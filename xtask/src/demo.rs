//! `cargo xtask demo`: builds Sluice, starts two tiny local services
//! (`blue` on 8081, `green` on 8082), runs Sluice on
//! `config/envoy-demo.yaml`, sends traffic through it (path routing, a
//! weighted split, a direct response, the TCP listener), and — as root on a
//! BPF-capable kernel — connects to a service VIP that the kernel rewrites
//! to a backend with no proxy hop, and to an HTTP service VIP the kernel
//! redirects to Sluice's L7 listener, and sends a datagram to a UDP service
//! VIP (added with `--config-yaml`: Envoy refuses virtual UDP listeners, so
//! the example config has none) answered by a local UDP service through the
//! kernel alone, showing `sluicectl bpf services` and the kernel counters. Then it prints the stats Envoy users know and shuts
//! everything down.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::workspace_root;

const ADMIN: &str = "127.0.0.1:9901";
const HTTP: &str = "127.0.0.1:10000";
const TCP: &str = "127.0.0.1:10001";
const VIP: &str = "127.96.0.10:80";
/// The HTTP service VIP (listener svc_web_vip), redirected to Sluice.
const WEB_VIP: &str = "127.96.0.11:80";
const DEMO_PIN_DIR: &str = "/sys/fs/bpf/sluice-demo";
/// The UDP service VIP (listener svc_dns_udp) and its one backend.
const UDP_VIP: &str = "127.96.0.53:53";
const UDP_SERVICE: &str = "127.0.0.1:8053";

/// Added over config/envoy-demo.yaml when the kernel path can run.
const UDP_VIP_YAML: &str = r#"
static_resources:
  listeners:
  - name: svc_dns_udp
    address: { socket_address: { address: 127.96.0.53, port_value: 53, protocol: UDP } }
    bind_to_port: false
    listener_filters:
    - name: envoy.filters.udp_listener.udp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig
        stat_prefix: dns
        matcher:
          on_no_match:
            action:
              name: route
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route
                cluster: dns
  clusters:
  - name: dns
    connect_timeout: 1s
    load_assignment:
      cluster_name: dns
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8053 } } } }] }]
"#;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run() -> Result<(), String> {
    let root = workspace_root();
    println!("== building sluice");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "-p", "sluice", "--bins"])
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("build failed".into());
    }

    start_service("blue", "127.0.0.1:8081")?;
    start_service("green", "127.0.0.1:8082")?;

    let cgroup = demo_cgroup();
    let mut args: Vec<String> = [
        "-c",
        "config/envoy-demo.yaml",
        "--concurrency",
        "2",
        "-l",
        "warning",
    ]
    .map(String::from)
    .to_vec();
    match &cgroup {
        Ok(path) => {
            start_udp_service(UDP_SERVICE)?;
            args.extend([
                "--datapath-cgroup".into(),
                path.display().to_string(),
                "--datapath-pin-dir".into(),
                DEMO_PIN_DIR.into(),
                "--config-yaml".into(),
                UDP_VIP_YAML.into(),
            ])
        }
        Err(_) => args.extend(["--datapath".into(), "off".into()]),
    }
    let shown: Vec<&str> = args
        .iter()
        .map(|arg| match arg.as_str() {
            UDP_VIP_YAML => "'<the UDP VIP svc_dns_udp>'",
            other => other,
        })
        .collect();
    println!("== starting: sluice {}", shown.join(" "));
    let child = Command::new(root.join("target/debug/sluice"))
        .current_dir(&root)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start sluice: {e}"))?;
    let _sluice = KillOnDrop(child);
    wait_ready()?;

    println!("\n== L7 routing (listener ingress_http on {HTTP})");
    for path in ["/blue/hello", "/green/hello", "/healthz"] {
        let (status, body) = http_get(HTTP, path)?;
        println!("GET {path:<14} -> {status} {}", body.trim());
    }
    let mut blue = 0;
    let mut green = 0;
    for _ in 0..50 {
        let (_, body) = http_get(HTTP, "/split")?;
        if body.contains("blue") {
            blue += 1;
        } else if body.contains("green") {
            green += 1;
        }
    }
    println!("GET /split x50     -> blue {blue}, green {green} (weights 80/20)");
    let (status, body) = http_get(HTTP, "/anything/else")?;
    println!(
        "GET /anything/else -> {status} {} (the catch-all route)",
        body.trim()
    );

    println!("\n== L4 tcp_proxy (listener ingress_tcp on {TCP} -> cluster green)");
    let mut stream = TcpStream::connect(TCP).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    stream
        .write_all(b"GET /over-tcp HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    println!(
        "raw HTTP/1.0 over TCP -> {}",
        answer.lines().last().unwrap_or("").trim()
    );

    println!(
        "\n== kernel fast path: socket load balancing for the VIP {VIP} (listener svc_blue_vip),\n   the HTTP VIP {WEB_VIP} redirected to Sluice (listener svc_web_vip),\n   and the UDP VIP {UDP_VIP} (listener svc_dns_udp)"
    );
    match &cgroup {
        Ok(path) => kernel_demo(&root, path),
        Err(reason) => println!("skipped: {reason}"),
    }

    println!(
        "\n== admin {ADMIN}/stats?filter=(downstream_rq_2xx|upstream_rq_total|downstream_cx_total)"
    );
    let (_, stats) = http_get(
        ADMIN,
        "/stats?filter=(downstream_rq_2xx|upstream_rq_total|downstream_cx_total)$",
    )?;
    print!("{stats}");
    println!("\n== admin /stats/prometheus (excerpt)");
    let (_, prom) = http_get(ADMIN, "/stats/prometheus")?;
    for line in prom
        .lines()
        .filter(|l| l.starts_with("envoy_cluster_upstream_rq_total"))
    {
        println!("{line}");
    }
    let _ = http_post(ADMIN, "/quitquitquit");
    if let Ok(path) = &cgroup {
        // Empty once the client exited; the daemon unpinned its maps.
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_dir(path);
    }
    println!("\n== done");
    Ok(())
}

/// A cgroup v2 child for the demo's client, when this process may attach
/// BPF programs (root, cgroup v2 present).
fn demo_cgroup() -> Result<std::path::PathBuf, String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root_user = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"));
    if !root_user {
        return Err("needs root (CAP_BPF) to attach the socket hooks; run the demo as root".into());
    }
    let base = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.join("cgroup.procs").exists())
        .ok_or("no cgroup v2 hierarchy found")?;
    let path = base.join("sluice-demo");
    std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok(path)
}

/// Connects to the VIP from inside the demo cgroup and shows what the
/// kernel did, then what `sluicectl bpf` reads from the pinned maps.
fn kernel_demo(root: &std::path::Path, cgroup: &std::path::Path) {
    let request = |vip: &str, path: &str, via: &str| {
        format!(
            "s = socket.create_connection(('{}', {}), timeout=2)\ns.sendall(b'GET {path} HTTP/1.0\\r\\n\\r\\n')\npeer = '%s:%d' % s.getpeername()[:2]\nbody = b''\nwhile True:\n    chunk = s.recv(4096)\n    if not chunk: break\n    body += chunk\nprint('app connected to', peer, '({via}) ->', body.decode().strip().splitlines()[-1])\n",
            vip.split(':').next().unwrap_or_default(),
            vip.split(':').nth(1).unwrap_or("80")
        )
    };
    let (udp_host, udp_port) = UDP_VIP.split_once(':').unwrap_or_default();
    let datagram = format!(
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.settimeout(2)\nu.sendto(b'hello', ('{udp_host}', {udp_port}))\ndata, source = u.recvfrom(64)\nprint('app sent a datagram to {UDP_VIP} (kernel socket-LB, UDP) -> reply from %s:%d: %s' % (source[0], source[1], data.decode()))\n"
    );
    let script = format!(
        "import socket\n{}{}{}{datagram}",
        request(VIP, "/from-the-kernel-path", "kernel socket-LB"),
        request(
            WEB_VIP,
            "/green/via-sluice",
            "redirected to Sluice, L7 route /green/"
        ),
        request(WEB_VIP, "/via-sluice", "redirected to Sluice, L7 route /")
    );
    let output = Command::new("sh")
        .args(["-c", "echo $$ > \"$0\" && exec python3 -c \"$1\""])
        .arg(cgroup.join("cgroup.procs"))
        .arg(&script)
        .output();
    match output {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "the kernel path is not active ({}); see the daemon's log above",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(error) => println!("cannot run the client (python3): {error}"),
    }
    for args in [["bpf", "services"], ["bpf", "counters"]] {
        println!("$ sluicectl {} --pin-dir {DEMO_PIN_DIR}", args.join(" "));
        match Command::new(root.join("target/debug/sluicectl"))
            .args(args)
            .args(["--pin-dir", DEMO_PIN_DIR])
            .output()
        {
            Ok(out) => print!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(error) => println!("cannot run sluicectl: {error}"),
        }
    }
}

fn wait_ready() -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http_get(ADMIN, "/ready") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("sluice did not become ready within 20 s (is port 9901/10000/10001 taken?)".into())
}

/// A UDP service answering each datagram with `hello from dns (udp)`.
fn start_udp_service(address: &str) -> Result<(), String> {
    let socket = std::net::UdpSocket::bind(address)
        .map_err(|e| format!("cannot bind the UDP service on {address}: {e}"))?;
    println!("== UDP service dns on {address}");
    std::thread::spawn(move || {
        let mut buffer = [0u8; 512];
        while let Ok((_, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(b"hello from dns (udp)", from);
        }
    });
    Ok(())
}

/// A tiny HTTP/1.x service answering `hello from <name>: <path>`.
fn start_service(name: &'static str, address: &str) -> Result<(), String> {
    let listener =
        TcpListener::bind(address).map_err(|e| format!("cannot bind {name} on {address}: {e}"))?;
    println!("== service {name} on {address}");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(name, stream));
        }
    });
    Ok(())
}

fn serve(name: &str, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    // Keep-alive loop, bounded per connection.
    for _ in 0..10_000 {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let http10 = request_line.contains("HTTP/1.0");
        let mut close = http10;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.to_ascii_lowercase().starts_with("connection: close") {
                close = true;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let body = format!("hello from {name}: {path}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn http_get(address: &str, path: &str) -> Result<(u16, String), String> {
    exchange(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"),
    )
}

fn http_post(address: &str, path: &str) -> Result<(u16, String), String> {
    exchange(
        address,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: demo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn exchange(address: &str, request: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response from {address}: {raw:?}"))?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
