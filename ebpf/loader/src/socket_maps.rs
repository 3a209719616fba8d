//! Typed access to the per-socket maps the kernel fills (beyond
//! `REDIRECT_ORIGINAL_DST`, which is [`crate::maps::RedirectMap`]):
//! `REDIRECT6_ORIGINAL_DST`, where each connection redirected from an IPv6
//! service was going, keyed by the client's IPv6 address (read by the
//! daemon's accept loops on the IPv6 redirect address); and, read only by
//! `sluicectl bpf dump`, the by-cookie redirect maps the kernel holds
//! between connect and established (`REDIRECT_BY_COOKIE`,
//! `REDIRECT6_BY_COOKIE`), the reverse maps `getpeername` uses
//! (`LB4_REVERSE_SK`, `LB6_REVERSE_SK`) and the sockmap's `SOCKMAP_TAINTED`.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

use aya::maps::{HashMap, MapData};
use sluice_ebpf_common::sockmap::{self, SockKey};
use sluice_ebpf_common::{
    map_names, Lb4ReverseKey, Lb4ReverseValue, Lb6ReverseKey, Lb6ReverseValue, Redirect6Key,
    Redirect6OriginalDst, RedirectOriginalDst,
};

use crate::maps::{map_error, open_pinned_map};
use crate::DatapathError;

/// An IPv6 address as the kernel's `user_ip6`/`local_ip6` words hold it
/// (network-order bytes, each word read as a native integer).
pub fn words_of(ip: &Ipv6Addr) -> [u32; 4] {
    let octets = ip.octets();
    let word =
        |i: usize| u32::from_ne_bytes([octets[i], octets[i + 1], octets[i + 2], octets[i + 3]]);
    [word(0), word(4), word(8), word(12)]
}

/// The inverse of [`words_of`].
pub fn ip_of(words: [u32; 4]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    for (chunk, word) in octets.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Ipv6Addr::from(octets)
}

fn original6(value: &Redirect6OriginalDst) -> SocketAddrV6 {
    SocketAddrV6::new(ip_of(value.address), u16::from_be(value.port), 0, 0)
}

/// `REDIRECT6_ORIGINAL_DST`: the original [VIP]:port of each connection
/// redirected from an IPv6 service, keyed by the client's address (filled
/// by the kernel's sockops program before the daemon accepts it).
pub struct Redirect6Map {
    map: HashMap<MapData, Redirect6Key, Redirect6OriginalDst>,
}

impl Redirect6Map {
    /// Opens the map a daemon pinned under `pin_dir` (a handle of its own).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        let name = map_names::REDIRECT6_ORIGINAL_DST;
        Ok(Redirect6Map {
            map: HashMap::try_from(open_pinned_map(pin_dir, name)?).map_err(map_error(name))?,
        })
    }

    /// The original destination of the redirected connection whose client
    /// is `client`, removed from the map (`None`: the kernel recorded none).
    pub fn take(&mut self, client: SocketAddrV6) -> Option<SocketAddrV6> {
        let key = Redirect6Key {
            address: words_of(client.ip()),
            port: client.port().to_be(),
            pad: 0,
        };
        let original = self.map.get(&key, 0).ok()?;
        let _ = self.map.remove(&key);
        Some(original6(&original))
    }

    /// Every entry as (client, original destination), sorted.
    pub fn entries(&self) -> Result<Vec<(SocketAddrV6, SocketAddrV6)>, DatapathError> {
        let mut entries = Vec::new();
        for entry in self.map.iter() {
            let (key, value) = entry.map_err(map_error(map_names::REDIRECT6_ORIGINAL_DST))?;
            let client = SocketAddrV6::new(ip_of(key.address), u16::from_be(key.port), 0, 0);
            entries.push((client, original6(&value)));
        }
        entries.sort();
        Ok(entries)
    }
}

/// `REDIRECT_BY_COOKIE` under `pin_dir`: (socket cookie, original IPv4
/// destination) of redirected sockets not yet established, sorted.
pub fn cookie_entries4(pin_dir: &Path) -> Result<Vec<(u64, SocketAddrV4)>, DatapathError> {
    let name = map_names::REDIRECT_BY_COOKIE;
    let map: HashMap<MapData, u64, RedirectOriginalDst> =
        HashMap::try_from(open_pinned_map(pin_dir, name)?).map_err(map_error(name))?;
    let mut entries = Vec::new();
    for entry in map.iter() {
        let (cookie, value) = entry.map_err(map_error(name))?;
        let original =
            SocketAddrV4::new(u32::from_be(value.address).into(), u16::from_be(value.port));
        entries.push((cookie, original));
    }
    entries.sort();
    Ok(entries)
}

