//! Applies a [`Plan`] to the kernel's load-balancing maps by diffing it
//! against what this syncer last installed.
//!
//! Ordering (a connect never sees a half-written service): a new or changed
//! service's backends are written into the slot its service entry does not
//! point at, and only then is the service entry (count + slot) written, in one
//! map update. The previous slot stays intact, so a connect that read the old
//! entry still finds its backends. A removed service's entry goes first, then
//! its backends. Backend ids (per-backend counter slots) are shared by every
//! service using the same address and freed when none does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;

use sluice_ebpf::common::{
    Lb4Backend, Lb4BackendKey, Lb4Service, Lb4ServiceKey, ServiceInfo, MAX_BACKEND_IDS,
    MAX_SERVICES, MODE_SOCKET_LB, PROTO_TCP,
};

use super::plan::{Plan, ServiceAddress};

/// The map operations the syncer needs (the BPF maps, or a fake in tests).
pub trait LbTable {
    type Error: std::fmt::Display;
    fn put_backend(&mut self, key: Lb4BackendKey, value: Lb4Backend) -> Result<(), Self::Error>;
    fn delete_backend(&mut self, key: &Lb4BackendKey) -> Result<(), Self::Error>;
    fn put_service(&mut self, key: Lb4ServiceKey, value: Lb4Service) -> Result<(), Self::Error>;
    fn delete_service(&mut self, key: &Lb4ServiceKey) -> Result<(), Self::Error>;
    /// Records the listener a service comes from (read by `sluicectl`).
    fn put_service_info(&mut self, service_id: u32, info: ServiceInfo) -> Result<(), Self::Error>;
    /// Zeroes a counter slot before an id is (re)used.
    fn reset_service_counters(&mut self, service_id: u32) -> Result<(), Self::Error>;
    fn reset_backend_counters(&mut self, backend_id: u32) -> Result<(), Self::Error>;
}

impl LbTable for sluice_ebpf::maps::LbMaps {
    type Error = sluice_ebpf::DatapathError;
    fn put_backend(&mut self, key: Lb4BackendKey, value: Lb4Backend) -> Result<(), Self::Error> {
        self.insert_backend(key, value)
    }
    fn delete_backend(&mut self, key: &Lb4BackendKey) -> Result<(), Self::Error> {
        self.remove_backend(key)
    }
    fn put_service(&mut self, key: Lb4ServiceKey, value: Lb4Service) -> Result<(), Self::Error> {
        self.insert_service(key, value)
    }
    fn delete_service(&mut self, key: &Lb4ServiceKey) -> Result<(), Self::Error> {
        self.remove_service(key)
    }
    fn put_service_info(&mut self, service_id: u32, info: ServiceInfo) -> Result<(), Self::Error> {
        self.set_service_info(service_id, info)
    }
    fn reset_service_counters(&mut self, service_id: u32) -> Result<(), Self::Error> {
        self.zero_service_counters(service_id)
    }
    fn reset_backend_counters(&mut self, backend_id: u32) -> Result<(), Self::Error> {
        self.zero_backend_counters(backend_id)
    }
}

/// What the syncer installed for one service.
#[derive(Clone, Debug)]
struct Installed {
    service_id: u32,
    listener: String,
    active_slot: u32,
    /// Backends in each slot (the inactive one is the previous list).
    slots: [Vec<SocketAddrV4>; 2],
}

/// A map write that failed, naming the service.
#[derive(Debug, thiserror::Error)]
#[error("datapath sync of {service}: {message}")]
pub struct SyncError {
    pub service: String,
    pub message: String,
}

/// Keeps the kernel maps equal to the latest plan.
#[derive(Default)]
pub struct Syncer {
    installed: BTreeMap<ServiceAddress, Installed>,
    backend_ids: BTreeMap<SocketAddrV4, u32>,
    /// The values of `backend_ids`, to find a free id without a scan.
    used_backend_ids: BTreeSet<u32>,
    /// Where the search for a free backend id starts (ids are handed out
    /// round the ring, so a push of 10,000 new endpoints allocates in
    /// O(n log n), not O(n²)).
    next_backend_id: u32,
}

pub fn service_key(address: &ServiceAddress) -> Lb4ServiceKey {
    Lb4ServiceKey {
        address: u32::from(address.vip).to_be(),
        port: address.port.to_be(),
        protocol: PROTO_TCP,
        pad: 0,
    }
}

impl Syncer {
    /// Backend id of an address, if installed (for counters).
    pub fn backend_id(&self, backend: &SocketAddrV4) -> Option<u32> {
        self.backend_ids.get(backend).copied()
    }

    /// Installed services as (listener name, service id).
    pub fn services(&self) -> impl Iterator<Item = (&str, u32)> {
        self.installed
            .values()
            .map(|installed| (installed.listener.as_str(), installed.service_id))
    }

