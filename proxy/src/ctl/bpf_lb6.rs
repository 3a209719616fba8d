//! The IPv6 half of `sluicectl bpf services|backends|counters|dump`: reads
//! `LB6_SERVICES` / `LB6_BACKENDS` (and the shared counters, service info
//! and `LB_MAGLEV`) and renders them in the same JSON shapes as IPv4, with
//! IPv6 addresses (`"vip": "fd00::10"`).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde_json::{json, Value};
use sluice_ebpf::common::{Lb4BackendKey, Lb4Service, Lb6Backend, MODE_REDIRECT, MODE_SOCKET_LB};
use sluice_ebpf::maps::LbMaps;

use super::bpf::protocol_name;

fn ip6(words: [u32; 4]) -> String {
    crate::datapath::sync::ip6_from_words(words).to_string()
}

fn active_backends(
    service: &Lb4Service,
    backends: &BTreeMap<Lb4BackendKey, Lb6Backend>,
) -> Vec<Lb6Backend> {
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

/// IPv6 entries of `sluicectl bpf services -o json`.
pub fn services(maps: &LbMaps) -> Result<Vec<Value>, String> {
    let backends: BTreeMap<_, _> = maps
        .backend6_entries()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let mut list = Vec::new();
    for (key, service) in maps.service6_entries().map_err(|e| e.to_string())? {
        let info = maps
            .service_info(service.service_id)
            .map_err(|e| e.to_string())?;
        let mode = match info.mode {
            MODE_SOCKET_LB => "socket-lb",
            MODE_REDIRECT => "redirect",
            _ => "unknown",
        };
        let backends: Vec<Value> = active_backends(&service, &backends)
            .iter()
            .map(|b| json!({"address": ip6(b.address), "port": u16::from_be(b.port)}))
            .collect();
        list.push(json!({
            "vip": ip6(key.address),
            "port": u16::from_be(key.port),
            "protocol": protocol_name(key.protocol),
            "mode": mode,
            "backends": backends,
            "listener": info.listener_name(),
        }));
    }
    Ok(list)
}

/// IPv6 entries of `sluicectl bpf backends -o json`.
pub fn backends(maps: &LbMaps) -> Result<Vec<Value>, String> {
    let active: BTreeMap<u32, u32> = maps
        .service6_entries()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(_, s)| (s.service_id, s.slot))
        .collect();
    let mut list = Vec::new();
    for (key, backend) in maps.backend6_entries().map_err(|e| e.to_string())? {
        list.push(json!({
            "backend_id": backend.backend_id,
            "address": ip6(backend.address),
            "port": u16::from_be(backend.port),
            "service_id": key.service_id,
            "slot": key.slot,
            "index": key.index,
            "active": active.get(&key.service_id) == Some(&key.slot),
        }));
    }
    Ok(list)
}

/// IPv6 counters: `datapath.lb6.service.[<vip>]:<port>/<proto>.*` and
/// `datapath.lb6.backend.[<address>]:<port>.connects`.
pub fn counters(
    maps: &LbMaps,
    counters: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    for (key, service) in maps.service6_entries().map_err(|e| e.to_string())? {
        let name = format!(
            "datapath.lb6.service.[{}]:{}/{}",
            ip6(key.address),
            u16::from_be(key.port),
            protocol_name(key.protocol)
        );
        let c = maps
            .service_counters(service.service_id)
            .map_err(|e| e.to_string())?;
        counters.insert(format!("{name}.connects"), json!(c.connects));
        counters.insert(format!("{name}.no_backend"), json!(c.no_backend));
        counters.insert(format!("{name}.redirects"), json!(c.redirects));
    }
    for (_, backend) in maps.backend6_entries().map_err(|e| e.to_string())? {
        let name = format!(
            "datapath.lb6.backend.[{}]:{}.connects",
            ip6(backend.address),
            u16::from_be(backend.port)
        );
        let c = maps
            .backend_counters(backend.backend_id)
            .map_err(|e| e.to_string())?;
        counters.insert(name, json!(c.connects));
    }
    Ok(())
}

/// `sluicectl bpf dump` of `LB6_SERVICES`, `LB6_BACKENDS` and `LB_MAGLEV`
/// (a table as its per-backend entry counts); `None` for other maps.
pub fn dump(maps: &LbMaps, map: &str) -> Option<Result<Vec<Value>, String>> {
    use sluice_ebpf::common::map_names;
    let entries = match map {
        map_names::LB6_SERVICES => maps.service6_entries().map(|entries| {
            entries
                .iter()
                .map(|(k, s)| {
                    json!({"key": {"address": ip6(k.address), "port": u16::from_be(k.port), "protocol": protocol_name(k.protocol)},
                           "value": {"service_id": s.service_id, "backend_count": s.backend_count, "slot": s.slot, "flags": s.flags}})
                })
                .collect()
        }),
        map_names::LB6_BACKENDS => maps.backend6_entries().map(|entries| {
            entries
                .iter()
                .map(|(k, b)| {
                    json!({"key": {"service_id": k.service_id, "slot": k.slot, "index": k.index},
                           "value": {"address": ip6(b.address), "port": u16::from_be(b.port), "backend_id": b.backend_id}})
                })
                .collect()
        }),
        map_names::LB_MAGLEV => maglev_dump(maps),
        _ => return None,
    };
    Some(entries.map_err(|e| e.to_string()))
}

fn maglev_dump(maps: &LbMaps) -> Result<Vec<Value>, sluice_ebpf::DatapathError> {
    let mut entries = Vec::new();
    for key in maps.maglev_keys()? {
        let Ok(table) = maps.maglev.get(&key, 0) else {
            continue; // replaced or removed since the key was listed
        };
        let mut owned: BTreeMap<u16, u32> = BTreeMap::new();
        for index in table.backend_index {
            *owned.entry(index).or_default() += 1;
        }
        let owned: serde_json::Map<String, Value> = owned
            .into_iter()
            .map(|(index, count)| (index.to_string(), json!(count)))
            .collect();
        entries.push(
            json!({"key": {"service_id": key.service_id, "slot": key.slot},
                            "value": {"entries_per_backend_index": owned}}),
        );
    }
    Ok(entries)
}

/// `[addr]` for IPv6, `addr` for IPv4 (text output).
pub fn bracketed(address: &str) -> String {
    if address.parse::<Ipv6Addr>().is_ok() {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}
