//! The delta state machine against a fake sink.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};
use envoy_types::pb::google::protobuf::Any;

use super::super::resource::type_urls::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use super::super::test_sink::{cluster, endpoints, FakeSink};
use super::*;
use crate::stats::Store;

fn client() -> DeltaClient {
    let node = Node {
        id: "n1".into(),
        ..Default::default()
    };
    DeltaClient::new(&[CLUSTER, ENDPOINT, LISTENER, ROUTE], node, true)
}

fn wrap(name: &str, version: &str, body: Any) -> WireResource {
    WireResource {
        name: name.into(),
        version: version.into(),
        resource: Some(body),
        ..Default::default()
    }
}

fn response(
    type_url: &str,
    nonce: &str,
    resources: Vec<WireResource>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: "sys".into(),
        resources,
        type_url: type_url.into(),
        removed_resources: removed.iter().map(|s| s.to_string()).collect(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

fn only(requests: &[DeltaDiscoveryRequest], type_url: &str) -> DeltaDiscoveryRequest {
    let matching: Vec<_> = requests.iter().filter(|r| r.type_url == type_url).collect();
    assert_eq!(matching.len(), 1, "one {type_url} request in {requests:#?}");
    matching[0].clone()
}

#[test]
fn node_on_the_first_request_only_when_asked() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client();
    let requests = client.start_stream(&sink, &stats);
    assert_eq!(requests.len(), 2);
    assert!(requests[0].node.is_some() && requests[1].node.is_none());
    assert!(requests
        .iter()
        .all(|r| r.resource_names_subscribe.is_empty()));
    let requests = client.handle_response(
        response(CLUSTER, "a1", vec![wrap("a", "1", cluster("a"))], &[]),
        &sink,
        &stats,
    );
    let ack = only(&requests, CLUSTER);
    assert!(ack.node.is_none() && ack.error_detail.is_none());
    assert_eq!(ack.response_nonce, "a1");
    let eds = only(&requests, ENDPOINT);
    assert!(eds.node.is_none());
    assert_eq!(eds.resource_names_subscribe, ["a"]);
    // A new stream sends it again.
    assert!(client.start_stream(&sink, &stats)[0].node.is_some());
}

#[test]
fn node_on_every_request_by_default_as_envoy() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let node = Node {
        id: "n1".into(),
        ..Default::default()
    };
    let mut client = DeltaClient::new(&[CLUSTER, ENDPOINT], node, false);
    let mut requests = client.start_stream(&sink, &stats);
    requests.extend(client.handle_response(
        response(CLUSTER, "a1", vec![wrap("a", "1", cluster("a"))], &[]),
        &sink,
        &stats,
    ));
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r.node.as_ref().is_some_and(|n| n.id == "n1")));
}

#[test]
fn partial_acceptance_and_removal() {
    let sink = FakeSink::default();
    let store = Store::new();
    let stats = XdsStats::new(&store);
    let mut client = client();
    client.start_stream(&sink, &stats);
    client.handle_response(
        response(
            CLUSTER,
            "1",
            vec![wrap("a", "1", cluster("a")), wrap("b", "1", cluster("b"))],
            &[],
        ),
        &sink,
        &stats,
    );
    sink.reject("b", "lb_policy: not supported");
    let requests = client.handle_response(
        response(
            CLUSTER,
            "2",
            vec![wrap("b", "2", cluster("b")), wrap("c", "2", cluster("c"))],
            &["a"],
        ),
        &sink,
        &stats,
    );
    let nack = only(&requests, CLUSTER);
    assert_eq!(
        nack.error_detail.unwrap().message,
        "b: lb_policy: not supported"
    );
    assert_eq!(sink.names(CLUSTER), ["b", "c"]);
    let versions = &client.type_state(CLUSTER).unwrap().versions;
    assert_eq!(
        versions.get("b").map(String::as_str),
        Some("1"),
        "b kept its accepted version"
    );
    assert_eq!(versions.get("c").map(String::as_str), Some("2"));
    assert!(!versions.contains_key("a"));
    assert_eq!(
        store.counter("cluster_manager.cds.update_rejected").value(),
        1
    );
    // EDS follows: a unsubscribed, c subscribed.
    let eds = only(&requests, ENDPOINT);
    assert_eq!(eds.resource_names_subscribe, ["c"]);
    assert_eq!(eds.resource_names_unsubscribe, ["a"]);
}

#[test]
fn reconnect_sends_initial_resource_versions() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client();
    client.start_stream(&sink, &stats);
    client.handle_response(
        response(CLUSTER, "1", vec![wrap("a", "7", cluster("a"))], &[]),
        &sink,
        &stats,
    );
    client.handle_response(
        response(ENDPOINT, "2", vec![wrap("a", "3", endpoints("a"))], &[]),
        &sink,
        &stats,
    );
    let requests = client.start_stream(&sink, &stats);
    let cds = only(&requests, CLUSTER);
    assert_eq!(
        cds.initial_resource_versions.get("a").map(String::as_str),
        Some("7")
    );
    assert!(cds.node.is_some());
    let eds = only(&requests, ENDPOINT);
    assert_eq!(eds.resource_names_subscribe, ["a"]);
    assert_eq!(
        eds.initial_resource_versions.get("a").map(String::as_str),
        Some("3")
    );
}

#[test]
fn unreadable_resources_are_named_by_their_wrapper() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client();
    client.start_stream(&sink, &stats);
    let bad = WireResource {
        name: "x".into(),
        version: "1".into(),
        resource: Some(Any {
            type_url: CLUSTER.into(),
            value: vec![0xff, 0xff],
        }),
        ..Default::default()
    };
    let requests = client.handle_response(
        response(CLUSTER, "1", vec![bad, wrap("ok", "1", cluster("ok"))], &[]),
        &sink,
        &stats,
    );
    let message = only(&requests, CLUSTER).error_detail.unwrap().message;
    assert!(message.starts_with("x: cannot decode"), "{message}");
    assert_eq!(sink.names(CLUSTER), ["ok"]);
}

#[test]
fn wildcard_diff_uses_star() {
    let (sub, unsub) = diff(&Subscription::Wildcard, &Subscription::names(["a"]));
    assert_eq!((sub, unsub), (vec!["a".to_string()], vec!["*".to_string()]));
}
