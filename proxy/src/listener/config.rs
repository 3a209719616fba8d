//! Compiling a Listener message: address, filter chains and their one
//! terminal network filter (`http_connection_manager` or `tcp_proxy`); a
//! UDP listener (a kernel-served service VIP) is checked by [`udp_proxy`].
//!
//! [`udp_proxy`]: super::udp_proxy

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    address::Address as AddressKind, socket_address::PortSpecifier, socket_address::Protocol,
    Address,
};
use envoy_types::pb::envoy::config::listener::v3::{filter::ConfigType, Listener};
use envoy_types::pb::envoy::extensions::filters::network::{
    http_connection_manager::v3::HttpConnectionManager as HcmProto,
    tcp_proxy::v3::TcpProxy as TcpProxyProto,
};

use crate::access_log::AccessLogs;
use crate::config::context::CompileContext;
use crate::config::proto::{type_name, unpack};
use crate::config::{ConfigError, ConfigErrors};
use crate::http::connection_manager::HttpConnectionManager;
use crate::stats::{Counter, Gauge, Store};
use crate::tcp::TcpProxy;

use super::udp_proxy::{check_tcp_listener_filters, compile_udp_listener, UdpProxy};

/// The terminal network filter of a chain.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    Http(Arc<HttpConnectionManager>),
    Tcp(Arc<TcpProxy>),
}

#[derive(Debug, Clone)]
pub struct FilterChain {
    pub name: String,
    pub destination_port: Option<u16>,
    pub filter: NetworkFilter,
}

/// `listener.<address>.*` stats.
#[derive(Debug, Clone)]
pub struct ListenerStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub downstream_cx_destroy: Counter,
    pub no_filter_chain_match: Counter,
}

impl ListenerStats {
    fn new(store: &Store, stat_prefix: &str) -> Self {
        let name = |stat: &str| format!("listener.{stat_prefix}.{stat}");
        ListenerStats {
            downstream_cx_total: store.counter(&name("downstream_cx_total")),
            downstream_cx_active: store.gauge(&name("downstream_cx_active")),
            downstream_cx_destroy: store.counter(&name("downstream_cx_destroy")),
            no_filter_chain_match: store.counter(&name("no_filter_chain_match")),
        }
    }
}

/// A compiled listener.
#[derive(Debug)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    pub bind_to_port: bool,
    pub filter_chains: Vec<FilterChain>,
    pub stats: ListenerStats,
    pub access_logs: AccessLogs,
    /// A UDP listener's route (`socket_address.protocol: UDP`): a service
    /// VIP the kernel serves; it has no filter chains and accepts nothing.
    pub udp_proxy: Option<UdpProxy>,
    /// The message it was compiled from, for `/config_dump`.
    pub source: Listener,
}

