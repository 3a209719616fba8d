//! Applies a [`Plan`] to the kernel's load-balancing maps by diffing it
//! against what this syncer last installed.
//!
//! Ordering (a connect never sees a half-written service): a new or changed
//! service's backends are written into the slot its service entry does not
//! point at, and only then is the service entry (count + slot) written, in one
//! map update. The previous slot stays intact, so a connect that read the old
//! entry still finds its backends. A slot's Maglev table (weighted or
//! Maglev choice) is part of the slot: written with its backends, before the
//! flip. A removed service's entry goes first, then its backends and
//! tables. IPv4 services use the `LB4_*` maps, IPv6 ones `LB6_*`; service
//! ids, backend ids (per-backend counter slots) and tables are one space for
//! both. Backend ids are shared by every service using the same address and
//! freed when none does.
//!
//! Cost (an EDS push of 10,000 endpoints): a slot's entries are written in
//! one batch per service, only those that differ from what the slot holds;
//! freed backend ids have their counters zeroed after the flips and are
//! reused first, so new endpoints need no counter write before the flip.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use sluice_ebpf::common::{
    Lb4Backend, Lb4BackendKey, Lb4Service, Lb4ServiceKey, Lb6Backend, Lb6ServiceKey, MaglevKey,
    ServiceInfo, MAX_BACKEND_IDS, MAX_SERVICES, MODE_REDIRECT, MODE_SOCKET_LB, PROTO_TCP,
    PROTO_UDP, SERVICE_FLAG_MAGLEV, SERVICE_FLAG_REDIRECT, SERVICE_FLAG_WEIGHTED,
};

pub use super::lb_table::LbTable;
use super::maglev;
use super::plan::{
    BackendChoice, Plan, PlannedBackend, PlannedService, ServiceAddress, ServiceMode,
    ServiceProtocol,
};

/// What one backend slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    backends: Vec<PlannedBackend>,
    choice: BackendChoice,
}

impl Slot {
    const EMPTY: Slot = Slot {
        backends: Vec::new(),
        choice: BackendChoice::Random,
    };

    /// Whether the kernel reads a Maglev table for this slot.
    fn has_table(&self) -> bool {
        self.choice != BackendChoice::Random && !self.backends.is_empty()
    }
}

/// What the syncer installed for one service.
#[derive(Clone, Debug)]
struct Installed {
    service_id: u32,
    listener: String,
    mode: ServiceMode,
    active_slot: u32,
    /// Each slot's content (the inactive one is the previous list).
    slots: [Slot; 2],
    /// A write into this slot failed part-way: the kernel may hold entries
    /// other than `slots` says, so the next write rewrites every entry
    /// instead of only those that differ.
    suspect: [bool; 2],
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
    backend_ids: BTreeMap<SocketAddr, u32>,
    /// The values of `backend_ids`, to find a free id without a scan.
    used_backend_ids: BTreeSet<u32>,
    /// Where the search for a free backend id starts (ids are handed out
    /// round the ring, so a push of 10,000 new endpoints allocates in
    /// O(n log n), not O(n²)).
    next_backend_id: u32,
    /// Free ids whose counters were zeroed when they were freed (after the
    /// sync that stopped using them): taken first, they need no write
    /// before the service flips. May hold ids taken since (skipped).
    zeroed_free_ids: Vec<u32>,
}

/// An IPv6 address as `bpf_sock_addr.user_ip6` holds it (network-order
/// words, read as native integers).
pub fn ip6_words(ip: &std::net::Ipv6Addr) -> [u32; 4] {
    let octets = ip.octets();
    std::array::from_fn(|i| {
        u32::from_ne_bytes([
            octets[4 * i],
            octets[4 * i + 1],
            octets[4 * i + 2],
            octets[4 * i + 3],
        ])
    })
}

/// The inverse of [`ip6_words`].
pub fn ip6_from_words(words: [u32; 4]) -> std::net::Ipv6Addr {
    let mut octets = [0u8; 16];
    for (chunk, word) in octets.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    std::net::Ipv6Addr::from(octets)
}

