//! The socket-LB maps of both families as one list of rows, so that
//! `sluicectl bpf services|backends|counters` render IPv4 (`LB4_*`) and IPv6
//! (`LB6_*`) entries with one piece of code: a service row is its VIP, port,
//! protocol and the shared `Lb4Service` value; a backend row its address,
//! port, counter id and place in a service's slot. IPv4 rows come first,
//! each family in map-key order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sluice_ebpf::common::{Lb4BackendKey, Lb4Service};
use sluice_ebpf::maps::LbMaps;

use crate::datapath::sync::ip6_from_words;

/// One entry of `LB4_SERVICES` or `LB6_SERVICES`.
pub struct ServiceRow {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: u8,
    pub service: Lb4Service,
}

impl ServiceRow {
    /// `lb4` or `lb6`: the family part of the counter names.
    pub fn family(&self) -> &'static str {
        family(self.vip)
    }

    /// `ip:port` (`[ip]:port` for IPv6).
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }
}

/// One entry of `LB4_BACKENDS` or `LB6_BACKENDS`.
pub struct BackendRow {
    pub key: Lb4BackendKey,
    pub address: IpAddr,
    pub port: u16,
    pub backend_id: u32,
}

impl BackendRow {
    pub fn family(&self) -> &'static str {
        family(self.address)
    }

    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "lb4"
    } else {
        "lb6"
    }
}

fn ipv4(network_order: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from_be(network_order)))
}

/// Every service of both families.
pub fn service_rows(maps: &LbMaps) -> Result<Vec<ServiceRow>, String> {
    let v4 = maps.service_entries().map_err(|e| e.to_string())?;
    let v6 = maps.service6_entries().map_err(|e| e.to_string())?;
    let rows = v4
        .into_iter()
        .map(|(key, service)| ServiceRow {
            vip: ipv4(key.address),
            port: u16::from_be(key.port),
            protocol: key.protocol,
            service,
        })
        .chain(v6.into_iter().map(|(key, service)| ServiceRow {
            vip: IpAddr::V6(ip6_from_words(key.address)),
            port: u16::from_be(key.port),
            protocol: key.protocol,
            service,
        }));
    Ok(rows.collect())
}

/// Every backend entry of both families (current and previous slots).
pub fn backend_rows(maps: &LbMaps) -> Result<Vec<BackendRow>, String> {
    let v4 = maps.backend_entries().map_err(|e| e.to_string())?;
    let v6 = maps.backend6_entries().map_err(|e| e.to_string())?;
    let rows = v4
        .into_iter()
        .map(|(key, backend)| BackendRow {
            key,
            address: ipv4(backend.address),
            port: u16::from_be(backend.port),
            backend_id: backend.backend_id,
        })
        .chain(v6.into_iter().map(|(key, backend)| BackendRow {
            key,
            address: IpAddr::V6(ip6_from_words(backend.address)),
            port: u16::from_be(backend.port),
            backend_id: backend.backend_id,
        }));
    Ok(rows.collect())
}

/// The backends a service's active slot lists, in index order (service ids
/// are shared by both families, so one lookup serves both).
pub fn active_backends<'a>(
    service: &Lb4Service,
    backends: &'a std::collections::BTreeMap<Lb4BackendKey, &'a BackendRow>,
) -> Vec<&'a BackendRow> {
    (0..service.backend_count)
        .filter_map(|index| {
            let key = Lb4BackendKey {
                service_id: service.service_id,
                slot: service.slot,
                index,
            };
            backends.get(&key).copied()
        })
        .collect()
}
