//! Typed access to the load-balancing, redirect and XDP maps, either taken
//! from a freshly loaded object (the daemon) or opened from their pins
//! (`sluicectl bpf`, which works while pins remain, daemon or not).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use aya::Ebpf;
use sluice_ebpf_common::{
    map_names, BackendCounters, Ipv6Prefix, Lb4Backend, Lb4BackendKey, Lb4Service, Lb4ServiceKey,
    Lb6Backend, Lb6ServiceKey, MaglevKey, MaglevTable, RedirectKey, RedirectOriginalDst,
    ServiceCounters, ServiceInfo, XdpCounters, XdpServiceCounters,
};

use crate::DatapathError;

/// The socket-LB maps (`LB4_*`, `LB6_*`, `LB_MAGLEV`), typed with
/// `sluice-ebpf-common` layouts.
pub struct LbMaps {
    pub services: HashMap<MapData, Lb4ServiceKey, Lb4Service>,
    pub backends: HashMap<MapData, Lb4BackendKey, Lb4Backend>,
    pub service_counters: PerCpuArray<MapData, ServiceCounters>,
    pub backend_counters: Array<MapData, BackendCounters>,
    pub service_info: Array<MapData, ServiceInfo>,
    pub services6: HashMap<MapData, Lb6ServiceKey, Lb4Service>,
    pub backends6: HashMap<MapData, Lb4BackendKey, Lb6Backend>,
    pub maglev: HashMap<MapData, MaglevKey, MaglevTable>,
    /// `XDP_SERVICE_COUNTERS`, indexed by the same service ids (zeroed with
    /// the socket-LB counters when an id is reused).
    pub xdp_service_counters: PerCpuArray<MapData, XdpServiceCounters>,
}

/// Every entry of a hash map, sorted by key (stable output for the CLI).
fn sorted_entries<K: aya::Pod + Ord, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<Vec<(K, V)>, DatapathError> {
    let mut entries = map
        .iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_error(name))?;
    entries.sort_by_key(|(key, _)| *key);
    Ok(entries)
}

pub(crate) fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |e| DatapathError::Map {
        map,
        reason: e.to_string(),
    }
}

/// Opens the map a daemon pinned as `pin_dir/name` (a handle of its own).
pub(crate) fn open_pinned_map(pin_dir: &Path, name: &'static str) -> Result<Map, DatapathError> {
    let path = pin_dir.join(name);
    MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|e| DatapathError::Map {
            map: name,
            reason: format!("cannot open pin {}: {e}", path.display()),
        })
}

impl LbMaps {
    pub(crate) fn from_loaded(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Self::from_maps(|name| {
            ebpf.take_map(name).ok_or(DatapathError::Map {
                map: name,
                reason: "missing from the object".into(),
            })
        })
    }

