//! What Sluice implements of Envoy's configuration, as data: per message
//! type, the fields the compile steps read; which `Any` extension types it
//! has; which enum values it handles. A walker reports every set field,
//! extension type or enum value outside these tables, so nothing a user
//! configures is silently ignored.
//!
//! To support a field, implement it, then add its name on its message's line.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, ReflectMessage, Value};

use super::descriptors::{any_parts, unpack_dynamic_any};
use super::pgv::map_key_text;
use super::proto::type_name;
use super::{join_path, ConfigError, ConfigErrors};

const HCM: &str = "envoy.extensions.filters.network.http_connection_manager.v3";
const ROUTE: &str = "envoy.config.route.v3";
const UDP_PROXY: &str = "envoy.extensions.filters.udp.udp_proxy.v3";

/// Message full name → the fields Sluice implements. A message absent from
/// this table and from [`LEAF_MESSAGES`] supports no field at all.
#[rustfmt::skip]
static SUPPORTED_FIELDS: LazyLock<Vec<(String, &'static [&'static str])>> = LazyLock::new(|| {
    let entries: Vec<(String, &'static [&'static str])> = vec![
        // Bootstrap
        ("envoy.config.bootstrap.v3.Bootstrap".into(), &["node", "static_resources", "dynamic_resources", "admin", "layered_runtime"]),
        ("envoy.config.bootstrap.v3.Bootstrap.StaticResources".into(), &["listeners", "clusters"]),
        // Dynamic resources (xDS): read by xds::config
        ("envoy.config.bootstrap.v3.Bootstrap.DynamicResources".into(), &["lds_config", "cds_config", "ads_config"]),
        ("envoy.config.core.v3.ConfigSource".into(), &["ads", "path_config_source", "path", "resource_api_version", "api_config_source", "initial_fetch_timeout"]),
        ("envoy.config.core.v3.AggregatedConfigSource".into(), &[]),
        ("envoy.config.core.v3.PathConfigSource".into(), &["path"]),
        ("envoy.config.core.v3.ApiConfigSource".into(), &["api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only", "rate_limit_settings"]),
        ("envoy.config.core.v3.RateLimitSettings".into(), &["max_tokens", "fill_rate"]),
        ("envoy.config.core.v3.GrpcService".into(), &["envoy_grpc"]),
        ("envoy.config.core.v3.GrpcService.EnvoyGrpc".into(), &["cluster_name"]),
        ("envoy.config.bootstrap.v3.Admin".into(), &["address", "access_log", "access_log_path"]),
        ("envoy.config.bootstrap.v3.LayeredRuntime".into(), &["layers"]),
        ("envoy.config.bootstrap.v3.RuntimeLayer".into(), &["name", "static_layer", "admin_layer"]),
        ("envoy.config.bootstrap.v3.RuntimeLayer.AdminLayer".into(), &[]),
        ("envoy.config.core.v3.Node".into(), &["id", "cluster", "metadata", "locality"]),
        ("envoy.config.core.v3.Locality".into(), &["region", "zone", "sub_zone"]),
        // Addresses
        ("envoy.config.core.v3.Address".into(), &["socket_address"]),
        ("envoy.config.core.v3.SocketAddress".into(), &["address", "port_value", "protocol", "ipv4_compat"]),
        // Listeners
        ("envoy.config.listener.v3.Listener".into(), &["name", "address", "filter_chains", "stat_prefix", "access_log", "bind_to_port", "per_connection_buffer_limit_bytes", "traffic_direction", "enable_reuse_port", "use_original_dst", "listener_filters"]),
        ("envoy.config.listener.v3.ListenerFilter".into(), &["name", "typed_config"]),
        ("envoy.config.listener.v3.FilterChain".into(), &["filter_chain_match", "filters", "name"]),
        ("envoy.config.listener.v3.FilterChainMatch".into(), &["destination_port"]),
        ("envoy.config.listener.v3.Filter".into(), &["name", "typed_config"]),
        // HTTP connection manager
        (format!("{HCM}.HttpConnectionManager"), &["codec_type", "stat_prefix", "route_config", "rds", "http_filters", "request_timeout", "stream_idle_timeout", "request_headers_timeout", "common_http_protocol_options", "max_request_headers_kb", "use_remote_address", "xff_num_trusted_hops", "generate_request_id", "preserve_external_request_id", "always_set_request_id_in_response", "server_name", "server_header_transformation", "access_log", "drain_timeout", "delayed_close_timeout", "http2_protocol_options"]),
        (format!("{HCM}.Rds"), &["config_source", "route_config_name"]),
        (format!("{HCM}.HttpFilter"), &["name", "typed_config"]),
        ("envoy.config.core.v3.HttpProtocolOptions".into(), &["idle_timeout", "max_connection_duration", "max_headers_count", "max_stream_duration"]),
        ("envoy.config.core.v3.Http1ProtocolOptions".into(), &[]),
        ("envoy.config.core.v3.Http2ProtocolOptions".into(), &["max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size"]),
        ("envoy.extensions.filters.http.router.v3.Router".into(), &["dynamic_stats", "suppress_envoy_headers"]),
        // Routes
        (format!("{ROUTE}.RouteConfiguration"), &["name", "virtual_hosts", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "most_specific_header_mutations_wins", "validate_clusters"]),
        (format!("{ROUTE}.VirtualHost"), &["name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"]),
        (format!("{ROUTE}.Route"), &["name", "match", "route", "redirect", "direct_response", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"]),
        (format!("{ROUTE}.RouteMatch"), &["prefix", "path", "safe_regex", "path_separated_prefix", "headers", "query_parameters", "grpc", "case_sensitive"]),
        (format!("{ROUTE}.RouteMatch.GrpcRouteMatchOptions"), &[]),
        (format!("{ROUTE}.HeaderMatcher"), &["name", "exact_match", "safe_regex_match", "prefix_match", "suffix_match", "contains_match", "present_match", "string_match", "invert_match", "treat_missing_header_as_empty"]),
        (format!("{ROUTE}.QueryParameterMatcher"), &["name", "string_match", "present_match"]),
        ("envoy.type.matcher.v3.StringMatcher".into(), &["exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"]),
        ("envoy.type.matcher.v3.RegexMatcher".into(), &["regex", "google_re2"]),
        ("envoy.type.matcher.v3.RegexMatcher.GoogleRE2".into(), &[]),
        ("envoy.type.matcher.v3.RegexMatchAndSubstitute".into(), &["pattern", "substitution"]),
        (format!("{ROUTE}.RouteAction"), &["cluster", "cluster_header", "weighted_clusters", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite", "timeout", "idle_timeout", "hash_policy", "cluster_not_found_response_code"]),
        (format!("{ROUTE}.WeightedCluster"), &["clusters", "total_weight"]),
        (format!("{ROUTE}.WeightedCluster.ClusterWeight"), &["name", "weight"]),
        (format!("{ROUTE}.RouteAction.HashPolicy"), &["header", "cookie", "connection_properties", "query_parameter", "terminal"]),
        (format!("{ROUTE}.RouteAction.HashPolicy.Header"), &["header_name"]),
        (format!("{ROUTE}.RouteAction.HashPolicy.Cookie"), &["name", "ttl", "path"]),
        (format!("{ROUTE}.RouteAction.HashPolicy.ConnectionProperties"), &["source_ip"]),
        (format!("{ROUTE}.RouteAction.HashPolicy.QueryParameter"), &["name"]),
        (format!("{ROUTE}.RedirectAction"), &["https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"]),
        (format!("{ROUTE}.DirectResponseAction"), &["status", "body"]),
        ("envoy.config.core.v3.DataSource".into(), &["inline_string", "inline_bytes"]),
        ("envoy.config.core.v3.HeaderValueOption".into(), &["header", "append", "append_action", "keep_empty_value"]),
        ("envoy.config.core.v3.HeaderValue".into(), &["key", "value"]),
        // Clusters
        ("envoy.config.cluster.v3.Cluster".into(), &["name", "type", "connect_timeout", "lb_policy", "load_assignment", "dns_refresh_rate", "dns_lookup_family", "typed_extension_protocol_options", "http2_protocol_options", "ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config", "eds_cluster_config", "per_connection_buffer_limit_bytes", "max_requests_per_connection"]),
        ("envoy.config.cluster.v3.Cluster.EdsClusterConfig".into(), &["eds_config", "service_name"]),
        ("envoy.config.cluster.v3.Cluster.RingHashLbConfig".into(), &["minimum_ring_size", "maximum_ring_size"]),
        ("envoy.config.cluster.v3.Cluster.MaglevLbConfig".into(), &["table_size"]),
        ("envoy.config.cluster.v3.Cluster.LeastRequestLbConfig".into(), &["choice_count"]),
        ("envoy.config.endpoint.v3.ClusterLoadAssignment".into(), &["cluster_name", "endpoints"]),
        ("envoy.config.endpoint.v3.LocalityLbEndpoints".into(), &["locality", "lb_endpoints", "load_balancing_weight"]),
        ("envoy.config.endpoint.v3.LbEndpoint".into(), &["endpoint", "load_balancing_weight"]),
        ("envoy.config.endpoint.v3.Endpoint".into(), &["address", "hostname"]),
        ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(), &["explicit_http_config", "common_http_protocol_options"]),
        ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig".into(), &["http_protocol_options", "http2_protocol_options"]),
        // TCP proxy
        ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy".into(), &["stat_prefix", "cluster", "idle_timeout", "access_log", "max_connect_attempts"]),
        // UDP proxy (a UDP listener is a kernel-served service VIP: one
        // cluster for every datagram; see listener::udp_proxy)
        (format!("{UDP_PROXY}.UdpProxyConfig"), &["stat_prefix", "cluster", "matcher"]),
        (format!("{UDP_PROXY}.Route"), &["cluster"]),
        ("xds.type.matcher.v3.Matcher".into(), &["on_no_match"]),
        ("xds.type.matcher.v3.Matcher.OnMatch".into(), &["action"]),
        ("xds.core.v3.TypedExtensionConfig".into(), &["name", "typed_config"]),
        // Access logs
        ("envoy.config.accesslog.v3.AccessLog".into(), &["name", "typed_config"]),
        ("envoy.extensions.access_loggers.file.v3.FileAccessLog".into(), &["path", "log_format", "format", "json_format"]),
        ("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog".into(), &["log_format"]),
        ("envoy.extensions.access_loggers.stream.v3.StderrAccessLog".into(), &["log_format"]),
        ("envoy.config.core.v3.SubstitutionFormatString".into(), &["text_format_source", "json_format", "omit_empty_values"]),
    ];
    entries
});

/// Types whose content is data, not configuration Sluice interprets field by field.
pub const LEAF_MESSAGES: &[&str] = &[
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Empty",
    "google.protobuf.BoolValue",
    "google.protobuf.UInt32Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.Int64Value",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
    "envoy.config.core.v3.Metadata",
];

/// The `Any` payload types (`typed_config`, protocol options) Sluice implements.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig",
    "envoy.extensions.filters.udp.udp_proxy.v3.Route",
];

/// Explanations for particular unsupported enum values: (value, note).
type EnumNotes = &'static [(&'static str, &'static str)];

/// Enum fields of which Sluice implements only some values:
/// (message, field, supported value names, notes on particular other values).
#[rustfmt::skip]
const SUPPORTED_ENUM_VALUES: &[(&str, &str, &[&str], EnumNotes)] = &[
    ("envoy.config.cluster.v3.Cluster", "type", &["STATIC", "STRICT_DNS", "LOGICAL_DNS", "EDS"], &[]),
    ("envoy.config.cluster.v3.Cluster", "lb_policy", &["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"], &[]),
    ("envoy.config.core.v3.SocketAddress", "protocol", &["TCP", "UDP"], &[]),
    ("envoy.config.core.v3.ApiConfigSource", "api_type", &["GRPC", "DELTA_GRPC"], &[("REST", "Sluice speaks xDS over gRPC only")]),
];

struct Tables {
    fields: HashMap<&'static str, HashSet<&'static str>>,
    leaves: HashSet<&'static str>,
    extensions: HashSet<&'static str>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| Tables {
    fields: SUPPORTED_FIELDS
        .iter()
        .map(|(name, fields)| (name.as_str(), fields.iter().copied().collect()))
        .collect(),
    leaves: LEAF_MESSAGES.iter().copied().collect(),
    extensions: SUPPORTED_EXTENSIONS.iter().copied().collect(),
});

