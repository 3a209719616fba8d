//! The kernel datapath plan, derived from configuration (never configured
//! twice): a pure function from listeners and cluster membership to the
//! socket-LB services the kernel should hold.
//!
//! A listener becomes an in-kernel socket-LB service when it says "virtual"
//! (`bind_to_port: false`), listens on one IPv4 or IPv6 address and port,
//! and has one filter chain (without a match) whose only filter is
//! `tcp_proxy` to one cluster; the service's backends are that cluster's
//! healthy endpoints of the VIP's family (a socket cannot change family),
//! with their `load_balancing_weight`s. The cluster's `lb_policy` picks the
//! kernel's choice ([`BackendChoice`]): MAGLEV and RING_HASH become a Maglev
//! table (consistent per client network namespace), other policies a random
//! choice, weighted through a table when the weights differ.
//! A virtual listener on a service address with an
//! `http_connection_manager` becomes a redirect service instead
//! (`redirect_plan`): its one backend is the daemon's redirect address of
//! the VIP's family (`--datapath-redirect-to`, `--datapath-redirect6-to`),
//! where Sluice serves each connection with that listener by its original
//! destination.
//! A UDP listener (`protocol: UDP`, `bind_to_port: false`, the `udp_proxy`
//! listener filter routing to one cluster) becomes a UDP socket-LB service
//! the same way ([`udp`]); TCP and UDP on one VIP:port are two services.
//! Other `bind_to_port: false` listeners are listed in [`Plan::not_planned`]
//! with the reason, so the daemon can say why they stay in userspace.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::{PortSpecifier, Protocol};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::ClusterSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use prost::Message;
use sluice_ebpf::common::MAX_BACKENDS_PER_SERVICE;

use super::redirect_plan::redirect_service;
pub use super::redirect_plan::RedirectTargets;

mod udp;

const TCP_PROXY_TYPE: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
pub(super) const HCM_TYPE: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// How the kernel treats connects to a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceMode {
    /// Rewritten to one of the cluster's endpoints; no proxy.
    #[default]
    SocketLb,
    /// Rewritten to the daemon's redirect address, which serves the
    /// connection with the listener (L7).
    Redirect,
}

/// The transport protocol of a service (part of the kernel's key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceProtocol {
    #[default]
    Tcp,
    Udp,
}

/// A service as the kernel matches it: VIP, port, protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAddress {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: ServiceProtocol,
}

impl std::fmt::Display for ServiceAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.protocol {
            ServiceProtocol::Tcp => "tcp",
            ServiceProtocol::Udp => "udp",
        };
        write!(f, "{}/{protocol}", SocketAddr::new(self.vip, self.port))
    }
}

/// How the kernel picks a service's backend for a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// Uniformly at random (equal weights).
    Random,
    /// At random in proportion to the endpoints' weights (Maglev table).
    Weighted,
    /// Consistent per client network namespace (weighted Maglev table).
    Maglev,
}

/// One backend of a planned service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlannedBackend {
    pub address: SocketAddr,
    /// The endpoint's `load_balancing_weight` (≥ 1).
    pub weight: u32,
}

/// One service of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedService {
    pub listener: String,
    /// The `tcp_proxy` cluster (socket-LB); empty for a redirect.
    pub cluster: String,
    /// Healthy endpoints of the VIP's family, sorted by address, at most
    /// `MAX_BACKENDS_PER_SERVICE`; for a redirect, the redirect address.
    pub backends: Vec<PlannedBackend>,
    pub choice: BackendChoice,
    pub mode: ServiceMode,
}

/// What the plan needs to know of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterBackends {
    /// Healthy endpoints with their `load_balancing_weight`.
    pub endpoints: Vec<(SocketAddr, u32)>,
    /// The cluster's `lb_policy` is MAGLEV or RING_HASH.
    pub consistent_hashing: bool,
}

/// What the kernel should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub services: BTreeMap<ServiceAddress, PlannedService>,
    /// `bind_to_port: false` listeners that stay in userspace, with why.
    pub not_planned: Vec<(String, String)>,
}

impl Plan {
    /// Whether some service redirects to the daemon's L7 listener.
    pub fn has_redirects(&self) -> bool {
        self.services
            .values()
            .any(|service| service.mode == ServiceMode::Redirect)
    }

