//! `cargo xtask xds-kernel`: how long an EDS push takes to reach the
//! kernel's socket-LB maps (issue 4, item 6; targets ≤ 10 ms for one
//! service, ≤ 200 ms for 10,000 endpoints).
//!
//! The real `sluicectl xds serve --timestamps` serves, over ADS, N virtual
//! (`bind_to_port: false`) `tcp_proxy` listeners on VIPs, N EDS clusters and
//! their ClusterLoadAssignments of M endpoints; the real `sluice` runs with
//! `--datapath required` on a cgroup of its own. Each push rewrites every
//! assignment with new endpoints; the time is from the control plane's log
//! line for the EDS response it sends (UNIX time, µs) to the moment this
//! process, polling the pinned `LB4_SERVICES` map every ~0.2 ms, sees every
//! service switched to its new backend slot (the syncer writes the backends
//! first and the service entry last, so a switched entry means its backends
//! are in place; they are then checked one by one, outside the timing).
//! `MAX_BACKENDS_PER_SERVICE` is 256, so 10,000 endpoints are 100 services
//! of 100. Needs root, cgroup v2 and bpffs; elsewhere it says why and exits
//! successfully without measuring.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sluice_ebpf::common::{Lb4BackendKey, Lb4ServiceKey, PROTO_TCP};
use sluice_ebpf::maps::LbMaps;

const USAGE: &str = "usage: cargo xtask xds-kernel [options]

Times EDS push (sluicectl xds serve) -> kernel socket-LB map updated (sluice).
Cases: 1 service x 10 endpoints and 100 services x 100 endpoints (10,000),
over state-of-the-world and delta ADS. Needs root, cgroup v2 and bpffs.

options:
  --pushes N         pushes per case (default 10)
  --case SxE         only this case, e.g. 1x10 or 100x100 (repeatable)
  --profile dev      use the debug build instead of release
  --no-build         use target/<profile>/sluice and sluicectl as they are
  --sluice-arg ARG   pass ARG to sluice (repeatable), e.g. --sluice-arg
                     --component-log-level --sluice-arg xds:debug,datapath:debug

The daemon's log of each case is kept in target/xds-kernel/.  -h, --help         this text";

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const BPFFS: &str = "/sys/fs/bpf";
/// Pause between two polls of the pinned map.
const POLL_PAUSE: Duration = Duration::from_micros(200);

#[derive(Debug)]
struct Options {
    pushes: usize,
    cases: Vec<(usize, usize)>,
    release: bool,
    build: bool,
    sluice_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options {
        pushes: 10,
        cases: Vec::new(),
        release: true,
        build: true,
        sluice_args: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--pushes" => {
                options.pushes = value("--pushes")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0 && *n <= 1000)
                    .ok_or("--pushes takes a number from 1 to 1000")?
            }
            "--case" => {
                let text = value("--case")?;
                let case = text
                    .split_once('x')
                    .and_then(|(s, e)| Some((s.parse().ok()?, e.parse().ok()?)))
                    .filter(|(s, e): &(usize, usize)| {
                        (1..=4000).contains(s) && (1..=256).contains(e)
                    })
                    .ok_or_else(|| {
                        format!("--case {text}: expected SERVICESxENDPOINTS, 1-4000 x 1-256")
                    })?;
                options.cases.push(case);
            }
            "--no-build" => options.build = false,
            "--sluice-arg" => options.sluice_args.push(value("--sluice-arg")?),
            "--profile" => match value("--profile")?.as_str() {
                "dev" => options.release = false,
                "release" => options.release = true,
                other => return Err(format!("--profile {other}: expected dev or release")),
            },
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if options.cases.is_empty() {
        options.cases = vec![(1, 10), (100, 100)];
    }
    Ok(Some(options))
}

/// Why this machine cannot run the measurement, if it cannot.
fn missing_privileges() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        return Some("not root (the socket-LB hooks need CAP_BPF and cgroup access)".into());
    }
    if !Path::new(CGROUP_ROOT).join("cgroup.procs").exists() {
        return Some(format!("no cgroup v2 at {CGROUP_ROOT}"));
    }
    if !Path::new(BPFFS).is_dir() {
        return Some(format!("no bpffs at {BPFFS}"));
    }
    None
}

