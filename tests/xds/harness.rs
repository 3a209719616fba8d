//! Harness for the xDS black-box tests: the real `sluicectl xds serve`
//! process over a temporary folder, a [`ValidatingSink`] that checks each
//! resource with Sluice's own validation (PGV rules + supported fields, the
//! same messages as `--mode validate`) and records what it holds, and the
//! real ADS client (`sluice::xds::run_xds_stream`) running in-process against it.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Any;
use prost_reflect::DynamicMessage;
use sluice::config::bootstrap::validate_dynamic;
use sluice::config::descriptors::message_descriptor;
use sluice::config::proto::type_name;
use sluice::stats::Store;
use sluice::xds::backoff::Backoff;
use sluice::xds::{
    type_urls, ApiType, DiscoveryService, Resource, ResourceSink, StreamConfig, Subscription,
};
use tokio::sync::oneshot;

/// Polls `condition` every 20 ms for up to `limit`; panics with `what` on timeout.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A running `sluicectl xds serve`, killed on drop. Its stderr (the
/// ACK/NACK log) is collected line by line.
pub struct DemoServer {
    child: Child,
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl DemoServer {
    /// Starts on `port` (0: any) serving `dir`.
    pub fn start(dir: &Path, port: u16) -> DemoServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluicectl"))
            .args(["xds", "serve"])
            .arg(dir)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluicectl");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("sluicectl prints its address");
        let port = first
            .split(" on 127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let log = Arc::new(Mutex::new(vec![first.trim().to_string()]));
        for (reader, log) in [
            (Box::new(stdout) as Box<dyn BufRead + Send>, log.clone()),
            (
                Box::new(BufReader::new(child.stderr.take().unwrap())),
                log.clone(),
            ),
        ] {
            std::thread::spawn(move || {
                for line in reader.lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        DemoServer { child, port, log }
    }

    /// Log lines containing every one of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .cloned()
            .collect()
    }

    pub fn wait_log(&self, parts: &[&str]) -> String {
        wait_for(
            &format!("server log line with {parts:?}"),
            Duration::from_secs(10),
            || !self.lines_with(parts).is_empty(),
        );
        self.lines_with(parts).remove(0)
    }

    pub fn full_log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per type URL: name → (version, resource).
type Held = BTreeMap<String, BTreeMap<String, (String, Any)>>;

/// Holds what a proxy would: per type, name → (version, resource).
#[derive(Default)]
pub struct ValidatingSink {
    held: Mutex<Held>,
    pub applies: Mutex<usize>,
    pub routes: Mutex<BTreeSet<String>>,
}

impl ValidatingSink {
    pub fn names(&self, type_url: &str) -> Vec<String> {
        self.held
            .lock()
            .unwrap()
            .get(type_url)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn version(&self, type_url: &str, name: &str) -> Option<String> {
        Some(
            self.held
                .lock()
                .unwrap()
                .get(type_url)?
                .get(name)?
                .0
                .clone(),
        )
    }

    pub fn body(&self, type_url: &str, name: &str) -> Option<Any> {
        Some(
            self.held
                .lock()
                .unwrap()
                .get(type_url)?
                .get(name)?
                .1
                .clone(),
        )
    }

    pub fn apply_count(&self) -> usize {
        *self.applies.lock().unwrap()
    }
}

fn validate(body: &Any) -> Result<(), String> {
    let name = type_name(&body.type_url);
    let descriptor = message_descriptor(name).ok_or_else(|| format!("unknown type {name}"))?;
    let message =
        DynamicMessage::decode(descriptor, body.value.as_slice()).map_err(|e| e.to_string())?;
    validate_dynamic(&message).map_err(|errors| errors.to_string())
}

impl ResourceSink for ValidatingSink {
    fn apply(
        &self,
        type_url: &str,
        updated: Vec<Resource>,
        removed: Vec<String>,
        _sotw: bool,
    ) -> Vec<(String, String)> {
        *self.applies.lock().unwrap() += 1;
        let mut held = self.held.lock().unwrap();
        let of_type = held.entry(type_url.to_string()).or_default();
        let mut errors = Vec::new();
        for resource in updated {
            match validate(&resource.body) {
                Ok(()) => {
                    of_type.insert(resource.name, (resource.version, resource.body));
                }
                Err(error) => errors.push((resource.name, error)),
            }
        }
        for name in removed {
            of_type.remove(&name);
        }
        errors
    }

    fn subscriptions(&self, type_url: &str) -> Subscription {
        match type_url {
            type_urls::CLUSTER | type_urls::LISTENER => Subscription::Wildcard,
            type_urls::ENDPOINT => Subscription::names(self.names(type_urls::CLUSTER)),
            _ => Subscription::Names(self.routes.lock().unwrap().clone()),
        }
    }
}

/// The real ADS client, running on its own runtime thread until dropped.
pub struct Client {
    pub sink: Arc<ValidatingSink>,
    pub stats: Store,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    pub fn start(port: u16, api_type: ApiType) -> Client {
        Client::start_with(port, api_type, Arc::new(ValidatingSink::default()))
    }

    /// With a prepared sink (e.g. route configs to subscribe to).
    pub fn start_with(port: u16, api_type: ApiType, sink: Arc<ValidatingSink>) -> Client {
        let stats = Store::new();
        let config = StreamConfig {
            service: DiscoveryService::Aggregated,
            api_type,
            uri: format!("http://127.0.0.1:{port}"),
            cluster_name: "xds".into(),
            set_node_on_first_message_only: false,
            types: type_urls::ALL.to_vec(),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_millis(800)),
            connect_timeout: Duration::from_secs(2),
            rate_limit: None,
            source: sluice::xds::SourceId::Ads,
        };
        let node = Node {
            id: "test-node".into(),
            cluster: "test".into(),
            ..Default::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (thread_sink, thread_stats) = (sink.clone() as Arc<dyn ResourceSink>, stats.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(sluice::xds::run_xds_stream(
                config,
                node,
                thread_sink,
                sluice::xds::stats::XdsStats::new(&thread_stats),
                async {
                    let _ = stopped.await;
                },
            ));
        });
        Client {
            sink,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.stats.counter(name).value()
    }

    pub fn connected(&self) -> bool {
        self.stats.gauge("control_plane.connected_state").value() == 1
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A temporary folder of resource files.
pub struct ResourceDir {
    dir: tempfile::TempDir,
}

impl ResourceDir {
    pub fn new() -> ResourceDir {
        ResourceDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file atomically (write + rename), as config tools do.
    pub fn write(&self, name: &str, text: &str) {
        let tmp: PathBuf = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }
}

/// A daemon bootstrap whose control plane is the static cluster
/// `xds_cluster` (HTTP/2, 127.0.0.1:`xds_port`); `admin_port` is a port or a
/// placeholder such as `${ADMIN}`, `dynamic` the body of `dynamic_resources`
/// (lines indented two spaces).
pub fn control_plane_bootstrap(
    node_id: &str,
    admin_port: &str,
    xds_port: u16,
    dynamic: &str,
) -> String {
    format!(
        r#"
node: {{ id: {node_id}, cluster: test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
dynamic_resources:
{dynamic}
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

/// `dynamic_resources` with LDS and CDS over ADS of `api_type` (`GRPC` or
/// `DELTA_GRPC`) to `xds_cluster`.
pub fn ads_dynamic_resources(api_type: &str) -> String {
    format!(
        "  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds_cluster }} }}]
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}"
    )
}

/// A cluster resource (EDS-typed when `eds`).
pub fn cluster_yaml(name: &str, timeout: &str, eds: bool) -> String {
    let kind = if eds {
        "type: EDS\neds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3}}\n"
            .to_string()
    } else {
        format!("type: STATIC\nload_assignment: {{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9}}}}}}}}]}}]}}\n")
    };
    format!("\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: {name}\nconnect_timeout: {timeout}\n{kind}")
}

/// A ClusterLoadAssignment with one endpoint per port.
pub fn endpoints_yaml(cluster: &str, ports: &[u16]) -> String {
    let endpoints: Vec<String> = ports
        .iter()
        .map(|p| format!("{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}}}"))
        .collect();
    format!(
        "\"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\ncluster_name: {cluster}\nendpoints: [{{lb_endpoints: [{}]}}]\n",
        endpoints.join(", ")
    )
}

/// A TCP proxy listener to `cluster`.
pub fn listener_yaml(name: &str, port: u16, cluster: &str) -> String {
    format!(
        r#""@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: {name}
      cluster: {cluster}
"#
    )
}