/// Every message type named in the tables, for tests and diagnostics.
pub fn supported_message_types() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    SUPPORTED_FIELDS
        .iter()
        .map(|(name, fields)| (name.as_str(), *fields))
}

/// The enum values Sluice implements of `message.field`, when it implements
/// only some (`None`: every value, or not an enum field in the tables).
pub fn supported_enum_values(message: &str, field: &str) -> Option<&'static [&'static str]> {
    SUPPORTED_ENUM_VALUES
        .iter()
        .find(|(m, f, _, _)| *m == message && *f == field)
        .map(|(_, _, values, _)| *values)
}

/// Reports everything set in `message` (and below, `Any` payloads included)
/// that Sluice does not implement. Paths are relative to `message`.
pub fn check_supported(message: &DynamicMessage) -> ConfigErrors {
    let mut errors = ConfigErrors::default();
    walk(message, "", &mut errors);
    errors
}

fn walk(message: &DynamicMessage, path: &str, errors: &mut ConfigErrors) {
    let descriptor = message.descriptor();
    let message_name = descriptor.full_name();
    if TABLES.leaves.contains(message_name) {
        return;
    }
    if message_name == "google.protobuf.Any" {
        walk_any(message, path, errors);
        return;
    }
    let supported = TABLES.fields.get(message_name);
    for (field, value) in message.fields() {
        let field_path = join_path(path, field.name());
        if !supported.is_some_and(|names| names.contains(field.name())) {
            errors.push(ConfigError::new(
                field_path,
                format!(
                    "field '{}' of {message_name} is not supported by Sluice",
                    field.name()
                ),
            ));
            continue;
        }
        check_enum_value(message_name, &field, value, &field_path, errors);
        walk_value(value, &field_path, errors);
    }
}