/// `REDIRECT6_BY_COOKIE` under `pin_dir`: (socket cookie, original IPv6
/// destination) of redirected sockets not yet established, sorted.
pub fn cookie_entries6(pin_dir: &Path) -> Result<Vec<(u64, SocketAddrV6)>, DatapathError> {
    let name = map_names::REDIRECT6_BY_COOKIE;
    let map: HashMap<MapData, u64, Redirect6OriginalDst> =
        HashMap::try_from(open_pinned_map(pin_dir, name)?).map_err(map_error(name))?;
    let mut entries = Vec::new();
    for entry in map.iter() {
        let (cookie, value) = entry.map_err(map_error(name))?;
        entries.push((cookie, original6(&value)));
    }
    entries.sort();
    Ok(entries)
}

/// One entry of a reverse map: the socket (cookie) rewritten to
/// `backend`, and the VIP `getpeername` shows instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReverseEntry {
    pub cookie: u64,
    pub backend: SocketAddr,
    pub vip: SocketAddr,
}

/// `LB4_REVERSE_SK` under `pin_dir`, sorted.
pub fn reverse_entries4(pin_dir: &Path) -> Result<Vec<ReverseEntry>, DatapathError> {
    let name = map_names::LB4_REVERSE_SK;
    let map: HashMap<MapData, Lb4ReverseKey, Lb4ReverseValue> =
        HashMap::try_from(open_pinned_map(pin_dir, name)?).map_err(map_error(name))?;
    let v4 = |address: u32, port: u16| {
        SocketAddr::V4(SocketAddrV4::new(
            u32::from_be(address).into(),
            u16::from_be(port),
        ))
    };
    let mut entries = Vec::new();
    for entry in map.iter() {
        let (key, value) = entry.map_err(map_error(name))?;
        entries.push(ReverseEntry {
            cookie: key.cookie,
            backend: v4(key.address, key.port),
            vip: v4(value.address, value.port),
        });
    }
    entries.sort();
    Ok(entries)
}

/// `LB6_REVERSE_SK` under `pin_dir`, sorted.
pub fn reverse_entries6(pin_dir: &Path) -> Result<Vec<ReverseEntry>, DatapathError> {
    let name = map_names::LB6_REVERSE_SK;
    let map: HashMap<MapData, Lb6ReverseKey, Lb6ReverseValue> =
        HashMap::try_from(open_pinned_map(pin_dir, name)?).map_err(map_error(name))?;
    let v6 = |address: [u32; 4], port: u16| {
        SocketAddr::V6(SocketAddrV6::new(ip_of(address), u16::from_be(port), 0, 0))
    };
    let mut entries = Vec::new();
    for entry in map.iter() {
        let (key, value) = entry.map_err(map_error(name))?;
        entries.push(ReverseEntry {
            cookie: key.cookie,
            backend: v6(key.address, key.port),
            vip: v6(value.address, value.port),
        });
    }
    entries.sort();
    Ok(entries)
}

/// The keys of `SOCKMAP_TAINTED` under `pin_dir` (sockets that sent
/// through the TCP/IP stack and never redirect), sorted.
pub fn tainted_sockets(pin_dir: &Path) -> Result<Vec<SockKey>, DatapathError> {
    let name = sockmap::map_names::SOCKMAP_TAINTED;
    let map: HashMap<MapData, SockKey, u8> =
        HashMap::try_from(open_pinned_map(pin_dir, name)?).map_err(map_error(name))?;
    let mut keys = map
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_error(name))?;
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_words_round_trip_in_network_order() {
        let ip: Ipv6Addr = "fd96::20".parse().unwrap();
        let words = words_of(&ip);
        assert_eq!(words[0].to_ne_bytes(), [0xfd, 0x96, 0, 0]);
        assert_eq!(words[3].to_ne_bytes(), [0, 0, 0, 0x20]);
        assert_eq!(ip_of(words), ip);
    }
}
