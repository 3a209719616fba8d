//! Sluice's ADS client against an independent implementation: a scripted
//! Python server on grpcio + xds-protos that records every request, so the
//! protocol itself is asserted field by field: node, version_info, nonces,
//! ACK vs NACK with `error_detail` (code INVALID_ARGUMENT, naming the bad
//! resource and field), partial acceptance, EDS subscription following CDS,
//! and delta resume with `initial_resource_versions` after a stream failure.

#[path = "xds/harness.rs"]
mod harness;
#[path = "xds/python.rs"]
mod python;

use serde_json::{json, Value};
use sluice::xds::{type_urls, ApiType};

use harness::{wait_for, Client};
use python::{python_or_skip, PythonAds};

const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

fn cluster(name: &str, extra: Value) -> Value {
    let mut cluster = json!({
        "@type": type_urls::CLUSTER,
        "name": name,
        "connect_timeout": "1s",
        "type": "EDS",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
    });
    for (key, value) in extra.as_object().unwrap() {
        cluster[key] = value.clone();
    }
    cluster
}

fn wrapped(name: &str, version: &str, resource: Value) -> Value {
    json!({"name": name, "version": version, "resource": resource})
}

#[test]
fn sotw_ack_nack_and_partial_acceptance_field_by_field() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let bad = json!({"lb_policy": "CLUSTER_PROVIDED"});
    let script = json!({"streams": [[
        {"wait": type_urls::CLUSTER},
        {"send": {"version_info": "1", "nonce": "n1", "type_url": type_urls::CLUSTER,
                  "resources": [cluster("a", json!({})), cluster("b", json!({}))]}},
        {"wait": type_urls::ENDPOINT},
        {"send": {"version_info": "2", "nonce": "n2", "type_url": type_urls::CLUSTER,
                  "resources": [cluster("a", json!({"connect_timeout": "2s"})), cluster("b", bad)]}},
    ]]});
    let server = PythonAds::start(&python, &script);
    let client = Client::start(server.port, ApiType::Grpc);
    let cds = server.wait_requests(0, type_urls::CLUSTER, 3);

    // First request: wildcard, no version, no nonce, the node as configured.
    assert_eq!(cds[0]["node"]["id"], "test-node");
    assert_eq!(cds[0]["node"]["cluster"], "test");
    assert!(cds[0].get("resource_names").is_none() && cds[0].get("version_info").is_none());
    assert!(cds[0].get("response_nonce").is_none());
    // ACK of n1.
    assert_eq!(
        (&cds[1]["version_info"], &cds[1]["response_nonce"]),
        (&json!("1"), &json!("n1"))
    );
    assert!(cds[1].get("error_detail").is_none());
    // NACK of n2: previous version, the nonce, which resource and field.
    assert_eq!(
        (&cds[2]["version_info"], &cds[2]["response_nonce"]),
        (&json!("1"), &json!("n2"))
    );
    assert_eq!(cds[2]["error_detail"]["code"], 3);
    let message = cds[2]["error_detail"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("b: lb_policy: lb_policy CLUSTER_PROVIDED is not supported by Sluice"),
        "{message}"
    );
    // EDS followed CDS with exactly the clusters' names.
    let eds = server.requests_of(0, type_urls::ENDPOINT);
    assert_eq!(eds[0]["resource_names"], json!(["a", "b"]));
    // Partial acceptance: a took version 2, b kept version 1.
    let sink = client.sink.clone();
    wait_for("a at version 2", WAIT, || {
        sink.version(type_urls::CLUSTER, "a").as_deref() == Some("2")
    });
    assert_eq!(sink.version(type_urls::CLUSTER, "b").as_deref(), Some("1"));
    assert_eq!(client.counter("cluster_manager.cds.update_rejected"), 1);
    assert_eq!(client.counter("cluster_manager.cds.update_success"), 1);
    assert!(
        cds.iter().all(|r| r.get("node").is_some()),
        "Envoy sends node on every SotW request by default"
    );
}

#[test]
fn delta_nack_removal_and_resume_after_stream_failure() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let bad = json!({"lb_policy": "CLUSTER_PROVIDED"});
    let script = json!({"streams": [
        [
            {"wait": type_urls::CLUSTER},
            {"send": {"system_version_info": "s1", "nonce": "d1", "type_url": type_urls::CLUSTER,
                      "resources": [wrapped("a", "a1", cluster("a", json!({}))), wrapped("b", "b1", cluster("b", json!({})))]}},
            {"wait": type_urls::CLUSTER},
            {"send": {"system_version_info": "s2", "nonce": "d2", "type_url": type_urls::CLUSTER,
                      "removed_resources": ["a"],
                      "resources": [wrapped("c", "c1", cluster("c", bad))]}},
            {"wait": type_urls::CLUSTER},
            {"close": "UNAVAILABLE"},
        ],
        [{"wait": type_urls::CLUSTER}],
    ]});
    let server = PythonAds::start(&python, &script);
    let client = Client::start(server.port, ApiType::DeltaGrpc);
    let first = server.wait_requests(0, type_urls::CLUSTER, 3);
    assert_eq!(first[0]["node"]["id"], "test-node");
    assert!(first[0].get("initial_resource_versions").is_none());
    assert_eq!(first[1]["response_nonce"], "d1");
    assert!(first[1].get("error_detail").is_none());
    // Like Envoy 1.40 (see xds_envoy.rs), node is on every request by default.
    assert!(first.iter().all(|r| r.get("node").is_some()));
    assert_eq!(first[2]["response_nonce"], "d2");
    assert_eq!(first[2]["error_detail"]["code"], 3);
    let message = first[2]["error_detail"]["message"].as_str().unwrap();
    assert!(message.starts_with("c: lb_policy:"), "{message}");
    // EDS: subscribed to a and b, then a unsubscribed when it was removed.
    let eds = server.wait_requests(0, type_urls::ENDPOINT, 2);
    assert_eq!(eds[0]["resource_names_subscribe"], json!(["a", "b"]));
    assert_eq!(eds[1]["resource_names_unsubscribe"], json!(["a"]));

    // The server fails the stream; the client reconnects and resumes.
    let second = server.wait_requests(1, type_urls::CLUSTER, 1);
    assert_eq!(second[0]["node"]["id"], "test-node");
    assert_eq!(second[0]["initial_resource_versions"], json!({"b": "b1"}));
    let eds = server.wait_requests(1, type_urls::ENDPOINT, 1);
    assert_eq!(eds[0]["resource_names_subscribe"], json!(["b"]));
    // The last good config survived the failure.
    assert_eq!(client.sink.names(type_urls::CLUSTER), ["b"]);
    assert!(client.counter("cluster_manager.cds.update_failure") >= 1);
}
