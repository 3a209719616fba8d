use super::*;
use crate::config::descriptors::message_descriptor;
use crate::config::yaml::parse_dynamic;

fn problems(type_name: &str, yaml: &str) -> Vec<String> {
    let descriptor = message_descriptor(type_name).unwrap();
    let message = parse_dynamic(yaml, &descriptor).unwrap();
    check_message(&message)
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn cluster_problems(yaml: &str) -> Vec<String> {
    problems("envoy.config.cluster.v3.Cluster", yaml)
}

#[test]
fn empty_cluster_name_is_reported_at_its_path() {
    assert_eq!(
        cluster_problems("name: ''\nconnect_timeout: 1s\n"),
        ["name: value length must be at least 1 characters"]
    );
}

#[test]
fn every_violation_is_reported_with_indices() {
    let yaml = r#"
name: backend
connect_timeout: -1s
load_assignment:
  cluster_name: backend
  endpoints:
  - lb_endpoints:
    - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 8080}}}
    - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 70000}}}
"#;
    assert_eq!(
        cluster_problems(yaml),
        [
            "connect_timeout: value must be greater than 0s",
            "load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.socket_address.port_value: value must be less than or equal to 65535",
        ]
    );
}

#[test]
fn negative_durations_are_rejected_without_a_rule() {
    // RouteAction.timeout has no PGV rule; Envoy still rejects a negative one.
    assert_eq!(
        problems(
            "envoy.config.route.v3.RouteAction",
            "cluster: a\ntimeout: -1s\n"
        ),
        ["timeout: invalid duration: expected a positive duration"]
    );
    assert!(problems(
        "envoy.config.route.v3.RouteAction",
        "cluster: a\ntimeout: 0s\n"
    )
    .is_empty());
}

#[test]
fn required_oneof_names_its_choices() {
    let found = problems("envoy.config.core.v3.SocketAddress", "address: 1.2.3.4\n");
    assert_eq!(
        found,
        ["port_specifier: exactly one of 'port_value', 'named_port' must be set"]
    );
}

#[test]
fn rules_inside_any_payloads_are_checked() {
    let yaml = r#"
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
filter_chains:
- filters:
  - name: tcp
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      cluster: backend
"#;
    assert_eq!(
        problems("envoy.config.listener.v3.Listener", yaml),
        ["filter_chains[0].filters[0].typed_config.stat_prefix: value length must be at least 1 characters"]
    );
}

#[test]
fn header_names_follow_the_http_grammar() {
    let yaml = r#"
name: r
virtual_hosts:
- name: vh
  domains: ["*"]
  request_headers_to_add:
  - header: {key: "bad\nheader", value: v}
  request_headers_to_remove: ["x-ok"]
"#;
    assert_eq!(
        problems("envoy.config.route.v3.RouteConfiguration", yaml),
        ["virtual_hosts[0].request_headers_to_add[0].header.key: value \"bad\\nheader\" is not a valid HTTP header name"]
    );
}

#[test]
fn repeated_minimums_are_enforced() {
    let yaml = "name: r\nvirtual_hosts:\n- name: vh\n  domains: []\n";
    assert_eq!(
        problems("envoy.config.route.v3.RouteConfiguration", yaml),
        ["virtual_hosts[0].domains: value must contain at least 1 item(s)"]
    );
}

#[test]
fn enum_defined_only_rejects_unknown_numbers() {
    let found = cluster_problems("name: c\nlb_policy: 42\n");
    assert_eq!(
        found,
        ["lb_policy: value 42 must be one of the defined enum values"]
    );
}

#[test]
fn two_sided_bounds_are_described_together() {
    let hcm = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let found = problems(
        hcm,
        "stat_prefix: s\nroute_config: {}\nmax_request_headers_kb: 9000\n",
    );
    assert_eq!(
        found,
        ["max_request_headers_kb: value must be greater than 0 and less than or equal to 8192"]
    );
}
