use super::*;
use std::io::Write;

/// A front proxy as Envoy's own examples write it: HTTP listener with routes,
/// router and access log; a TCP proxy listener; STRICT_DNS and STATIC
/// clusters, one upstream HTTP/2 through HttpProtocolOptions; admin; runtime.
const FULL_BOOTSTRAP: &str = r#"
node:
  id: sluice-1
  cluster: edge
  locality: {region: eu-west-1, zone: a}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
  access_log:
  - name: envoy.access_loggers.stdout
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
layered_runtime:
  layers:
  - name: static
    static_layer: {overload: {global_downstream_max_connections: 50000}}
  - name: admin
    admin_layer: {}
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    per_connection_buffer_limit_bytes: 32768
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          use_remote_address: true
          stream_idle_timeout: 300s
          common_http_protocol_options: {idle_timeout: 3600s, max_headers_count: 100}
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
              log_format:
                text_format_source:
                  inline_string: "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\" %RESPONSE_CODE%\n"
          route_config:
            name: local_route
            response_headers_to_add:
            - header: {key: x-served-by, value: sluice}
              append_action: OVERWRITE_IF_EXISTS_OR_ADD
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {prefix: "/api", headers: [{name: x-canary, string_match: {exact: "1"}}]}
                route:
                  weighted_clusters:
                    clusters:
                    - {name: service_a, weight: 90}
                    - {name: service_b, weight: 10}
              - match: {safe_regex: {regex: "^/v[0-9]+/.*"}}
                route: {cluster: service_b, prefix_rewrite: /, timeout: 15s, hash_policy: [{header: {header_name: x-user}}]}
              - match: {path: /old}
                redirect: {path_redirect: /new, response_code: PERMANENT_REDIRECT}
              - match: {prefix: /health}
                direct_response: {status: 200, body: {inline_string: ok}}
              - match: {prefix: "/"}
                route: {cluster: service_a, host_rewrite_literal: www.example.com}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: postgres
    address: {socket_address: {address: 0.0.0.0, port_value: 15432}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: postgres
          cluster: postgres
          idle_timeout: 3600s
  clusters:
  - name: service_a
    type: STRICT_DNS
    connect_timeout: 0.25s
    lb_policy: ROUND_ROBIN
    dns_lookup_family: V4_ONLY
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: service_a
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: service-a.internal, port_value: 8080}}}
  - name: service_b
    type: STATIC
    connect_timeout: 1s
    lb_policy: RING_HASH
    ring_hash_lb_config: {minimum_ring_size: 1024}
    load_assignment:
      cluster_name: service_b
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 8080}}}
          load_balancing_weight: 2
        - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 8080}}}
  - name: postgres
    connect_timeout: 1s
    load_assignment:
      cluster_name: postgres
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 10.0.1.5, port_value: 5432}}}
"#;

fn write_file(contents: &[u8], suffix: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    file.write_all(contents).unwrap();
    file
}

fn messages(errors: &ConfigErrors) -> Vec<String> {
    errors.0.iter().map(ToString::to_string).collect()
}

#[test]
fn realistic_front_proxy_bootstrap_loads_and_validates() {
    let bootstrap = load_bootstrap(None, Some(FULL_BOOTSTRAP)).unwrap_or_else(|e| panic!("{e}"));
    let resources = bootstrap.static_resources.unwrap();
    assert_eq!(resources.listeners.len(), 2);
    assert_eq!(resources.clusters.len(), 3);
    assert_eq!(bootstrap.node.unwrap().id, "sluice-1");
    let file = write_file(FULL_BOOTSTRAP.as_bytes(), ".yaml");
    let from_file = load_bootstrap(Some(file.path()), None).unwrap();
    assert_eq!(from_file.static_resources.unwrap().clusters.len(), 3);
}