impl ListenerConfig {
    /// Compiles one listener; error paths are relative to the Listener.
    pub fn compile(
        listener: &Listener,
        context: &CompileContext,
    ) -> Result<ListenerConfig, ConfigErrors> {
        let store = &context.store;
        let mut errors = ConfigErrors::default();
        let address = match listener.address.as_ref() {
            Some(address) => match socket_address_and_protocol(address) {
                Ok((address, _)) => Some(address),
                Err(e) => {
                    errors.push(e.under("address"));
                    None
                }
            },
            None => {
                errors.push(ConfigError::new("address", "a listener needs an address"));
                None
            }
        };
        // From the message itself, so a bad IP does not make it look TCP.
        let udp = matches!(
            listener.address.as_ref().and_then(|a| a.address.as_ref()),
            Some(AddressKind::SocketAddress(socket)) if socket.protocol == Protocol::Udp as i32
        );
        let udp_proxy = if udp {
            match compile_udp_listener(listener, address) {
                Ok(route) => Some(route),
                Err(e) => {
                    errors.0.extend(e.0);
                    None
                }
            }
        } else {
            errors.0.extend(check_tcp_listener_filters(listener).0);
            None
        };
        let name = if listener.name.is_empty() {
            address.map(stat_address).unwrap_or_default()
        } else {
            listener.name.clone()
        };
        if listener.filter_chains.is_empty() && !udp {
            errors.push(ConfigError::new(
                "filter_chains",
                "a listener needs at least one filter chain",
            ));
        }
        let mut filter_chains = Vec::new();
        let mut seen_ports: Vec<Option<u16>> = Vec::new();
        for (i, chain) in listener.filter_chains.iter().enumerate() {
            let path = format!("filter_chains[{i}]");
            let destination_port = chain
                .filter_chain_match
                .as_ref()
                .and_then(|m| m.destination_port.as_ref())
                .map(|p| p.value);
            let destination_port = match destination_port {
                Some(port) if port == 0 || port > 65535 => {
                    errors.push(ConfigError::new(
                        format!("{path}.filter_chain_match.destination_port"),
                        format!("must be between 1 and 65535, got {port}"),
                    ));
                    None
                }
                port => port.map(|p| p as u16),
            };
            if seen_ports.contains(&destination_port) {
                errors.push(ConfigError::new(
                    format!("{path}.filter_chain_match"),
                    "multiple filter chains with the same matching rules are defined",
                ));
            }
            seen_ports.push(destination_port);
            match compile_filters(chain, context) {
                Ok(filter) => filter_chains.push(FilterChain {
                    name: chain.name.clone(),
                    destination_port,
                    filter,
                }),
                Err(e) => errors.extend_under(&path, e),
            }
        }
        let access_logs = match AccessLogs::compile(&listener.access_log, &context.log_writers) {
            Ok(logs) => Some(logs),
            Err(e) => {
                errors.extend_under("access_log", e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let address = address.expect("checked above");
        let stat_prefix = if listener.stat_prefix.is_empty() {
            stat_address(address)
        } else {
            listener.stat_prefix.clone()
        };
        Ok(ListenerConfig {
            name,
            address,
            bind_to_port: listener.bind_to_port.as_ref().is_none_or(|v| v.value),
            filter_chains,
            stats: ListenerStats::new(store, &stat_prefix),
            access_logs: access_logs.expect("checked above"),
            udp_proxy,
            source: listener.clone(),
        })
    }

    /// The RDS route providers its connection managers route with (the
    /// listener warms until they have routes).
    pub fn route_providers(&self) -> Vec<Arc<crate::http::rds::RouteConfigProvider>> {
        self.filter_chains
            .iter()
            .filter_map(|chain| match &chain.filter {
                NetworkFilter::Http(hcm) => hcm.route_provider().cloned(),
                NetworkFilter::Tcp(_) => None,
            })
            .collect()
    }

    /// The chain for a connection accepted on `local`: one whose
    /// destination port matches, else one without a port rule.
    pub fn select_chain(&self, local: SocketAddr) -> Option<&FilterChain> {
        self.filter_chains
            .iter()
            .find(|chain| chain.destination_port == Some(local.port()))
            .or_else(|| {
                self.filter_chains
                    .iter()
                    .find(|chain| chain.destination_port.is_none())
            })
    }
}

/// Envoy's stat form of an address: `0.0.0.0_10000`, `[::]_80` → `::_80`.
pub fn stat_address(address: SocketAddr) -> String {
    format!("{}_{}", address.ip(), address.port())
}

/// A TCP `socket_address` with an IP literal (listeners never resolve
/// names; the admin address).
pub fn socket_address(address: &Address) -> Result<SocketAddr, ConfigError> {
    let (address, protocol) = socket_address_and_protocol(address)?;
    if protocol == Protocol::Udp {
        return Err(ConfigError::new(
            "socket_address.protocol",
            "only a listener can be UDP (a kernel-served UDP service VIP)",
        ));
    }
    Ok(address)
}

/// A `socket_address` with an IP literal, and its protocol.
fn socket_address_and_protocol(address: &Address) -> Result<(SocketAddr, Protocol), ConfigError> {
    let socket = match &address.address {
        Some(AddressKind::SocketAddress(socket)) => socket,
        Some(AddressKind::Pipe(_)) => {
            return Err(ConfigError::new(
                "pipe",
                "pipe addresses are not supported by Sluice",
            ))
        }
        Some(AddressKind::EnvoyInternalAddress(_)) => {
            return Err(ConfigError::new(
                "envoy_internal_address",
                "internal addresses are not supported by Sluice",
            ))
        }
        None => return Err(ConfigError::new("socket_address", "an address is required")),
    };
    let protocol = Protocol::try_from(socket.protocol).unwrap_or(Protocol::Tcp);
    let port = match socket.port_specifier {
        Some(PortSpecifier::PortValue(port)) if port <= 65535 => port as u16,
        Some(PortSpecifier::PortValue(port)) => {
            return Err(ConfigError::new(
                "socket_address.port_value",
                format!("must be at most 65535, got {port}"),
            ))
        }
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(ConfigError::new(
                "socket_address.named_port",
                "named ports are not supported by Sluice",
            ))
        }
        None => 0,
    };
    let ip: IpAddr = socket.address.parse().map_err(|_| {
        ConfigError::new(
            "socket_address.address",
            format!("'{}' is not a valid IP address", socket.address),
        )
    })?;
    Ok((SocketAddr::new(ip, port), protocol))
}

fn compile_filters(
    chain: &envoy_types::pb::envoy::config::listener::v3::FilterChain,
    context: &CompileContext,
) -> Result<NetworkFilter, ConfigErrors> {
    const HCM: &str =
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    const TCP: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
    match chain.filters.len() {
        0 => {
            return Err(ConfigError::new("filters", "a filter chain needs a network filter").into())
        }
        1 => {}
        _ => {
            return Err(ConfigError::new(
                "filters",
                "Sluice supports exactly one (terminal) network filter per chain",
            )
            .into())
        }
    }
    let filter = &chain.filters[0];
    let any = match &filter.config_type {
        Some(ConfigType::TypedConfig(any)) => any,
        Some(ConfigType::ConfigDiscovery(_)) => {
            return Err(ConfigError::new(
                "filters[0].config_discovery",
                "extension config discovery is not supported by Sluice",
            )
            .into())
        }
        None => {
            return Err(ConfigError::new(
                "filters[0].typed_config",
                format!("filter '{}' needs a typed_config", filter.name),
            )
            .into())
        }
    };
    let path = "filters[0].typed_config";
    match type_name(&any.type_url) {
        HCM => {
            let config: HcmProto = unpack(any).map_err(|e| ConfigErrors::from(e.under(path)))?;
            HttpConnectionManager::compile(&config, context)
                .map(|hcm| NetworkFilter::Http(Arc::new(hcm)))
                .map_err(|e| {
                    let mut errors = ConfigErrors::default();
                    errors.extend_under(path, e);
                    errors
                })
        }
        TCP => {
            let config: TcpProxyProto =
                unpack(any).map_err(|e| ConfigErrors::from(e.under(path)))?;
            TcpProxy::compile(&config, context)
                .map(|tcp| NetworkFilter::Tcp(Arc::new(tcp)))
                .map_err(|e| {
                    let mut errors = ConfigErrors::default();
                    errors.extend_under(path, e);
                    errors
                })
        }
        other => Err(ConfigError::new(
            path,
            format!("network filter type '{other}' is not supported by Sluice"),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> CompileContext {
        CompileContext::with_backend_cluster()
    }

    const TCP: &str = "{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}";

    fn compile(yaml: &str) -> Result<ListenerConfig, ConfigErrors> {
        let proto: Listener = crate::config::parse_message(yaml).expect("test YAML parses");
        ListenerConfig::compile(&proto, &context())
    }

    #[test]
    fn chains_are_picked_by_destination_port_then_default() {
        let listener = compile(&format!(
            "name: l\naddress: {{socket_address: {{address: 0.0.0.0, port_value: 80}}}}\nfilter_chains:\n- {{name: default, filters: [{TCP}]}}\n- {{name: p8080, filter_chain_match: {{destination_port: 8080}}, filters: [{TCP}]}}"
        ))
        .unwrap();
        let pick = |addr: &str| {
            listener
                .select_chain(addr.parse().unwrap())
                .map(|c| c.name.clone())
        };
        assert_eq!(pick("10.0.0.1:8080").as_deref(), Some("p8080"));
        assert_eq!(pick("10.0.0.1:80").as_deref(), Some("default"));
        assert_eq!(listener.stats.downstream_cx_total.value(), 0);
    }

    #[test]
    fn listener_errors_name_their_paths() {
        let text = compile(&format!(
            "name: l\naddress: {{socket_address: {{address: not-an-ip, port_value: 80}}}}\nfilter_chains:\n- {{filters: [{TCP}]}}\n- {{filters: [{TCP}]}}\n- {{filters: [{TCP}, {TCP}]}}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("address.socket_address.address: 'not-an-ip' is not a valid IP address"),
            "{text}"
        );
        assert!(text.contains("filter_chains[1].filter_chain_match: multiple filter chains with the same matching rules"), "{text}");
        assert!(
            text.contains("filter_chains[2].filters: Sluice supports exactly one"),
            "{text}"
        );
    }

    #[test]
    fn unsupported_network_filters_are_rejected() {
        let text = compile(
            "name: l\naddress: {socket_address: {address: 127.0.0.1, port_value: 80}}\nfilter_chains:\n- filters: [{name: redis, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy}}]",
        )
        .unwrap_err()
        .to_string();
        assert!(text.contains("filter_chains[0].filters[0].typed_config: network filter type 'envoy.extensions.filters.network.redis_proxy.v3.RedisProxy' is not supported by Sluice"), "{text}");
    }

    #[test]
    fn stat_addresses_look_like_envoys() {
        assert_eq!(
            stat_address("0.0.0.0:10000".parse().unwrap()),
            "0.0.0.0_10000"
        );
        assert_eq!(stat_address("[::1]:80".parse().unwrap()), "::1_80");
    }
}
