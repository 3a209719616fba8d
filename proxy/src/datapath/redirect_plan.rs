//! Which `bind_to_port: false` listeners become transparent redirects to
//! Sluice's L7 listener, and where to: a virtual listener on a service
//! address with an `http_connection_manager` in some filter chain becomes a
//! redirect service whose one backend is the daemon's redirect address of
//! the VIP's family. IPv4 VIPs go to `--datapath-redirect-to` (IPv4), IPv6
//! VIPs to `--datapath-redirect6-to` (default `[::1]` on the same port): a
//! socket cannot change family, and an IPv6 socket reaches 127.0.0.1 only
//! through a v4-mapped address, which `IPV6_V6ONLY` sockets refuse. Part of
//! the pure plan (`plan`).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::Listener;

use super::plan::{
    service_address, BackendChoice, PlannedBackend, PlannedService, ServiceAddress, ServiceMode,
    HCM_TYPE,
};

/// Where the daemon accepts redirected connections, per family (`None`:
/// not served, so L7 listeners of that family are not redirected).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedirectTargets {
    pub v4: Option<SocketAddrV4>,
    pub v6: Option<SocketAddrV6>,
}

impl RedirectTargets {
    /// No redirect address: every L7 listener stays in userspace.
    pub const NONE: RedirectTargets = RedirectTargets { v4: None, v6: None };
}