pub fn run(args: &[String]) -> Result<(), String> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    if let Some(reason) = missing_privileges() {
        println!("xds-kernel: skipped: {reason}");
        return Ok(());
    }
    let root = crate::workspace_root();
    let mut binaries = build(&root, options.release, options.build)?;
    binaries.sluice_args = options.sluice_args.clone();
    let mut table = Vec::new();
    for &(services, endpoints) in &options.cases {
        for api_type in ["GRPC", "DELTA_GRPC"] {
            let label = format!("{services} x {endpoints} endpoints, {api_type}");
            println!("xds-kernel: {label}: {} pushes", options.pushes);
            let latencies = measure(&binaries, services, endpoints, api_type, options.pushes)
                .map_err(|e| format!("{label}: {e}"))?;
            let summary = Summary::of(&latencies);
            println!("xds-kernel: {label}: {summary}");
            table.push((services, endpoints, api_type, summary));
        }
    }
    println!("\n| services × endpoints | ADS | pushes | median | min | max |");
    println!("|---|---|---|---|---|---|");
    for (services, endpoints, api_type, s) in &table {
        println!(
            "| {services} × {endpoints} | {api_type} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            s.count, s.median_ms, s.min_ms, s.max_ms
        );
    }
    Ok(())
}

struct Binaries {
    sluice: PathBuf,
    sluicectl: PathBuf,
    /// Extra arguments for sluice.
    sluice_args: Vec<String>,
    /// Where each case's daemon log is kept.
    log_dir: PathBuf,
}

fn build(root: &Path, release: bool, run_cargo: bool) -> Result<Binaries, String> {
    let dir = root
        .join("target")
        .join(if release { "release" } else { "debug" });
    let binaries = Binaries {
        sluice: dir.join("sluice"),
        sluicectl: dir.join("sluicectl"),
        sluice_args: Vec::new(),
        log_dir: root.join("target").join("xds-kernel"),
    };
    if !run_cargo {
        for binary in [&binaries.sluice, &binaries.sluicectl] {
            if !binary.is_file() {
                return Err(format!("--no-build: {} does not exist", binary.display()));
            }
        }
        return Ok(binaries);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args([
        "build",
        "-p",
        "sluice",
        "--bin",
        "sluice",
        "--bin",
        "sluicectl",
    ]);
    if release {
        command.arg("--release");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of Sluice failed ({status})"));
    }
    Ok(binaries)
}

struct Summary {
    count: usize,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn of(latencies: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let median = if ms.len() % 2 == 1 {
            ms[ms.len() / 2]
        } else {
            (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
        };
        Summary {
            count: ms.len(),
            median_ms: median,
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.2} ms (min {:.2}, max {:.2}) over {} pushes",
            self.median_ms, self.min_ms, self.max_ms, self.count
        )
    }
}

fn vip(service: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        96,
        1 + (service / 200) as u8,
        1 + (service % 200) as u8,
    )
}

/// Endpoint `index` of `service` in push `generation`: every push moves
/// every endpoint (a new port), the most work a push can ask for.
fn endpoint(generation: usize, service: usize, index: usize) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(
            127,
            100 + (service / 250) as u8,
            (service % 250) as u8,
            1 + index as u8,
        ),
        10_000 + generation as u16,
    )
}

/// The resource folder `sluicectl xds serve` reads: listeners, clusters,
/// and endpoints of one generation.
fn write_resources(
    dir: &Path,
    services: usize,
    endpoints: usize,
    generation: usize,
) -> Result<(), String> {
    let mut listeners = String::from("resources:\n");
    let mut clusters = String::from("resources:\n");
    for service in 0..services {
        listeners.push_str(&format!(
            "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: vip{service}\n  address: {{socket_address: {{address: {}, port_value: 80}}}}\n  bind_to_port: false\n  filter_chains: [{{filters: [{{name: envoy.filters.network.tcp_proxy, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: vip{service}, cluster: svc{service}}}}}]}}]\n",
            vip(service)
        ));
        clusters.push_str(&format!(
            "- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: svc{service}\n  connect_timeout: 1s\n  type: EDS\n  eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}\n"
        ));
    }
    write_file(dir, "listeners.yaml", &listeners)?;
    write_file(dir, "clusters.yaml", &clusters)?;
    write_endpoints(dir, services, endpoints, generation)
}

fn write_endpoints(
    dir: &Path,
    services: usize,
    endpoints: usize,
    generation: usize,
) -> Result<(), String> {
    let mut text = String::from("resources:\n");
    for service in 0..services {
        text.push_str(&format!(
            "- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: svc{service}\n  endpoints:\n  - lb_endpoints:\n"
        ));
        for index in 0..endpoints {
            let (address, port) = endpoint(generation, service, index);
            text.push_str(&format!(
                "    - endpoint: {{address: {{socket_address: {{address: {address}, port_value: {port}}}}}}}\n"
            ));
        }
    }
    write_file(dir, "endpoints.yaml", &text)
}

/// Written whole, then renamed into place (the server never reads half a file).
fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, dir.join(name)).map_err(|e| format!("cannot rename {name}: {e}"))
}

