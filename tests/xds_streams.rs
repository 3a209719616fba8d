//! LDS and CDS on streams of their own: `lds_config`/`cds_config` with an
//! `api_config_source` (GRPC or DELTA_GRPC) instead of `ads: {}`. The real
//! `sluice` daemon connects to the real `sluicectl xds serve` on its
//! per-type services (`ListenerDiscoveryService`, `ClusterDiscoveryService`),
//! gets its listener and cluster, serves traffic, and follows a cluster
//! change pushed over the CDS stream. Bad `api_config_source`s are rejected
//! at start and by `--mode validate`, naming the field.

#[path = "xds/harness.rs"]
mod harness;
mod support;

use harness::{listener_yaml, DemoServer, ResourceDir};
use support::{get_until as eventually, Backend, Sluice};

/// `api_config_source` to the `xds_cluster` static cluster.
fn own_stream(api_type: &str) -> String {
    format!(
        "{{ resource_api_version: V3, api_config_source: {{ api_type: {api_type}, transport_api_version: V3, grpc_services: [{{ envoy_grpc: {{ cluster_name: xds_cluster }} }}] }} }}"
    )
}

/// A bootstrap with the given `dynamic_resources` body and the static
/// cluster `xds_cluster` pointing at the control plane.
fn bootstrap(xds_port: u16, dynamic: &str) -> String {
    harness::control_plane_bootstrap("streams-test", "${ADMIN}", xds_port, dynamic)
}

/// A STATIC cluster resource with one endpoint.
fn static_cluster_yaml(name: &str, port: u16) -> String {
    format!(
        "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: {name}\nconnect_timeout: 1s\ntype: STATIC\nload_assignment: {{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]}}\n"
    )
}

/// Both types on their own streams (`lds_api`, `cds_api`), no ADS at all:
/// the listener and cluster arrive, traffic flows, a cluster change pushed
/// over CDS moves it.
async fn own_streams_serve_and_follow_cds(lds_api: &str, cds_api: &str, protocol_log: &str) {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("web.yaml", &static_cluster_yaml("web", blue.port()));
    dir.write("front.yaml", &listener_yaml("front", port, "web"));
    let server = DemoServer::start(dir.path(), 0);
    let dynamic = format!(
        "  lds_config: {}\n  cds_config: {}\n",
        own_stream(lds_api),
        own_stream(cds_api)
    );
    let sluice = Sluice::start(&bootstrap(server.port, &dynamic), &[]).await;
    for service in ["(LDS)", "(CDS)"] {
        server.wait_log(&[protocol_log, service]);
    }
    assert!(
        server.lines_with(&["(ADS)"]).is_empty(),
        "{}",
        server.full_log()
    );
    eventually(
        port,
        "the LDS listener reaches the CDS cluster (blue)",
        |r| r.status == 200 && r.echo().backend == "blue",
    )
    .await;

    // A change pushed over the CDS stream moves the traffic.
    dir.write("web.yaml", &static_cluster_yaml("web", green.port()));
    eventually(port, "the CDS update moves traffic to green", |r| {
        r.status == 200 && r.echo().backend == "green"
    })
    .await;

    for (stat, expected) in [
        ("cluster_manager.cds.update_success", Some(2)),
        ("listener_manager.lds.update_success", Some(1)),
        ("cluster_manager.cds.update_rejected", None),
        ("listener_manager.lds.update_rejected", None),
        // Each stream's own connection state, under its scope as Envoy
        // names it; no ADS, so nothing at the root.
        ("cluster_manager.cds.control_plane.connected_state", Some(1)),
        (
            "listener_manager.lds.control_plane.connected_state",
            Some(1),
        ),
        ("control_plane.connected_state", None),
    ] {
        let value = sluice.stat(stat).await.filter(|v| *v != 0);
        assert_eq!(value, expected, "{stat}");
    }
}

#[tokio::test]
async fn sotw_lds_and_cds_on_their_own_streams() {
    own_streams_serve_and_follow_cds("GRPC", "GRPC", "state-of-the-world stream opened").await;
}

#[tokio::test]
async fn delta_lds_and_cds_on_their_own_streams() {
    own_streams_serve_and_follow_cds("DELTA_GRPC", "DELTA_GRPC", "delta stream opened").await;
}

