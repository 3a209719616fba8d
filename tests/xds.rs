//! Black-box xDS tests: Sluice's ADS client (in-process, with a sink that
//! validates like the proxy) against the real `sluicectl xds serve`, both
//! state-of-the-world and delta: cold start, updates, removal, NACK with
//! `error_detail` keeping the previous version, partial acceptance, and a
//! control-plane restart with reconnect and resume.

#[path = "xds/harness.rs"]
mod harness;

use std::time::Duration;

use std::sync::Arc;

use harness::{
    cluster_yaml, endpoints_yaml, listener_yaml, wait_for, Client, DemoServer, ResourceDir,
    ValidatingSink,
};
use sluice::xds::{type_urls, ApiType};

const WAIT: Duration = Duration::from_secs(10);

fn seed(dir: &ResourceDir) {
    dir.write("static.yaml", &cluster_yaml("static", "1s", false));
    dir.write("web.yaml", &cluster_yaml("web", "1s", true));
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[8081, 8082]));
    dir.write("listener.yaml", &listener_yaml("front", 10000, "web"));
}

fn cold_start_update_and_removal(api_type: ApiType) {
    let dir = ResourceDir::new();
    seed(&dir);
    let server = DemoServer::start(dir.path(), 0);
    let client = Client::start(server.port, api_type);
    let sink = client.sink.clone();
    wait_for("clusters, endpoints and listener", WAIT, || {
        sink.names(type_urls::CLUSTER) == ["static", "web"]
            && sink.names(type_urls::ENDPOINT) == ["web"]
            && sink.names(type_urls::LISTENER) == ["front"]
    });
    assert!(client.connected());
    let ack = if api_type == ApiType::Grpc {
        "ACK Cluster"
    } else {
        "ACK delta Cluster"
    };
    server.wait_log(&[ack]);
    server.wait_log(&["ClusterLoadAssignment", "(with node)"]);

    // An endpoint change arrives as a new version.
    let before = sink.version(type_urls::ENDPOINT, "web").unwrap();
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[8083]));
    wait_for("the new endpoints", WAIT, || {
        sink.version(type_urls::ENDPOINT, "web").as_deref() != Some(&before)
    });

    // Removing a cluster's file removes the cluster (SotW: absent; delta: removed_resources).
    dir.remove("static.yaml");
    wait_for("cluster removal", WAIT, || {
        sink.names(type_urls::CLUSTER) == ["web"]
    });
    dir.remove("listener.yaml");
    wait_for("listener removal", WAIT, || {
        sink.names(type_urls::LISTENER).is_empty()
    });
    assert_eq!(client.counter("cluster_manager.cds.update_rejected"), 0);
    assert!(client.counter("cluster_manager.cds.update_success") >= 2);
    assert!(client.counter("listener_manager.lds.update_success") >= 2);
    assert!(
        client.counter("cluster.web.update_success") >= 2,
        "EDS stats per cluster"
    );
}

#[test]
fn sotw_cold_start_update_and_removal() {
    cold_start_update_and_removal(ApiType::Grpc);
}

#[test]
fn delta_cold_start_update_and_removal() {
    cold_start_update_and_removal(ApiType::DeltaGrpc);
}