#[test]
fn binary_bootstrap_files_load() {
    let bootstrap = load_bootstrap(None, Some(FULL_BOOTSTRAP)).unwrap();
    let file = write_file(&bootstrap.encode_to_vec(), ".pb");
    assert_eq!(load_bootstrap(Some(file.path()), None).unwrap(), bootstrap);
}

#[test]
fn config_yaml_merges_over_the_file() {
    let file = write_file(FULL_BOOTSTRAP.as_bytes(), ".yaml");
    let overlay = r#"
node: {id: overridden}
static_resources:
  listeners:
  - name: extra
    address: {socket_address: {address: 0.0.0.0, port_value: 10001}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: extra
          cluster: postgres
"#;
    let merged = load_bootstrap(Some(file.path()), Some(overlay)).unwrap();
    let node = merged.node.unwrap();
    assert_eq!(node.id, "overridden");
    assert_eq!(
        node.cluster, "edge",
        "unset overlay fields keep the file's values"
    );
    let names: Vec<String> = merged
        .static_resources
        .unwrap()
        .listeners
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["http", "postgres", "extra"]);
}

#[test]
fn no_configuration_at_all_is_an_error() {
    let errors = load_bootstrap(None, None).unwrap_err();
    assert!(errors.to_string().contains("-c"), "{errors}");
}

#[test]
fn missing_file_is_named() {
    let errors = load_bootstrap(Some(Path::new("/nonexistent/envoy.yaml")), None).unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with("cannot read /nonexistent/envoy.yaml"),
        "{errors}"
    );
}

#[test]
fn config_yaml_errors_say_where_they_come_from() {
    let file = write_file(b"node: {id: a}\n", ".yaml");
    let errors = load_bootstrap(Some(file.path()), Some("node: {idd: b}\n")).unwrap_err();
    assert_eq!(
        messages(&errors),
        ["node: unrecognized field name 'idd' (in --config-yaml) at line 1 column 8"]
    );
}

#[test]
fn json_bootstrap_file_loads() {
    let json = br#"{"node": {"id": "n"}, "static_resources": {"clusters": [{"name": "c", "connect_timeout": "1s"}]}}"#;
    let file = write_file(json, ".json");
    let bootstrap = load_bootstrap(Some(file.path()), None).unwrap();
    assert_eq!(bootstrap.static_resources.unwrap().clusters[0].name, "c");
}

#[test]
fn every_validation_and_support_problem_is_reported() {
    let yaml = r#"
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 0.0.0.0, port_value: 70000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config: {name: r}
          http_filters:
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: ""
    connect_timeout: 1s
  - name: checked
    connect_timeout: 1s
    type: ORIGINAL_DST
    health_checks:
    - timeout: 1s
      interval: 5s
      tcp_health_check: {}
"#;
    let errors = load_bootstrap(None, Some(yaml)).unwrap_err();
    let found = messages(&errors);
    let expected = [
        "static_resources.listeners[0].address.socket_address.port_value: value must be less than or equal to 65535",
        "static_resources.clusters[0].name: value length must be at least 1 characters",
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config: extension type 'envoy.extensions.filters.http.cors.v3.Cors' is not supported by Sluice",
        "static_resources.clusters[1].type: type ORIGINAL_DST is not supported by Sluice (supported: STATIC, STRICT_DNS, LOGICAL_DNS, EDS)",
        "static_resources.clusters[1].health_checks: field 'health_checks' of envoy.config.cluster.v3.Cluster is not supported by Sluice",
    ];
    for want in expected {
        assert!(
            found.iter().any(|f| f == want),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn validate_message_works_on_any_type() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    let cluster: Cluster = super::super::parse_message("name: c\nconnect_timeout: 1s\n").unwrap();
    validate_message(&cluster).unwrap();
    let bad = Cluster::default();
    let errors = validate_message(&bad).unwrap_err();
    assert_eq!(
        messages(&errors),
        ["name: value length must be at least 1 characters"]
    );
}
