//! UDP service listeners. Sluice has no userspace UDP proxy: a listener
//! with `socket_address.protocol: UDP` is accepted only as a service VIP
//! the kernel serves (`bind_to_port: false`, one `udp_proxy` listener filter
//! routing every datagram to one cluster), which the datapath plan turns
//! into a UDP socket-LB service. Every other UDP shape is rejected here,
//! naming the field; the supported-field table rejects the `udp_proxy`
//! fields whose behaviour Sluice does not implement (session filters, hash
//! policies, per-packet load balancing, idle timeouts, tunneling, …).
//!
//! Envoy 1.40 itself refuses `bind_to_port: false` on a UDP listener; the
//! virtual form is Sluice's, chosen to match its TCP service VIPs.

use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::listener::v3::{listener_filter::ConfigType, Listener};
use envoy_types::pb::envoy::extensions::filters::udp::udp_proxy::v3::{
    udp_proxy_config::RouteSpecifier, Route, UdpProxyConfig,
};
use envoy_types::pb::xds::r#type::matcher::v3::matcher::on_match::OnMatch;

use crate::config::proto::{type_name, unpack};
use crate::config::{ConfigError, ConfigErrors};

/// The type of the `udp_proxy` listener filter's `typed_config`.
pub const UDP_PROXY_TYPE: &str = "envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig";

/// What Sluice serves of a UDP listener's `udp_proxy`: every datagram to
/// the VIP goes to one of the cluster's healthy endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpProxy {
    pub stat_prefix: String,
    pub cluster: String,
}

/// Checks a UDP listener (address already parsed) and returns its route;
/// error paths are relative to the Listener.
pub fn compile_udp_listener(
    listener: &Listener,
    address: Option<SocketAddr>,
) -> Result<UdpProxy, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    if listener.bind_to_port.as_ref().is_none_or(|v| v.value) {
        errors.push(ConfigError::new(
            "bind_to_port",
            "a bound UDP listener needs userspace UDP proxying, which Sluice does not implement; \
             with bind_to_port: false the listener is a UDP service VIP served by the kernel",
        ));
    }
    if let Some(address) = address {
        if let Some(problem) = not_a_service_address(address) {
            errors.push(ConfigError::new("address.socket_address", problem));
        }
    }
    if !listener.filter_chains.is_empty() {
        errors.push(ConfigError::new(
            "filter_chains",
            "a UDP listener has no filter chains (its udp_proxy listener filter names the cluster)",
        ));
    }
    if !listener.access_log.is_empty() {
        errors.push(ConfigError::new(
            "access_log",
            "a UDP service is served by the kernel: Sluice sees no datagrams to log",
        ));
    }
    if listener.use_original_dst.as_ref().is_some_and(|v| v.value) {
        errors.push(ConfigError::new(
            "use_original_dst",
            "applies to TCP listeners only",
        ));
    }
    if listener.per_connection_buffer_limit_bytes.is_some() {
        errors.push(ConfigError::new(
            "per_connection_buffer_limit_bytes",
            "a UDP service is served by the kernel: Sluice buffers none of its datagrams",
        ));
    }
    let route = match listener.listener_filters.as_slice() {
        [filter] => udp_proxy_of(filter).map_err(|e| {
            let mut under = ConfigErrors::default();
            under.extend_under("listener_filters[0]", e);
            under
        }),
        [] => Err(ConfigError::new(
            "listener_filters",
            "a UDP listener needs the envoy.filters.udp_listener.udp_proxy listener filter",
        )
        .into()),
        _ => Err(ConfigError::new(
            "listener_filters",
            "Sluice supports exactly one listener filter (udp_proxy) on a UDP listener",
        )
        .into()),
    };
    match route {
        Ok(route) => errors.into_result(route),
        Err(e) => {
            errors.0.extend(e.0);
            Err(errors)
        }
    }
}

/// Rejects listener filters on a TCP listener (Sluice implements none).
pub fn check_tcp_listener_filters(listener: &Listener) -> ConfigErrors {
    let mut errors = ConfigErrors::default();
    for (i, filter) in listener.listener_filters.iter().enumerate() {
        let what = match &filter.config_type {
            Some(ConfigType::TypedConfig(any)) if type_name(&any.type_url) == UDP_PROXY_TYPE => {
                "udp_proxy needs a UDP listener (address.socket_address.protocol: UDP)".to_string()
            }
            Some(ConfigType::TypedConfig(any)) => format!(
                "listener filter type '{}' is not supported by Sluice on TCP listeners",
                type_name(&any.type_url)
            ),
            _ => format!(
                "listener filter '{}' is not supported by Sluice",
                filter.name
            ),
        };
        errors.push(ConfigError::new(format!("listener_filters[{i}]"), what));
    }
    errors
}

