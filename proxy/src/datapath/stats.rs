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
use std::net::SocketAddr;

use sluice_ebpf::maps::{LbMaps, XdpMaps};

use super::sync::Syncer;
use crate::stats::{Counter, Store};

/// Remembers the kernel values already added, to add only the increase.
#[derive(Default)]
pub struct CounterExport {
    seen: HashMap<String, u64>,
    /// By backend id: its address, its stat and the kernel value already
    /// added (ids are reused for other addresses only after a reset).
    backends: HashMap<u32, ExportedBackend>,
}

struct ExportedBackend {
    address: SocketAddr,
    connects: Counter,
    seen: u64,
}

impl ExportedBackend {
    fn new(store: &Store, address: SocketAddr) -> ExportedBackend {
        let name = format!(
            "datapath.socket_lb.backend.{}_{}.connects",
            address.ip().to_string().replace(['.', ':'], "_"),
            address.port()
        );
        ExportedBackend {
            address,
            connects: store.counter(&name),
            seen: 0,
        }
    }
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
        self.export_backends(store, syncer, maps);
    }

    /// Every backend's connects in one batched read of the per-CPU
    /// counters (ids are allocated lowest first, so `0..=max id` is dense),
    /// added to stats whose handles are kept between exports.
    fn export_backends(&mut self, store: &Store, syncer: &Syncer, maps: &LbMaps) {
        let live: HashMap<u32, SocketAddr> = syncer.backends().map(|(a, id)| (id, a)).collect();
        self.backends.retain(|id, _| live.contains_key(id));
        let Some(&max_id) = live.keys().max() else {
            return;
        };
        let Ok(connects) = maps.backend_connects_below(max_id + 1) else {
            return;
        };
        for (&id, &address) in &live {
            let exported = self
                .backends
                .entry(id)
                .or_insert_with(|| ExportedBackend::new(store, address));
            if exported.address != address {
                *exported = ExportedBackend::new(store, address);
            }
            let value = connects[id as usize];
            exported.connects.add(increase(&mut exported.seen, value));
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
        let increase = increase(seen, kernel_value);
        let counter = store.counter(&name);
        if increase > 0 {
            counter.add(increase);
        }
    }
}

/// What the kernel counted since `seen` (then `seen` = `kernel_value`). A
/// smaller value means the slot was reset for a new service or backend:
/// all of it is new.
fn increase(seen: &mut u64, kernel_value: u64) -> u64 {
    let increase = if kernel_value >= *seen {
        kernel_value - *seen
    } else {
        kernel_value
    };
    *seen = kernel_value;
    increase
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
