//! Kernel counters as Sluice stats (so `/stats` and `/stats/prometheus` show
//! them): the per-CPU connect counters of the socket-LB maps, summed and
//! added to Envoy-style counters once per export.
//!
//! Names: `datapath.socket_lb.<listener>.connects`, `.no_backend` and
//! `.redirects` (connects sent to Sluice's L7 listener) per service (the
//! `bind_to_port: false` listener it comes from), and
//! `datapath.socket_lb.backend.<ip>_<port>.connects` per backend;
//! `datapath.sockmap.<counter>` for local acceleration (`redirected_bytes`,
//! `redirected_messages`, `missed_*`, `sockets_*`) when it is on. XDP
//! ([`XdpExport`]): `datapath.xdp.interface.<iface>.packets|bytes|dropped`
//! and `datapath.xdp.service.<listener>.packets|bytes` (packets arriving on
//! an XDP interface for the service's ip:port); `/stats/prometheus` turns
//! the interface and service into labels (`stats::tags`).

use std::collections::HashMap;

use sluice_ebpf::maps::{LbMaps, XdpMaps};

use super::sync::Syncer;
use crate::stats::Store;

/// Remembers the kernel values already added, to add only the increase.
#[derive(Default)]
pub struct CounterExport {
    seen: HashMap<String, u64>,
}

impl CounterExport {
    /// Adds what the kernel counted since the last export.
    pub fn export(&mut self, store: &Store, syncer: &Syncer, maps: &LbMaps) {
        for (listener, service_id) in syncer.services() {
            if let Ok(counters) = maps.service_counters(service_id) {
                let prefix = format!("datapath.socket_lb.{listener}");
                self.add(store, format!("{prefix}.connects"), counters.connects);
                self.add(store, format!("{prefix}.no_backend"), counters.no_backend);
                self.add(store, format!("{prefix}.redirects"), counters.redirects);
            }
        }
        for (address, backend_id) in syncer.backends() {
            if let Ok(counters) = maps.backend_counters(backend_id) {
                let name = format!(
                    "datapath.socket_lb.backend.{}_{}.connects",
                    address.ip().to_string().replace(['.', ':'], "_"),
                    address.port()
                );
                self.add(store, name, counters.connects);
            }
        }
    }

    /// Adds what local acceleration counted since the last export.
    pub fn export_sockmap(&mut self, store: &Store, maps: &sluice_ebpf::sockmap::SockmapMaps) {
        if let Ok(counters) = maps.counters() {
            for (name, value) in counters.named() {
                self.add(store, format!("datapath.sockmap.{name}"), value);
            }
        }
    }

    fn add(&mut self, store: &Store, name: String, kernel_value: u64) {
        let seen = self.seen.entry(name.clone()).or_insert(0);
        // A smaller value means the slot was reset for a new service or
        // backend: all of it is new.
        let increase = if kernel_value >= *seen {
            kernel_value - *seen
        } else {
            kernel_value
        };
        *seen = kernel_value;
        let counter = store.counter(&name);
        if increase > 0 {
            counter.add(increase);
        }
    }
}

/// Exports the XDP counters (per attached interface and per service).
pub struct XdpExport {
    maps: Option<XdpMaps>,
    /// Attached interfaces and their ifindex.
    interfaces: Vec<(String, u32)>,
}

impl XdpExport {
    pub fn new(maps: Option<XdpMaps>, attached: &[super::status::XdpInterfaceStatus]) -> Self {
        let interfaces = attached
            .iter()
            .filter(|xdp| xdp.error.is_none())
            .filter_map(|xdp| {
                let ifindex = sluice_ebpf::interface_index(&xdp.interface)?;
                Some((xdp.interface.clone(), ifindex))
            })
            .collect();
        XdpExport { maps, interfaces }
    }

    /// Adds what XDP counted since the last export.
    pub fn export(
        &mut self,
        counters: &mut CounterExport,
        store: &Store,
        syncer: &Syncer,
        lb: &LbMaps,
    ) {
        if self.interfaces.is_empty() {
            return;
        }
        if let Some(maps) = &self.maps {
            for (interface, ifindex) in &self.interfaces {
                if let Ok(c) = maps.interface_counters(*ifindex) {
                    let prefix = format!("datapath.xdp.interface.{interface}");
                    counters.add(store, format!("{prefix}.packets"), c.packets);
                    counters.add(store, format!("{prefix}.bytes"), c.bytes);
                    counters.add(store, format!("{prefix}.dropped"), c.dropped);
                }
            }
        }
        for (listener, service_id) in syncer.services() {
            if let Ok(c) = lb.xdp_service_counters(service_id) {
                let prefix = format!("datapath.xdp.service.{listener}");
                counters.add(store, format!("{prefix}.packets"), c.packets);
                counters.add(store, format!("{prefix}.bytes"), c.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_increases_are_added_and_a_reset_slot_counts_from_zero() {
        let store = Store::new();
        let mut export = CounterExport::default();
        let name = "datapath.socket_lb.vip.connects";
        export.add(&store, name.into(), 5);
        export.add(&store, name.into(), 5);
        export.add(&store, name.into(), 8);
        assert_eq!(store.counter(name).value(), 8);
        export.add(&store, name.into(), 2); // slot reset, then 2 connects
        assert_eq!(store.counter(name).value(), 10);
    }
}