/// Why `address` cannot be a UDP service VIP, if it cannot.
fn not_a_service_address(address: SocketAddr) -> Option<String> {
    let ip = address.ip();
    if ip.is_unspecified() {
        return Some(format!(
            "a UDP service listener needs a service address (VIP), not {ip}"
        ));
    }
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return Some(format!(
                "{ip} is v4-mapped; write the IPv4 address (IPv6 sockets reach it as well)"
            ));
        }
    }
    if address.port() == 0 {
        return Some("a UDP service listener needs a port_value".into());
    }
    None
}

/// The one route of a `udp_proxy` listener filter; paths relative to it.
fn udp_proxy_of(
    filter: &envoy_types::pb::envoy::config::listener::v3::ListenerFilter,
) -> Result<UdpProxy, ConfigErrors> {
    if filter.filter_disabled.is_some() {
        return Err(ConfigError::new(
            "filter_disabled",
            "a UDP service's udp_proxy cannot be disabled per connection",
        )
        .into());
    }
    let any = match &filter.config_type {
        Some(ConfigType::TypedConfig(any)) => any,
        Some(ConfigType::ConfigDiscovery(_)) => {
            return Err(ConfigError::new(
                "config_discovery",
                "extension config discovery is not supported by Sluice",
            )
            .into())
        }
        None => {
            return Err(ConfigError::new(
                "typed_config",
                format!("listener filter '{}' needs a typed_config", filter.name),
            )
            .into())
        }
    };
    if type_name(&any.type_url) != UDP_PROXY_TYPE {
        return Err(ConfigError::new(
            "typed_config",
            format!(
                "UDP listener filter type '{}' is not supported by Sluice (only udp_proxy)",
                type_name(&any.type_url)
            ),
        )
        .into());
    }
    let config: UdpProxyConfig =
        unpack(any).map_err(|e| ConfigErrors::from(e.under("typed_config")))?;
    let cluster = udp_proxy_cluster(&config).map_err(|e| e.under("typed_config"))?;
    Ok(UdpProxy {
        stat_prefix: config.stat_prefix,
        cluster,
    })
}

/// The cluster every datagram goes to: `matcher` with only an
/// `on_no_match` Route action (Envoy's form), or the deprecated `cluster`.
/// Error paths are relative to the UdpProxyConfig.
pub fn udp_proxy_cluster(config: &UdpProxyConfig) -> Result<String, ConfigError> {
    #[allow(deprecated)]
    let matcher = match &config.route_specifier {
        Some(RouteSpecifier::Cluster(cluster)) if !cluster.is_empty() => return Ok(cluster.clone()),
        Some(RouteSpecifier::Cluster(_)) => {
            return Err(ConfigError::new("cluster", "must not be empty"))
        }
        Some(RouteSpecifier::Matcher(matcher)) => matcher,
        None => {
            return Err(ConfigError::new(
                "matcher",
                "udp_proxy needs a route: a matcher whose on_no_match action is a \
                 envoy.extensions.filters.udp.udp_proxy.v3.Route (or the deprecated cluster field)",
            ))
        }
    };
    if matcher.matcher_type.is_some() {
        return Err(ConfigError::new(
            "matcher",
            "matching datagrams (matcher_list, matcher_tree) is not supported by Sluice: \
             the kernel sends every datagram to one cluster; use only on_no_match",
        ));
    }
    let Some(on_no_match) = &matcher.on_no_match else {
        return Err(ConfigError::new(
            "matcher.on_no_match",
            "needs a Route action naming the cluster",
        ));
    };
    if on_no_match.keep_matching {
        return Err(ConfigError::new(
            "matcher.on_no_match.keep_matching",
            "is not supported by Sluice",
        ));
    }
    let action = match &on_no_match.on_match {
        Some(OnMatch::Action(action)) => action,
        Some(OnMatch::Matcher(_)) => {
            return Err(ConfigError::new(
                "matcher.on_no_match.matcher",
                "nested matchers are not supported by Sluice; use a Route action",
            ))
        }
        None => {
            return Err(ConfigError::new(
                "matcher.on_no_match.action",
                "needs a Route action naming the cluster",
            ))
        }
    };
    let path = "matcher.on_no_match.action.typed_config";
    let Some(any) = &action.typed_config else {
        return Err(ConfigError::new(path, "needs a Route naming the cluster"));
    };
    let route: Route = unpack(any).map_err(|e| e.under(path))?;
    if route.cluster.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.cluster"),
            "must not be empty",
        ));
    }
    Ok(route.cluster)
}

#[cfg(test)]
#[path = "udp_proxy_tests.rs"]
mod tests;