    /// Opens the maps a daemon pinned under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        Self::from_maps(|name| open_pinned_map(pin_dir, name))
    }

    fn from_maps(
        mut open: impl FnMut(&'static str) -> Result<Map, DatapathError>,
    ) -> Result<Self, DatapathError> {
        use map_names::*;
        Ok(LbMaps {
            services: HashMap::try_from(open(LB4_SERVICES)?).map_err(map_error(LB4_SERVICES))?,
            backends: HashMap::try_from(open(LB4_BACKENDS)?).map_err(map_error(LB4_BACKENDS))?,
            service_counters: PerCpuArray::try_from(open(LB4_SERVICE_COUNTERS)?)
                .map_err(map_error(LB4_SERVICE_COUNTERS))?,
            backend_counters: Array::try_from(open(LB4_BACKEND_COUNTERS)?)
                .map_err(map_error(LB4_BACKEND_COUNTERS))?,
            service_info: Array::try_from(open(LB4_SERVICE_INFO)?)
                .map_err(map_error(LB4_SERVICE_INFO))?,
            services6: HashMap::try_from(open(LB6_SERVICES)?).map_err(map_error(LB6_SERVICES))?,
            backends6: HashMap::try_from(open(LB6_BACKENDS)?).map_err(map_error(LB6_BACKENDS))?,
            maglev: HashMap::try_from(open(LB_MAGLEV)?).map_err(map_error(LB_MAGLEV))?,
            xdp_service_counters: PerCpuArray::try_from(open(XDP_SERVICE_COUNTERS)?)
                .map_err(map_error(XDP_SERVICE_COUNTERS))?,
        })
    }

    /// Every service entry.
    pub fn service_entries(&self) -> Result<Vec<(Lb4ServiceKey, Lb4Service)>, DatapathError> {
        sorted_entries(&self.services, map_names::LB4_SERVICES)
    }

    /// Every backend entry (both slots of every service).
    pub fn backend_entries(&self) -> Result<Vec<(Lb4BackendKey, Lb4Backend)>, DatapathError> {
        sorted_entries(&self.backends, map_names::LB4_BACKENDS)
    }

    /// A service's counters summed over CPUs.
    pub fn service_counters(&self, service_id: u32) -> Result<ServiceCounters, DatapathError> {
        let per_cpu = self
            .service_counters
            .get(&service_id, 0)
            .map_err(map_error(map_names::LB4_SERVICE_COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(ServiceCounters::default(), |sum, c| ServiceCounters {
                connects: sum.connects + c.connects,
                no_backend: sum.no_backend + c.no_backend,
                redirects: sum.redirects + c.redirects,
            }))
    }

    /// A backend's counters.
    pub fn backend_counters(&self, backend_id: u32) -> Result<BackendCounters, DatapathError> {
        self.backend_counters
            .get(&backend_id, 0)
            .map_err(map_error(map_names::LB4_BACKEND_COUNTERS))
    }

    /// Zeroes a service's counters (socket-LB and XDP) on every CPU
    /// (before its id is reused).
    pub fn zero_service_counters(&mut self, service_id: u32) -> Result<(), DatapathError> {
        let zeros = per_cpu_zeros().map_err(map_error(map_names::LB4_SERVICE_COUNTERS))?;
        self.service_counters
            .set(service_id, zeros, 0)
            .map_err(map_error(map_names::LB4_SERVICE_COUNTERS))?;
        if service_id >= self.xdp_service_counters.len() {
            return Ok(()); // loaded without XDP: nothing counts there
        }
        let zeros = per_cpu_zeros().map_err(map_error(map_names::XDP_SERVICE_COUNTERS))?;
        self.xdp_service_counters
            .set(service_id, zeros, 0)
            .map_err(map_error(map_names::XDP_SERVICE_COUNTERS))
    }

    /// A service's XDP counters (packets to its ip:port on XDP interfaces)
    /// summed over CPUs. Zero for every service of a daemon loaded without
    /// XDP (`LoadOptions::without_xdp`: the map has one entry, and no XDP
    /// program runs to count).
    pub fn xdp_service_counters(
        &self,
        service_id: u32,
    ) -> Result<XdpServiceCounters, DatapathError> {
        if service_id >= self.xdp_service_counters.len() {
            return Ok(XdpServiceCounters::default());
        }
        let per_cpu = self
            .xdp_service_counters
            .get(&service_id, 0)
            .map_err(map_error(map_names::XDP_SERVICE_COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(XdpServiceCounters::default(), |sum, c| XdpServiceCounters {
                packets: sum.packets + c.packets,
                bytes: sum.bytes + c.bytes,
            }))
    }

    /// Zeroes a backend's counters (before its id is reused).
    pub fn zero_backend_counters(&mut self, backend_id: u32) -> Result<(), DatapathError> {
        self.backend_counters
            .set(backend_id, BackendCounters::default(), 0)
            .map_err(map_error(map_names::LB4_BACKEND_COUNTERS))
    }

    /// What userspace recorded about a service (listener name, mode).
    pub fn service_info(&self, service_id: u32) -> Result<ServiceInfo, DatapathError> {
        self.service_info
            .get(&service_id, 0)
            .map_err(map_error(map_names::LB4_SERVICE_INFO))
    }

    pub fn set_service_info(
        &mut self,
        service_id: u32,
        info: ServiceInfo,
    ) -> Result<(), DatapathError> {
        self.service_info
            .set(service_id, info, 0)
            .map_err(map_error(map_names::LB4_SERVICE_INFO))
    }

    pub fn insert_service(
        &mut self,
        key: Lb4ServiceKey,
        value: Lb4Service,
    ) -> Result<(), DatapathError> {
        self.services
            .insert(key, value, 0)
            .map_err(map_error(map_names::LB4_SERVICES))
    }

    pub fn remove_service(&mut self, key: &Lb4ServiceKey) -> Result<(), DatapathError> {
        self.services
            .remove(key)
            .map_err(map_error(map_names::LB4_SERVICES))
    }

    pub fn insert_backend(
        &mut self,
        key: Lb4BackendKey,
        value: Lb4Backend,
    ) -> Result<(), DatapathError> {
        self.backends
            .insert(key, value, 0)
            .map_err(map_error(map_names::LB4_BACKENDS))
    }

    pub fn remove_backend(&mut self, key: &Lb4BackendKey) -> Result<(), DatapathError> {
        self.backends
            .remove(key)
            .map_err(map_error(map_names::LB4_BACKENDS))
    }
}

/// IPv6 services and Maglev tables.
impl LbMaps {
    /// Every IPv6 service entry.
    pub fn service6_entries(&self) -> Result<Vec<(Lb6ServiceKey, Lb4Service)>, DatapathError> {
        sorted_entries(&self.services6, map_names::LB6_SERVICES)
    }

    /// Every IPv6 backend entry (both slots of every service).
    pub fn backend6_entries(&self) -> Result<Vec<(Lb4BackendKey, Lb6Backend)>, DatapathError> {
        sorted_entries(&self.backends6, map_names::LB6_BACKENDS)
    }

    pub fn insert_service6(
        &mut self,
        key: Lb6ServiceKey,
        value: Lb4Service,
    ) -> Result<(), DatapathError> {
        self.services6
            .insert(key, value, 0)
            .map_err(map_error(map_names::LB6_SERVICES))
    }

    pub fn remove_service6(&mut self, key: &Lb6ServiceKey) -> Result<(), DatapathError> {
        self.services6
            .remove(key)
            .map_err(map_error(map_names::LB6_SERVICES))
    }

    pub fn insert_backend6(
        &mut self,
        key: Lb4BackendKey,
        value: Lb6Backend,
    ) -> Result<(), DatapathError> {
        self.backends6
            .insert(key, value, 0)
            .map_err(map_error(map_names::LB6_BACKENDS))
    }

    pub fn remove_backend6(&mut self, key: &Lb4BackendKey) -> Result<(), DatapathError> {
        self.backends6
            .remove(key)
            .map_err(map_error(map_names::LB6_BACKENDS))
    }

    /// Writes a slot's Maglev table in one map update.
    pub fn insert_maglev(
        &mut self,
        key: MaglevKey,
        table: &MaglevTable,
    ) -> Result<(), DatapathError> {
        self.maglev
            .insert(key, table, 0)
            .map_err(map_error(map_names::LB_MAGLEV))
    }

    pub fn remove_maglev(&mut self, key: &MaglevKey) -> Result<(), DatapathError> {
        self.maglev
            .remove(key)
            .map_err(map_error(map_names::LB_MAGLEV))
    }

    /// Keys of the Maglev tables present.
    pub fn maglev_keys(&self) -> Result<Vec<MaglevKey>, DatapathError> {
        let mut keys = self
            .maglev
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(map_names::LB_MAGLEV))?;
        keys.sort();
        Ok(keys)
    }
}

fn per_cpu_zeros<V: aya::Pod + Default>() -> Result<PerCpuValues<V>, aya::maps::MapError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| aya::maps::MapError::IoError(error))?;
    PerCpuValues::try_from((0..cpus).map(|_| V::default()).collect::<Vec<_>>())
        .map_err(aya::maps::MapError::IoError)
}

