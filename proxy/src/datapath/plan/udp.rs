//! UDP services of the plan: a `bind_to_port: false` listener with
//! `protocol: UDP` whose `udp_proxy` listener filter routes every datagram
//! to one cluster becomes a UDP socket-LB service fed with that cluster's
//! healthy endpoints, exactly like a `tcp_proxy` VIP. The kernel rewrites
//! `connect()` of UDP sockets and each `sendmsg()` of unconnected ones, and
//! `recvmsg`/`getpeername` show the app the VIP. Sluice has no userspace
//! UDP proxy, so a UDP listener not planned here is not served at all.

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::Protocol;
use envoy_types::pb::envoy::config::listener::v3::listener_filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::udp::udp_proxy::v3::UdpProxyConfig;
use prost::Message;

use super::{
    planned_socket_lb, service_address, ClusterBackends, PlannedService, ServiceAddress,
    ServiceProtocol,
};
use crate::listener::{udp_proxy_cluster, UDP_PROXY_TYPE};

/// Whether the listener's address says `protocol: UDP`.
pub(super) fn is_udp(listener: &Listener) -> bool {
    matches!(
        listener.address.as_ref().and_then(|a| a.address.as_ref()),
        Some(AddressKind::SocketAddress(socket)) if socket.protocol == Protocol::Udp as i32
    )
}

