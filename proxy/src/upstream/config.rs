//! Validation and compilation of one `envoy.config.cluster.v3.Cluster` into
//! the settings a live cluster runs with. Every error path is relative to
//! the `Cluster` message (`load_assignment.endpoints[0]…`); fields Sluice
//! does not implement are rejected by name.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbPolicy as ProtoLbPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, HealthStatus};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

use super::host::Locality;
use super::lb::{LbPolicy, MAGLEV_DEFAULT_TABLE_SIZE};
use super::protocol_options::{self, ProtocolSettings};
use crate::config::proto::{duration, opt_duration};
use crate::config::{ConfigError, ConfigErrors};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);
const DEFAULT_PANIC_THRESHOLD_PERCENT: f64 = 50.0;

/// How a cluster learns its hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    Static,
    StrictDns,
    LogicalDns,
    /// Hosts come from xDS (`ClusterLoadAssignment`s for `eds_service_name`).
    Eds,
}

/// Where an endpoint is: an IP already, or a name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointAddress {
    Ip(SocketAddr),
    Name(String, u16),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointConfig {
    pub address: EndpointAddress,
    /// `endpoint.hostname`, or the DNS name for resolved endpoints.
    pub hostname: String,
    pub weight: u32,
    pub locality: Locality,
    /// `health_status` from the load assignment (UNHEALTHY/DRAINING/TIMEOUT
    /// make the host unhealthy).
    pub healthy: bool,
}

/// A validated cluster definition.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    pub name: String,
    /// `alt_stat_name`, or the name: the `cluster.<stat_name>.` prefix.
    pub stat_name: String,
    pub discovery: Discovery,
    /// For EDS clusters: the name of the `ClusterLoadAssignment` to follow
    /// (`eds_cluster_config.service_name`, else the cluster name).
    pub eds_service_name: Option<String>,
    /// For EDS clusters: where the assignment comes from (ADS, or a stream
    /// of its own).
    pub eds_source: Option<crate::xds::SourceId>,
    /// EDS: how long the cluster warms waiting for its first assignment
    /// (`eds_config.initial_fetch_timeout`, 15 s when unset; `None` for
    /// `0s`: until it comes).
    pub eds_initial_fetch_timeout: Option<std::time::Duration>,
    pub endpoints: Vec<EndpointConfig>,
    pub lb_policy: LbPolicy,
    pub connect_timeout: Duration,
    pub protocol: ProtocolSettings,
    pub dns_lookup_family: DnsLookupFamily,
    pub dns_refresh_rate: Duration,
    pub healthy_panic_threshold: f64,
}

fn unsupported(field: &str) -> ConfigError {
    let name = field.rsplit('.').next().unwrap_or(field);
    ConfigError::new(field, format!("field '{name}' is not supported by Sluice"))
}