/// `REDIRECT_ORIGINAL_DST`: where each connection redirected to Sluice's L7
/// listener was going, keyed by the client's address (filled by the
/// kernel's sockops program before the daemon accepts the connection).
pub struct RedirectMap {
    map: HashMap<MapData, RedirectKey, RedirectOriginalDst>,
}

impl RedirectMap {
    /// Opens the map a daemon pinned under `pin_dir` (a handle of its own).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        let name = map_names::REDIRECT_ORIGINAL_DST;
        let map = open_pinned_map(pin_dir, name)?;
        Ok(RedirectMap {
            map: HashMap::try_from(map).map_err(map_error(name))?,
        })
    }

    /// The original destination of the redirected connection whose client
    /// is `client`, removed from the map (`None`: the kernel recorded none).
    pub fn take(&mut self, client: SocketAddrV4) -> Option<SocketAddrV4> {
        let key = RedirectKey {
            address: u32::from(*client.ip()).to_be(),
            port: client.port().to_be(),
            pad: 0,
        };
        let original = self.map.get(&key, 0).ok()?;
        let _ = self.map.remove(&key);
        Some(SocketAddrV4::new(
            u32::from_be(original.address).into(),
            u16::from_be(original.port),
        ))
    }

    /// Every entry as (client, original destination), for `sluicectl bpf dump`.
    pub fn entries(&self) -> Result<Vec<(SocketAddrV4, SocketAddrV4)>, DatapathError> {
        let mut entries = Vec::new();
        for entry in self.map.iter() {
            let (key, value) = entry.map_err(map_error(map_names::REDIRECT_ORIGINAL_DST))?;
            entries.push((
                SocketAddrV4::new(u32::from_be(key.address).into(), u16::from_be(key.port)),
                SocketAddrV4::new(u32::from_be(value.address).into(), u16::from_be(value.port)),
            ));
        }
        entries.sort();
        Ok(entries)
    }
}