/// The kernel's key of a service address, per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKey {
    V4(Lb4ServiceKey),
    V6(Lb6ServiceKey),
}

pub fn service_key(address: &ServiceAddress) -> ServiceKey {
    let protocol = match address.protocol {
        ServiceProtocol::Tcp => PROTO_TCP,
        ServiceProtocol::Udp => PROTO_UDP,
    };
    match address.vip {
        IpAddr::V4(vip) => ServiceKey::V4(Lb4ServiceKey {
            address: u32::from(vip).to_be(),
            port: address.port.to_be(),
            protocol,
            pad: 0,
        }),
        IpAddr::V6(vip) => ServiceKey::V6(Lb6ServiceKey {
            address: ip6_words(&vip),
            port: address.port.to_be(),
            protocol,
            pad: 0,
        }),
    }
}

fn flags_of(choice: BackendChoice) -> u32 {
    match choice {
        BackendChoice::Random => 0,
        BackendChoice::Weighted => SERVICE_FLAG_WEIGHTED,
        BackendChoice::Maglev => SERVICE_FLAG_MAGLEV,
    }
}

fn put_service<T: LbTable>(
    table: &mut T,
    key: ServiceKey,
    value: Lb4Service,
) -> Result<(), T::Error> {
    match key {
        ServiceKey::V4(key) => table.put_service(key, value),
        ServiceKey::V6(key) => table.put_service6(key, value),
    }
}

fn delete_service<T: LbTable>(table: &mut T, key: &ServiceKey) -> Result<(), T::Error> {
    match key {
        ServiceKey::V4(key) => table.delete_service(key),
        ServiceKey::V6(key) => table.delete_service6(key),
    }
}

/// A backend's map value, in the map of its address family.
enum BackendEntry {
    V4(Lb4Backend),
    V6(Lb6Backend),
}

fn backend_entry(address: SocketAddr, backend_id: u32) -> BackendEntry {
    match address {
        SocketAddr::V4(v4) => BackendEntry::V4(Lb4Backend {
            address: u32::from(*v4.ip()).to_be(),
            port: v4.port().to_be(),
            pad: 0,
            backend_id,
        }),
        SocketAddr::V6(v6) => BackendEntry::V6(Lb6Backend {
            address: ip6_words(v6.ip()),
            port: v6.port().to_be(),
            pad: 0,
            backend_id,
        }),
    }
}

fn delete_backend<T: LbTable>(
    table: &mut T,
    v6: bool,
    key: &Lb4BackendKey,
) -> Result<(), T::Error> {
    if v6 {
        table.delete_backend6(key)
    } else {
        table.delete_backend(key)
    }
}

impl Syncer {
    /// Backend id of an address, if installed (for counters).
    pub fn backend_id(&self, backend: &SocketAddr) -> Option<u32> {
        self.backend_ids.get(backend).copied()
    }

    /// Installed services as (listener name, service id).
    pub fn services(&self) -> impl Iterator<Item = (&str, u32)> {
        self.installed
            .values()
            .map(|installed| (installed.listener.as_str(), installed.service_id))
    }

