//! The state-of-the-world state machine against a fake sink.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;

use super::super::resource::type_urls::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use super::super::stats::XdsStats;
use super::super::test_sink::{cluster, endpoints, listener, FakeSink};
use super::*;
use crate::stats::Store;

fn node() -> Node {
    Node {
        id: "sidecar-1".into(),
        cluster: "demo".into(),
        ..Default::default()
    }
}

fn client(first_only: bool) -> SotwClient {
    SotwClient::new(&[CLUSTER, ENDPOINT, LISTENER, ROUTE], node(), first_only)
}

fn response(type_url: &str, version: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        resources,
        type_url: type_url.into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

fn only(requests: &[DiscoveryRequest], type_url: &str) -> DiscoveryRequest {
    let matching: Vec<_> = requests.iter().filter(|r| r.type_url == type_url).collect();
    assert_eq!(matching.len(), 1, "one {type_url} request in {requests:#?}");
    matching[0].clone()
}

#[test]
fn cold_start_requests_wildcard_cds_and_lds_with_node_first() {
    let sink = FakeSink::default();
    let store = Store::new();
    let mut client = client(true);
    let requests = client.start_stream(&sink, &XdsStats::new(&store));
    let types: Vec<_> = requests.iter().map(|r| r.type_url.as_str()).collect();
    // No EDS/RDS request before anything names an endpoint or route.
    assert_eq!(types, [CLUSTER, LISTENER]);
    assert!(requests[0].resource_names.is_empty());
    assert_eq!(requests[0].node.as_ref().unwrap().id, "sidecar-1");
    assert!(requests[1].node.is_none(), "node only on the first request");
    assert_eq!(requests[0].version_info, "");
    assert_eq!(requests[0].response_nonce, "");
    assert_eq!(
        store.counter("cluster_manager.cds.update_attempt").value(),
        1
    );
}

#[test]
fn node_on_every_request_by_default_as_envoy() {
    let sink = FakeSink::default();
    let mut client = client(false);
    let requests = client.start_stream(&sink, &XdsStats::new(&Store::new()));
    assert!(requests.iter().all(|r| r.node.is_some()));
}

#[test]
fn ack_carries_version_and_nonce_and_cds_triggers_eds_subscription() {
    let sink = FakeSink::default();
    let store = Store::new();
    let stats = XdsStats::new(&store);
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    let requests = client.handle_response(
        response(CLUSTER, "v1", "n1", vec![cluster("a"), cluster("b")]),
        &sink,
        &stats,
    );
    let ack = only(&requests, CLUSTER);
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("v1", "n1")
    );
    assert!(ack.error_detail.is_none());
    let eds = only(&requests, ENDPOINT);
    assert_eq!(eds.resource_names, ["a", "b"]);
    assert_eq!(eds.version_info, "");
    assert_eq!(sink.names(CLUSTER), ["a", "b"]);
    assert_eq!(
        store.counter("cluster_manager.cds.update_success").value(),
        1
    );
    assert_eq!(
        store.counter("cluster_manager.cds.update_attempt").value(),
        2
    );

    let requests = client.handle_response(
        response(ENDPOINT, "e1", "n2", vec![endpoints("a")]),
        &sink,
        &stats,
    );
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].resource_names, ["a", "b"]);
    assert_eq!(requests[0].response_nonce, "n2");
    assert_eq!(store.counter("cluster.a.update_success").value(), 1);
    assert_eq!(store.counter("cluster.b.update_success").value(), 0);
    // Envoy counts an attempt when each per-cluster subscription starts, and one per response.
    assert_eq!(store.counter("cluster.a.update_attempt").value(), 2);
    assert_eq!(store.counter("cluster.b.update_attempt").value(), 1);
}

