//! Dynamic configuration from files (`path_config_source`, as Envoy's
//! dynamic-config-fs example): listeners and clusters arrive, change and
//! go away while Sluice runs, through the same validation and compile steps
//! as the bootstrap; a bad resource is rejected alone and the previous
//! config keeps serving.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{get, Backend, Sluice};

fn bootstrap(dir: &Path) -> String {
    format!(
        r#"
node: {{ id: files-test, cluster: test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: ${{ADMIN}} }} }}
dynamic_resources:
  lds_config:
    path_config_source: {{ path: {lds} }}
    resource_api_version: V3
  cds_config:
    path_config_source: {{ path: {cds} }}
    resource_api_version: V3
"#,
        lds = dir.join("lds.yaml").display(),
        cds = dir.join("cds.yaml").display()
    )
}

fn cluster(name: &str, port: u16) -> String {
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  connect_timeout: 1s
  load_assignment:
    cluster_name: {name}
    endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]"#
    )
}

fn listener(name: &str, port: u16, cluster: &str, header: &str) -> String {
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: {name}
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {name}
        route_config:
          virtual_hosts:
          - name: all
            domains: ["*"]
            routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: {cluster} }} }}]
            response_headers_to_add: [{{ header: {{ key: x-generation, value: "{header}" }} }}]
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}"#
    )
}

/// Writes an xDS file atomically (write + rename), as Envoy's example does.
fn write_resources(dir: &Path, file: &str, version: &str, resources: &[String]) {
    let text = format!(
        "version_info: \"{version}\"\nresources:{}\n",
        resources.concat()
    );
    let temporary = dir.join(format!(".{file}.tmp"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join(file)).unwrap();
}

/// Polls `GET path` on `port` until `check` accepts the reply (bounded).
async fn eventually(port: u16, what: &str, check: impl Fn(Option<&support::Reply>) -> bool) {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = match tokio::net::TcpStream::connect(address).await {
            Ok(_) => Some(get(address, "x", "/").await),
            Err(_) => None,
        };
        if check(reply.as_ref()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct World {
    sluice: Sluice,
    dir: tempfile::TempDir,
    blue: Backend,
    green: Backend,
    port: u16,
}

async fn world() -> World {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    write_resources(
        dir.path(),
        "cds.yaml",
        "1",
        &[cluster("blue", blue.port()), cluster("green", green.port())],
    );
    write_resources(
        dir.path(),
        "lds.yaml",
        "1",
        &[listener("web", port, "blue", "one")],
    );
    let sluice = Sluice::start(&bootstrap(dir.path()), &[]).await;
    World {
        sluice,
        dir,
        blue,
        green,
        port,
    }
}

#[tokio::test]
async fn listeners_and_clusters_come_from_files() {
    let w = world().await;
    eventually(w.port, "the LDS listener serves", |r| {
        r.is_some_and(|r| r.status == 200 && r.echo().backend == "blue")
    })
    .await;
    let dump = w.sluice.admin_get("/config_dump").await.text();
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let listeners = &dump["configs"][2];
    assert_eq!(listeners["version_info"], "1");
    let dynamic = &listeners["dynamic_listeners"][0];
    assert_eq!(dynamic["name"], "web");
    assert_eq!(dynamic["active_state"]["version_info"], "1");
    let clusters = &dump["configs"][1]["dynamic_active_clusters"];
    assert_eq!(clusters.as_array().unwrap().len(), 2);
    let text = w.sluice.admin_get("/clusters").await.text();
    assert!(text.contains("blue::added_via_api::true"), "{text}");
    let _ = (&w.dir, &w.green);
}

#[tokio::test]
async fn a_changed_listener_routes_new_requests_the_new_way() {
    let w = world().await;
    eventually(w.port, "v1 serves", |r| r.is_some_and(|r| r.status == 200)).await;
    write_resources(
        w.dir.path(),
        "lds.yaml",
        "2",
        &[listener("web", w.port, "green", "two")],
    );
    eventually(w.port, "v2 routes to green", |r| {
        r.is_some_and(|r| r.header("x-generation") == Some("two") && r.echo().backend == "green")
    })
    .await;
    let _ = &w.blue;
}

#[tokio::test]
async fn removed_listeners_stop_and_added_ones_start() {
    let w = world().await;
    eventually(w.port, "v1 serves", |r| r.is_some_and(|r| r.status == 200)).await;
    let second = support::free_port();
    write_resources(
        w.dir.path(),
        "lds.yaml",
        "2",
        &[listener("other", second, "blue", "other")],
    );
    eventually(second, "the new listener serves", |r| {
        r.is_some_and(|r| r.status == 200)
    })
    .await;
    eventually(w.port, "the removed listener refuses", |r| r.is_none()).await;
}

#[tokio::test]
async fn a_bad_resource_is_rejected_alone_and_the_rest_applies() {
    let w = world().await;
    eventually(w.port, "v1 serves", |r| r.is_some_and(|r| r.status == 200)).await;
    let bad = cluster("broken", 1).replace("connect_timeout: 1s", "connect_timeout: 1s\n  health_checks: [{ timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} }]");
    // Removing green and adding a bad cluster: green goes, broken is rejected.
    write_resources(
        w.dir.path(),
        "cds.yaml",
        "2",
        &[cluster("blue", w.blue.port()), bad],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let clusters = w.sluice.admin_get("/clusters").await.text();
        if !clusters.contains("green::") {
            assert!(!clusters.contains("broken::"), "{clusters}");
            break;
        }
        assert!(Instant::now() < deadline, "green was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dump: serde_json::Value = serde_json::from_str(
        &w.sluice
            .admin_get("/config_dump?resource=dynamic_active_clusters")
            .await
            .text(),
    )
    .unwrap();
    let rejected = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "broken")
        .expect("the rejected cluster has an error_state");
    let details = rejected["error_state"]["details"].as_str().unwrap();
    assert!(
        details.contains("health_checks") && details.contains("not supported"),
        "{details}"
    );
    // The listener keeps serving through blue.
    assert_eq!(
        get(w.sluice.addr_of(w.port), "x", "/").await.echo().backend,
        "blue"
    );
}

#[tokio::test]
async fn a_replaced_listener_drains_its_old_connections() {
    let w = world().await;
    eventually(w.port, "v1 serves", |r| r.is_some_and(|r| r.status == 200)).await;
    let mut old = support::KeepAlive::connect(w.sluice.addr_of(w.port)).await;
    let first = old.get("x", "/").await.expect("served on the old config");
    assert_eq!(first.header("x-generation"), Some("one"));
    write_resources(
        w.dir.path(),
        "lds.yaml",
        "2",
        &[listener("web", w.port, "green", "two")],
    );
    eventually(w.port, "new connections get v2", |r| {
        r.is_some_and(|r| r.header("x-generation") == Some("two"))
    })
    .await;
    // The old connection is drained (closed within the 2 s drain time),
    // not reset mid-request: each request on it succeeds or finds it closed.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        match old.get("x", "/").await {
            Ok(reply) => {
                assert_eq!(reply.status, 200);
                assert_eq!(
                    reply.header("x-generation"),
                    Some("one"),
                    "old connections keep their config"
                );
            }
            Err(_) => break,
        }
        assert!(
            Instant::now() < deadline,
            "the old connection was never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