    /// Backends with a counter slot, as (address, backend id).
    pub fn backends(&self) -> impl Iterator<Item = (SocketAddr, u32)> + '_ {
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
            delete_service(table, &service_key(&address)).map_err(fail(&address))?;
            let v6 = address.vip.is_ipv6();
            for (slot, content) in installed.slots.iter().enumerate() {
                for index in 0..content.backends.len() {
                    let key = backend_key(installed.service_id, slot as u32, index);
                    delete_backend(table, v6, &key).map_err(fail(&address))?;
                }
                if content.has_table() {
                    table
                        .delete_maglev(&maglev_key(installed.service_id, slot as u32))
                        .map_err(fail(&address))?;
                }
            }
        }
        for (address, service) in &plan.services {
            let wanted = Slot {
                backends: service.backends.clone(),
                choice: service.choice,
            };
            let (service_id, slot, previous) = match self.installed.get_mut(address) {
                Some(installed)
                    if installed.slots[installed.active_slot as usize] == wanted
                        && installed.mode == service.mode
                        && installed.listener == service.listener =>
                {
                    continue
                }
                Some(installed) => {
                    if installed.mode != service.mode || installed.listener != service.listener {
                        table
                            .put_service_info(installed.service_id, service_info(service))
                            .map_err(fail(address))?;
                    }
                    let slot = 1 - installed.active_slot;
                    // What the inactive slot holds, if it can be trusted
                    // (entries equal to the wanted ones are not rewritten).
                    let known = if installed.suspect[slot as usize] {
                        Slot::EMPTY
                    } else {
                        installed.slots[slot as usize].clone()
                    };
                    installed.suspect[slot as usize] = true;
                    (
                        installed.service_id,
                        slot,
                        (installed.slots[slot as usize].clone(), known),
                    )
                }
                None => {
                    let id = self.free_service_id().ok_or_else(|| SyncError {
                        service: address.to_string(),
                        message: format!("LB4_SERVICES is full ({MAX_SERVICES} services)"),
                    })?;
                    table.reset_service_counters(id).map_err(fail(address))?;
                    table
                        .put_service_info(id, service_info(service))
                        .map_err(fail(address))?;
                    (id, 0, (Slot::EMPTY, Slot::EMPTY))
                }
            };
            let (previous, known) = previous;
            let v6 = address.vip.is_ipv6();
            self.write_backends(table, service, service_id, slot, &known)
                .map_err(|message| SyncError {
                    service: address.to_string(),
                    message,
                })?;
            for index in service.backends.len()..previous.backends.len() {
                let key = backend_key(service_id, slot, index);
                delete_backend(table, v6, &key).map_err(fail(address))?;
            }
            if wanted.has_table() {
                let weighted: Vec<(SocketAddr, u32)> = service
                    .backends
                    .iter()
                    .map(|backend| (backend.address, backend.weight))
                    .collect();
                let maglev = maglev::build(&weighted).expect("has_table: not empty");
                table
                    .put_maglev(maglev_key(service_id, slot), &maglev)
                    .map_err(fail(address))?;
            } else if previous.has_table() {
                table
                    .delete_maglev(&maglev_key(service_id, slot))
                    .map_err(fail(address))?;
            }
            let table_flags = if wanted.has_table() {
                flags_of(service.choice)
            } else {
                0
            };
            let mode_flags = match service.mode {
                ServiceMode::SocketLb => 0,
                ServiceMode::Redirect => SERVICE_FLAG_REDIRECT,
            };
            let value = Lb4Service {
                service_id,
                backend_count: service.backends.len() as u32,
                slot,
                flags: table_flags | mode_flags,
            };
            put_service(table, service_key(address), value).map_err(fail(address))?;
            let installed = self.installed.entry(*address).or_insert(Installed {
                service_id,
                listener: service.listener.clone(),
                mode: service.mode,
                active_slot: slot,
                slots: [Slot::EMPTY, Slot::EMPTY],
                suspect: [false, false],
            });
            installed.listener.clone_from(&service.listener);
            installed.mode = service.mode;
            installed.active_slot = slot;
            installed.slots[slot as usize] = wanted;
            installed.suspect[slot as usize] = false;
        }
        self.release_unused_backend_ids(table);
        Ok(())
    }

    fn free_service_id(&self) -> Option<u32> {
        let used: BTreeSet<u32> = self.installed.values().map(|i| i.service_id).collect();
        (0..MAX_SERVICES).find(|id| !used.contains(id))
    }

    /// Writes a service's backends into `slot`, whose kernel content is
    /// `known` (empty when unknown): new backend ids get their counters
    /// zeroed first, then every entry that differs is written, in batches.
    fn write_backends<T: LbTable>(
        &mut self,
        table: &mut T,
        service: &PlannedService,
        service_id: u32,
        slot: u32,
        known: &Slot,
    ) -> Result<(), String> {
        let mut new_ids = Vec::new();
        let (mut keys4, mut values4, mut keys6, mut values6) = (vec![], vec![], vec![], vec![]);
        for (index, backend) in service.backends.iter().enumerate() {
            let backend_id = match self.backend_id_for(&backend.address) {
                Ok((id, new)) => {
                    if new {
                        new_ids.push((backend.address, id));
                    }
                    id
                }
                Err(message) => {
                    self.forget_backend_ids(&new_ids);
                    return Err(message);
                }
            };
            // The same address at the same index: the entry (address and
            // backend id, which lives while any slot refers to it) is there.
            if known
                .backends
                .get(index)
                .is_some_and(|old| old.address == backend.address)
            {
                continue;
            }
            let key = backend_key(service_id, slot, index);
            match backend_entry(backend.address, backend_id) {
                BackendEntry::V4(value) => {
                    keys4.push(key);
                    values4.push(value);
                }
                BackendEntry::V6(value) => {
                    keys6.push(key);
                    values6.push(value);
                }
            }
        }
        let ids: Vec<u32> = new_ids.iter().map(|(_, id)| *id).collect();
        if let Err(error) = table.reset_backend_counters_of(&ids) {
            self.forget_backend_ids(&new_ids);
            return Err(error.to_string());
        }
        table
            .put_backends(&keys4, &values4)
            .map_err(|e| e.to_string())?;
        table
            .put_backends6(&keys6, &values6)
            .map_err(|e| e.to_string())
    }

    /// The backend id of an address, and whether it was allocated now (its
    /// counters are then still to be zeroed).
    fn backend_id_for(&mut self, backend: &SocketAddr) -> Result<(u32, bool), String> {
        if let Some(id) = self.backend_ids.get(backend) {
            return Ok((*id, false));
        }
        while let Some(id) = self.zeroed_free_ids.pop() {
            if self.used_backend_ids.insert(id) {
                self.backend_ids.insert(*backend, id);
                return Ok((id, false));
            }
        }
        let id = (0..MAX_BACKEND_IDS)
            .map(|step| (self.next_backend_id + step) % MAX_BACKEND_IDS)
            .find(|id| !self.used_backend_ids.contains(id))
            .ok_or_else(|| format!("LB4_BACKEND_COUNTERS is full ({MAX_BACKEND_IDS} backends)"))?;
        self.backend_ids.insert(*backend, id);
        self.used_backend_ids.insert(id);
        self.next_backend_id = (id + 1) % MAX_BACKEND_IDS;
        Ok((id, true))
    }

    /// Undoes [`Syncer::backend_id_for`] for ids whose counters were not zeroed.
    fn forget_backend_ids(&mut self, allocated: &[(SocketAddr, u32)]) {
        for (address, id) in allocated {
            self.backend_ids.remove(address);
            self.used_backend_ids.remove(id);
        }
    }

    /// Frees ids no installed slot refers to any more, and zeroes their
    /// counters now, after every service flipped, so the next sync can take
    /// them without a write (if that fails they are zeroed when taken).
    fn release_unused_backend_ids<T: LbTable>(&mut self, table: &mut T) {
        let referenced: BTreeSet<SocketAddr> = self
            .installed
            .values()
            .flat_map(|i| i.slots.iter().flat_map(|slot| &slot.backends))
            .map(|backend| backend.address)
            .collect();
        let used = &mut self.used_backend_ids;
        let mut freed = Vec::new();
        self.backend_ids.retain(|backend, id| {
            let keep = referenced.contains(backend);
            if !keep {
                used.remove(id);
                freed.push(*id);
            }
            keep
        });
        if freed.is_empty() {
            return;
        }
        match table.reset_backend_counters_of(&freed) {
            Ok(()) => self.zeroed_free_ids.extend(freed),
            Err(error) => {
                tracing::debug!(target: "sluice::datapath", %error, "freed backend counters not zeroed; zeroed when reused")
            }
        }
    }
}

fn maglev_key(service_id: u32, slot: u32) -> MaglevKey {
    MaglevKey { service_id, slot }
}

fn service_info(service: &PlannedService) -> ServiceInfo {
    let mode = match service.mode {
        ServiceMode::SocketLb => MODE_SOCKET_LB,
        ServiceMode::Redirect => MODE_REDIRECT,
    };
    ServiceInfo::new(mode, &service.listener)
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