#[test]
fn nack_keeps_previous_version_and_names_the_bad_resource() {
    let sink = FakeSink::default();
    let store = Store::new();
    let stats = XdsStats::new(&store);
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    client.handle_response(
        response(CLUSTER, "v1", "n1", vec![cluster("a"), cluster("b")]),
        &sink,
        &stats,
    );
    sink.reject("b", "connect_timeout: invalid duration");
    let requests = client.handle_response(
        response(
            CLUSTER,
            "v2",
            "n2",
            vec![cluster("a"), cluster("b"), cluster("c")],
        ),
        &sink,
        &stats,
    );
    let nack = only(&requests, CLUSTER);
    assert_eq!(
        nack.version_info, "v1",
        "a NACK repeats the last accepted version"
    );
    assert_eq!(nack.response_nonce, "n2");
    let detail = nack.error_detail.unwrap();
    assert_eq!(detail.code, 3);
    assert_eq!(detail.message, "b: connect_timeout: invalid duration");
    // Partial acceptance: a and c took v2, b kept v1.
    assert_eq!(sink.version_of(CLUSTER, "a").as_deref(), Some("v2"));
    assert_eq!(sink.version_of(CLUSTER, "c").as_deref(), Some("v2"));
    assert_eq!(sink.version_of(CLUSTER, "b").as_deref(), Some("v1"));
    assert_eq!(
        store.counter("cluster_manager.cds.update_rejected").value(),
        1
    );
    assert_eq!(client.type_state(CLUSTER).unwrap().acked_version, "v1");
    // b stays known: a later response without it removes it.
    sink.reject.lock().unwrap().clear();
    client.handle_response(
        response(CLUSTER, "v3", "n3", vec![cluster("a")]),
        &sink,
        &stats,
    );
    assert_eq!(sink.names(CLUSTER), ["a"]);
    let last = sink.calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.2, ["b", "c"]);
}

#[test]
fn a_new_resource_rejected_is_not_known_so_not_removed_later() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    sink.reject("bad", "nope");
    client.handle_response(
        response(LISTENER, "1", "n1", vec![listener("bad"), listener("ok")]),
        &sink,
        &stats,
    );
    sink.reject.lock().unwrap().clear();
    client.handle_response(
        response(LISTENER, "2", "n2", vec![listener("ok")]),
        &sink,
        &stats,
    );
    let last = sink.calls.lock().unwrap().last().cloned().unwrap();
    assert!(last.2.is_empty(), "nothing to remove: {last:?}");
}

#[test]
fn full_state_removal_for_lds_cds_but_not_eds() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    client.handle_response(
        response(LISTENER, "1", "n1", vec![listener("x"), listener("y")]),
        &sink,
        &stats,
    );
    client.handle_response(
        response(LISTENER, "2", "n2", vec![listener("y")]),
        &sink,
        &stats,
    );
    assert_eq!(sink.names(LISTENER), ["y"]);
    client.handle_response(
        response(CLUSTER, "1", "n3", vec![cluster("a"), cluster("b")]),
        &sink,
        &stats,
    );
    client.handle_response(
        response(ENDPOINT, "1", "n4", vec![endpoints("a"), endpoints("b")]),
        &sink,
        &stats,
    );
    client.handle_response(
        response(ENDPOINT, "2", "n5", vec![endpoints("a")]),
        &sink,
        &stats,
    );
    assert_eq!(
        sink.names(ENDPOINT),
        ["a", "b"],
        "EDS absence is not removal"
    );
    // An empty LDS response removes every listener.
    client.handle_response(response(LISTENER, "3", "n6", vec![]), &sink, &stats);
    assert!(sink.names(LISTENER).is_empty());
}

#[test]
fn undecodable_entry_rejects_the_whole_response() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    client.handle_response(
        response(CLUSTER, "1", "n1", vec![cluster("a")]),
        &sink,
        &stats,
    );
    let garbage = Any {
        type_url: CLUSTER.into(),
        value: vec![0xff, 0xff, 0xff],
    };
    let requests = client.handle_response(
        response(CLUSTER, "2", "n2", vec![garbage, cluster("b")]),
        &sink,
        &stats,
    );
    let nack = only(&requests, CLUSTER);
    assert!(nack
        .error_detail
        .unwrap()
        .message
        .starts_with("resources[0]: cannot decode"));
    assert_eq!(
        sink.names(CLUSTER),
        ["a"],
        "nothing applied, nothing removed"
    );
    let duplicate = client.handle_response(
        response(CLUSTER, "3", "n3", vec![cluster("a"), cluster("a")]),
        &sink,
        &stats,
    );
    assert_eq!(
        only(&duplicate, CLUSTER).error_detail.unwrap().message,
        "a: duplicate resource name in the response"
    );
    let wrong_type = client.handle_response(
        response(CLUSTER, "4", "n4", vec![listener("l")]),
        &sink,
        &stats,
    );
    assert!(only(&wrong_type, CLUSTER)
        .error_detail
        .unwrap()
        .message
        .contains("in a response for"));
}

