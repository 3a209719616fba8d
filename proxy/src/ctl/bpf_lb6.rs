//! `sluicectl bpf dump` of the IPv6 socket-LB maps (`LB6_SERVICES`,
//! `LB6_BACKENDS`) and of `LB_MAGLEV`, with IPv6 addresses
//! (`"address": "fd00::10"`); services, backends and counters of both
//! families are rendered from `bpf_lb_rows`.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde_json::{json, Value};
use sluice_ebpf::maps::LbMaps;

use super::bpf::protocol_name;

fn ip6(words: [u32; 4]) -> String {
    crate::datapath::sync::ip6_from_words(words).to_string()
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
