//! The machinery of one `xds-kernel` case: the resource folder
//! `sluicectl xds serve` reads (VIP listeners, EDS clusters, assignments of
//! one generation), the processes and cgroup a case runs (a [`Rig`],
//! removed on drop), and reading the daemon's pinned socket-LB maps.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use sluice_ebpf::common::{Lb4BackendKey, Lb4ServiceKey, PROTO_TCP};
use sluice_ebpf::maps::LbMaps;

use super::{Binaries, BPFFS, CGROUP_ROOT};

pub(super) fn vip(service: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        96,
        1 + (service / 200) as u8,
        1 + (service % 200) as u8,
    )
}

/// Endpoint `index` of `service` in push `generation`: every push moves
/// every endpoint (a new port), the most work a push can ask for.
pub(super) fn endpoint(generation: usize, service: usize, index: usize) -> (Ipv4Addr, u16) {
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

pub(super) fn write_endpoints(
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
pub(super) struct Rig {
    server: Child,
    sluice: Option<Child>,
    server_log: Arc<Mutex<Vec<String>>>,
    pub(super) dir: PathBuf,
    cgroup: PathBuf,
    pub(super) pin_dir: PathBuf,
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
    pub(super) fn sluice_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sluice.log")).unwrap_or_default()
    }

    /// Lines of the server's stderr log that contain every one of `parts`.
    pub(super) fn server_lines(&self, parts: &[&str]) -> Vec<String> {
        self.server_log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .cloned()
            .collect()
    }
}

pub(super) fn start(
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
pub(super) fn slots(maps: &LbMaps, services: usize) -> Vec<Option<(u32, u32, u32)>> {
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
pub(super) fn verify(
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