/// A virtual listener on a service address with an `http_connection_manager`
/// in some filter chain: redirected to the daemon. `None` if it is not one
/// or there is no redirect address at all; an error if its family has none.
pub(super) fn redirect_service(
    listener: &Listener,
    redirect_to: &RedirectTargets,
) -> Option<Result<(ServiceAddress, PlannedService), String>> {
    if *redirect_to == RedirectTargets::NONE {
        return None;
    }
    let address = service_address(listener).ok()?;
    let has_hcm = listener.filter_chains.iter().any(|chain| {
        chain
            .filters
            .iter()
            .any(|filter| match &filter.config_type {
                Some(ConfigType::TypedConfig(any)) => {
                    any.type_url.rsplit('/').next() == Some(HCM_TYPE)
                }
                _ => false,
            })
    });
    if !has_hcm {
        return None;
    }
    let target = if address.vip.is_ipv6() {
        redirect_to.v6.map(SocketAddr::V6)
    } else {
        redirect_to.v4.map(SocketAddr::V4)
    };
    let Some(target) = target else {
        let family = if address.vip.is_ipv6() {
            "IPv6"
        } else {
            "IPv4"
        };
        return Some(Err(format!(
            "{address}: no {family} redirect address is served, so it is not redirected"
        )));
    };
    Some(Ok((
        address,
        PlannedService {
            listener: listener.name.clone(),
            cluster: String::new(),
            backends: vec![PlannedBackend {
                address: target,
                weight: 1,
            }],
            choice: BackendChoice::Random,
            mode: ServiceMode::Redirect,
        },
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::plan::tests::{
        backend, endpoints, listener, vip, virtual_listener, HCM, TCP,
    };
    use super::super::plan::{derive, ServiceProtocol};
    use super::*;

    fn redirect_to() -> RedirectTargets {
        RedirectTargets {
            v4: Some("127.0.0.1:15001".parse().unwrap()),
            v6: Some("[::1]:15001".parse().unwrap()),
        }
    }

    #[test]
    fn virtual_http_listener_becomes_a_redirect_to_the_daemon() {
        let plan = derive(
            &[
                virtual_listener("l7", "10.96.0.10", 80, HCM),
                virtual_listener("svc", "10.96.0.10", 81, TCP),
            ],
            endpoints,
            redirect_to(),
        );
        assert!(plan.not_planned.is_empty(), "{:?}", plan.not_planned);
        assert!(plan.has_redirects());
        assert_eq!(
            plan.services[&vip(80)],
            PlannedService {
                listener: "l7".into(),
                cluster: String::new(),
                backends: vec![backend("127.0.0.1:15001", 1)],
                choice: BackendChoice::Random,
                mode: ServiceMode::Redirect,
            }
        );
        assert_eq!(plan.services[&vip(81)].mode, ServiceMode::SocketLb);
    }

    #[test]
    fn http_listeners_with_several_chains_are_redirected_too() {
        let two_chains = listener(&format!(
            "name: l7\nbind_to_port: false\naddress: {{socket_address: {{address: 10.96.0.10, port_value: 80}}}}\nfilter_chains:\n- filters: [{HCM}]\n- filter_chain_match: {{destination_port: 80}}\n  filters: [{TCP}]"
        ));
        let plan = derive(&[two_chains], endpoints, redirect_to());
        assert_eq!(plan.services[&vip(80)].mode, ServiceMode::Redirect);
    }

    #[test]
    fn redirects_need_a_service_address_and_an_http_filter() {
        let weighted = "{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, weighted_clusters: {clusters: [{name: backend, weight: 1}]}}}";
        let plan = derive(
            &[
                virtual_listener("any", "0.0.0.0", 80, HCM),
                virtual_listener("weighted", "10.96.0.10", 81, weighted),
            ],
            endpoints,
            redirect_to(),
        );
        assert!(plan.services.is_empty());
        assert!(!plan.has_redirects());
        let reasons: BTreeMap<_, _> = plan.not_planned.into_iter().collect();
        assert!(reasons["any"].contains("0.0.0.0"), "{}", reasons["any"]);
        assert!(reasons["weighted"].contains("weighted_clusters"));
    }

    #[test]
    fn a_redirect_and_a_socket_lb_listener_on_one_address_keep_the_first() {
        let plan = derive(
            &[
                virtual_listener("a_l7", "10.96.0.10", 80, HCM),
                virtual_listener("b_tcp", "10.96.0.10", 80, TCP),
            ],
            endpoints,
            redirect_to(),
        );
        assert_eq!(plan.services[&vip(80)].listener, "a_l7");
        assert_eq!(plan.services[&vip(80)].mode, ServiceMode::Redirect);
        assert!(plan.not_planned[0]
            .1
            .contains("already served by listener 'a_l7'"));
    }

    #[test]
    fn an_ipv6_http_vip_is_redirected_to_the_ipv6_redirect_address() {
        let plan = derive(
            &[
                virtual_listener("l7", "10.96.0.10", 80, HCM),
                virtual_listener("l7_v6", "'fd96::20'", 80, HCM),
            ],
            endpoints,
            redirect_to(),
        );
        assert!(plan.not_planned.is_empty(), "{:?}", plan.not_planned);
        assert_eq!(plan.redirect_families(), (true, true));
        let v6 = ServiceAddress {
            vip: "fd96::20".parse().unwrap(),
            port: 80,
            protocol: ServiceProtocol::Tcp,
        };
        assert_eq!(plan.services[&v6].listener, "l7_v6");
        assert_eq!(plan.services[&v6].mode, ServiceMode::Redirect);
        assert_eq!(plan.services[&v6].backends, vec![backend("[::1]:15001", 1)]);
        assert_eq!(
            plan.services[&vip(80)].backends,
            vec![backend("127.0.0.1:15001", 1)]
        );
    }

    #[test]
    fn a_family_without_a_served_redirect_address_stays_in_userspace_with_a_reason() {
        let listeners = [
            virtual_listener("l7", "10.96.0.10", 80, HCM),
            virtual_listener("l7_v6", "'fd96::20'", 80, HCM),
        ];
        let v4_only = RedirectTargets {
            v6: None,
            ..redirect_to()
        };
        let plan = derive(&listeners, endpoints, v4_only);
        assert_eq!(plan.redirect_families(), (true, false));
        assert_eq!(plan.not_planned.len(), 1);
        assert_eq!(plan.not_planned[0].0, "l7_v6");
        assert!(
            plan.not_planned[0].1.contains("no IPv6 redirect address"),
            "{}",
            plan.not_planned[0].1
        );
        let v6_only = RedirectTargets {
            v4: None,
            ..redirect_to()
        };
        let plan = derive(&listeners, endpoints, v6_only);
        assert_eq!(plan.redirect_families(), (false, true));
        assert!(plan.not_planned[0].1.contains("no IPv4 redirect address"));
        // Without any redirect address, L7 listeners are simply not socket-LB.
        let plan = derive(&listeners, endpoints, RedirectTargets::NONE);
        assert!(plan.services.is_empty());
        assert!(plan.not_planned[0].1.contains("only tcp_proxy"));
    }
}