/// The UDP socket-LB service of a (compiled, so well-formed) UDP listener.
pub(super) fn udp_service(
    listener: &Listener,
    healthy_endpoints: &impl Fn(&str) -> Option<ClusterBackends>,
) -> Result<(ServiceAddress, PlannedService), String> {
    let address = service_address(listener)?;
    debug_assert_eq!(address.protocol, ServiceProtocol::Udp);
    let [filter] = listener.listener_filters.as_slice() else {
        return Err("a UDP service needs exactly one listener filter (udp_proxy)".into());
    };
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        return Err(format!(
            "listener filter '{}' has no typed_config",
            filter.name
        ));
    };
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    if type_name != UDP_PROXY_TYPE {
        return Err(format!("its listener filter is {type_name}, not udp_proxy"));
    }
    let config = UdpProxyConfig::decode(any.value.as_slice())
        .map_err(|e| format!("udp_proxy does not decode: {e}"))?;
    let cluster = udp_proxy_cluster(&config).map_err(|e| format!("udp_proxy: {e}"))?;
    planned_socket_lb(listener, address, cluster, "udp_proxy", healthy_endpoints)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{derive, BackendChoice, PlannedBackend, RedirectTargets, ServiceMode};
    use super::*;

    const TCP: &str = "{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}";

    fn listener(yaml: &str) -> Listener {
        crate::config::parse_message(yaml).expect("test YAML parses")
    }

    fn udp_listener(name: &str, address: &str, port: u16, cluster: &str) -> Listener {
        listener(&format!(
            "name: {name}\nbind_to_port: false\naddress: {{socket_address: {{address: '{address}', port_value: {port}, protocol: UDP}}}}\nlistener_filters:\n- name: envoy.filters.udp_listener.udp_proxy\n  typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig, stat_prefix: s, matcher: {{on_no_match: {{action: {{name: r, typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route, cluster: {cluster}}}}}}}}}}}"
        ))
    }

    fn tcp_listener(name: &str, address: &str, port: u16) -> Listener {
        listener(&format!(
            "name: {name}\nbind_to_port: false\naddress: {{socket_address: {{address: '{address}', port_value: {port}}}}}\nfilter_chains:\n- filters: [{TCP}]"
        ))
    }

    fn endpoints(cluster: &str) -> Option<ClusterBackends> {
        let endpoints = match cluster {
            "dns" => vec![
                ("127.0.0.2:5353".parse().unwrap(), 1),
                ("127.0.0.1:5353".parse().unwrap(), 1),
                ("[::1]:5353".parse().unwrap(), 1),
            ],
            "backend" => vec![("127.0.0.1:8080".parse().unwrap(), 1)],
            _ => return None,
        };
        Some(ClusterBackends {
            endpoints,
            consistent_hashing: false,
        })
    }

    fn address(vip: &str, port: u16, protocol: ServiceProtocol) -> ServiceAddress {
        ServiceAddress {
            vip: vip.parse().unwrap(),
            port,
            protocol,
        }
    }

    fn backend(address: &str) -> PlannedBackend {
        PlannedBackend {
            address: address.parse().unwrap(),
            weight: 1,
        }
    }

    #[test]
    fn a_virtual_udp_proxy_listener_becomes_a_udp_socket_lb_service() {
        let plan = derive(
            &[udp_listener("dns", "10.96.0.10", 53, "dns")],
            endpoints,
            RedirectTargets::NONE,
        );
        assert!(plan.not_planned.is_empty(), "{:?}", plan.not_planned);
        let key = address("10.96.0.10", 53, ServiceProtocol::Udp);
        assert_eq!(key.to_string(), "10.96.0.10:53/udp");
        let service = &plan.services[&key];
        assert_eq!(service.listener, "dns");
        assert_eq!(service.cluster, "dns");
        assert_eq!(service.mode, ServiceMode::SocketLb);
        assert_eq!(service.choice, BackendChoice::Random);
        assert_eq!(
            service.backends,
            vec![backend("127.0.0.1:5353"), backend("127.0.0.2:5353")]
        );
    }

    #[test]
    fn an_ipv6_udp_vip_gets_the_ipv6_endpoints() {
        let plan = derive(
            &[udp_listener("dns6", "fd96::10", 53, "dns")],
            endpoints,
            RedirectTargets::NONE,
        );
        let service = &plan.services[&address("fd96::10", 53, ServiceProtocol::Udp)];
        assert_eq!(service.backends, vec![backend("[::1]:5353")]);
    }

    #[test]
    fn tcp_and_udp_on_one_vip_and_port_are_two_services() {
        let plan = derive(
            &[
                tcp_listener("dns_tcp", "10.96.0.10", 53),
                udp_listener("dns_udp", "10.96.0.10", 53, "dns"),
            ],
            endpoints,
            RedirectTargets {
                v4: Some("127.0.0.1:15001".parse().unwrap()),
                v6: None,
            },
        );
        assert!(plan.not_planned.is_empty(), "{:?}", plan.not_planned);
        assert_eq!(plan.services.len(), 2);
        let tcp = &plan.services[&address("10.96.0.10", 53, ServiceProtocol::Tcp)];
        let udp = &plan.services[&address("10.96.0.10", 53, ServiceProtocol::Udp)];
        assert_eq!(
            (tcp.listener.as_str(), tcp.cluster.as_str()),
            ("dns_tcp", "backend")
        );
        assert_eq!(
            (udp.listener.as_str(), udp.cluster.as_str()),
            ("dns_udp", "dns")
        );
    }

    #[test]
    fn two_udp_listeners_on_one_address_keep_the_first() {
        let plan = derive(
            &[
                udp_listener("a", "10.96.0.10", 53, "dns"),
                udp_listener("b", "10.96.0.10", 53, "backend"),
            ],
            endpoints,
            RedirectTargets::NONE,
        );
        let key = address("10.96.0.10", 53, ServiceProtocol::Udp);
        assert_eq!(plan.services[&key].listener, "a");
        assert_eq!(
            plan.not_planned,
            vec![(
                "b".to_string(),
                "10.96.0.10:53/udp is already served by listener 'a'".to_string()
            )]
        );
    }

    #[test]
    fn a_udp_listener_to_a_missing_cluster_is_not_planned() {
        let plan = derive(
            &[udp_listener("dns", "10.96.0.10", 53, "nope")],
            endpoints,
            RedirectTargets::NONE,
        );
        assert!(plan.services.is_empty());
        let reasons: BTreeMap<_, _> = plan.not_planned.into_iter().collect();
        assert_eq!(reasons["dns"], "udp_proxy cluster 'nope' does not exist");
    }

    #[test]
    fn a_udp_service_without_healthy_endpoints_is_empty() {
        let plan = derive(
            &[udp_listener("dns", "10.96.0.10", 53, "dns")],
            |_| Some(ClusterBackends::default()),
            RedirectTargets::NONE,
        );
        assert!(
            plan.services[&address("10.96.0.10", 53, ServiceProtocol::Udp)]
                .backends
                .is_empty()
        );
    }

    #[test]
    fn malformed_udp_listeners_say_why() {
        let without_filter = listener(
            "name: bare\nbind_to_port: false\naddress: {socket_address: {address: 10.96.0.10, port_value: 53, protocol: UDP}}",
        );
        let any = listener(
            "name: any\nbind_to_port: false\naddress: {socket_address: {address: 0.0.0.0, port_value: 53, protocol: UDP}}",
        );
        let plan = derive(&[without_filter, any], endpoints, RedirectTargets::NONE);
        let reasons: BTreeMap<_, _> = plan.not_planned.into_iter().collect();
        assert!(
            reasons["bare"].contains("exactly one listener filter"),
            "{reasons:?}"
        );
        assert!(reasons["any"].contains("cannot be 0.0.0.0"), "{reasons:?}");
    }
}