/// CDS on its own delta stream beside a state-of-the-world ADS stream that
/// carries LDS: each type arrives over its own stream.
#[tokio::test]
async fn own_cds_stream_beside_ads() {
    let blue = Backend::start("blue").await;
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("web.yaml", &static_cluster_yaml("web", blue.port()));
    dir.write("front.yaml", &listener_yaml("front", port, "web"));
    let server = DemoServer::start(dir.path(), 0);
    let dynamic = format!(
        "  ads_config: {{ api_type: GRPC, transport_api_version: V3, grpc_services: [{{ envoy_grpc: {{ cluster_name: xds_cluster }} }}] }}\n  lds_config: {{ ads: {{}}, resource_api_version: V3 }}\n  cds_config: {}\n",
        own_stream("DELTA_GRPC")
    );
    let _sluice = Sluice::start(&bootstrap(server.port, &dynamic), &[]).await;
    server.wait_log(&["delta stream opened (CDS)"]);
    server.wait_log(&["state-of-the-world stream opened (ADS)"]);
    server.wait_log(&["ACK delta Cluster"]);
    server.wait_log(&["ACK Listener"]);
    eventually(port, "traffic reaches blue", |r| {
        r.status == 200 && r.echo().backend == "blue"
    })
    .await;
}

/// Each bad `api_config_source` fails `--mode validate` and a normal start
/// with exit code 1 and a message naming the field.
#[test]
fn bad_api_config_sources_are_rejected_at_start() {
    let cases = [
        (
            "  lds_config: { resource_api_version: V3, api_config_source: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: nope } }] } }\n",
            "dynamic_resources.lds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: 'nope' is not a static cluster",
        ),
        (
            "  cds_config: { resource_api_version: V3, api_config_source: { api_type: DELTA_GRPC, transport_api_version: V3 } }\n",
            "dynamic_resources.cds_config.api_config_source.grpc_services: CDS needs one gRPC service",
        ),
        (
            "  cds_config: { resource_api_version: V3, api_config_source: { api_type: REST, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: xds_cluster } }] } }\n",
            "dynamic_resources.cds_config.api_config_source.api_type: api_type REST is not supported by Sluice",
        ),
    ];
    for (dynamic, expected) in cases {
        let config = bootstrap(1, dynamic).replace("${ADMIN}", "0");
        for mode in [&["--mode", "validate"][..], &["--mode", "serve"][..]] {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(mode)
                .arg("--config-yaml")
                .arg(&config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(1),
                "{mode:?} {dynamic}: {stderr}"
            );
            assert!(
                stderr.contains(expected),
                "{mode:?}: want {expected}\n{stderr}"
            );
        }
    }
}

/// Without `ads_config`, EDS and RDS have no stream to arrive on: an EDS
/// cluster pushed over the CDS stream is NACKed naming why, and the
/// cluster already in force keeps serving.
#[tokio::test]
async fn an_eds_cluster_without_ads_is_rejected_over_its_cds_stream() {
    let blue = Backend::start("blue").await;
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("web.yaml", &static_cluster_yaml("web", blue.port()));
    dir.write("front.yaml", &listener_yaml("front", port, "web"));
    let server = DemoServer::start(dir.path(), 0);
    let dynamic = format!(
        "  lds_config: {}\n  cds_config: {}\n",
        own_stream("GRPC"),
        own_stream("GRPC")
    );
    let sluice = Sluice::start(&bootstrap(server.port, &dynamic), &[]).await;
    dir.write("lazy.yaml", &harness::cluster_yaml("lazy", "1s", true));
    let nack = server.wait_log(&["NACK Cluster"]);
    assert!(
        nack.contains("lazy")
            && nack
                .contains("eds_config.ads: ADS must be configured to support an ADS config source"),
        "{nack}"
    );
    eventually(port, "web still serves", |r| {
        r.status == 200 && r.echo().backend == "blue"
    })
    .await;
    assert_eq!(
        sluice.stat("cluster_manager.cds.update_rejected").await,
        Some(1)
    );
}

/// Likewise an LDS listener whose routes come from RDS.
#[tokio::test]
async fn an_rds_listener_without_ads_is_rejected_over_its_lds_stream() {
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write(
        "front.yaml",
        &format!(
            r#""@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: front
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: front
      rds: {{ route_config_name: front-routes, config_source: {{ ads: {{}}, resource_api_version: V3 }} }}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
        ),
    );
    let server = DemoServer::start(dir.path(), 0);
    let dynamic = format!("  lds_config: {}\n", own_stream("DELTA_GRPC"));
    let _sluice = Sluice::start(&bootstrap(server.port, &dynamic), &[]).await;
    let nack = server.wait_log(&["NACK delta Listener"]);
    assert!(
        nack.contains("rds.config_source (routes 'front-routes').ads: ADS must be configured"),
        "{nack}"
    );
}