#[test]
fn reconnect_resumes_with_last_acked_version_and_fresh_nonce() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    client.handle_response(
        response(CLUSTER, "v7", "n1", vec![cluster("a")]),
        &sink,
        &stats,
    );
    let requests = client.start_stream(&sink, &stats);
    let cds = only(&requests, CLUSTER);
    assert_eq!(cds.version_info, "v7");
    assert_eq!(cds.response_nonce, "");
    assert!(cds.node.is_some());
    assert_eq!(only(&requests, ENDPOINT).resource_names, ["a"]);
}

#[test]
fn stream_failure_counts_as_envoy_does() {
    let sink = FakeSink::default();
    let store = Store::new();
    let stats = XdsStats::new(&store);
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    client.handle_response(
        response(CLUSTER, "v1", "n1", vec![cluster("a")]),
        &sink,
        &stats,
    );
    assert_eq!(
        store.counter("cluster_manager.cds.update_attempt").value(),
        2
    );
    assert_eq!(store.counter("cluster.a.update_attempt").value(), 1);
    client.stream_failed(&sink, &stats);
    // A reconnect does not count again: the failure did.
    client.start_stream(&sink, &stats);
    assert_eq!(
        store.counter("cluster_manager.cds.update_failure").value(),
        1
    );
    assert_eq!(
        store.counter("cluster_manager.cds.update_attempt").value(),
        3
    );
    assert_eq!(store.counter("cluster.a.update_failure").value(), 1);
    assert_eq!(store.counter("cluster.a.update_attempt").value(), 2);
    assert_eq!(
        store.counter("listener_manager.lds.update_failure").value(),
        1
    );
    // Types never requested count nothing.
    assert_eq!(store.counter("cluster.b.update_failure").value(), 0);
}

#[test]
fn subscription_shrinks_and_unsubscribes_and_unwanted_resources_are_ignored() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = client(true);
    client.start_stream(&sink, &stats);
    sink.routes.lock().unwrap().insert("r1".into());
    let requests = client.handle_response(
        response(CLUSTER, "1", "n1", vec![cluster("a")]),
        &sink,
        &stats,
    );
    assert_eq!(only(&requests, ROUTE).resource_names, ["r1"]);
    // A route config nobody asked for is not applied.
    let route_any = |name: &str| Any {
        type_url: ROUTE.into(),
        value: prost::Message::encode_to_vec(
            &envoy_types::pb::envoy::config::route::v3::RouteConfiguration {
                name: name.into(),
                ..Default::default()
            },
        ),
    };
    client.handle_response(
        response(ROUTE, "1", "n2", vec![route_any("r1"), route_any("r9")]),
        &sink,
        &stats,
    );
    assert_eq!(sink.names(ROUTE), ["r1"]);
    // The only cluster goes away: EDS is told the empty set (unsubscribe).
    let requests = client.handle_response(response(CLUSTER, "2", "n3", vec![]), &sink, &stats);
    let eds = only(&requests, ENDPOINT);
    assert!(eds.resource_names.is_empty());
    assert_eq!(
        client.type_state(ENDPOINT).unwrap().sent,
        Some(Subscription::names(Vec::<String>::new()))
    );
}

#[test]
fn responses_for_unsubscribed_types_are_ignored() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let mut client = SotwClient::new(&[CLUSTER], node(), true);
    client.start_stream(&sink, &stats);
    let requests = client.handle_response(
        response(LISTENER, "1", "n", vec![listener("l")]),
        &sink,
        &stats,
    );
    assert!(requests.is_empty());
    assert!(sink.calls.lock().unwrap().is_empty());
}

#[test]
fn a_stream_of_its_own_carries_only_its_sources_names_and_follows_changes() {
    let sink = FakeSink::default();
    let stats = XdsStats::new(&Store::new());
    let own = SourceId::File("/routes.yaml".into());
    sink.routes.lock().unwrap().insert("over-ads".into());
    let mut client = SotwClient::new(&[ROUTE], node(), false).with_source(own.clone());
    assert!(
        client.start_stream(&sink, &stats).is_empty(),
        "nothing uses the source yet"
    );
    sink.own_routes
        .lock()
        .unwrap()
        .insert(own.clone(), ["mine".to_string()].into());
    // Another stream's LDS update named a route config on this source.
    let requests = client.resubscribe(&sink, &stats);
    assert_eq!(only(&requests, ROUTE).resource_names, ["mine"]);
    assert!(client.resubscribe(&sink, &stats).is_empty(), "nothing new");
    sink.own_routes.lock().unwrap().clear();
    let requests = client.resubscribe(&sink, &stats);
    assert!(
        only(&requests, ROUTE).resource_names.is_empty(),
        "unsubscribed"
    );
}
