//! Kernel counters as Sluice stats (so `/stats` and `/stats/prometheus` show
//! them): the per-CPU connect counters of the socket-LB maps, summed and
//! added to Envoy-style counters once per export.
//!
//! Names: `datapath.socket_lb.<listener>.connects` and `.no_backend` per
//! service (the `bind_to_port: false` listener it comes from), and
//! `datapath.socket_lb.backend.<ip>_<port>.connects` per backend;
//! `datapath.sockmap.<counter>` for local acceleration (`redirected_bytes`,
//! `redirected_messages`, `missed_*`, `sockets_*`) when it is on.

use std::collections::HashMap;

use sluice_ebpf::maps::LbMaps;

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
            }
        }
        for (address, backend_id) in syncer.backends() {
            if let Ok(counters) = maps.backend_counters(backend_id) {
                let name = format!(
                    "datapath.socket_lb.backend.{}_{}.connects",
                    address.ip().to_string().replace('.', "_"),
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