// `dns_refresh_rate` and `dns_lookup_family` are deprecated in favour of the
// DnsCluster extension, but still what most configs use.
#[allow(deprecated)]
pub(crate) fn compile(cluster: &Cluster) -> Result<ClusterConfig, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    if cluster.name.is_empty() {
        errors.push(ConfigError::new("name", "cluster name must not be empty"));
    }
    reject_unsupported_fields(cluster, &mut errors);
    let discovery = compile_discovery(cluster, &mut errors);
    let connect_timeout = match &cluster.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(value) if value.seconds < 0 || value.nanos < 0 || duration(value).is_zero() => {
            errors.push(ConfigError::new(
                "connect_timeout",
                "connect_timeout must be greater than 0s",
            ));
            DEFAULT_CONNECT_TIMEOUT
        }
        Some(value) => duration(value),
    };
    let dns_refresh_rate = match opt_duration(&cluster.dns_refresh_rate) {
        None => DEFAULT_DNS_REFRESH_RATE,
        Some(rate) if rate < Duration::from_millis(1) => {
            errors.push(ConfigError::new(
                "dns_refresh_rate",
                "dns_refresh_rate must be at least 1ms",
            ));
            DEFAULT_DNS_REFRESH_RATE
        }
        Some(rate) => rate,
    };
    let dns_lookup_family =
        DnsLookupFamily::try_from(cluster.dns_lookup_family).unwrap_or_else(|_| {
            errors.push(ConfigError::new(
                "dns_lookup_family",
                format!("unknown dns_lookup_family {}", cluster.dns_lookup_family),
            ));
            DnsLookupFamily::Auto
        });
    let lb_policy = compile_lb_policy(cluster, &mut errors);
    let healthy_panic_threshold = cluster
        .common_lb_config
        .as_ref()
        .and_then(|common| common.healthy_panic_threshold.as_ref())
        .map(|percent| percent.value)
        .unwrap_or(DEFAULT_PANIC_THRESHOLD_PERCENT);
    if !(0.0..=100.0).contains(&healthy_panic_threshold) {
        errors.push(ConfigError::new(
            "common_lb_config.healthy_panic_threshold",
            "healthy_panic_threshold must be between 0 and 100",
        ));
    }
    let eds_source = if discovery == Discovery::Eds {
        match crate::xds::source::subscription_source(
            cluster
                .eds_cluster_config
                .as_ref()
                .and_then(|eds| eds.eds_config.as_ref()),
            "eds_cluster_config.eds_config",
        ) {
            Ok(source) => Some(source),
            Err(error) => {
                errors.push(error);
                None
            }
        }
    } else {
        None
    };
    let eds_initial_fetch_timeout = crate::config::proto::timeout_or(
        &cluster
            .eds_cluster_config
            .as_ref()
            .and_then(|eds| eds.eds_config.as_ref())
            .and_then(|source| source.initial_fetch_timeout),
        Some(std::time::Duration::from_secs(15)),
    );
    let eds_service_name = (discovery == Discovery::Eds).then(|| {
        cluster
            .eds_cluster_config
            .as_ref()
            .map(|eds| eds.service_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| cluster.name.clone())
    });
    if discovery != Discovery::Eds && cluster.eds_cluster_config.is_some() {
        errors.push(ConfigError::new(
            "eds_cluster_config",
            "eds_cluster_config is only meaningful for clusters of type EDS",
        ));
    }
    let endpoints = if discovery == Discovery::Eds {
        // Endpoints arrive over EDS; Envoy ignores an inline assignment.
        Vec::new()
    } else {
        match &cluster.load_assignment {
            Some(assignment) => {
                compile_assignment(assignment, discovery, "load_assignment", &mut errors)
            }
            None => {
                if discovery != Discovery::Static {
                    errors.push(ConfigError::new(
                        "load_assignment",
                        "a DNS cluster needs a load_assignment with its endpoints",
                    ));
                }
                Vec::new()
            }
        }
    };
    let protocol = protocol_options::compile(cluster, &mut errors);
    let stat_name = if cluster.alt_stat_name.is_empty() {
        cluster.name.clone()
    } else {
        cluster.alt_stat_name.clone()
    };
    errors.into_result(ClusterConfig {
        name: cluster.name.clone(),
        stat_name,
        discovery,
        eds_service_name,
        eds_source,
        eds_initial_fetch_timeout,
        endpoints,
        lb_policy,
        connect_timeout,
        protocol,
        dns_lookup_family,
        dns_refresh_rate,
        healthy_panic_threshold,
    })
}