/// Everything one case starts; stopped and removed on drop.
struct Rig {
    server: Child,
    sluice: Option<Child>,
    server_log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
    cgroup: PathBuf,
    pin_dir: PathBuf,
    /// Where the daemon's log is copied when the case ends.
    keep_log: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for child in [Some(&mut self.server), self.sluice.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(parent) = self.keep_log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::copy(self.dir.join("sluice.log"), &self.keep_log);
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    fn sluice_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sluice.log")).unwrap_or_default()
    }

    /// Lines of the server's stderr log that contain every one of `parts`.
    fn server_lines(&self, parts: &[&str]) -> Vec<String> {
        self.server_log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .cloned()
            .collect()
    }
}

fn start(
    binaries: &Binaries,
    services: usize,
    endpoints: usize,
    api_type: &str,
) -> Result<Rig, String> {
    let unique = format!(
        "sluice-xds-kernel-{}-{}",
        std::process::id(),
        api_type.to_lowercase()
    );
    let dir = std::env::temp_dir().join(&unique);
    let resources = dir.join("resources");
    std::fs::create_dir_all(&resources)
        .map_err(|e| format!("cannot create {}: {e}", resources.display()))?;
    write_resources(&resources, services, endpoints, 0)?;
    let mut server = Command::new(&binaries.sluicectl)
        .args(["xds", "serve", "--port", "0", "--timestamps"])
        .arg(&resources)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binaries.sluicectl.display()))?;
    let mut stdout = BufReader::new(server.stdout.take().expect("piped"));
    let mut first = String::new();
    let _ = stdout.read_line(&mut first);
    let server_log = Arc::new(Mutex::new(Vec::new()));
    let log = server_log.clone();
    let stderr = server.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.lock().unwrap().push(line);
        }
    });
    // The summary printed on every reload; read so the pipe never fills.
    std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
    let cgroup = Path::new(CGROUP_ROOT).join(&unique);
    let pin_dir = Path::new(BPFFS).join(&unique);
    let mut rig = Rig {
        server,
        sluice: None,
        server_log,
        dir: dir.clone(),
        cgroup: cgroup.clone(),
        pin_dir: pin_dir.clone(),
        keep_log: binaries.log_dir.join(format!(
            "{services}x{endpoints}-{}.log",
            api_type.to_lowercase()
        )),
    };
    let port: u16 = first
        .split(" on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("sluicectl xds serve did not print its address: {first:?}"))?;
    std::fs::create_dir_all(&cgroup)
        .map_err(|e| format!("cannot create {}: {e}", cgroup.display()))?;
    let bootstrap = dir.join("bootstrap.yaml");
    write_file(&dir, "bootstrap.yaml", &bootstrap_yaml(port, api_type))?;
    let log = std::fs::File::create(dir.join("sluice.log")).map_err(|e| e.to_string())?;
    rig.sluice = Some(
        Command::new(&binaries.sluice)
            .arg("-c")
            .arg(&bootstrap)
            .args([
                "--concurrency",
                "1",
                "--datapath",
                "required",
                "--datapath-cgroup",
            ])
            .arg(&cgroup)
            .arg("--datapath-pin-dir")
            .arg(&pin_dir)
            .args(&binaries.sluice_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binaries.sluice.display()))?,
    );
    Ok(rig)
}

fn bootstrap_yaml(xds_port: u16, api_type: &str) -> String {
    format!(
        r#"node: {{ id: xds-kernel-bench, cluster: bench }}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds_cluster }} }}]
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:
  - name: xds_cluster
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: xds_cluster
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {xds_port} }} }} }} }}] }}]
"#
    )
}

fn service_key(service: usize) -> Lb4ServiceKey {
    Lb4ServiceKey {
        address: u32::from(vip(service)).to_be(),
        port: 80u16.to_be(),
        protocol: PROTO_TCP,
        pad: 0,
    }
}

/// Active slot per service, `None` while a service is missing.
fn slots(maps: &LbMaps, services: usize) -> Vec<Option<(u32, u32, u32)>> {
    (0..services)
        .map(|service| {
            maps.services
                .get(&service_key(service), 0)
                .ok()
                .map(|entry| (entry.service_id, entry.slot, entry.backend_count))
        })
        .collect()
}

/// Checks every backend of every service against `generation`.
fn verify(
    maps: &LbMaps,
    services: usize,
    endpoints: usize,
    generation: usize,
) -> Result<(), String> {
    for (service, entry) in slots(maps, services).into_iter().enumerate() {
        let (service_id, slot, count) =
            entry.ok_or_else(|| format!("service {} missing", vip(service)))?;
        if count as usize != endpoints {
            return Err(format!(
                "service {} has {count} backends, expected {endpoints}",
                vip(service)
            ));
        }
        let mut found = Vec::new();
        for index in 0..count {
            let backend = maps
                .backends
                .get(
                    &Lb4BackendKey {
                        service_id,
                        slot,
                        index,
                    },
                    0,
                )
                .map_err(|e| format!("backend {index} of {}: {e}", vip(service)))?;
            found.push((
                Ipv4Addr::from(u32::from_be(backend.address)),
                u16::from_be(backend.port),
            ));
        }
        found.sort();
        let mut expected: Vec<_> = (0..endpoints)
            .map(|i| endpoint(generation, service, i))
            .collect();
        expected.sort();
        if found != expected {
            return Err(format!(
                "service {} holds {found:?}, expected generation {generation}",
                vip(service)
            ));
        }
    }
    Ok(())
}