fn nack_keeps_previous_and_accepts_the_rest(api_type: ApiType) {
    let dir = ResourceDir::new();
    seed(&dir);
    let server = DemoServer::start(dir.path(), 0);
    let client = Client::start(server.port, api_type);
    let sink = client.sink.clone();
    wait_for("cold start", WAIT, || {
        sink.names(type_urls::CLUSTER).len() == 2
    });
    let web_before = sink.version(type_urls::CLUSTER, "web").unwrap();
    let static_before = sink.version(type_urls::CLUSTER, "static").unwrap();

    // One push: web changes validly, static becomes invalid (CLUSTER_PROVIDED
    // is not implemented), and a new invalid cluster appears.
    dir.write("web.yaml", &cluster_yaml("web", "3s", true));
    dir.write(
        "static.yaml",
        &format!(
            "{}lb_policy: CLUSTER_PROVIDED\n",
            cluster_yaml("static", "1s", false)
        ),
    );
    dir.write(
        "new.yaml",
        &format!(
            "{}lb_policy: CLUSTER_PROVIDED\n",
            cluster_yaml("new", "1s", false)
        ),
    );
    let nack = server.wait_log(&["NACK", "Cluster"]);
    assert!(
        nack.contains("static: lb_policy: lb_policy CLUSTER_PROVIDED is not supported by Sluice"),
        "{nack}"
    );
    assert!(nack.contains("new: lb_policy"), "{nack}");
    // Valid resources applied, the rejected one kept its previous version, the new bad one absent.
    wait_for("web updated", WAIT, || {
        sink.version(type_urls::CLUSTER, "web").as_deref() != Some(&web_before)
    });
    assert_eq!(
        sink.version(type_urls::CLUSTER, "static").unwrap(),
        static_before
    );
    assert_eq!(sink.names(type_urls::CLUSTER), ["static", "web"]);
    assert_eq!(client.counter("cluster_manager.cds.update_rejected"), 1);
    if api_type == ApiType::Grpc {
        // SotW NACK repeats the last accepted version_info.
        let kept = nack
            .split("(kept ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .to_string();
        let acked = server.lines_with(&["ACK Cluster version"]);
        assert!(
            acked
                .iter()
                .any(|l| l.contains(&format!("version {kept} "))),
            "{kept} in {acked:#?}"
        );
    }

    // Fixing the file clears the rejection.
    dir.write("static.yaml", &cluster_yaml("static", "2s", false));
    dir.remove("new.yaml");
    wait_for("static updated", WAIT, || {
        sink.version(type_urls::CLUSTER, "static").as_deref() != Some(&static_before)
    });
}

#[test]
fn sotw_nack_keeps_previous_and_accepts_the_rest() {
    nack_keeps_previous_and_accepts_the_rest(ApiType::Grpc);
}

#[test]
fn delta_nack_keeps_previous_and_accepts_the_rest() {
    nack_keeps_previous_and_accepts_the_rest(ApiType::DeltaGrpc);
}

fn server_restart_reconnects_and_resumes(api_type: ApiType) {
    let dir = ResourceDir::new();
    seed(&dir);
    let server = DemoServer::start(dir.path(), 0);
    let port = server.port;
    let client = Client::start(port, api_type);
    let sink = client.sink.clone();
    wait_for("cold start", WAIT, || {
        sink.names(type_urls::LISTENER) == ["front"] && !sink.names(type_urls::ENDPOINT).is_empty()
    });
    let ack = if api_type == ApiType::Grpc {
        "ACK ClusterLoadAssignment"
    } else {
        "ACK delta ClusterLoadAssignment"
    };
    server.wait_log(&[ack]);
    let cds_version = server.lines_with(&["sent", "Cluster "]).remove(0);
    server.stop();
    wait_for("disconnected", WAIT, || !client.connected());
    // The last good config stays while the control plane is away.
    assert_eq!(sink.names(type_urls::CLUSTER), ["static", "web"]);
    assert!(client.counter("cluster_manager.cds.update_failure") >= 1);
    let applies = sink.apply_count();

    let server = DemoServer::start(dir.path(), port);
    wait_for("reconnected", WAIT, || client.connected());
    if api_type == ApiType::Grpc {
        // SotW resumes from the last accepted version; the server answers anyway.
        let subscribe = server.wait_log(&["subscribe Cluster", "from version_info"]);
        let version = cds_version
            .split("version ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(
            subscribe.contains(&format!("\"{version}\"")),
            "{subscribe} vs {cds_version}"
        );
        server.wait_log(&["ACK ClusterLoadAssignment"]);
    } else {
        // Delta resumes with initial_resource_versions: nothing is resent.
        let subscribe = server.wait_log(&["delta subscribe Cluster"]);
        assert!(subscribe.contains("holding 2 resources"), "{subscribe}");
        server.wait_log(&[
            "delta subscribe ClusterLoadAssignment",
            "holding 1 resources",
        ]);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            sink.apply_count(),
            applies,
            "unchanged resources were not resent:\n{}",
            server.full_log()
        );
    }
    // And updates flow again.
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[9000]));
    let before = sink.version(type_urls::ENDPOINT, "web").unwrap();
    wait_for("update after restart", WAIT, || {
        sink.version(type_urls::ENDPOINT, "web").as_deref() != Some(&before)
    });
}

#[test]
fn sotw_server_restart_reconnects_and_resumes() {
    server_restart_reconnects_and_resumes(ApiType::Grpc);
}

#[test]
fn delta_server_restart_reconnects_and_resumes() {
    server_restart_reconnects_and_resumes(ApiType::DeltaGrpc);
}

