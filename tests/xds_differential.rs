//! Differential xDS routing test: one set of Envoy v3 resources, served by
//! the real `sluicectl xds serve`, drives a real Envoy 1.40 and a real
//! `sluice` daemon; the same requests (HTTP/1.1 and h2c) go through both and
//! must reach the same backends with the same statuses, and both must ACK
//! the same versions — on the initial push, after an RDS route change and
//! after an EDS endpoint move.
//!
//! The two daemons cannot share one listener port (both bind with
//! SO_REUSEPORT, so the kernel would split the connections between them),
//! so each gets its own `sluicectl xds serve` over its own folder, written
//! from the same templates: the folders differ only in the listener's
//! `port_value`. Versions are content hashes, so the RouteConfiguration,
//! Cluster and ClusterLoadAssignment versions must be byte-for-byte equal
//! across the two servers and ACKed by both daemons; the Listener version
//! differs by that port alone, and each daemon must ACK its own server's.
//! Both daemons' `/config_dump` must also show the same route and cluster
//! versions. State of the world and delta (delta ACKs carry no version, so
//! there the `/config_dump` per-resource versions are what is compared).
//!
//! Envoy comes from `$SLUICE_ENVOY`, else `target/envoy-venv/bin/envoy`,
//! else `PATH`; without one the test skips with a message, except under
//! `CI=true`, where it fails.

#[path = "xds/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::{cluster_yaml, endpoints_yaml, DemoServer, ResourceDir};
use support::{envoy_binary_or_skip, free_port, get, get_h2, Backend, Envoy, Reply, Sluice};

/// One bootstrap for both daemons: ADS (`API_TYPE`: GRPC or DELTA_GRPC) to
/// `${XDS}`.
const BOOTSTRAP: &str = r#"
node: {id: NODE, cluster: differential}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: ${ADMIN}}}
dynamic_resources:
  ads_config:
    api_type: API_TYPE
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${XDS}}}}
"#;