#[allow(deprecated)]
fn reject_unsupported_fields(cluster: &Cluster, errors: &mut ConfigErrors) {
    let common_lb_unsupported = cluster.common_lb_config.as_ref().is_some_and(|common| {
        common.update_merge_window.is_some()
            || common.ignore_new_hosts_until_first_hc
            || common.close_connections_on_host_set_change
            || common.consistent_hashing_lb_config.is_some()
            || common.override_host_status.is_some()
            || common.locality_config_specifier.is_some()
    });
    let fields = [
        ("transport_socket", cluster.transport_socket.is_some()),
        (
            "transport_socket_matches",
            !cluster.transport_socket_matches.is_empty(),
        ),
        (
            "transport_socket_matcher",
            cluster.transport_socket_matcher.is_some(),
        ),
        ("stats_matcher", cluster.stats_matcher.is_some()),
        (
            "per_connection_buffer_limit_bytes",
            cluster.per_connection_buffer_limit_bytes.is_some(),
        ),
        (
            "per_connection_buffer_high_watermark_timeout",
            cluster
                .per_connection_buffer_high_watermark_timeout
                .is_some(),
        ),
        ("health_checks", !cluster.health_checks.is_empty()),
        ("circuit_breakers", cluster.circuit_breakers.is_some()),
        ("dns_jitter", cluster.dns_jitter.is_some()),
        (
            "dns_failure_refresh_rate",
            cluster.dns_failure_refresh_rate.is_some(),
        ),
        ("respect_dns_ttl", cluster.respect_dns_ttl),
        ("dns_resolvers", !cluster.dns_resolvers.is_empty()),
        ("use_tcp_for_dns_lookups", cluster.use_tcp_for_dns_lookups),
        (
            "dns_resolution_config",
            cluster.dns_resolution_config.is_some(),
        ),
        (
            "typed_dns_resolver_config",
            cluster.typed_dns_resolver_config.is_some(),
        ),
        ("outlier_detection", cluster.outlier_detection.is_some()),
        ("cleanup_interval", cluster.cleanup_interval.is_some()),
        (
            "upstream_bind_config",
            cluster.upstream_bind_config.is_some(),
        ),
        ("lb_subset_config", cluster.lb_subset_config.is_some()),
        ("common_lb_config", common_lb_unsupported),
        ("protocol_selection", cluster.protocol_selection != 0),
        (
            "upstream_connection_options",
            cluster.upstream_connection_options.is_some(),
        ),
        (
            "close_connections_on_host_health_failure",
            cluster.close_connections_on_host_health_failure,
        ),
        (
            "ignore_health_on_host_removal",
            cluster.ignore_health_on_host_removal,
        ),
        ("filters", !cluster.filters.is_empty()),
        (
            "load_balancing_policy",
            cluster.load_balancing_policy.is_some(),
        ),
        ("lrs_server", cluster.lrs_server.is_some()),
        (
            "lrs_report_endpoint_metrics",
            !cluster.lrs_report_endpoint_metrics.is_empty(),
        ),
        ("track_timeout_budgets", cluster.track_timeout_budgets),
        ("upstream_config", cluster.upstream_config.is_some()),
        ("track_cluster_stats", cluster.track_cluster_stats.is_some()),
        ("preconnect_policy", cluster.preconnect_policy.is_some()),
        (
            "connection_pool_per_downstream_connection",
            cluster.connection_pool_per_downstream_connection,
        ),
        ("queuing_policies", cluster.queuing_policies.is_some()),
    ];
    for (field, set) in fields {
        if set {
            errors.push(unsupported(field));
        }
    }
}

fn compile_discovery(cluster: &Cluster, errors: &mut ConfigErrors) -> Discovery {
    match &cluster.cluster_discovery_type {
        None => Discovery::Static,
        Some(ClusterDiscoveryType::Type(value)) => match DiscoveryType::try_from(*value) {
            Ok(DiscoveryType::Static) => Discovery::Static,
            Ok(DiscoveryType::StrictDns) => Discovery::StrictDns,
            Ok(DiscoveryType::LogicalDns) => Discovery::LogicalDns,
            Ok(DiscoveryType::Eds) => Discovery::Eds,
            Ok(other) => {
                errors.push(ConfigError::new(
                    "type",
                    format!("cluster type {} is not supported yet", other.as_str_name()),
                ));
                Discovery::Static
            }
            Err(_) => {
                errors.push(ConfigError::new(
                    "type",
                    format!("unknown cluster type {value}"),
                ));
                Discovery::Static
            }
        },
        Some(ClusterDiscoveryType::ClusterType(custom)) => {
            errors.push(ConfigError::new(
                "cluster_type",
                format!("custom cluster type '{}' is not supported yet", custom.name),
            ));
            Discovery::Static
        }
    }
}

