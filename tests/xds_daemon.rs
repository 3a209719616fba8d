//! The daemon driven by a control plane: `sluice` with only an ADS
//! bootstrap, fed by the real `sluicectl xds serve` over state-of-the-world
//! and delta. Listeners, routes (RDS), clusters (CDS) and endpoints (EDS)
//! arrive, change and move live traffic; a rejected resource keeps the last
//! good config serving; a control-plane restart loses no request.

#[path = "xds/harness.rs"]
mod harness;
mod support;

use std::time::{Duration, Instant};

use harness::{cluster_yaml, endpoints_yaml, DemoServer, ResourceDir};
use support::{get, get_until as eventually, Backend, Sluice};

fn bootstrap(xds_port: u16, api_type: &str) -> String {
    harness::control_plane_bootstrap(
        "daemon-test",
        "${ADMIN}",
        xds_port,
        &harness::ads_dynamic_resources(api_type),
    )
}

/// An HTTP listener whose routes come from RDS (`route_config_name`).
fn http_listener_yaml(name: &str, port: u16, routes: &str) -> String {
    format!(
        r#""@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      rds: {{ route_config_name: {routes}, config_source: {{ ads: {{}}, resource_api_version: V3 }} }}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

fn routes_yaml(name: &str, cluster: &str, tag: &str) -> String {
    format!(
        r#""@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
name: {name}
virtual_hosts:
- name: all
  domains: ["*"]
  routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: {cluster} }} }}]
  response_headers_to_add: [{{ header: {{ key: x-routes, value: "{tag}" }} }}]
"#
    )
}

struct World {
    dir: ResourceDir,
    server: Option<DemoServer>,
    sluice: Sluice,
    blue: Backend,
    green: Backend,
    port: u16,
}

async fn world(api_type: &str) -> World {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("web.yaml", &cluster_yaml("web", "1s", true));
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[blue.port()]));
    dir.write(
        "front.yaml",
        &http_listener_yaml("front", port, "front-routes"),
    );
    dir.write(
        "front-routes.yaml",
        &routes_yaml("front-routes", "web", "one"),
    );
    let server = DemoServer::start(dir.path(), 0);
    let sluice = Sluice::start(&bootstrap(server.port, api_type), &[]).await;
    World {
        dir,
        server: Some(server),
        sluice,
        blue,
        green,
        port,
    }
}

async fn cold_start_then_eds_and_rds_move_traffic(api_type: &str) {
    let w = world(api_type).await;
    let reply = eventually(w.port, "the ADS listener routes to blue", |r| {
        r.status == 200 && r.echo().backend == "blue"
    })
    .await;
    assert_eq!(reply.header("x-routes"), Some("one"));

    // EDS: the cluster's endpoint moves to green.
    w.dir.write(
        "web-endpoints.yaml",
        &endpoints_yaml("web", &[w.green.port()]),
    );
    eventually(w.port, "EDS moves traffic to green", |r| {
        r.echo().backend == "green"
    })
    .await;

    // RDS: a new route configuration version applies to new requests.
    w.dir.write(
        "front-routes.yaml",
        &routes_yaml("front-routes", "web", "two"),
    );
    eventually(w.port, "RDS update applies", |r| {
        r.header("x-routes") == Some("two")
    })
    .await;

    // CDS removal: the route's cluster is gone, requests get Envoy's 503.
    w.dir.remove("web.yaml");
    eventually(w.port, "the removed cluster is not found", |r| {
        r.status == 503
    })
    .await;

    let stats = w.sluice.admin_get("/stats").await.text();
    for stat in [
        "cluster_manager.cds.update_success",
        "listener_manager.lds.update_success",
        "control_plane.connected_state: 1",
    ] {
        assert!(stats.contains(stat), "missing {stat} in\n{stats}");
    }
    let _ = &w.blue;
}

#[tokio::test]
async fn sotw_cold_start_then_eds_and_rds_move_traffic() {
    cold_start_then_eds_and_rds_move_traffic("GRPC").await;
}

#[tokio::test]
async fn delta_cold_start_then_eds_and_rds_move_traffic() {
    cold_start_then_eds_and_rds_move_traffic("DELTA_GRPC").await;
}