#[test]
fn no_control_plane_backs_off_and_connects_when_it_appears() {
    let port = harness_free_port();
    let client = Client::start(port, ApiType::Grpc);
    wait_for("a failed attempt", WAIT, || {
        client.counter("cluster_manager.cds.update_failure") >= 2
    });
    assert!(!client.connected());
    let dir = ResourceDir::new();
    seed(&dir);
    let _server = DemoServer::start(dir.path(), port);
    wait_for("late cold start", WAIT, || {
        client.sink.names(type_urls::LISTENER) == ["front"]
    });
}

#[test]
fn serve_rejects_a_bad_folder_with_every_error() {
    let dir = ResourceDir::new();
    dir.write("typo.yaml", "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: a\nconect_timeout: 1s\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .args(["xds", "serve"])
        .arg(dir.path())
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("typo.yaml: unrecognized field name 'conect_timeout' at line 3"),
        "{stderr}"
    );
}

#[test]
fn serve_keeps_serving_when_a_change_does_not_load() {
    let dir = ResourceDir::new();
    seed(&dir);
    let server = DemoServer::start(dir.path(), 0);
    let client = Client::start(server.port, ApiType::Grpc);
    wait_for("cold start", WAIT, || {
        client.sink.names(type_urls::LISTENER) == ["front"]
    });
    dir.write(
        "broken.yaml",
        "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: [\n",
    );
    server.wait_log(&["does not load; still serving the previous resources"]);
    dir.remove("broken.yaml");
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[7000]));
    let before = client.sink.version(type_urls::ENDPOINT, "web").unwrap();
    wait_for("the next good change", WAIT, || {
        client.sink.version(type_urls::ENDPOINT, "web").as_deref() != Some(&before)
    });
}

fn harness_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn routes_follow_the_subscription(api_type: ApiType) {
    let dir = ResourceDir::new();
    let route = |name: &str| {
        format!("\"@type\": type.googleapis.com/envoy.config.route.v3.RouteConfiguration\nname: {name}\nvirtual_hosts: [{{name: all, domains: ['*'], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}}}]}}]\n")
    };
    dir.write("r1.yaml", &route("r1"));
    dir.write("r2.yaml", &route("r2"));
    let server = DemoServer::start(dir.path(), 0);
    let sink = Arc::new(ValidatingSink::default());
    sink.routes.lock().unwrap().insert("r1".into());
    let client = Client::start_with(server.port, api_type, sink.clone());
    wait_for("route r1", WAIT, || sink.names(type_urls::ROUTE) == ["r1"]);
    // r2 was never asked for and never applied.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.names(type_urls::ROUTE), ["r1"]);
    dir.remove("r1.yaml");
    if api_type == ApiType::Grpc {
        // SotW: a route config absent from a response is not removed (by name only).
        server.wait_log(&["sent RouteConfiguration", "(0 resources)"]);
        wait_for("the empty push ACKed", WAIT, || {
            server.lines_with(&["ACK RouteConfiguration"]).len() >= 2
        });
        assert_eq!(sink.names(type_urls::ROUTE), ["r1"]);
    } else {
        // Delta: the server names it in removed_resources.
        wait_for("r1 removed", WAIT, || {
            sink.names(type_urls::ROUTE).is_empty()
        });
    }
    drop(client);
}

#[test]
fn sotw_routes_follow_the_subscription() {
    routes_follow_the_subscription(ApiType::Grpc);
}

#[test]
fn delta_routes_follow_the_subscription() {
    routes_follow_the_subscription(ApiType::DeltaGrpc);
}

/// A bootstrap with `dynamic_resources` validates; mistakes in it name
/// their path.
#[test]
fn dynamic_resources_validate_with_paths() {
    let base = "static_resources:\n  clusters:\n  - name: xds\n    connect_timeout: 1s\n    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]}\n";
    let validate = |dynamic: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--mode", "validate", "--config-yaml"])
            .arg(format!("{base}{dynamic}"))
            .output()
            .unwrap()
    };
    let ads = "dynamic_resources:\n  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}\n  cds_config: {ads: {}, resource_api_version: V3}\n";
    let output = validate(ads);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = validate(&ads.replace("cluster_name: xds", "cluster_name: nope"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        stderr.contains("dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: 'nope' is not a static cluster"),
        "{stderr}"
    );
}
