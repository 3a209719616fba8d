//! EDS and RDS on streams of their own: a cluster's `eds_config` or a
//! connection manager's `rds.config_source` with an `api_config_source`
//! (GRPC or DELTA_GRPC) naming a second control plane. The real `sluice`
//! gets listeners and clusters over ADS from one `sluicectl xds serve` and
//! endpoints or routes over `EndpointDiscoveryService` /
//! `RouteDiscoveryService` from another; a change there moves traffic; when
//! the second control plane dies the last config keeps serving, the
//! stream's `control_plane.connected_state` (under the cluster's scope, as
//! Envoy names it: `cluster.<name>.control_plane.connected_state`) drops to
//! 0 while ADS's own (the root one) stays 1, and it reconnects (back to 1)
//! when the control plane returns. Bad shapes are rejected by path.

#[path = "xds/harness.rs"]
mod harness;
mod support;

use std::time::{Duration, Instant};

use harness::{endpoints_yaml, DemoServer, ResourceDir};
use support::{get, get_until as eventually, Backend, Reply, Sluice};

/// An `api_config_source` to the static cluster `side_cp`.
fn side_source(api_type: &str) -> String {
    format!(
        "{{ resource_api_version: V3, api_config_source: {{ api_type: {api_type}, transport_api_version: V3, grpc_services: [{{ envoy_grpc: {{ cluster_name: side_cp }} }}] }} }}"
    )
}

/// A bootstrap with ADS (`api_type`) to `xds_cluster` and a second static
/// control-plane cluster `side_cp` at `side_port`.
fn bootstrap(xds_port: u16, side_port: u16, api_type: &str) -> String {
    let base = harness::control_plane_bootstrap(
        "sources-test",
        "${ADMIN}",
        xds_port,
        &harness::ads_dynamic_resources(api_type),
    );
    format!(
        "{base}  - name: side_cp
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: side_cp
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {side_port} }} }} }} }}] }}]
"
    )
}

/// An EDS cluster whose endpoints come from `side_cp`.
fn eds_cluster_yaml(name: &str, api_type: &str) -> String {
    format!(
        "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: {name}\nconnect_timeout: 1s\ntype: EDS\neds_cluster_config: {{eds_config: {}}}\n",
        side_source(api_type)
    )
}

fn static_cluster_yaml(name: &str, port: u16) -> String {
    format!(
        "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: {name}\nconnect_timeout: 1s\ntype: STATIC\nload_assignment: {{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]}}\n"
    )
}