/// An HTTP listener whose routes come from RDS over ADS.
fn listener_yaml(port: u16) -> String {
    format!(
        r#""@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: front
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: front
      rds: {{route_config_name: front-routes, config_source: {{ads: {{}}, resource_api_version: V3}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

/// The first route configuration: host- and prefix-based routes to `web`
/// and `api`.
const ROUTES_V1: &str = r#""@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
name: front-routes
virtual_hosts:
- name: api
  domains: ["api.example"]
  routes: [{match: {prefix: "/"}, route: {cluster: api}}]
- name: strict
  domains: ["strict.example"]
  routes: [{match: {path: "/only"}, route: {cluster: web}}]
- name: default
  domains: ["*"]
  routes:
  - {match: {prefix: "/api/"}, route: {cluster: api}}
  - {match: {prefix: "/"}, route: {cluster: web}}
"#;

/// The RDS change: `/api/` moves to `web`, `/v2/` is new (to `api`),
/// `/gone/` names a cluster nobody serves, `strict.example/only` moves.
const ROUTES_V2: &str = r#""@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
name: front-routes
virtual_hosts:
- name: api
  domains: ["api.example"]
  routes: [{match: {prefix: "/"}, route: {cluster: api}}]
- name: strict
  domains: ["strict.example"]
  routes: [{match: {path: "/only"}, route: {cluster: api}}]
- name: default
  domains: ["*"]
  routes:
  - {match: {prefix: "/v2/"}, route: {cluster: api}}
  - {match: {prefix: "/gone/"}, route: {cluster: missing}}
  - {match: {prefix: "/api/"}, route: {cluster: web}}
  - {match: {prefix: "/"}, route: {cluster: web}}
"#;

/// Every request both daemons get in every phase: (Host, path).
const REQUESTS: &[(&str, &str)] = &[
    ("www.example", "/"),
    ("www.example", "/api/users"),
    ("www.example", "/v2/items"),
    ("www.example", "/gone/x"),
    ("api.example", "/anything"),
    ("strict.example", "/only"),
    ("strict.example", "/other"),
];

/// What a request got: status and the backend that answered, or, when no
/// backend did, the local reply's body.
type Outcome = (u16, String);

/// Two folders with the same resources except the listener's port.
struct Folders {
    envoy: ResourceDir,
    sluice: ResourceDir,
    envoy_port: u16,
    sluice_port: u16,
}

impl Folders {
    /// Writes one non-listener resource into both folders.
    fn write(&self, name: &str, text: &str) {
        self.envoy.write(name, text);
        self.sluice.write(name, text);
    }
}

/// The status and backend of each of [`REQUESTS`] through `address`.
/// Each request goes over HTTP/1.1 and over h2c; when the two differ, the
/// outcome says so (and matches no expectation).
async fn outcomes(address: SocketAddr) -> Vec<Outcome> {
    let outcome = |reply: Reply| -> Outcome {
        let answer = match reply.header("x-backend") {
            Some(backend) => backend.to_string(),
            None => format!("local reply {:?}", reply.text()),
        };
        (reply.status, answer)
    };
    let mut out = Vec::new();
    for (host, path) in REQUESTS {
        let h1 = outcome(get(address, host, path).await);
        let h2 = outcome(get_h2(address, host, path).await);
        out.push(if h1 == h2 {
            h1
        } else {
            (h1.0, format!("{} (h2c: {} {})", h1.1, h2.0, h2.1))
        });
    }
    out
}

fn table(outcomes: &[Outcome]) -> String {
    REQUESTS
        .iter()
        .zip(outcomes)
        .map(|((host, path), (status, backend))| format!("  {host}{path} → {status} {backend}\n"))
        .collect()
}

/// Waits (bounded) until both daemons route every request as `expected`,
/// then checks they agree with each other.
async fn both_route(phase: &str, envoy: SocketAddr, sluice: SocketAddr, expected: &[Outcome]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut from_envoy, mut from_sluice);
    loop {
        from_envoy = outcomes(envoy).await;
        from_sluice = outcomes(sluice).await;
        if (from_envoy.as_slice(), from_sluice.as_slice()) == (expected, expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{phase}: the daemons do not route as expected\nexpected:\n{}Envoy:\n{}Sluice:\n{}",
            table(expected),
            table(&from_envoy),
            table(&from_sluice)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(from_envoy, from_sluice, "{phase}: Envoy vs Sluice");
}

/// Per type: the version the server serves now (its last summary).
fn served_versions(server: &DemoServer) -> BTreeMap<String, String> {
    let mut served = BTreeMap::new();
    for line in server.lines_with(&["xds:   ", " version "]) {
        let mut words = line.split_whitespace().skip(1);
        if let (Some(kind), Some("version"), Some(version)) =
            (words.next(), words.next(), words.next())
        {
            served.insert(kind.to_string(), version.trim_end_matches(':').to_string());
        }
    }
    served
}

/// Per type: the last version the (single) client ACKed, from `ACK T
/// version V` and `resubscribe T [..] at version V` lines.
fn acked_versions(server: &DemoServer) -> BTreeMap<String, String> {
    let mut acked = BTreeMap::new();
    for line in server.lines_with(&["xds: "]) {
        let Some(rest) = line.splitn(3, ": ").nth(2) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let version = match words.as_slice() {
            ["ACK", _, "version", version, ..] => version,
            ["resubscribe", .., "at", "version", version] => version,
            _ => continue,
        };
        acked.insert(words[1].to_string(), version.to_string());
    }
    acked
}

/// Delta: waits (bounded) until each daemon has ACKed every type at least
/// once (delta ACKs carry no version: the versions are compared in
/// `/config_dump` instead), and checks neither NACKed anything.
fn both_ack_delta(phase: &str, envoy: &DemoServer, sluice: &DemoServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let types = [
        "Listener",
        "RouteConfiguration",
        "Cluster",
        "ClusterLoadAssignment",
    ];
    let acked_all = |server: &DemoServer| {
        types.iter().all(|t| {
            !server
                .lines_with(&[&format!(": ACK delta {t} ")])
                .is_empty()
        })
    };
    while !(acked_all(envoy) && acked_all(sluice)) {
        assert!(
            Instant::now() < deadline,
            "{phase}: not every type was ACKed\nEnvoy's server:\n{}\nSluice's server:\n{}",
            envoy.full_log(),
            sluice.full_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for server in [envoy, sluice] {
        let nacks = server.lines_with(&["NACK"]);
        assert!(nacks.is_empty(), "{phase}: {nacks:?}");
    }
}

/// State of the world: waits (bounded) until each daemon has ACKed what its
/// server serves now, then checks the versions they ACKed are the same (the
/// Listener's aside). Delta ([`both_ack_delta`]): an empty map.
fn both_ack(
    phase: &str,
    delta: bool,
    envoy: &DemoServer,
    sluice: &DemoServer,
) -> BTreeMap<String, String> {
    if delta {
        both_ack_delta(phase, envoy, sluice);
        return BTreeMap::new();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let caught_up = |server: &DemoServer| {
        let served = served_versions(server);
        served.len() == 4 && acked_versions(server) == served
    };
    while !(caught_up(envoy) && caught_up(sluice)) {
        assert!(
            Instant::now() < deadline,
            "{phase}: not every served version was ACKed\nEnvoy's server:\n{}\nSluice's server:\n{}",
            envoy.full_log(),
            sluice.full_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut from_envoy = acked_versions(envoy);
    let mut from_sluice = acked_versions(sluice);
    let listeners = (
        from_envoy.remove("Listener"),
        from_sluice.remove("Listener"),
    );
    assert_ne!(listeners.0, listeners.1, "the listener ports differ");
    assert_eq!(from_envoy, from_sluice, "{phase}: versions ACKed");
    for server in [envoy, sluice] {
        let nacks = server.lines_with(&["NACK"]);
        assert!(nacks.is_empty(), "{phase}: {nacks:?}");
    }
    from_envoy
}

/// `section/name` → version_info, from a daemon's `/config_dump` text.
fn dumped_versions(section: &str, field: &str, dump: &str) -> BTreeMap<String, String> {
    let dump: serde_json::Value =
        serde_json::from_str(dump).unwrap_or_else(|e| panic!("{e}: {dump}"));
    let mut versions = BTreeMap::new();
    for config in dump["configs"].as_array().into_iter().flatten() {
        let body = &config[field];
        let name = body["name"].as_str().or(body["cluster_name"].as_str());
        versions.insert(
            format!("{section}/{}", name.unwrap_or("?")),
            config["version_info"].as_str().unwrap_or("").to_string(),
        );
    }
    versions
}

/// What each daemon's `/config_dump` says it holds of the routes, clusters
/// and endpoints: must be the same names at the same versions.
async fn both_dump_alike(
    phase: &str,
    acked: &BTreeMap<String, String>,
    envoy: &Envoy,
    sluice: &Sluice,
) {
    let mut from_envoy = BTreeMap::new();
    let mut from_sluice = BTreeMap::new();
    for (section, field, query_extra) in [
        ("dynamic_route_configs", "route_config", ""),
        ("dynamic_active_clusters", "cluster", ""),
        (
            "dynamic_endpoint_configs",
            "endpoint_config",
            "&include_eds",
        ),
    ] {
        let path = format!("/config_dump?resource={section}");
        from_envoy.extend(dumped_versions(
            section,
            field,
            &envoy
                .admin_get(&format!("{path}{query_extra}"))
                .await
                .text(),
        ));
        from_sluice.extend(dumped_versions(
            section,
            field,
            &sluice
                .admin_get(&format!("{path}{query_extra}"))
                .await
                .text(),
        ));
    }
    // Envoy 1.40 leaves an EDS cluster's `version_info` empty in its
    // EndpointsConfigDump; Sluice fills in the version it ACKed (SotW: the
    // type's version; delta: the resource's).
    for name in ["api", "web"] {
        let key = format!("dynamic_endpoint_configs/{name}");
        assert_eq!(
            from_envoy.remove(&key).as_deref(),
            Some(""),
            "{phase}: {key}"
        );
        let sluice_version = from_sluice.remove(&key).unwrap_or_default();
        assert!(!sluice_version.is_empty(), "{phase}: {key}");
        assert_eq!(
            acked
                .get("ClusterLoadAssignment")
                .unwrap_or(&sluice_version),
            &sluice_version,
            "{phase}: {key}"
        );
    }
    assert_eq!(
        from_envoy, from_sluice,
        "{phase}: /config_dump versions, Envoy vs Sluice"
    );
    eprintln!("{phase}: /config_dump {from_envoy:?}");
}

fn ok(backend: &str) -> Outcome {
    (200, backend.to_string())
}

/// A local reply with an empty body (Envoy's 404 without a route, 503
/// for a cluster nobody serves).
fn status(code: u16) -> Outcome {
    (code, "local reply \"\"".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_envoy_and_sluice_route_the_same_requests_to_the_same_backends() {
    route_alike("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_envoy_and_sluice_route_the_same_requests_to_the_same_backends() {
    route_alike("DELTA_GRPC").await;
}

async fn route_alike(api_type: &str) {
    let delta = api_type == "DELTA_GRPC";
    let Some(envoy_binary) = envoy_binary_or_skip() else {
        return;
    };
    let started = Instant::now();
    let (blue, green, red) = (
        Backend::start("blue").await,
        Backend::start("green").await,
        Backend::start("red").await,
    );
    let folders = Folders {
        envoy: ResourceDir::new(),
        sluice: ResourceDir::new(),
        envoy_port: free_port(),
        sluice_port: free_port(),
    };
    folders
        .envoy
        .write("front.yaml", &listener_yaml(folders.envoy_port));
    folders
        .sluice
        .write("front.yaml", &listener_yaml(folders.sluice_port));
    folders.write("front-routes.yaml", ROUTES_V1);
    folders.write("web.yaml", &cluster_yaml("web", "1s", true));
    folders.write("api.yaml", &cluster_yaml("api", "1s", true));
    folders.write("web-endpoints.yaml", &endpoints_yaml("web", &[blue.port()]));
    folders.write(
        "api-endpoints.yaml",
        &endpoints_yaml("api", &[green.port()]),
    );
    let envoy_server = DemoServer::start(folders.envoy.path(), 0);
    let sluice_server = DemoServer::start(folders.sluice.path(), 0);
    let envoy = Envoy::start(
        &envoy_binary,
        &BOOTSTRAP
            .replace("NODE", "envoy")
            .replace("API_TYPE", api_type),
        &[("XDS", envoy_server.port)],
    )
    .await;
    let sluice = Sluice::start(
        &BOOTSTRAP
            .replace("NODE", "sluice")
            .replace("API_TYPE", api_type),
        &[("XDS", sluice_server.port)],
    )
    .await;
    let envoy_front = SocketAddr::from(([127, 0, 0, 1], folders.envoy_port));
    let sluice_front = sluice.addr_of(folders.sluice_port);

    // Initial push.
    both_route(
        "initial",
        envoy_front,
        sluice_front,
        &[
            ok("blue"),
            ok("green"),
            ok("blue"),
            ok("blue"),
            ok("green"),
            ok("blue"),
            status(404),
        ],
    )
    .await;
    let initial = both_ack("initial", delta, &envoy_server, &sluice_server);
    both_dump_alike("initial", &initial, &envoy, &sluice).await;

    // An RDS route change.
    folders.write("front-routes.yaml", ROUTES_V2);
    both_route(
        "after the RDS change",
        envoy_front,
        sluice_front,
        &[
            ok("blue"),
            ok("blue"),
            ok("green"),
            status(503),
            ok("green"),
            ok("green"),
            status(404),
        ],
    )
    .await;
    let rds = both_ack("after the RDS change", delta, &envoy_server, &sluice_server);
    both_dump_alike("after the RDS change", &rds, &envoy, &sluice).await;
    if !delta {
        assert_ne!(rds["RouteConfiguration"], initial["RouteConfiguration"]);
    }

    // An EDS endpoint move: `api` from green to red.
    folders.write("api-endpoints.yaml", &endpoints_yaml("api", &[red.port()]));
    both_route(
        "after the EDS move",
        envoy_front,
        sluice_front,
        &[
            ok("blue"),
            ok("blue"),
            ok("red"),
            status(503),
            ok("red"),
            ok("red"),
            status(404),
        ],
    )
    .await;
    let eds = both_ack("after the EDS move", delta, &envoy_server, &sluice_server);
    both_dump_alike("after the EDS move", &eds, &envoy, &sluice).await;
    if !delta {
        assert_ne!(eds["ClusterLoadAssignment"], rds["ClusterLoadAssignment"]);
        assert_eq!(eds["Cluster"], initial["Cluster"]);
    }
    eprintln!(
        "{api_type}: converged alike in {:?}; SotW versions ACKed by both: {:?}",
        started.elapsed(),
        [initial, rds, eds]
    );
    drop(envoy);
}
