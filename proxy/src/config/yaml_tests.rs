use super::*;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;

fn explore(text: &str) {
    match parse_message::<Bootstrap>(text) {
        Ok(_) => println!("OK"),
        Err(e) => println!("ERR {:?}", e.0),
    }
}

#[test]
fn explore_errors() {
    explore("static_resources:\n  clusters:\n  - name: a\n    conect_timeout: 5s\n");
    explore("static_resources:\n  clusters:\n  - name: a\n    connect_timeout: 5x\n");
    explore("static_resources:\n  clusters:\n  - name: a\n    connect_timeout: \"5x\"\n");
    explore("static_resources:\n  clusters:\n  - name: a\n    lb_policy: ROUND_ROBBIN\n");
    explore("static_resources:\n  clusters:\n  - name: a\n    per_connection_buffer_limit_bytes: abc\n");
    explore("static_resources:\n  clusters:\n  - name: a\n    per_connection_buffer_limit_bytes: 99999999999\n");
    explore("static_resources:\n  listeners:\n  - name: a\n    filter_chains:\n    - filters:\n      - name: x\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.Nope\n");
    explore("static_resources:\n  listeners:\n  - name: a\n    filter_chains:\n    - filters:\n      - name: x\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          idle_timeout: 3o\n");
    explore("static_resources:\n  listeners:\n  - name: a\n    filter_chains:\n    - filters:\n      - name: x\n        typed_config:\n          idle_timeout: 3o\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n");
    explore("static_resources: [\n");
    explore("static_resources:\n  clusters: 5\n");
    explore("{\"static_resources\": {\"clusters\": [{\"name\": \"a\", \"connect_timeout\": \"1s\"}]}}");
    explore("");
}

