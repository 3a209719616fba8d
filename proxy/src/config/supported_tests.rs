use super::*;
use crate::config::descriptors::message_descriptor;
use crate::config::yaml::parse_dynamic;

fn problems(type_name: &str, yaml: &str) -> Vec<String> {
    let descriptor = message_descriptor(type_name).unwrap();
    let message = parse_dynamic(yaml, &descriptor).unwrap();
    check_supported(&message)
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn every_table_entry_names_a_real_message_and_real_fields() {
    for (message, fields) in supported_message_types() {
        let descriptor = message_descriptor(message)
            .unwrap_or_else(|| panic!("{message} is not in the descriptor pool"));
        for field in fields {
            assert!(
                descriptor.get_field_by_name(field).is_some(),
                "{message} has no field '{field}'"
            );
        }
    }
    for leaf in LEAF_MESSAGES {
        assert!(
            message_descriptor(leaf).is_some(),
            "{leaf} is not in the pool"
        );
    }
    for (message, field, values, _) in SUPPORTED_ENUM_VALUES {
        let field = message_descriptor(message)
            .unwrap()
            .get_field_by_name(field)
            .unwrap();
        let Kind::Enum(e) = field.kind() else {
            panic!("{message}.{} is not an enum", field.name())
        };
        for value in *values {
            assert!(
                e.get_value_by_name(value).is_some(),
                "{} has no {value}",
                e.full_name()
            );
        }
    }
}

#[test]
fn every_supported_extension_type_resolves_and_has_a_field_table() {
    for extension in SUPPORTED_EXTENSIONS {
        assert!(
            message_descriptor(extension).is_some(),
            "{extension} not in pool"
        );
        assert!(
            TABLES.fields.contains_key(extension),
            "{extension} has no field table"
        );
    }
}

#[test]
fn unsupported_field_is_named_with_its_message() {
    let yaml = "name: c\nhealth_checks:\n- timeout: 1s\n  interval: 1s\n  tcp_health_check: {}\n";
    assert_eq!(
        problems("envoy.config.cluster.v3.Cluster", yaml),
        ["health_checks: field 'health_checks' of envoy.config.cluster.v3.Cluster is not supported by Sluice"]
    );
}

#[test]
fn unsupported_extension_is_named_at_its_typed_config() {
    let yaml = r#"
stat_prefix: ingress
route_config: {name: r}
http_filters:
- name: envoy.filters.http.cors
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
- name: envoy.filters.http.router
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#;
    assert_eq!(
        problems(&format!("{HCM}.HttpConnectionManager"), yaml),
        ["http_filters[0].typed_config: extension type 'envoy.extensions.filters.http.cors.v3.Cors' is not supported by Sluice"]
    );
}

#[test]
fn fields_inside_supported_extensions_are_checked_too() {
    let yaml = r#"
name: l
filter_chains:
- filters:
  - name: tcp
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: tcp
      cluster: c
      hash_policy: [{source_ip: {}}]
"#;
    assert_eq!(
        problems("envoy.config.listener.v3.Listener", yaml),
        ["filter_chains[0].filters[0].typed_config.hash_policy: field 'hash_policy' of envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy is not supported by Sluice"]
    );
}

#[test]
fn unimplemented_enum_values_are_rejected() {
    let found = problems(
        "envoy.config.cluster.v3.Cluster",
        "name: c\ntype: ORIGINAL_DST\nlb_policy: CLUSTER_PROVIDED\n",
    );
    assert_eq!(found.len(), 2);
    assert!(found[0].starts_with("type: type ORIGINAL_DST is not supported by Sluice (supported: STATIC, STRICT_DNS, LOGICAL_DNS, EDS)"), "{found:?}");
    assert!(
        found[1].starts_with("lb_policy: lb_policy CLUSTER_PROVIDED is not supported by Sluice"),
        "{found:?}"
    );
    let rest = problems(
        "envoy.config.core.v3.ApiConfigSource",
        "api_type: REST\ntransport_api_version: V3\n",
    );
    assert_eq!(rest, ["api_type: api_type REST is not supported by Sluice (supported: GRPC, DELTA_GRPC); Sluice speaks xDS over gRPC only"]);
}

#[test]
fn udp_proxy_behaviour_sluice_does_not_implement_is_named() {
    let found = problems(
        "envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig",
        "stat_prefix: dns\nidle_timeout: 10s\nuse_original_src_ip: true\nhash_policies: [{source_ip: true}]\nuse_per_packet_load_balancing: true\nsession_filters: [{name: f}]\nmatcher: {matcher_list: {matchers: []}, on_no_match: {keep_matching: true, action: {name: r, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route, cluster: c}}}}\n",
    );
    let fields: Vec<&str> = found
        .iter()
        .map(|problem| problem.split(':').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "idle_timeout",
            "use_original_src_ip",
            "hash_policies",
            "use_per_packet_load_balancing",
            "matcher.matcher_list",
            "matcher.on_no_match.keep_matching",
            "session_filters"
        ],
        "{found:?}"
    );
    assert!(found[2].contains("field 'hash_policies' of envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig is not supported by Sluice"), "{found:?}");
    let fine = problems(
        "envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig",
        "stat_prefix: dns\nmatcher: {on_no_match: {action: {name: r, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route, cluster: c}}}}\n",
    );
    assert!(fine.is_empty(), "{fine:?}");
}

#[test]
fn messages_outside_the_table_support_nothing() {
    let found = problems("envoy.config.core.v3.Address", "pipe: {path: /tmp/sock}\n");
    assert_eq!(
        found,
        ["pipe: field 'pipe' of envoy.config.core.v3.Address is not supported by Sluice"]
    );
    let dynamic = problems(
        "envoy.config.bootstrap.v3.Bootstrap",
        "dynamic_resources: {ads_config: {api_type: REST, request_timeout: 1s}}\n",
    );
    assert_eq!(dynamic, [
        "dynamic_resources.ads_config.api_type: api_type REST is not supported by Sluice (supported: GRPC, DELTA_GRPC); Sluice speaks xDS over gRPC only",
        "dynamic_resources.ads_config.request_timeout: field 'request_timeout' of envoy.config.core.v3.ApiConfigSource is not supported by Sluice",
    ]);
}

#[test]
fn leaf_messages_are_not_inspected() {
    let yaml = "id: n\nmetadata: {filter_metadata: {a: {b: 1}}}\n";
    assert!(problems("envoy.config.core.v3.Node", yaml).is_empty());
}