fn compile_lb_policy(cluster: &Cluster, errors: &mut ConfigErrors) -> LbPolicy {
    let policy = match ProtoLbPolicy::try_from(cluster.lb_policy) {
        Ok(ProtoLbPolicy::RoundRobin) => LbPolicy::RoundRobin,
        Ok(ProtoLbPolicy::LeastRequest) => LbPolicy::LeastRequest {
            choice_count: 2,
            active_request_bias: 1.0,
        },
        Ok(ProtoLbPolicy::Random) => LbPolicy::Random,
        Ok(ProtoLbPolicy::RingHash) => LbPolicy::RingHash {
            minimum_ring_size: super::lb::RING_DEFAULT_MINIMUM_SIZE,
            maximum_ring_size: super::lb::RING_DEFAULT_MAXIMUM_SIZE,
        },
        Ok(ProtoLbPolicy::Maglev) => LbPolicy::Maglev {
            table_size: MAGLEV_DEFAULT_TABLE_SIZE,
        },
        Ok(other) => {
            errors.push(ConfigError::new(
                "lb_policy",
                format!("lb_policy {} is not supported yet", other.as_str_name()),
            ));
            return LbPolicy::RoundRobin;
        }
        Err(_) => {
            errors.push(ConfigError::new(
                "lb_policy",
                format!("unknown lb_policy {}", cluster.lb_policy),
            ));
            return LbPolicy::RoundRobin;
        }
    };
    let Some(config) = &cluster.lb_config else {
        return policy;
    };
    super::lb::config::apply(policy, config, errors)
}

/// Compiles a load assignment (inline `load_assignment` or one arriving
/// over EDS); `base` is its path for errors.
pub(crate) fn compile_assignment(
    assignment: &ClusterLoadAssignment,
    discovery: Discovery,
    base_path: &str,
    errors: &mut ConfigErrors,
) -> Vec<EndpointConfig> {
    if !assignment.named_endpoints.is_empty() {
        errors.push(unsupported(&format!("{base_path}.named_endpoints")));
    }
    if assignment
        .policy
        .as_ref()
        .is_some_and(|policy| !policy.drop_overloads.is_empty())
    {
        errors.push(unsupported(&format!("{base_path}.policy.drop_overloads")));
    }
    if discovery == Discovery::LogicalDns
        && (assignment.endpoints.len() != 1 || assignment.endpoints[0].lb_endpoints.len() != 1)
    {
        errors.push(ConfigError::new(
            base_path,
            "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
        ));
    }
    let mut endpoints = Vec::new();
    for (l, locality_endpoints) in assignment.endpoints.iter().enumerate() {
        let base = format!("{base_path}.endpoints[{l}]");
        if locality_endpoints.priority != 0 {
            errors.push(ConfigError::new(
                format!("{base}.priority"),
                "endpoint priorities other than 0 are not supported yet",
            ));
        }
        if locality_endpoints.lb_config.is_some() {
            errors.push(unsupported(&format!("{base}.leds_cluster_locality_config")));
        }
        let locality = locality_endpoints
            .locality
            .as_ref()
            .map(|l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            })
            .unwrap_or_default();
        for (e, lb_endpoint) in locality_endpoints.lb_endpoints.iter().enumerate() {
            let path = format!("{base}.lb_endpoints[{e}]");
            let weight = lb_endpoint.load_balancing_weight.map_or(1, |w| w.value);
            if weight == 0 {
                errors.push(ConfigError::new(
                    format!("{path}.load_balancing_weight"),
                    "load_balancing_weight must be at least 1",
                ));
            }
            let healthy = match HealthStatus::try_from(lb_endpoint.health_status) {
                Ok(HealthStatus::Unknown | HealthStatus::Healthy) => true,
                Ok(HealthStatus::Unhealthy | HealthStatus::Draining | HealthStatus::Timeout) => {
                    false
                }
                _ => {
                    errors.push(ConfigError::new(
                        format!("{path}.health_status"),
                        "health_status DEGRADED is not supported yet",
                    ));
                    true
                }
            };
            let endpoint = match &lb_endpoint.host_identifier {
                Some(HostIdentifier::Endpoint(endpoint)) => endpoint,
                Some(HostIdentifier::EndpointName(_)) => {
                    errors.push(unsupported(&format!("{path}.endpoint_name")));
                    continue;
                }
                None => {
                    errors.push(ConfigError::new(
                        format!("{path}.endpoint"),
                        "endpoint is required",
                    ));
                    continue;
                }
            };
            if !endpoint.additional_addresses.is_empty() {
                errors.push(unsupported(&format!(
                    "{path}.endpoint.additional_addresses"
                )));
            }
            let path = format!("{path}.endpoint.address");
            let Some(address) =
                compile_address(endpoint.address.as_ref(), discovery, &path, errors)
            else {
                continue;
            };
            let hostname = match (&address, endpoint.hostname.is_empty()) {
                (_, false) => endpoint.hostname.clone(),
                (EndpointAddress::Name(name, _), true) => name.clone(),
                (EndpointAddress::Ip(_), true) => String::new(),
            };
            endpoints.push(EndpointConfig {
                address,
                hostname,
                weight: weight.max(1),
                locality: locality.clone(),
                healthy,
            });
        }
    }
    endpoints
}

