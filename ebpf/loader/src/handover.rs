//! Taking over from a previous daemon's pins without a gap.
//!
//! A daemon that crashed, or stopped with `--datapath-keep-pins`, leaves its
//! links and maps pinned: the kernel keeps forwarding with its last maps.
//! The next start loads fresh maps, carries over the state that config does
//! not derive (the XDP deny lists an operator added with `sluicectl`, and
//! the reverse entries that make `getpeername` show the VIP for sockets
//! already rewritten), fills the service maps, attaches its own programs
//! *next to* the previous ones (cgroup hooks are multi-attach; XDP links are
//! updated in place with `BPF_LINK_UPDATE`), and only then lets the previous
//! links go. At every moment some program with complete maps is attached.
//!
//! Maps whose layout changed between versions are not carried over (a
//! warning names them): their pins are simply replaced.

use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{HashMap, Map, MapData};
use aya::programs::links::{FdLink, PinnedLink};
use aya::Ebpf;
use sluice_ebpf_common::{map_names, Ipv6Prefix, Lb4ReverseKey, Lb4ReverseValue};

/// What a previous daemon left under the pin directory.
pub(crate) struct Previous {
    /// Its pinned links by pin file name (`sluice_connect4`, `xdp-eth0`, …),
    /// held open so they stay attached until [`Previous::retire`].
    links: BTreeMap<String, FdLink>,
}

/// How much state came over from the previous daemon's maps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CarriedOver {
    pub deny4: usize,
    pub deny6: usize,
    pub reverse: usize,
}

impl Previous {
    /// Opens every link pinned under `<pin_dir>/links` (stale files that are
    /// not links are removed).
    pub(crate) fn open(links_dir: &Path) -> Previous {
        let mut links = BTreeMap::new();
        for entry in std::fs::read_dir(links_dir).into_iter().flatten().flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            match PinnedLink::from_pin(entry.path()) {
                Ok(pinned) => {
                    links.insert(name, FdLink::from(pinned));
                }
                Err(error) => {
                    tracing::warn!(pin = %entry.path().display(), %error, "removing a pin that is not a link");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Previous { links }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub(crate) fn link_names(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    /// The previous XDP link of `interface`, to update in place.
    pub(crate) fn take_xdp_link(&mut self, interface: &str) -> Option<FdLink> {
        self.links.remove(&format!("xdp-{interface}"))
    }

    /// Lets the previous links go: pins under `links_dir` that this daemon did
    /// not replace are removed, and the last references are dropped, which
    /// detaches the previous programs.
    pub(crate) fn retire(self, links_dir: &Path, replaced: &[String]) {
        for name in self.links.keys() {
            if !replaced.contains(name) {
                let _ = std::fs::remove_file(links_dir.join(name));
            }
        }
    }
}

fn open_pinned(pin_dir: &Path, name: &str) -> Option<Map> {
    let path = pin_dir.join(name);
    if !path.exists() {
        return None;
    }
    match MapData::from_pin(&path).and_then(Map::from_map_data) {
        Ok(map) => Some(map),
        Err(error) => {
            tracing::warn!(map = name, %error, "previous map not carried over");
            None
        }
    }
}

/// Copies every entry of the previous daemon's pinned map `name` into the
/// freshly loaded one; returns how many were copied.
fn copy_entries<K: aya::Pod, V: aya::Pod, M>(
    pin_dir: &Path,
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: impl Fn(Map) -> Result<Vec<(K, V)>, aya::maps::MapError>,
    insert: impl Fn(&mut Map, &[(K, V)]) -> Result<M, aya::maps::MapError>,
) -> usize {
    let Some(old) = open_pinned(pin_dir, name) else {
        return 0;
    };
    let list = match entries(old) {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(map = name, %error, "previous map has another layout; not carried over");
            return 0;
        }
    };
    let Some(new) = ebpf.map_mut(name) else {
        return 0;
    };
    match insert(new, &list) {
        Ok(_) => list.len(),
        Err(error) => {
            tracing::warn!(map = name, %error, "carrying the previous entries over failed");
            0
        }
    }
}

/// Copies the deny lists and reverse entries of the maps pinned under
/// `pin_dir` into the maps of `ebpf`.
pub(crate) fn carry_over(pin_dir: &Path, ebpf: &mut Ebpf) -> CarriedOver {
    CarriedOver {
        deny4: copy_lpm::<u32>(pin_dir, ebpf, map_names::XDP_DENY4),
        deny6: copy_lpm::<Ipv6Prefix>(pin_dir, ebpf, map_names::XDP_DENY6),
        reverse: copy_reverse(pin_dir, ebpf),
    }
}

fn copy_lpm<K: aya::Pod>(pin_dir: &Path, ebpf: &mut Ebpf, name: &'static str) -> usize {
    copy_entries(
        pin_dir,
        ebpf,
        name,
        |old| {
            let trie = LpmTrie::<MapData, K, u8>::try_from(old)?;
            trie.iter().collect::<Result<Vec<_>, _>>()
        },
        |new, list| {
            let mut trie = LpmTrie::<&mut MapData, K, u8>::try_from(new)?;
            for (key, value) in list {
                trie.insert(key, *value, 0)?;
            }
            Ok(())
        },
    )
}

/// Copies `LB4_REVERSE_SK` (called once both generations are attached, so
/// entries the previous programs wrote until then come over too).
fn copy_reverse(pin_dir: &Path, ebpf: &mut Ebpf) -> usize {
    copy_entries(
        pin_dir,
        ebpf,
        map_names::LB4_REVERSE_SK,
        |old| {
            let map = HashMap::<MapData, Lb4ReverseKey, Lb4ReverseValue>::try_from(old)?;
            map.iter().collect::<Result<Vec<_>, _>>()
        },
        |new, list| {
            let mut map = HashMap::<&mut MapData, Lb4ReverseKey, Lb4ReverseValue>::try_from(new)?;
            for (key, value) in list {
                map.insert(key, value, 0)?;
            }
            Ok(())
        },
    )
}