/// The XDP maps: the source deny lists and the per-interface counters (the
/// per-service ones are in [`LbMaps`], indexed by service id).
pub struct XdpMaps {
    pub deny4: LpmTrie<MapData, u32, u8>,
    pub deny6: LpmTrie<MapData, Ipv6Prefix, u8>,
    pub counters: PerCpuArray<MapData, XdpCounters>,
}

impl XdpMaps {
    /// Opens the maps a daemon pinned under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        let open = |name| open_pinned_map(pin_dir, name);
        Ok(XdpMaps {
            deny4: LpmTrie::try_from(open(map_names::XDP_DENY4)?)
                .map_err(map_error(map_names::XDP_DENY4))?,
            deny6: LpmTrie::try_from(open(map_names::XDP_DENY6)?)
                .map_err(map_error(map_names::XDP_DENY6))?,
            counters: PerCpuArray::try_from(open(map_names::XDP_COUNTERS)?)
                .map_err(map_error(map_names::XDP_COUNTERS))?,
        })
    }

    /// Adds `address/prefix_len` to the deny list of its family.
    pub fn deny(&mut self, address: IpAddr, prefix_len: u32) -> Result<(), DatapathError> {
        match address {
            IpAddr::V4(v4) => self
                .deny4
                .insert(&Key::new(prefix_len, u32::from(v4).to_be()), 1, 0)
                .map_err(map_error(map_names::XDP_DENY4)),
            IpAddr::V6(v6) => self
                .deny6
                .insert(&Key::new(prefix_len, v6.octets()), 1, 0)
                .map_err(map_error(map_names::XDP_DENY6)),
        }
    }

    /// Removes exactly `address/prefix_len` from the deny list of its family.
    pub fn allow(&mut self, address: IpAddr, prefix_len: u32) -> Result<(), DatapathError> {
        match address {
            IpAddr::V4(v4) => self
                .deny4
                .remove(&Key::new(prefix_len, u32::from(v4).to_be()))
                .map_err(map_error(map_names::XDP_DENY4)),
            IpAddr::V6(v6) => self
                .deny6
                .remove(&Key::new(prefix_len, v6.octets()))
                .map_err(map_error(map_names::XDP_DENY6)),
        }
    }

    /// Both deny lists as (network address, prefix length), IPv4 first, sorted.
    pub fn denied(&self) -> Result<Vec<(IpAddr, u32)>, DatapathError> {
        let mut list = Vec::new();
        for key in self.deny4.keys() {
            let key = key.map_err(map_error(map_names::XDP_DENY4))?;
            let address = Ipv4Addr::from(u32::from_be(key.data()));
            list.push((IpAddr::V4(address), key.prefix_len()));
        }
        for key in self.deny6.keys() {
            let key = key.map_err(map_error(map_names::XDP_DENY6))?;
            list.push((IpAddr::V6(Ipv6Addr::from(key.data())), key.prefix_len()));
        }
        list.sort();
        Ok(list)
    }

    /// An interface's counters summed over CPUs.
    pub fn interface_counters(&self, ifindex: u32) -> Result<XdpCounters, DatapathError> {
        let per_cpu = self
            .counters
            .get(&ifindex, 0)
            .map_err(map_error(map_names::XDP_COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(XdpCounters::default(), |sum, c| XdpCounters {
                packets: sum.packets + c.packets,
                bytes: sum.bytes + c.bytes,
                dropped: sum.dropped + c.dropped,
            }))
    }
}