fn measure(
    binaries: &Binaries,
    services: usize,
    endpoints: usize,
    api_type: &str,
    pushes: usize,
) -> Result<Vec<Duration>, String> {
    let rig = start(binaries, services, endpoints, api_type)?;
    let fail = |message: String| {
        format!(
            "{message}\nsluice log (tail):\n{}",
            tail(&rig.sluice_log(), 30)
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let maps = loop {
        if let Ok(maps) = LbMaps::open_pinned(&rig.pin_dir) {
            break maps;
        }
        if Instant::now() > deadline {
            return Err(fail("the daemon never pinned its maps".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    while verify(&maps, services, endpoints, 0).is_err() {
        if Instant::now() > deadline {
            let why = verify(&maps, services, endpoints, 0).unwrap_err();
            return Err(fail(format!(
                "the first assignment never reached the kernel: {why}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut latencies = Vec::new();
    for generation in 1..=pushes {
        let before = slots(&maps, services);
        let sent_before = rig.server_lines(&["sent", "ClusterLoadAssignment"]).len();
        write_endpoints(&rig.dir.join("resources"), services, endpoints, generation)?;
        // The server notices the file within its 500 ms poll; the clock that
        // counts starts at its send.
        let deadline = Instant::now() + Duration::from_secs(20);
        let switched = loop {
            let now = slots(&maps, services);
            let done = now
                .iter()
                .zip(&before)
                .all(|(now, before)| match (now, before) {
                    (Some((_, slot, count)), Some((_, old, _))) => {
                        slot != old && *count as usize == endpoints
                    }
                    _ => false,
                });
            if done {
                break SystemTime::now();
            }
            if Instant::now() > deadline {
                return Err(fail(format!("push {generation} never reached the kernel")));
            }
            std::thread::sleep(POLL_PAUSE);
        };
        verify(&maps, services, endpoints, generation).map_err(fail)?;
        let sent = loop {
            let lines = rig.server_lines(&["sent", "ClusterLoadAssignment"]);
            if let Some(line) = lines.get(sent_before) {
                break parse_time(line)?;
            }
            if Instant::now() > deadline {
                return Err(format!("no EDS send logged for push {generation}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let latency = switched.duration_since(sent).map_err(|_| {
            format!("push {generation}: the kernel changed before the send was logged")
        })?;
        latencies.push(latency);
    }
    let errors = rig.server_lines(&["NACK"]);
    if !errors.is_empty() {
        return Err(format!("the daemon rejected a push: {}", errors.join("\n")));
    }
    Ok(latencies)
}

/// The UNIX time at the start of a `--timestamps` log line.
fn parse_time(line: &str) -> Result<SystemTime, String> {
    let stamp = line.split_whitespace().next().unwrap_or_default();
    let seconds: f64 = stamp
        .parse()
        .map_err(|_| format!("no timestamp at the start of {line:?}"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How many distinct endpoints one generation has (a check for tests).
#[cfg(test)]
fn distinct_endpoints(services: usize, endpoints: usize, generation: usize) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for service in 0..services {
        for index in 0..endpoints {
            seen.insert(endpoint(generation, service, index));
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_distinct_and_moves_each_push() {
        assert_eq!(distinct_endpoints(100, 100, 1), 10_000);
        assert_ne!(endpoint(1, 5, 7), endpoint(2, 5, 7));
        assert_ne!(vip(0), vip(199));
        assert_ne!(vip(199), vip(200));
    }

    #[test]
    fn options_parse_and_reject() {
        let options = parse(&["--case".into(), "3x4".into(), "--pushes".into(), "2".into()])
            .unwrap()
            .unwrap();
        assert_eq!((options.cases, options.pushes), (vec![(3, 4)], 2));
        assert!(parse(&["--case".into(), "1x300".into()]).is_err());
        assert!(parse(&["--pushes".into(), "0".into()]).is_err());
        assert!(parse(&["--bogus".into()])
            .unwrap_err()
            .contains("unknown option"));
    }

    #[test]
    fn timestamps_parse() {
        let time = parse_time("1764000000.123456 xds: sent").unwrap();
        let micros = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros();
        assert!((micros as i128 - 1_764_000_000_123_456).abs() < 2);
        assert!(parse_time("xds: sent").is_err());
    }
}
