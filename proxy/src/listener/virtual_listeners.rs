//! The `bind_to_port: false` listeners: no sockets of their own, but each
//! has a current [`Generation`] (config plus the drain control of the
//! connections served under it), so connections the kernel redirected to
//! Sluice are served, counted and drained exactly like accepted ones.
//!
//! Lookups by address (one per redirected connection) read an index that
//! is swapped whole on every change: no lock on the accept path.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::config::ListenerConfig;
use super::manager::{DrainSettings, Generation};
use crate::drain;

#[derive(Default)]
pub struct VirtualListeners {
    by_name: Mutex<BTreeMap<String, Arc<Generation>>>,
    by_address: ArcSwap<HashMap<SocketAddr, Arc<Generation>>>,
}

impl VirtualListeners {
    /// Adds or replaces (by name) a listener; a replaced generation's
    /// connections drain.
    pub fn insert(&self, config: Arc<ListenerConfig>, settings: DrainSettings) {
        let mut by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let generation = Arc::new(Generation {
            config,
            drain: drain::channel().0,
        });
        if let Some(previous) = by_name.insert(generation.config.name.clone(), generation) {
            previous.drain.start(settings.period, settings.immediate);
        }
        self.reindex(&by_name);
    }

    /// Removes a listener (its connections drain); false if there was none.
    pub fn remove(&self, name: &str, settings: DrainSettings) -> bool {
        let mut by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let Some(previous) = by_name.remove(name) else {
            return false;
        };
        previous.drain.start(settings.period, settings.immediate);
        self.reindex(&by_name);
        true
    }

    /// The listener for a connection whose original destination is
    /// `destination`: the one on exactly that address, else one on the
    /// wildcard address of its family and the same port (as Envoy hands a
    /// `use_original_dst` connection over). Two listeners on one address:
    /// the first by name, as the datapath plan decides.
    pub fn for_destination(&self, destination: SocketAddr) -> Option<Arc<Generation>> {
        let index = self.by_address.load();
        if let Some(generation) = index.get(&destination) {
            return Some(generation.clone());
        }
        let wildcard = match destination.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        index
            .get(&SocketAddr::new(wildcard, destination.port()))
            .cloned()
    }

    pub fn generations(&self) -> Vec<Arc<Generation>> {
        self.by_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn reindex(&self, by_name: &BTreeMap<String, Arc<Generation>>) {
        let mut index = HashMap::with_capacity(by_name.len());
        // UDP service listeners never receive redirected (TCP) connections,
        // and may share their VIP:port with a TCP listener (DNS on 53).
        for generation in by_name.values().filter(|g| g.config.udp_proxy.is_none()) {
            index
                .entry(generation.config.address)
                .or_insert_with(|| generation.clone());
        }
        self.by_address.store(Arc::new(index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::context::CompileContext;
    use std::time::Duration;

    const SETTINGS: DrainSettings = DrainSettings {
        period: Duration::from_secs(1),
        immediate: false,
    };

    fn config(name: &str, address: &str) -> Arc<ListenerConfig> {
        let yaml = format!(
            "name: {name}\nbind_to_port: false\naddress: {{socket_address: {{address: {}, port_value: {}}}}}\nfilter_chains:\n- filters: [{{name: tcp, typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}}}]",
            address.rsplit_once(':').unwrap().0,
            address.rsplit_once(':').unwrap().1
        );
        let proto = crate::config::parse_message(&yaml).expect("test YAML parses");
        Arc::new(ListenerConfig::compile(&proto, &CompileContext::with_backend_cluster()).unwrap())
    }

    fn draining(generation: &Generation) -> bool {
        matches!(
            generation.drain.state(),
            crate::drain::DrainState::Draining { .. }
        )
    }

    fn name_for(set: &VirtualListeners, destination: &str) -> Option<String> {
        set.for_destination(destination.parse().unwrap())
            .map(|g| g.config.name.clone())
    }

    #[test]
    fn exact_address_first_then_the_wildcard_of_the_same_port() {
        let set = VirtualListeners::default();
        set.insert(config("vip", "10.96.0.10:80"), SETTINGS);
        set.insert(config("any80", "0.0.0.0:80"), SETTINGS);
        assert_eq!(name_for(&set, "10.96.0.10:80").as_deref(), Some("vip"));
        assert_eq!(name_for(&set, "10.96.0.11:80").as_deref(), Some("any80"));
        assert_eq!(name_for(&set, "10.96.0.10:81"), None);
    }

    #[test]
    fn replacing_drains_the_old_generation_and_removing_forgets_the_address() {
        let set = VirtualListeners::default();
        set.insert(config("vip", "10.96.0.10:80"), SETTINGS);
        let first = set
            .for_destination("10.96.0.10:80".parse().unwrap())
            .unwrap();
        set.insert(config("vip", "10.96.0.10:80"), SETTINGS);
        assert!(draining(&first));
        let second = set
            .for_destination("10.96.0.10:80".parse().unwrap())
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(set.remove("vip", SETTINGS));
        assert!(draining(&second));
        assert_eq!(name_for(&set, "10.96.0.10:80"), None);
        assert!(!set.remove("vip", SETTINGS));
    }

    #[test]
    fn udp_service_listeners_never_take_redirected_connections() {
        let yaml = "name: a_dns_udp\nbind_to_port: false\naddress: {socket_address: {address: 10.96.0.10, port_value: 53, protocol: UDP}}\nlistener_filters:\n- name: udp_proxy\n  typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig, stat_prefix: dns, cluster: backend}";
        let proto = crate::config::parse_message(yaml).expect("test YAML parses");
        let udp = ListenerConfig::compile(&proto, &CompileContext::with_backend_cluster()).unwrap();
        let set = VirtualListeners::default();
        set.insert(Arc::new(udp), SETTINGS);
        assert_eq!(name_for(&set, "10.96.0.10:53"), None);
        set.insert(config("b_dns_tcp", "10.96.0.10:53"), SETTINGS);
        assert_eq!(
            name_for(&set, "10.96.0.10:53").as_deref(),
            Some("b_dns_tcp")
        );
        assert_eq!(set.generations().len(), 2);
    }

    #[test]
    fn two_listeners_on_one_address_resolve_to_the_first_by_name() {
        let set = VirtualListeners::default();
        set.insert(config("b", "10.96.0.10:80"), SETTINGS);
        set.insert(config("a", "10.96.0.10:80"), SETTINGS);
        assert_eq!(name_for(&set, "10.96.0.10:80").as_deref(), Some("a"));
    }
}