    /// Whether some IPv4 (first) and some IPv6 (second) service redirects
    /// to the daemon: which redirect addresses must be served.
    pub fn redirect_families(&self) -> (bool, bool) {
        let redirected = |v6: bool| {
            self.services.iter().any(|(address, service)| {
                service.mode == ServiceMode::Redirect && address.vip.is_ipv6() == v6
            })
        };
        (redirected(false), redirected(true))
    }
}

/// Derives the plan. `healthy_endpoints(cluster)` is `None` for an unknown
/// cluster, else the cluster's healthy endpoints and policy. `redirect_to` is
/// where the daemon accepts redirected connections (per family); without
/// it, L7 listeners of that family stay in userspace.
pub fn derive(
    listeners: &[Listener],
    healthy_endpoints: impl Fn(&str) -> Option<ClusterBackends>,
    redirect_to: RedirectTargets,
) -> Plan {
    let mut plan = Plan::default();
    for listener in listeners {
        if listener.bind_to_port.as_ref().is_none_or(|v| v.value) {
            continue;
        }
        let service = if udp::is_udp(listener) {
            udp::udp_service(listener, &healthy_endpoints)
        } else {
            socket_lb_service(listener, &healthy_endpoints)
                .or_else(|reason| redirect_service(listener, &redirect_to).unwrap_or(Err(reason)))
        };
        match service {
            Ok((address, service)) => {
                if let Some(existing) = plan.services.get(&address) {
                    plan.not_planned.push((
                        listener.name.clone(),
                        format!(
                            "{address} is already served by listener '{}'",
                            existing.listener
                        ),
                    ));
                } else {
                    plan.services.insert(address, service);
                }
            }
            Err(reason) => plan.not_planned.push((listener.name.clone(), reason)),
        }
    }
    plan
}

fn socket_lb_service(
    listener: &Listener,
    healthy_endpoints: &impl Fn(&str) -> Option<ClusterBackends>,
) -> Result<(ServiceAddress, PlannedService), String> {
    let address = service_address(listener)?;
    let [chain] = listener.filter_chains.as_slice() else {
        return Err(format!(
            "has {} filter chains; socket-LB needs exactly one",
            listener.filter_chains.len()
        ));
    };
    if chain
        .filter_chain_match
        .as_ref()
        .is_some_and(|m| *m != Default::default())
    {
        return Err("its filter chain has a filter_chain_match; socket-LB needs none".into());
    }
    let [filter] = chain.filters.as_slice() else {
        return Err("socket-LB needs exactly one network filter (tcp_proxy)".into());
    };
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        return Err(format!("filter '{}' has no typed_config", filter.name));
    };
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    if type_name != TCP_PROXY_TYPE {
        return Err(format!(
            "its filter is {type_name}; only tcp_proxy becomes socket-LB and only http_connection_manager a redirect"
        ));
    }
    let tcp_proxy = TcpProxy::decode(any.value.as_slice())
        .map_err(|e| format!("tcp_proxy does not decode: {e}"))?;
    let Some(ClusterSpecifier::Cluster(cluster)) = tcp_proxy.cluster_specifier else {
        return Err("tcp_proxy with weighted_clusters stays in userspace".into());
    };
    planned_socket_lb(listener, address, cluster, "tcp_proxy", healthy_endpoints)
}

/// The socket-LB service of `address` fed with `cluster`'s healthy
/// endpoints; `filter` names what routes to the cluster, for the error.
fn planned_socket_lb(
    listener: &Listener,
    address: ServiceAddress,
    cluster: String,
    filter: &str,
    healthy_endpoints: &impl Fn(&str) -> Option<ClusterBackends>,
) -> Result<(ServiceAddress, PlannedService), String> {
    let members = healthy_endpoints(&cluster)
        .ok_or_else(|| format!("{filter} cluster '{cluster}' does not exist"))?;
    let mut backends: Vec<PlannedBackend> = members
        .endpoints
        .into_iter()
        .filter(|(endpoint, _)| endpoint.is_ipv4() == address.vip.is_ipv4())
        .map(|(address, weight)| PlannedBackend {
            address,
            weight: weight.max(1),
        })
        .collect();
    backends.sort();
    backends.dedup_by_key(|backend| backend.address);
    backends.truncate(MAX_BACKENDS_PER_SERVICE as usize);
    let choice = if members.consistent_hashing {
        BackendChoice::Maglev
    } else if backends
        .windows(2)
        .any(|pair| pair[0].weight != pair[1].weight)
    {
        BackendChoice::Weighted
    } else {
        BackendChoice::Random
    };
    Ok((
        address,
        PlannedService {
            listener: listener.name.clone(),
            cluster,
            backends,
            choice,
            mode: ServiceMode::SocketLb,
        },
    ))
}

