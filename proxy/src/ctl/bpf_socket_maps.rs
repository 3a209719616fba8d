//! `sluicectl bpf dump MAP` for the per-socket maps the kernel fills: the
//! transparent redirect's original destinations (by client address:
//! `REDIRECT_ORIGINAL_DST`, `REDIRECT6_ORIGINAL_DST`; by socket cookie
//! until established: `REDIRECT_BY_COOKIE`, `REDIRECT6_BY_COOKIE`), the
//! reverse maps `getpeername` reads (`LB4_REVERSE_SK`, `LB6_REVERSE_SK`)
//! and the sockmap maps (`SOCKMAP_SOCKETS`, `SOCKMAP_TAINTED`,
//! `SOCKMAP_COUNTERS`). A SOCKHASH's values are sockets, which the kernel
//! does not hand to userspace (a lookup by a map of this value size fails):
//! its entries are printed with their keys and `"value": null`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use serde_json::{json, Value};
use sluice_ebpf::common::map_names;
use sluice_ebpf::common::sockmap::{map_names as sockmap_names, SockKey};
use sluice_ebpf::maps::RedirectMap;
use sluice_ebpf::socket_maps::{self, Redirect6Map, ReverseEntry};
use sluice_ebpf::sockmap::SockmapMaps;

/// The entries of `map` if this module owns it (`None` otherwise).
pub fn dump(map: &str, pin_dir: &Path) -> Option<Result<Vec<Value>, String>> {
    let pairs = |entries: Vec<(String, String)>| -> Vec<Value> {
        entries
            .into_iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect()
    };
    let entries = match map {
        map_names::REDIRECT_ORIGINAL_DST => RedirectMap::open_pinned(pin_dir)
            .and_then(|redirects| redirects.entries())
            .map(|entries| pairs(strings(entries))),
        map_names::REDIRECT6_ORIGINAL_DST => Redirect6Map::open_pinned(pin_dir)
            .and_then(|redirects| redirects.entries())
            .map(|entries| pairs(strings(entries))),
        map_names::REDIRECT_BY_COOKIE => {
            socket_maps::cookie_entries4(pin_dir).map(|entries| by_cookie(&entries))
        }
        map_names::REDIRECT6_BY_COOKIE => {
            socket_maps::cookie_entries6(pin_dir).map(|entries| by_cookie(&entries))
        }
        map_names::LB4_REVERSE_SK => socket_maps::reverse_entries4(pin_dir).map(reverse),
        map_names::LB6_REVERSE_SK => socket_maps::reverse_entries6(pin_dir).map(reverse),
        sockmap_names::SOCKMAP_TAINTED => socket_maps::tainted_sockets(pin_dir)
            .map(|keys| keys.iter().map(|key| socket_entry(key, json!(1))).collect()),
        sockmap_names::SOCKMAP_SOCKETS => {
            return Some(sockmap_sockets(pin_dir));
        }
        sockmap_names::SOCKMAP_COUNTERS => SockmapMaps::open_pinned(pin_dir)
            .and_then(|maps| maps.counters())
            .map(|counters| {
                let named: serde_json::Map<String, Value> = counters
                    .named()
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), json!(value)))
                    .collect();
                vec![json!({"key": 0, "value": named})]
            }),
        _ => return None,
    };
    Some(entries.map_err(|e| e.to_string()))
}

fn strings<A: ToString, B: ToString>(entries: Vec<(A, B)>) -> Vec<(String, String)> {
    entries
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn by_cookie<A: ToString>(entries: &[(u64, A)]) -> Vec<Value> {
    entries
        .iter()
        .map(|(cookie, original)| json!({"key": cookie, "value": original.to_string()}))
        .collect()
}

fn reverse(entries: Vec<ReverseEntry>) -> Vec<Value> {
    entries
        .iter()
        .map(|entry| {
            json!({
                "key": {"cookie": entry.cookie, "backend": entry.backend.to_string()},
                "value": entry.vip.to_string(),
            })
        })
        .collect()
}

/// A sockmap key (addresses network order, ports host order) as text.
fn socket_entry(key: &SockKey, value: Value) -> Value {
    let address = |ip: u32, port: u32| {
        SocketAddrV4::new(Ipv4Addr::from(u32::from_be(ip)), port as u16).to_string()
    };
    json!({
        "key": {
            "netns_cookie": key.netns_cookie,
            "local": address(key.local_ip4, key.local_port),
            "remote": address(key.remote_ip4, key.remote_port),
        },
        "value": value,
    })
}

fn sockmap_sockets(pin_dir: &Path) -> Result<Vec<Value>, String> {
    let maps = SockmapMaps::open_pinned(pin_dir).map_err(|e| e.to_string())?;
    let mut keys = maps
        .sockets
        .keys()
        .collect::<Result<Vec<SockKey>, _>>()
        .map_err(|e| format!("reading {}: {e}", sockmap_names::SOCKMAP_SOCKETS))?;
    keys.sort();
    Ok(keys
        .iter()
        .map(|key| socket_entry(key, Value::Null))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockmap_keys_print_as_local_and_remote_addresses() {
        let key = SockKey {
            netns_cookie: 4097,
            local_ip4: u32::from(Ipv4Addr::new(127, 0, 0, 1)).to_be(),
            remote_ip4: u32::from(Ipv4Addr::new(127, 0, 0, 2)).to_be(),
            local_port: 15001,
            remote_port: 40000,
        };
        assert_eq!(
            socket_entry(&key, Value::Null),
            json!({"key": {"netns_cookie": 4097, "local": "127.0.0.1:15001", "remote": "127.0.0.2:40000"}, "value": null})
        );
    }

    #[test]
    fn maps_of_other_modules_are_left_to_them() {
        assert!(dump(map_names::LB4_SERVICES, Path::new("/nonexistent")).is_none());
        let error = dump(map_names::REDIRECT6_BY_COOKIE, Path::new("/nonexistent"))
            .expect("owned here")
            .unwrap_err();
        assert!(error.contains("REDIRECT6_BY_COOKIE"), "{error}");
    }
}