    /// Backends with a counter slot, as (address, backend id).
    pub fn backends(&self) -> impl Iterator<Item = (SocketAddrV4, u32)> + '_ {
        self.backend_ids.iter().map(|(address, id)| (*address, *id))
    }

    /// Brings `table` from the last applied plan to `plan`.
    pub fn apply<T: LbTable>(&mut self, plan: &Plan, table: &mut T) -> Result<(), SyncError> {
        let fail = |service: &ServiceAddress| {
            let service = service.to_string();
            move |e: T::Error| SyncError {
                service: service.clone(),
                message: e.to_string(),
            }
        };
        let removed: Vec<ServiceAddress> = self
            .installed
            .keys()
            .filter(|address| !plan.services.contains_key(address))
            .copied()
            .collect();
        for address in removed {
            let installed = self.installed.remove(&address).expect("listed above");
            table
                .delete_service(&service_key(&address))
                .map_err(fail(&address))?;
            for (slot, backends) in installed.slots.iter().enumerate() {
                for index in 0..backends.len() {
                    table
                        .delete_backend(&backend_key(installed.service_id, slot as u32, index))
                        .map_err(fail(&address))?;
                }
            }
        }
        for (address, service) in &plan.services {
            let (service_id, slot, previous_in_slot) = match self.installed.get(address) {
                Some(installed)
                    if installed.slots[installed.active_slot as usize] == service.backends =>
                {
                    continue
                }
                Some(installed) => {
                    let slot = 1 - installed.active_slot;
                    (
                        installed.service_id,
                        slot,
                        installed.slots[slot as usize].len(),
                    )
                }
                None => {
                    let id = self.free_service_id().ok_or_else(|| SyncError {
                        service: address.to_string(),
                        message: format!("LB4_SERVICES is full ({MAX_SERVICES} services)"),
                    })?;
                    table.reset_service_counters(id).map_err(fail(address))?;
                    table
                        .put_service_info(id, ServiceInfo::new(MODE_SOCKET_LB, &service.listener))
                        .map_err(fail(address))?;
                    (id, 0, 0)
                }
            };
            for (index, backend) in service.backends.iter().enumerate() {
                let backend_id =
                    self.backend_id_for(backend, table)
                        .map_err(|message| SyncError {
                            service: address.to_string(),
                            message,
                        })?;
                let value = Lb4Backend {
                    address: u32::from(*backend.ip()).to_be(),
                    port: backend.port().to_be(),
                    pad: 0,
                    backend_id,
                };
                table
                    .put_backend(backend_key(service_id, slot, index), value)
                    .map_err(fail(address))?;
            }
            for index in service.backends.len()..previous_in_slot {
                table
                    .delete_backend(&backend_key(service_id, slot, index))
                    .map_err(fail(address))?;
            }
            table
                .put_service(
                    service_key(address),
                    Lb4Service {
                        service_id,
                        backend_count: service.backends.len() as u32,
                        slot,
                        flags: 0,
                    },
                )
                .map_err(fail(address))?;
            let installed = self.installed.entry(*address).or_insert(Installed {
                service_id,
                listener: service.listener.clone(),
                active_slot: slot,
                slots: [Vec::new(), Vec::new()],
            });
            installed.active_slot = slot;
            installed.slots[slot as usize] = service.backends.clone();
        }
        self.release_unused_backend_ids();
        Ok(())
    }

    fn free_service_id(&self) -> Option<u32> {
        let used: BTreeSet<u32> = self.installed.values().map(|i| i.service_id).collect();
        (0..MAX_SERVICES).find(|id| !used.contains(id))
    }

    fn backend_id_for<T: LbTable>(
        &mut self,
        backend: &SocketAddrV4,
        table: &mut T,
    ) -> Result<u32, String> {
        if let Some(id) = self.backend_ids.get(backend) {
            return Ok(*id);
        }
        let id = (0..MAX_BACKEND_IDS)
            .map(|step| (self.next_backend_id + step) % MAX_BACKEND_IDS)
            .find(|id| !self.used_backend_ids.contains(id))
            .ok_or_else(|| format!("LB4_BACKEND_COUNTERS is full ({MAX_BACKEND_IDS} backends)"))?;
        table
            .reset_backend_counters(id)
            .map_err(|e| e.to_string())?;
        self.backend_ids.insert(*backend, id);
        self.used_backend_ids.insert(id);
        self.next_backend_id = (id + 1) % MAX_BACKEND_IDS;
        Ok(id)
    }

    /// Frees ids no installed slot refers to any more.
    fn release_unused_backend_ids(&mut self) {
        let referenced: BTreeSet<SocketAddrV4> = self
            .installed
            .values()
            .flat_map(|i| i.slots.iter().flatten().copied())
            .collect();
        let used = &mut self.used_backend_ids;
        self.backend_ids.retain(|backend, id| {
            let keep = referenced.contains(backend);
            if !keep {
                used.remove(id);
            }
            keep
        });
    }
}

fn backend_key(service_id: u32, slot: u32, index: usize) -> Lb4BackendKey {
    Lb4BackendKey {
        service_id,
        slot,
        index: index as u32,
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