fn compile_address(
    address: Option<&envoy_types::pb::envoy::config::core::v3::Address>,
    discovery: Discovery,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<EndpointAddress> {
    let socket = match address.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(socket)) => socket,
        Some(address::Address::Pipe(_)) => {
            errors.push(ConfigError::new(
                format!("{path}.pipe"),
                "pipe (unix socket) upstream addresses are not supported yet",
            ));
            return None;
        }
        Some(address::Address::EnvoyInternalAddress(_)) => {
            errors.push(unsupported(&format!("{path}.envoy_internal_address")));
            return None;
        }
        None => {
            errors.push(ConfigError::new(path, "address is required"));
            return None;
        }
    };
    let path = format!("{path}.socket_address");
    if socket.protocol != socket_address::Protocol::Tcp as i32 {
        errors.push(ConfigError::new(
            format!("{path}.protocol"),
            "only TCP upstream addresses are supported",
        ));
    }
    if !socket.resolver_name.is_empty() {
        errors.push(unsupported(&format!("{path}.resolver_name")));
    }
    if socket.ipv4_compat {
        errors.push(unsupported(&format!("{path}.ipv4_compat")));
    }
    if !socket.network_namespace_filepath.is_empty() {
        errors.push(unsupported(&format!("{path}.network_namespace_filepath")));
    }
    let port = match socket.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(port)) if port <= 65535 => port as u16,
        Some(socket_address::PortSpecifier::PortValue(port)) => {
            errors.push(ConfigError::new(
                format!("{path}.port_value"),
                format!("port {port} is out of range (0-65535)"),
            ));
            return None;
        }
        Some(socket_address::PortSpecifier::NamedPort(_)) => {
            errors.push(unsupported(&format!("{path}.named_port")));
            return None;
        }
        None => {
            errors.push(ConfigError::new(
                format!("{path}.port_value"),
                "port_value is required",
            ));
            return None;
        }
    };
    if socket.address.is_empty() {
        errors.push(ConfigError::new(
            format!("{path}.address"),
            "address must not be empty",
        ));
        return None;
    }
    match (socket.address.parse::<IpAddr>(), discovery) {
        (Ok(ip), _) => Some(EndpointAddress::Ip(SocketAddr::new(ip, port))),
        (Err(_), Discovery::Static) => {
            errors.push(ConfigError::new(
                format!("{path}.address"),
                format!(
                    "'{}' is not an IP address; a STATIC cluster needs IP addresses \
                     (use STRICT_DNS or LOGICAL_DNS to resolve names)",
                    socket.address
                ),
            ));
            None
        }
        (Err(_), _) => Some(EndpointAddress::Name(socket.address.clone(), port)),
    }
}