pub(super) fn service_address(listener: &Listener) -> Result<ServiceAddress, String> {
    let Some(AddressKind::SocketAddress(socket)) =
        listener.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        return Err("has no socket address".into());
    };
    let protocol = if socket.protocol == Protocol::Udp as i32 {
        ServiceProtocol::Udp
    } else {
        ServiceProtocol::Tcp
    };
    let Ok(vip) = socket.address.parse::<IpAddr>() else {
        return Err(format!("address '{}' is not an IP address", socket.address));
    };
    if vip.is_unspecified() {
        return Err(format!("a service address cannot be {vip}"));
    }
    if let IpAddr::V6(v6) = vip {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!(
                "{vip} is v4-mapped; write the IPv4 address (IPv6 sockets reach it as well)"
            ));
        }
    }
    let Some(PortSpecifier::PortValue(port)) = socket.port_specifier else {
        return Err("has no port_value".into());
    };
    let port = u16::try_from(port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("port {port} is not a service port"))?;
    Ok(ServiceAddress {
        vip,
        port,
        protocol,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub const HCM: &str = "{name: hcm, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: h, route_config: {}}}";
    pub const TCP: &str = "{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}";

    pub fn listener(yaml: &str) -> Listener {
        crate::config::parse_message(yaml).expect("test YAML parses")
    }

    pub fn virtual_listener(name: &str, address: &str, port: u16, filters: &str) -> Listener {
        listener(&format!(
            "name: {name}\nbind_to_port: false\naddress: {{socket_address: {{address: {address}, port_value: {port}}}}}\nfilter_chains:\n- filters: [{filters}]"
        ))
    }

    pub fn endpoints(cluster: &str) -> Option<ClusterBackends> {
        (cluster == "backend").then(|| ClusterBackends {
            endpoints: vec![
                ("127.0.0.2:8080".parse().unwrap(), 1),
                ("127.0.0.1:8080".parse().unwrap(), 1),
                ("[::1]:8080".parse().unwrap(), 1),
            ],
            consistent_hashing: false,
        })
    }

    pub fn vip(port: u16) -> ServiceAddress {
        ServiceAddress {
            vip: "10.96.0.10".parse().unwrap(),
            port,
            protocol: ServiceProtocol::Tcp,
        }
    }

    pub fn backend(address: &str, weight: u32) -> PlannedBackend {
        PlannedBackend {
            address: address.parse().unwrap(),
            weight,
        }
    }

    #[test]
    fn virtual_tcp_proxy_listener_becomes_a_socket_lb_service() {
        let plan = derive(
            &[virtual_listener("svc", "10.96.0.10", 80, TCP)],
            endpoints,
            RedirectTargets::NONE,
        );
        assert!(plan.not_planned.is_empty(), "{:?}", plan.not_planned);
        let service = &plan.services[&vip(80)];
        assert_eq!(service.listener, "svc");
        assert_eq!(service.cluster, "backend");
        // Sorted, IPv4 only.
        assert_eq!(
            service.backends,
            vec![backend("127.0.0.1:8080", 1), backend("127.0.0.2:8080", 1)]
        );
        assert_eq!(service.choice, BackendChoice::Random);
    }

    #[test]
    fn an_ipv6_vip_gets_the_ipv6_endpoints() {
        let plan = derive(
            &[virtual_listener("svc6", "'fd00::10'", 80, TCP)],
            endpoints,
            RedirectTargets::NONE,
        );
        assert!(plan.not_planned.is_empty(), "{:?}", plan.not_planned);
        let address = ServiceAddress {
            vip: "fd00::10".parse().unwrap(),
            port: 80,
            protocol: ServiceProtocol::Tcp,
        };
        assert_eq!(address.to_string(), "[fd00::10]:80/tcp");
        assert_eq!(
            plan.services[&address].backends,
            vec![backend("[::1]:8080", 1)]
        );
    }

    #[test]
    fn the_lb_policy_and_weights_pick_the_kernel_choice() {
        let with = |weights: [u32; 2], consistent_hashing| {
            move |_: &str| {
                Some(ClusterBackends {
                    endpoints: vec![
                        ("127.0.0.1:1".parse().unwrap(), weights[0]),
                        ("127.0.0.2:1".parse().unwrap(), weights[1]),
                    ],
                    consistent_hashing,
                })
            }
        };
        let listeners = [virtual_listener("svc", "10.96.0.10", 80, TCP)];
        let choice = |plan: Plan| plan.services[&vip(80)].choice;
        assert_eq!(
            choice(derive(
                &listeners,
                with([2, 2], false),
                RedirectTargets::NONE
            )),
            BackendChoice::Random
        );
        assert_eq!(
            choice(derive(
                &listeners,
                with([3, 1], false),
                RedirectTargets::NONE
            )),
            BackendChoice::Weighted
        );
        assert_eq!(
            choice(derive(
                &listeners,
                with([1, 1], true),
                RedirectTargets::NONE
            )),
            BackendChoice::Maglev
        );
        let plan = derive(&listeners, with([3, 0], true), RedirectTargets::NONE);
        assert_eq!(
            plan.services[&vip(80)].backends,
            vec![backend("127.0.0.1:1", 3), backend("127.0.0.2:1", 1)],
            "weight 0 counts as 1"
        );
    }

    #[test]
    fn duplicate_endpoints_become_one_backend() {
        let plan = derive(
            &[virtual_listener("svc", "10.96.0.10", 80, TCP)],
            |_| {
                Some(ClusterBackends {
                    endpoints: vec![
                        ("127.0.0.1:1".parse().unwrap(), 1),
                        ("127.0.0.1:1".parse().unwrap(), 1),
                    ],
                    consistent_hashing: false,
                })
            },
            RedirectTargets::NONE,
        );
        assert_eq!(plan.services[&vip(80)].backends.len(), 1);
    }

    #[test]
    fn bound_listeners_are_not_part_of_the_plan() {
        let bound = listener(&format!(
            "name: real\naddress: {{socket_address: {{address: 127.0.0.1, port_value: 80}}}}\nfilter_chains:\n- filters: [{TCP}]"
        ));
        let plan = derive(&[bound], endpoints, RedirectTargets::NONE);
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn ineligible_virtual_listeners_say_why() {
        let weighted = "{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, weighted_clusters: {clusters: [{name: backend, weight: 1}]}}}";
        let missing = "{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: nope}}";
        let plan = derive(
            &[
                virtual_listener("l7", "10.96.0.10", 80, HCM),
                virtual_listener("weighted", "10.96.0.10", 81, weighted),
                virtual_listener("missing", "10.96.0.10", 82, missing),
                virtual_listener("mapped", "'::ffff:10.0.0.1'", 80, TCP),
                virtual_listener("any", "0.0.0.0", 80, TCP),
                virtual_listener("any6", "'::'", 80, TCP),
                virtual_listener("name", "svc.local", 80, TCP),
                virtual_listener("two", "10.96.0.10", 83, &format!("{TCP}, {TCP}")),
            ],
            endpoints,
            RedirectTargets::NONE,
        );
        assert!(plan.services.is_empty());
        let reasons: BTreeMap<_, _> = plan.not_planned.into_iter().collect();
        assert!(
            reasons["l7"].contains("only tcp_proxy"),
            "{}",
            reasons["l7"]
        );
        assert!(reasons["weighted"].contains("weighted_clusters"));
        assert!(reasons["missing"].contains("'nope' does not exist"));
        assert!(
            reasons["mapped"].contains("v4-mapped"),
            "{}",
            reasons["mapped"]
        );
        assert!(reasons["any"].contains("0.0.0.0"));
        assert!(
            reasons["any6"].contains("cannot be ::"),
            "{}",
            reasons["any6"]
        );
        assert!(reasons["name"].contains("not an IP address"));
        assert!(reasons["two"].contains("exactly one network filter"));
    }

    #[test]
    fn a_second_listener_on_the_same_service_address_is_refused() {
        let plan = derive(
            &[
                virtual_listener("first", "10.96.0.10", 80, TCP),
                virtual_listener("second", "10.96.0.10", 80, TCP),
            ],
            endpoints,
            RedirectTargets::NONE,
        );
        assert_eq!(plan.services[&vip(80)].listener, "first");
        assert_eq!(plan.not_planned.len(), 1);
        assert!(plan.not_planned[0]
            .1
            .contains("already served by listener 'first'"));
    }

    #[test]
    fn a_cluster_without_healthy_endpoints_gives_an_empty_service() {
        let plan = derive(
            &[virtual_listener("svc", "10.96.0.10", 80, TCP)],
            |_| Some(ClusterBackends::default()),
            RedirectTargets::NONE,
        );
        assert!(plan.services[&vip(80)].backends.is_empty());
    }
}
