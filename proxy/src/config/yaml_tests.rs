use super::*;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;

fn parse_error(text: &str) -> ConfigError {
    let errors = parse_message::<Bootstrap>(text).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    errors.0.into_iter().next().unwrap()
}

const CLUSTER_HEAD: &str = "static_resources:\n  clusters:\n  - name: backend\n";

#[test]
fn parses_any_message_type() {
    let cluster: Cluster =
        parse_message("name: backend\nconnect_timeout: 0.5s\ntype: STRICT_DNS\n").unwrap();
    assert_eq!(cluster.name, "backend");
    assert_eq!(cluster.connect_timeout.unwrap().nanos, 500_000_000);
    assert_eq!(
        cluster.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
}

#[test]
fn any_with_inlined_fields_and_bare_wrapper_numbers() {
    let yaml = r#"
name: tcp
per_connection_buffer_limit_bytes: 1024
filter_chains:
- filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      stat_prefix: tcp
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      cluster: backend
      max_connect_attempts: 3
"#;
    let listener: Listener = parse_message(yaml).unwrap();
    assert_eq!(
        listener.per_connection_buffer_limit_bytes.unwrap().value,
        1024
    );
    let any = listener.filter_chains[0].filters[0]
        .config_type
        .clone()
        .unwrap();
    let envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any) = any
    else {
        panic!("typed_config expected")
    };
    let tcp: TcpProxy = crate::config::proto::unpack(&any).unwrap();
    assert_eq!(tcp.stat_prefix, "tcp");
    assert_eq!(tcp.max_connect_attempts.unwrap().value, 3);
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let yaml = r#"
static_resources:
  clusters:
  - &base
    name: a
    connect_timeout: 2s
    type: STRICT_DNS
    lb_policy: LEAST_REQUEST
  - <<: *base
    name: b
    connect_timeout: 5s
  - *base
"#;
    let bootstrap: Bootstrap = parse_message(yaml).unwrap();
    let clusters = bootstrap.static_resources.unwrap().clusters;
    assert_eq!(clusters.len(), 3);
    assert_eq!(clusters[1].name, "b");
    assert_eq!(clusters[1].connect_timeout.unwrap().seconds, 5);
    assert_eq!(
        clusters[1].lb_policy,
        cluster::LbPolicy::LeastRequest as i32
    );
    assert_eq!(clusters[2].name, "a");
    assert_eq!(clusters[2].connect_timeout.unwrap().seconds, 2);
}

#[test]
fn json_input_is_accepted() {
    let json = r#"{
  "static_resources": {
    "clusters": [
      {"name": "backend", "connect_timeout": "0.25s", "type": "LOGICAL_DNS",
       "dns_lookup_family": "V4_ONLY"}
    ]
  }
}"#;
    let bootstrap: Bootstrap = parse_message(json).unwrap();
    let cluster = &bootstrap.static_resources.unwrap().clusters[0];
    assert_eq!(cluster.name, "backend");
    assert_eq!(cluster.connect_timeout.unwrap().nanos, 250_000_000);
}

#[test]
fn json_errors_have_paths_and_locations() {
    let error = parse_error(
        "{\"static_resources\": {\"clusters\": [{\"name\": \"b\",\n \"conect_timeout\": \"1s\"}]}}",
    );
    assert_eq!(error.path, "static_resources.clusters[0]");
    assert_eq!(error.message, "unrecognized field name 'conect_timeout'");
    assert_eq!(error.location, Some((2, 3)));
}

#[test]
fn invalid_duration_names_the_value() {
    let yaml = r#"
static_resources:
  listeners:
  - name: http
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend, timeout: 3o}
"#;
    let error = parse_error(yaml);
    assert_eq!(
        error.to_string(),
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.timeout: invalid duration \"3o\" at line 17 column 52"
    );
}

#[test]
fn unknown_field_points_at_the_key() {
    let error = parse_error(&format!("{CLUSTER_HEAD}    conect_timeout: 5s\n"));
    assert_eq!(error.path, "static_resources.clusters[0]");
    assert_eq!(error.message, "unrecognized field name 'conect_timeout'");
    assert_eq!(error.location, Some((4, 5)));
}

#[test]
fn bad_enum_names_the_value() {
    let error = parse_error(&format!("{CLUSTER_HEAD}    lb_policy: ROUND_ROBBIN\n"));
    assert_eq!(error.path, "static_resources.clusters[0].lb_policy");
    assert_eq!(error.message, "unrecognized enum value 'ROUND_ROBBIN'");
    assert_eq!(error.location, Some((4, 16)));
}

#[test]
fn bad_numbers_name_the_value() {
    let error = parse_error(&format!(
        "{CLUSTER_HEAD}    per_connection_buffer_limit_bytes: lots\n"
    ));
    assert_eq!(
        error.path,
        "static_resources.clusters[0].per_connection_buffer_limit_bytes"
    );
    assert!(
        error.message.starts_with("invalid value \"lots\""),
        "{error}"
    );
    let error = parse_error(&format!(
        "{CLUSTER_HEAD}    per_connection_buffer_limit_bytes: 99999999999\n"
    ));
    assert!(
        error.message.starts_with("invalid value \"99999999999\""),
        "{error}"
    );
}

#[test]
fn wrong_shape_says_what_was_expected() {
    let error = parse_error("static_resources:\n  clusters: 5\n");
    assert_eq!(error.path, "static_resources.clusters");
    assert!(error.message.contains("expected a list"), "{error}");
    assert!(error.location.is_some());
}

#[test]
fn unknown_type_url_is_named() {
    let yaml = r#"
static_resources:
  listeners:
  - name: l
    filter_chains:
    - filters:
      - name: x
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConectionManager
"#;
    let error = parse_error(yaml);
    assert_eq!(
        error.path,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
    );
    assert_eq!(
        error.message,
        "unknown \"@type\" 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConectionManager': no such Envoy message type"
    );
    assert_eq!(error.location.map(|(line, _)| line), Some(9));
}

#[test]
fn yaml_syntax_errors_are_located() {
    let error = parse_error("static_resources:\n  clusters:\n  - name: a\n   bad: [1, 2\n");
    assert!(error.location.is_some(), "{error}");
    let error = parse_error("node: {id: a\n");
    let (line, _) = error.location.expect("located");
    assert!(line >= 1, "{error}");
}

#[test]
fn syntax_errors_have_clean_paths() {
    let error = parse_error("node: {id: a\n");
    assert_eq!(error.path, "node");
    assert!(error.message.contains("unclosed bracket"), "{error}");
    let error = parse_error("static_resources:\n  clusters:\n  - name: a\n   bad: [1, 2\n");
    assert_eq!(error.path, "static_resources");
    assert_eq!(error.location, Some((4, 4)));
    let error = parse_error("a: 1\n");
    assert_eq!(error.path, "");
    assert_eq!(
        error.to_string(),
        "unrecognized field name 'a' at line 1 column 1"
    );
}

#[test]
fn large_configs_beyond_the_parser_default_budget_parse() {
    // 60,000 clusters of 5 YAML nodes each: 300,000 nodes, above
    // serde-saphyr's default budget of 250,000 (a 10k-cluster config breached it).
    let mut text = String::from("static_resources:\n  clusters:\n");
    for i in 0..60_000 {
        text.push_str(&format!("  - {{ name: c{i}, connect_timeout: 1s }}\n"));
    }
    let bootstrap: Bootstrap = parse_message(&text).unwrap();
    assert_eq!(bootstrap.static_resources.unwrap().clusters.len(), 60_000);
}