#[tokio::test]
async fn a_rejected_listener_keeps_the_last_good_one_serving() {
    let w = world("GRPC").await;
    eventually(w.port, "serving", |r| r.status == 200).await;
    // Same listener, now with a field Sluice rejects.
    let bad = http_listener_yaml("front", w.port, "front-routes").replace(
        "stat_prefix: front",
        "stat_prefix: front\n      codec_type: HTTP3",
    );
    w.dir.write("front.yaml", &bad);
    let deadline = Instant::now() + Duration::from_secs(15);
    let error = loop {
        let dump: serde_json::Value = serde_json::from_str(
            &w.sluice
                .admin_get("/config_dump?resource=dynamic_listeners")
                .await
                .text(),
        )
        .unwrap();
        let front = dump["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "front")
            .cloned();
        if let Some(error) = front.as_ref().and_then(|f| f.get("error_state")) {
            assert!(front.as_ref().unwrap().get("active_state").is_some());
            break error.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no error_state for the bad listener"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        error["details"].as_str().unwrap().contains("HTTP3"),
        "{error}"
    );
    // The previous version keeps serving.
    assert_eq!(get(w.sluice.addr_of(w.port), "x", "/").await.status, 200);
    let _ = (&w.blue, &w.green);
}

#[tokio::test]
async fn a_control_plane_restart_loses_no_request() {
    let mut w = world("DELTA_GRPC").await;
    eventually(w.port, "serving", |r| r.status == 200).await;
    let port = w.server.as_ref().unwrap().port;
    w.server.take().unwrap().stop();
    for _ in 0..20 {
        let reply = get(w.sluice.addr_of(w.port), "x", "/").await;
        assert_eq!(
            reply.status, 200,
            "a request failed while the control plane was down"
        );
    }
    w.server = Some(DemoServer::start(w.dir.path(), port));
    w.dir.write(
        "web-endpoints.yaml",
        &endpoints_yaml("web", &[w.green.port()]),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(w.sluice.addr_of(w.port), "x", "/").await.echo().backend != "green" {
        assert!(
            Instant::now() < deadline,
            "updates did not flow again after the restart\nsluice:\n{}\nserver:\n{}",
            w.sluice.log(),
            w.server.as_ref().unwrap().full_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = &w.blue;
}

#[test]
fn the_shipped_demo_resources_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/xds-resources");
    let server = DemoServer::start(&dir, 0);
    let first = server.wait_log(&["serving"]);
    assert!(
        first.contains("serving 4 resources"),
        "{}",
        server.full_log()
    );
}

fn bootstrap_with_initial_fetch_timeout(xds_port: u16, timeout: &str) -> String {
    bootstrap(xds_port, "GRPC").replace(
        "{ ads: {}, resource_api_version: V3 }",
        &format!("{{ ads: {{}}, resource_api_version: V3, initial_fetch_timeout: {timeout} }}"),
    )
}

/// `GET /ready` status on the admin port, or 0 while nothing answers.
async fn ready_status(sluice: &Sluice) -> u16 {
    match tokio::net::TcpStream::connect(sluice.admin).await {
        Ok(_) => sluice.admin_get("/ready").await.status,
        Err(_) => 0,
    }
}

#[tokio::test]
async fn initial_fetch_timeout_bounds_the_wait_for_a_dead_control_plane() {
    let nobody = support::free_port();
    let started = Instant::now();
    // Sluice::start waits for /ready: it must come without a control plane.
    let sluice = Sluice::start(&bootstrap_with_initial_fetch_timeout(nobody, "1s"), &[]).await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(sluice.admin_get("/ready").await.status, 200);
}

#[tokio::test]
async fn initial_fetch_timeout_zero_waits_for_the_control_plane() {
    let xds_port = support::free_port();
    let mut sluice = Sluice::spawn(
        &bootstrap_with_initial_fetch_timeout(xds_port, "0s"),
        &[],
        &[],
    );
    // Without a control plane the server stays initializing (/ready 503).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let status = ready_status(&sluice).await;
        assert_ne!(status, 200, "ready without its initial xDS fetch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blue = Backend::start("blue").await;
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("web.yaml", &cluster_yaml("web", "1s", true));
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[blue.port()]));
    dir.write(
        "front.yaml",
        &http_listener_yaml("front", port, "front-routes"),
    );
    dir.write(
        "front-routes.yaml",
        &routes_yaml("front-routes", "web", "one"),
    );
    let _server = DemoServer::start(dir.path(), xds_port);
    sluice.wait_ready().await;
    eventually(port, "serving after the late control plane", |r| {
        r.status == 200 && r.echo().backend == "blue"
    })
    .await;
}

/// The front listener with its RDS `initial_fetch_timeout` set to `timeout`.
fn listener_with_rds_fetch_timeout(port: u16, timeout: &str) -> String {
    http_listener_yaml("front", port, "never-served").replace(
        "config_source: { ads: {}, resource_api_version: V3 }",
        &format!("config_source: {{ ads: {{}}, resource_api_version: V3, initial_fetch_timeout: {timeout} }}"),
    )
}

#[tokio::test]
async fn a_listener_stops_warming_after_its_rds_initial_fetch_timeout() {
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("front.yaml", &listener_with_rds_fetch_timeout(port, "1s"));
    let server = DemoServer::start(dir.path(), 0);
    let started = Instant::now();
    let sluice = Sluice::start(&bootstrap(server.port, "GRPC"), &[]).await;
    // The routes never come: after 1 s (not Envoy's default 15 s) the
    // listener starts anyway and answers 404 (no route), as Envoy's does.
    let reply = eventually(port, "the listener serves without its routes", |r| {
        r.status == 404
    })
    .await;
    assert_eq!(reply.status, 404);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the listener warmed for {:?}, not about 1 s",
        started.elapsed()
    );
    let _ = sluice;
}

#[tokio::test]
async fn a_negative_rds_initial_fetch_timeout_is_rejected() {
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("front.yaml", &listener_with_rds_fetch_timeout(port, "-1s"));
    let server = DemoServer::start(dir.path(), 0);
    let _sluice = Sluice::start(&bootstrap(server.port, "GRPC"), &[]).await;
    let nack = server.wait_log(&["NACK", "Listener"]);
    assert!(
        nack.contains("initial_fetch_timeout") && nack.contains("front"),
        "{nack}"
    );
}

#[tokio::test]
async fn a_warming_cds_cluster_is_not_found_until_its_eds_initial_fetch_timeout() {
    let w = world("GRPC").await;
    eventually(w.port, "serving", |r| r.status == 200).await;
    // Routes to a cluster CDS has not sent: 503, no cluster (NC).
    w.dir.write(
        "front-routes.yaml",
        &routes_yaml("front-routes", "web2", "two"),
    );
    eventually(w.port, "the route names an unknown cluster", |r| {
        r.status == 503 && r.text().is_empty()
    })
    .await;
    // The cluster arrives but its endpoints never do: while it warms it is
    // still not found (Envoy: NC, `no_cluster`); after its EDS
    // initial_fetch_timeout it serves without hosts (UH).
    let no_cluster = |stats: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix("http.front.no_cluster: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = no_cluster(&w.sluice.admin_get("/stats").await.text());
    w.dir.write(
        "web2.yaml",
        &cluster_yaml("web2", "1s", true).replace(
            "eds_config: {ads: {}, resource_api_version: V3}",
            "eds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 3s}",
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !w
        .sluice
        .admin_get("/clusters")
        .await
        .text()
        .contains("web2")
    {
        assert!(Instant::now() < deadline, "CDS never delivered web2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = get(w.sluice.addr_of(w.port), "x", "/").await;
    assert_eq!((reply.status, reply.text().as_str()), (503, ""));
    let after = no_cluster(&w.sluice.admin_get("/stats").await.text());
    assert!(after > before, "no_cluster {before} → {after}");
    eventually(w.port, "the cluster stops warming without hosts", |r| {
        r.status == 503 && r.text() == "no healthy upstream"
    })
    .await;
    let _ = (&w.blue, &w.green, &w.server);
}

/// A static EDS cluster whose endpoints come over ADS, behind a static
/// listener: ADS starts with the clusters, so the daemon is live as soon as
/// the control plane answers (it used to wait out the clusters' 15 s
/// warming bound before even opening the ADS stream).
#[tokio::test]
async fn a_static_eds_cluster_over_ads_warms_from_ads_at_start() {
    let blue = Backend::start("blue").await;
    let dir = ResourceDir::new();
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[blue.port()]));
    let server = DemoServer::start(dir.path(), 0);
    let port = support::free_port();
    let bootstrap = format!(
        r#"{}
  - name: web
    connect_timeout: 1s
    type: EDS
    eds_cluster_config: {{ eds_config: {{ ads: {{}}, resource_api_version: V3 }} }}
  listeners:
  - name: front
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts: [{{ name: all, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: web }} }}] }}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#,
        bootstrap(server.port, "GRPC").trim_end()
    );
    let started = Instant::now();
    let _sluice = Sluice::start(&bootstrap, &[]).await;
    let live_after = started.elapsed();
    let reply = eventually(port, "the static listener reaches the EDS cluster", |r| {
        r.status == 200 && r.echo().backend == "blue"
    })
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        live_after < Duration::from_secs(8),
        "live after {live_after:?}: start-up waited for the cluster's warming bound"
    );
}