/// An HTTP listener whose routes `routes` come from `config_source`.
fn http_listener_yaml(name: &str, port: u16, routes: &str, config_source: &str) -> String {
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
      rds: {{ route_config_name: {routes}, config_source: {config_source} }}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

fn routes_yaml(name: &str, cluster: &str) -> String {
    format!(
        "\"@type\": type.googleapis.com/envoy.config.route.v3.RouteConfiguration\nname: {name}\nvirtual_hosts: [{{name: all, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: {cluster}}}}}]}}]\n"
    )
}

/// Waits until the stat `name` reads `value` (bounded).
async fn stat_becomes(sluice: &Sluice, name: &str, value: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while sluice.stat(name).await != Some(value) {
        assert!(
            Instant::now() < deadline,
            "{name} never became {value} (is {:?})",
            sluice.stat(name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn backend_is(name: &'static str) -> impl Fn(&Reply) -> bool {
    move |r: &Reply| r.status == 200 && r.echo().backend == name
}

/// ADS delivers an EDS cluster and a TCP listener to it; the cluster's
/// endpoints come over an EDS stream of its own (`side_api`) from a second
/// control plane, which then changes them, dies and comes back.
async fn eds_on_its_own_stream(ads_api: &str, side_api: &str, protocol_log: &str) {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let (main_dir, side_dir) = (ResourceDir::new(), ResourceDir::new());
    let port = support::free_port();
    main_dir.write("web.yaml", &eds_cluster_yaml("web", side_api));
    main_dir.write("front.yaml", &harness::listener_yaml("front", port, "web"));
    side_dir.write("web-eds.yaml", &endpoints_yaml("web", &[blue.port()]));
    let main = DemoServer::start(main_dir.path(), 0);
    let side = DemoServer::start(side_dir.path(), 0);
    let side_port = side.port;
    let sluice = Sluice::start(&bootstrap(main.port, side_port, ads_api), &[]).await;
    side.wait_log(&[protocol_log, "(EDS)"]);
    eventually(
        port,
        "EDS endpoints from the side stream serve",
        backend_is("blue"),
    )
    .await;
    assert!(
        main.lines_with(&["ClusterLoadAssignment"]).is_empty(),
        "EDS went to the ADS server:\n{}",
        main.full_log()
    );
    stat_becomes(&sluice, "cluster.web.control_plane.connected_state", 1).await;
    stat_becomes(&sluice, "control_plane.connected_state", 1).await;

    side_dir.write("web-eds.yaml", &endpoints_yaml("web", &[green.port()]));
    eventually(
        port,
        "an endpoint change moves traffic",
        backend_is("green"),
    )
    .await;

    // A second cluster with the same source, added over ADS later, is
    // subscribed to on the same stream (one stream per distinct source).
    side_dir.write("web2-eds.yaml", &endpoints_yaml("web2", &[blue.port()]));
    main_dir.write("web2.yaml", &eds_cluster_yaml("web2", side_api));
    let host = format!("web2::127.0.0.1:{}::", blue.port());
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sluice.admin_get("/clusters").await.text().contains(&host) {
        assert!(Instant::now() < deadline, "web2 never got its endpoint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        side.lines_with(&["stream opened (EDS)"]).len(),
        1,
        "{}",
        side.full_log()
    );
    if side_api == "GRPC" {
        side.wait_log(&["resubscribe ClusterLoadAssignment [web, web2]"]);
    }
    // The cluster goes: its name is unsubscribed, the stream stays for web.
    main_dir.remove("web2.yaml");
    if side_api == "GRPC" {
        side.wait_log(&["resubscribe ClusterLoadAssignment [web] at"]);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while sluice
        .admin_get("/clusters")
        .await
        .text()
        .contains("web2::")
    {
        assert!(Instant::now() < deadline, "web2 never went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    side.stop();
    stat_becomes(&sluice, "cluster.web.control_plane.connected_state", 0).await;
    assert_eq!(sluice.stat("control_plane.connected_state").await, Some(1));
    for _ in 0..5 {
        let reply = get(std::net::SocketAddr::from(([127, 0, 0, 1], port)), "x", "/").await;
        assert!(
            backend_is("green")(&reply),
            "the last endpoints keep serving"
        );
    }
    side_dir.write("web-eds.yaml", &endpoints_yaml("web", &[blue.port()]));
    let side = DemoServer::start(side_dir.path(), side_port);
    eventually(
        port,
        "the side stream reconnects and resumes",
        backend_is("blue"),
    )
    .await;
    stat_becomes(&sluice, "cluster.web.control_plane.connected_state", 1).await;
    stat_becomes(&sluice, "control_plane.connected_state", 1).await;
    assert!(sluice.stat("cluster.web.update_success").await >= Some(2));
    let _ = (&side, &green);
}

#[tokio::test]
async fn eds_on_its_own_sotw_stream() {
    eds_on_its_own_stream("DELTA_GRPC", "GRPC", "state-of-the-world stream opened").await;
}

#[tokio::test]
async fn eds_on_its_own_delta_stream() {
    eds_on_its_own_stream("GRPC", "DELTA_GRPC", "delta stream opened").await;
}

/// ADS delivers an HTTP listener and two clusters; the listener's routes
/// come over an RDS stream of its own from a second control plane, whose
/// route change moves traffic. Removing the listener unsubscribes.
async fn rds_on_its_own_stream(side_api: &str, protocol_log: &str) {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let (main_dir, side_dir) = (ResourceDir::new(), ResourceDir::new());
    let port = support::free_port();
    main_dir.write("blue.yaml", &static_cluster_yaml("blue", blue.port()));
    main_dir.write("green.yaml", &static_cluster_yaml("green", green.port()));
    main_dir.write(
        "front.yaml",
        &http_listener_yaml("front", port, "front-routes", &side_source(side_api)),
    );
    side_dir.write("routes.yaml", &routes_yaml("front-routes", "blue"));
    let main = DemoServer::start(main_dir.path(), 0);
    let side = DemoServer::start(side_dir.path(), 0);
    let sluice = Sluice::start(&bootstrap(main.port, side.port, "GRPC"), &[]).await;
    side.wait_log(&[protocol_log, "(RDS)"]);
    eventually(
        port,
        "routes from the side stream serve",
        backend_is("blue"),
    )
    .await;
    assert!(
        main.lines_with(&["RouteConfiguration"]).is_empty(),
        "RDS went to the ADS server:\n{}",
        main.full_log()
    );
    side_dir.write("routes.yaml", &routes_yaml("front-routes", "green"));
    eventually(port, "a route change moves traffic", backend_is("green")).await;
    stat_becomes(
        &sluice,
        "http.front.rds.front-routes.control_plane.connected_state",
        1,
    )
    .await;
    // Both responses count, the first one too (it arrives while the
    // listener warms).
    assert_eq!(
        sluice
            .stat("http.front.rds.front-routes.update_success")
            .await,
        Some(2)
    );
    // The listener goes: nothing uses the source any more, its stream stops.
    main_dir.remove("front.yaml");
    let stopped =
        format!("RouteConfiguration stream ({side_api} via cluster 'side_cp') no longer used");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sluice.log().contains(&stopped) {
        assert!(
            Instant::now() < deadline,
            "the RDS stream never stopped:\n{}\n{}\n{}",
            sluice.log(),
            sluice.admin_get("/listeners").await.text(),
            main.full_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = (&side, &blue);
}

#[tokio::test]
async fn rds_on_its_own_sotw_stream() {
    rds_on_its_own_stream("GRPC", "state-of-the-world stream opened").await;
}

#[tokio::test]
async fn rds_on_its_own_delta_stream() {
    rds_on_its_own_stream("DELTA_GRPC", "delta stream opened").await;
}

/// Bad EDS/RDS sources: each is NACKed over ADS naming the field, and
/// what is in force keeps serving.
#[tokio::test]
async fn bad_eds_and_rds_sources_are_nacked_by_path() {
    let dir = ResourceDir::new();
    let side_dir = ResourceDir::new();
    let server = DemoServer::start(dir.path(), 0);
    let side = DemoServer::start(side_dir.path(), 0);
    let _sluice = Sluice::start(&bootstrap(server.port, side.port, "GRPC"), &[]).await;
    let cases = [
        (
            "rest.yaml",
            eds_cluster_yaml("rest", "REST"),
            "eds_cluster_config.eds_config.api_config_source.api_type",
        ),
        (
            "self.yaml",
            "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: myself\nconnect_timeout: 1s\ntype: EDS\neds_cluster_config: {eds_config: {resource_api_version: V3, self: {}}}\n".to_string(),
            "eds_cluster_config.eds_config.self",
        ),
        (
            "unknown.yaml",
            eds_cluster_yaml("unknown", "GRPC").replace("side_cp", "nope"),
            "eds_cluster_config.eds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: 'nope' is not a static cluster",
        ),
        (
            "listener.yaml",
            http_listener_yaml("front", support::free_port(), "r", &side_source("REST")),
            "rds.config_source.api_config_source.api_type",
        ),
    ];
    for (file, yaml, expected) in cases {
        dir.write(file, &yaml);
        let nack = server.wait_log(&["NACK", expected]);
        assert!(nack.contains(expected), "{nack}");
        dir.remove(file);
    }
}

/// A bootstrap without `dynamic_resources`: a static EDS cluster and a
/// static listener's routes come from `path_config_source` files, which are
/// watched: a change to either moves traffic.
#[tokio::test]
async fn eds_and_rds_from_watched_files() {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let dir = ResourceDir::new();
    let (eds_file, rds_file) = (dir.path().join("eds.yaml"), dir.path().join("rds.yaml"));
    let eds = |cluster: &str, port: u16| {
        format!(
            "version_info: '{port}'\nresources:\n- {}",
            endpoints_yaml(cluster, &[port]).replace('\n', "\n  ")
        )
    };
    let rds = |cluster: &str| {
        format!(
            "version_info: '{cluster}'\nresources:\n- {}",
            routes_yaml("r", cluster).replace('\n', "\n  ")
        )
    };
    dir.write("eds.yaml", &eds("by-file", blue.port()));
    dir.write("rds.yaml", &rds("by-file"));
    let port = support::free_port();
    let file_source = |path: &std::path::Path| {
        format!(
            "{{ resource_api_version: V3, path_config_source: {{ path: '{}' }} }}",
            path.display()
        )
    };
    let listener = http_listener_yaml("front", port, "r", &file_source(&rds_file))
        .replace(
            "\"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n",
            "",
        )
        .replace('\n', "\n    ");
    let config = format!(
        "admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: ${{ADMIN}} }} }} }}\nstatic_resources:\n  clusters:\n  - name: by-file\n    connect_timeout: 1s\n    type: EDS\n    eds_cluster_config: {{ eds_config: {} }}\n  - name: direct\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment: {{cluster_name: direct, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}\n  listeners:\n  - {listener}\n",
        file_source(&eds_file),
        green.port()
    );
    let sluice = Sluice::start(&config, &[]).await;
    eventually(
        port,
        "routes and endpoints from files serve",
        backend_is("blue"),
    )
    .await;
    dir.write("eds.yaml", &eds("by-file", green.port()));
    eventually(
        port,
        "an endpoint file change moves traffic",
        backend_is("green"),
    )
    .await;
    dir.write("eds.yaml", &eds("by-file", blue.port()));
    eventually(port, "endpoints back to blue", backend_is("blue")).await;
    dir.write("rds.yaml", &rds("direct"));
    eventually(
        port,
        "a route file change moves traffic",
        backend_is("green"),
    )
    .await;
    assert!(sluice.log().contains("watching"), "{}", sluice.log());
}

/// `ads: {}` for EDS or RDS in the bootstrap without `ads_config`, or an
/// `api_config_source` naming no static cluster: rejected at start and by
/// `--mode validate`, naming the field.
#[test]
fn bootstraps_with_unusable_sources_are_rejected() {
    let admin = "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n";
    let listener = |source: &str| {
        format!(
            "  listeners:\n  - name: l\n    address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}\n    filter_chains:\n    - filters:\n      - name: hcm\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          stat_prefix: x\n          rds: {{route_config_name: r, config_source: {source}}}\n          http_filters: [{{name: envoy.filters.http.router, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]\n",
            support::free_port()
        )
    };
    let cases = [
        (
            format!("{admin}static_resources:\n  clusters:\n  - name: e\n    type: EDS\n    eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}\n"),
            "static_resources.clusters[0].eds_cluster_config.eds_config.ads: ADS must be configured to support an ADS config source",
        ),
        (
            format!("{admin}static_resources:\n{}", listener("{ads: {}, resource_api_version: V3}")),
            "rds.config_source.ads: ADS must be configured to support an ADS config source",
        ),
        (
            format!("{admin}static_resources:\n{}", listener(&side_source("GRPC"))),
            "rds.config_source.api_config_source.grpc_services[0].envoy_grpc.cluster_name: 'side_cp' is not a static cluster",
        ),
        (
            format!("{admin}dynamic_resources:\n  cds_config: {{ads: {{}}, resource_api_version: V3}}\n"),
            "dynamic_resources.cds_config.ads: ADS must be configured",
        ),
    ];
    for (yaml, expected) in cases {
        for mode in [&["--mode", "validate"][..], &["--mode", "serve"][..]] {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["--config-yaml", &yaml])
                .args(mode)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{mode:?} accepted:\n{yaml}");
            assert!(
                stderr.contains(expected),
                "{mode:?}: want {expected}\n{stderr}"
            );
        }
    }
}

/// `rate_limit_settings` on the ADS source: with one token refilled twice a
/// second, the daemon's first burst of requests (CDS, LDS, EDS, their
/// ACKs) is paced: `control_plane.rate_limit_enforced` counts, and the
/// config still arrives and serves.
#[tokio::test]
async fn rate_limit_settings_pace_the_requests() {
    let blue = Backend::start("blue").await;
    let dir = ResourceDir::new();
    let port = support::free_port();
    dir.write("web.yaml", &static_cluster_yaml("web", blue.port()));
    dir.write("front.yaml", &harness::listener_yaml("front", port, "web"));
    let server = DemoServer::start(dir.path(), 0);
    let config = harness::control_plane_bootstrap(
        "rate-test",
        "${ADMIN}",
        server.port,
        &harness::ads_dynamic_resources("GRPC").replace(
            "transport_api_version: V3\n",
            "transport_api_version: V3\n    rate_limit_settings: { max_tokens: 1, fill_rate: 4 }\n",
        ),
    );
    let sluice = Sluice::start(&config, &[]).await;
    eventually(port, "paced config serves", backend_is("blue")).await;
    // On the ADS stream: at the root, as Envoy names it.
    let enforced = sluice.stat("control_plane.rate_limit_enforced").await;
    assert!(enforced >= Some(1), "{enforced:?}");
    stat_becomes(&sluice, "control_plane.pending_requests", 0).await;
}

/// Differential: Envoy and Sluice, same bootstrap (ADS for clusters, EDS
/// on a stream of its own to a second control plane), same servers. Both
/// get the endpoints and name the stream's state alike; when the second
/// control plane dies both show it under `cluster.web.control_plane.`,
/// not at the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_and_sluice_name_a_separate_eds_stream_alike() {
    let Some(envoy_binary) = support::envoy_binary_or_skip() else {
        return;
    };
    let (main_dir, side_dir) = (ResourceDir::new(), ResourceDir::new());
    main_dir.write("web.yaml", &eds_cluster_yaml("web", "GRPC"));
    side_dir.write("web-eds.yaml", &endpoints_yaml("web", &[9]));
    let main = DemoServer::start(main_dir.path(), 0);
    let side = DemoServer::start(side_dir.path(), 0);
    let config = bootstrap(main.port, side.port, "GRPC");
    let envoy = support::Envoy::start(&envoy_binary, &config, &[]).await;
    let sluice = Sluice::start(&config, &[]).await;
    let stats = [
        "control_plane.connected_state",
        "cluster.web.control_plane.connected_state",
        "cluster.web.update_success",
        "cluster.web.membership_total",
    ];
    stats_agree(&envoy, &sluice, &stats, &[1, 1, 1, 1]).await;
    side.stop();
    stats_agree(&envoy, &sluice, &stats, &[1, 0, 1, 1]).await;
    drop(main);
}

/// Waits (bounded) until Envoy and Sluice both read `values` for `names`.
async fn stats_agree(envoy: &support::Envoy, sluice: &Sluice, names: &[&str], values: &[i64]) {
    let wanted: Vec<_> = values.iter().map(|v| Some(*v)).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (mut from_envoy, mut from_sluice) = (Vec::new(), Vec::new());
        for name in names {
            from_envoy.push(envoy.stat(name).await);
            from_sluice.push(sluice.stat(name).await);
        }
        if from_envoy == wanted && from_sluice == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?}: want {wanted:?}, Envoy {from_envoy:?}, Sluice {from_sluice:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
