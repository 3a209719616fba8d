//! Differential xDS test: Envoy 1.40 and Sluice's ADS client connect to the
//! same `sluicectl xds serve` and must judge every push alike: ACK the same
//! versions on cold start and after an update, and NACK the same bad push
//! (keeping the previous version). State-of-the-world and delta.

#[path = "xds/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::{
    cluster_yaml, endpoints_yaml, listener_yaml, wait_for, Client, DemoServer, ResourceDir,
};
use sluice::xds::ApiType;
use support::{envoy_binary_or_skip, free_port, Envoy};

const ENVOY_BOOTSTRAP: &str = r#"
node: {id: envoy-differential, cluster: differential}
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

/// The peer address of each stream, in the order the streams opened.
fn peers(server: &DemoServer) -> Vec<String> {
    server
        .lines_with(&["stream opened"])
        .iter()
        .filter_map(|line| {
            line.strip_prefix("xds: ")?
                .split(": ")
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// (verdict, type, version) of every ACK/NACK a peer sent. Delta lines have
/// no version: the nonce-free verdict per type is what is compared there.
fn verdicts(server: &DemoServer, peer: &str) -> BTreeSet<(String, String, String)> {
    server
        .lines_with(&[&format!("xds: {peer}: ")])
        .iter()
        .filter_map(|line| {
            let rest = line.split(": ").nth(2)?;
            let mut words = rest.split_whitespace();
            let verdict = words.next()?;
            if verdict != "ACK" && verdict != "NACK" {
                return None;
            }
            let mut kind = words.next()?;
            if kind == "delta" {
                kind = words.next()?;
                return Some((verdict.to_string(), kind.to_string(), String::new()));
            }
            let version = if words.next()? == "version" {
                words.next()?
            } else {
                ""
            };
            Some((verdict.to_string(), kind.to_string(), version.to_string()))
        })
        .collect()
}

async fn envoy_and_sluice_judge_pushes_alike(api_type: ApiType) {
    let Some(envoy_binary) = envoy_binary_or_skip() else {
        return;
    };
    let dir = ResourceDir::new();
    let listener_port = free_port();
    dir.write("static.yaml", &cluster_yaml("static", "1s", false));
    dir.write("web.yaml", &cluster_yaml("web", "1s", true));
    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[8081]));
    dir.write(
        "listener.yaml",
        &listener_yaml("front", listener_port, "web"),
    );
    let server = DemoServer::start(dir.path(), 0);
    let api = if api_type == ApiType::Grpc {
        "GRPC"
    } else {
        "DELTA_GRPC"
    };
    let envoy = Envoy::start(
        &envoy_binary,
        &ENVOY_BOOTSTRAP.replace("API_TYPE", api),
        &[("XDS", server.port)],
    )
    .await;
    wait_for("Envoy's stream", Duration::from_secs(10), || {
        peers(&server).len() == 1
    });
    let client = Client::start(server.port, api_type);
    wait_for("Sluice's stream", Duration::from_secs(10), || {
        peers(&server).len() == 2
    });
    let (envoy_peer, sluice_peer) = (peers(&server)[0].clone(), peers(&server)[1].clone());
    // Waits until both peers have judged alike, with at least `min` verdicts.
    let same = |what: &str, server: &DemoServer, min: usize| {
        let mut last = (BTreeSet::new(), BTreeSet::new());
        let agreed = (0..500).any(|_| {
            last = (
                verdicts(server, &envoy_peer),
                verdicts(server, &sluice_peer),
            );
            if last.0 == last.1 && last.0.len() >= min {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
            false
        });
        assert!(
            agreed,
            "{what}: Envoy {:#?}\nSluice {:#?}\nserver log:\n{}",
            last.0,
            last.1,
            server.full_log()
        );
        last.0
    };
    let cold = same("cold start", &server, 3);
    assert!(
        cold.iter().all(|(verdict, _, _)| verdict == "ACK"),
        "{cold:?}"
    );
    assert_eq!(
        cold.iter()
            .map(|(_, kind, _)| kind.as_str())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["Cluster", "ClusterLoadAssignment", "Listener"])
    );

    dir.write("web-endpoints.yaml", &endpoints_yaml("web", &[8081, 8082]));
    // SotW: the new ClusterLoadAssignment version is one more ACK each.
    let sotw = usize::from(api_type == ApiType::Grpc);
    let updated = same("endpoint update", &server, cold.len() + sotw);

    // A push with a cluster both must refuse (CLUSTER_PROVIDED on a STATIC cluster).
    dir.write(
        "bad.yaml",
        &format!(
            "{}lb_policy: CLUSTER_PROVIDED\n",
            cluster_yaml("bad", "1s", false)
        ),
    );
    server.wait_log(&[&format!("xds: {envoy_peer}: NACK"), "Cluster"]);
    server.wait_log(&[&format!("xds: {sluice_peer}: NACK"), "Cluster"]);
    let judged = same("bad push", &server, updated.len() + 1);
    assert!(judged
        .iter()
        .any(|(verdict, kind, _)| verdict == "NACK" && kind == "Cluster"));
    eprintln!(
        "Envoy's NACK: {}\nSluice's NACK: {}",
        server.lines_with(&[&format!("xds: {envoy_peer}: NACK")])[0],
        server.lines_with(&[&format!("xds: {sluice_peer}: NACK")])[0]
    );
    drop(client);
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_envoy_and_sluice_ack_and_nack_the_same_versions() {
    envoy_and_sluice_judge_pushes_alike(ApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_envoy_and_sluice_ack_and_nack_alike() {
    envoy_and_sluice_judge_pushes_alike(ApiType::DeltaGrpc).await;
}
