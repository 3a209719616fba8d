//! The map operations the [`sync`](super::sync) syncer performs, as a trait:
//! implemented by the kernel's load-balancing maps (`sluice_ebpf::maps::LbMaps`:
//! batched `bpf()` writes where the kernel has them) and by an in-memory
//! fake in the syncer's tests.

use sluice_ebpf::common::{
    Lb4Backend, Lb4BackendKey, Lb4Service, Lb4ServiceKey, Lb6Backend, Lb6ServiceKey, MaglevKey,
    MaglevTable, ServiceInfo,
};

/// The map operations the syncer needs (the BPF maps, or a fake in tests).
pub trait LbTable {
    type Error: std::fmt::Display;
    fn put_backend(&mut self, key: Lb4BackendKey, value: Lb4Backend) -> Result<(), Self::Error>;
    fn delete_backend(&mut self, key: &Lb4BackendKey) -> Result<(), Self::Error>;
    fn put_service(&mut self, key: Lb4ServiceKey, value: Lb4Service) -> Result<(), Self::Error>;
    fn delete_service(&mut self, key: &Lb4ServiceKey) -> Result<(), Self::Error>;
    fn put_backend6(&mut self, key: Lb4BackendKey, value: Lb6Backend) -> Result<(), Self::Error>;
    fn delete_backend6(&mut self, key: &Lb4BackendKey) -> Result<(), Self::Error>;
    fn put_service6(&mut self, key: Lb6ServiceKey, value: Lb4Service) -> Result<(), Self::Error>;
    fn delete_service6(&mut self, key: &Lb6ServiceKey) -> Result<(), Self::Error>;
    fn put_maglev(&mut self, key: MaglevKey, table: &MaglevTable) -> Result<(), Self::Error>;
    fn delete_maglev(&mut self, key: &MaglevKey) -> Result<(), Self::Error>;
    /// Records the listener a service comes from (read by `sluicectl`).
    fn put_service_info(&mut self, service_id: u32, info: ServiceInfo) -> Result<(), Self::Error>;
    /// Zeroes a counter slot before an id is (re)used.
    fn reset_service_counters(&mut self, service_id: u32) -> Result<(), Self::Error>;
    fn reset_backend_counters(&mut self, backend_id: u32) -> Result<(), Self::Error>;

    /// Writes IPv4 backend entries in order (on the BPF maps one `bpf()`
    /// call: `BPF_MAP_UPDATE_BATCH`); by default one by one.
    fn put_backends(
        &mut self,
        keys: &[Lb4BackendKey],
        values: &[Lb4Backend],
    ) -> Result<(), Self::Error> {
        keys.iter()
            .zip(values)
            .try_for_each(|(key, value)| self.put_backend(*key, *value))
    }
    /// [`LbTable::put_backends`] for IPv6 backends.
    fn put_backends6(
        &mut self,
        keys: &[Lb4BackendKey],
        values: &[Lb6Backend],
    ) -> Result<(), Self::Error> {
        keys.iter()
            .zip(values)
            .try_for_each(|(key, value)| self.put_backend6(*key, *value))
    }
    /// [`LbTable::reset_backend_counters`] for several ids at once.
    fn reset_backend_counters_of(&mut self, backend_ids: &[u32]) -> Result<(), Self::Error> {
        backend_ids
            .iter()
            .try_for_each(|id| self.reset_backend_counters(*id))
    }
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
    fn put_backend6(&mut self, key: Lb4BackendKey, value: Lb6Backend) -> Result<(), Self::Error> {
        self.insert_backend6(key, value)
    }
    fn delete_backend6(&mut self, key: &Lb4BackendKey) -> Result<(), Self::Error> {
        self.remove_backend6(key)
    }
    fn put_service6(&mut self, key: Lb6ServiceKey, value: Lb4Service) -> Result<(), Self::Error> {
        self.insert_service6(key, value)
    }
    fn delete_service6(&mut self, key: &Lb6ServiceKey) -> Result<(), Self::Error> {
        self.remove_service6(key)
    }
    fn put_maglev(&mut self, key: MaglevKey, table: &MaglevTable) -> Result<(), Self::Error> {
        self.insert_maglev(key, table)
    }
    fn delete_maglev(&mut self, key: &MaglevKey) -> Result<(), Self::Error> {
        self.remove_maglev(key)
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
    fn put_backends(
        &mut self,
        keys: &[Lb4BackendKey],
        values: &[Lb4Backend],
    ) -> Result<(), Self::Error> {
        self.insert_backends(keys, values)
    }
    fn put_backends6(
        &mut self,
        keys: &[Lb4BackendKey],
        values: &[Lb6Backend],
    ) -> Result<(), Self::Error> {
        self.insert_backends6(keys, values)
    }
    fn reset_backend_counters_of(&mut self, backend_ids: &[u32]) -> Result<(), Self::Error> {
        self.zero_backend_counters_of(backend_ids)
    }
}