fn walk_value(value: &Value, path: &str, errors: &mut ConfigErrors) {
    match value {
        Value::Message(nested) => walk(nested, path, errors),
        Value::List(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_value(item, &format!("{path}[{index}]"), errors);
            }
        }
        Value::Map(entries) => {
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by_key(|(key, _)| map_key_text(key));
            for (key, entry) in sorted {
                walk_value(entry, &format!("{path}[{}]", map_key_text(key)), errors);
            }
        }
        _ => {}
    }
}

fn walk_any(any: &DynamicMessage, path: &str, errors: &mut ConfigErrors) {
    let (type_url, _) = any_parts(any);
    let name = type_name(&type_url);
    if !TABLES.extensions.contains(name) {
        errors.push(ConfigError::new(
            path,
            format!("extension type '{name}' is not supported by Sluice"),
        ));
        return;
    }
    match unpack_dynamic_any(any) {
        Ok(payload) => walk(&payload, path, errors),
        Err(problem) => errors.push(ConfigError::new(path, problem)),
    }
}

fn check_enum_value(
    message_name: &str,
    field: &FieldDescriptor,
    value: &Value,
    path: &str,
    errors: &mut ConfigErrors,
) {
    let Kind::Enum(enum_descriptor) = field.kind() else {
        return;
    };
    let Some(number) = value.as_enum_number() else {
        return;
    };
    let Some((_, _, allowed, notes)) = SUPPORTED_ENUM_VALUES
        .iter()
        .find(|(m, f, _, _)| *m == message_name && *f == field.name())
    else {
        return;
    };
    let name = enum_descriptor
        .get_value(number)
        .map(|v| v.name().to_string())
        .unwrap_or_else(|| number.to_string());
    if !allowed.contains(&name.as_str()) {
        let mut message = format!(
            "{} {name} is not supported by Sluice (supported: {})",
            field.name(),
            allowed.join(", ")
        );
        if let Some((_, note)) = notes.iter().find(|(value, _)| *value == name) {
            message.push_str(&format!("; {note}"));
        }
        errors.push(ConfigError::new(path, message));
    }
}

#[cfg(test)]
#[path = "supported_tests.rs"]
mod tests;
