//! The object's pinned maps, created on a thread of their own while aya
//! parses the kernel's BTF.
//!
//! aya 0.14 parses all of `/sys/kernel/btf/vmlinux` in `EbpfLoader::new()`
//! (~12 ms) and only then creates the maps (~17 ms of kernel allocation:
//! seven 65,536-entry LRU hashes, preallocated; per-CPU arrays), one after
//! the other on one thread. [`create`] makes every map of
//! [`map_names::ALL`] from the object's own definitions and pins it under
//! `<pin-dir>/incoming/` — where [`Datapath::load_from`](crate::Datapath::load_from)
//! pins them anyway — so the two run side by side; the loader is then
//! pointed at those pins (`EbpfLoader::map_pin_path`) and opens them instead
//! of creating the maps again. Same maps (type, sizes, flags, capacity), made
//! earlier; nothing is attached. The maps are created without BTF type ids,
//! as aya creates these legacy `#[map]` definitions.
//!
//! [`EarlyMaps`] unpins them on drop unless the datapath took them over
//! ([`EarlyMaps::keep`]): an object loaded and never used leaves nothing
//! behind.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aya::maps::MapData;
use aya_obj::generated::bpf_map_type;
use sluice_ebpf_common::map_names;

use crate::pins::{clear_dir, ensure_bpffs};
use crate::{DatapathError, INCOMING, OBJECT};

/// Map types aya creates exactly as defined (no size or value override,
/// no inner map), so creating them here gives the map aya would make.
const CREATED_AS_DEFINED: [bpf_map_type; 6] = [
    bpf_map_type::BPF_MAP_TYPE_HASH,
    bpf_map_type::BPF_MAP_TYPE_LRU_HASH,
    bpf_map_type::BPF_MAP_TYPE_ARRAY,
    bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
    bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH,
    bpf_map_type::BPF_MAP_TYPE_LPM_TRIE,
];

/// Maps pinned under `incoming/` ahead of the load.
#[derive(Debug)]
pub(crate) struct EarlyMaps {
    pin_dir: PathBuf,
    names: Vec<&'static str>,
    kept: bool,
}

impl EarlyMaps {
    /// The pin directory they were made for.
    pub(crate) fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The maps pinned, each at `<pin-dir>/incoming/<name>`.
    pub(crate) fn names(&self) -> &[&'static str] {
        &self.names
    }

    pub(crate) fn pin_path(&self, name: &str) -> PathBuf {
        self.pin_dir.join(INCOMING).join(name)
    }

    /// The datapath owns the pins from now on (its drop clears them).
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for EarlyMaps {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for name in &self.names {
            let _ = std::fs::remove_file(self.pin_path(name));
        }
        // Directories this start made, if nothing else is in them.
        for dir in [
            self.pin_dir.join(INCOMING),
            self.pin_dir.join("links"),
            self.pin_dir.clone(),
        ] {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Checks the cgroup can be opened (as the attach will), prepares
/// `<pin-dir>` (bpffs, `links/`, an empty `incoming/`) as
/// [`Datapath::load_from`](crate::Datapath::load_from) does, then creates
/// and pins the maps of [`map_names::ALL`] whose type aya creates as
/// defined (`shrunk` ones with one entry), on this thread and one more (the kernel's allocation of a
/// preallocated map is most of the load). Nothing under the pin directory is touched when the cgroup
/// cannot be opened.
pub(crate) fn create(
    cgroup: &Path,
    pin_dir: &Path,
    shrunk: &[&'static str],
) -> Result<EarlyMaps, DatapathError> {
    std::fs::File::open(cgroup).map_err(|source| DatapathError::Cgroup {
        path: cgroup.to_path_buf(),
        source,
    })?;
    prepare_pin_dir(pin_dir)?;
    let mut object = aya_obj::Object::parse(OBJECT).map_err(|e| DatapathError::Map {
        map: "(object)",
        reason: format!("parsing the object's map definitions failed: {e}"),
    })?;
    // The work, costliest first (the preallocated LRU hashes), taken by
    // this thread and one more.
    let mut work: Vec<(&'static str, aya_obj::Map)> = map_names::ALL
        .into_iter()
        .filter_map(|name| Some((name, object.maps.remove(name)?)))
        .map(|(name, mut definition)| {
            if shrunk.contains(&name) {
                definition.set_max_entries(1); // as `EbpfLoader::map_max_entries`
            }
            (name, definition)
        })
        .filter(|(_, definition)| {
            CREATED_AS_DEFINED
                .iter()
                .any(|kind| *kind as u32 == definition.map_type())
        })
        .collect();
    work.sort_by_key(|(_, definition)| {
        definition.map_type() != bpf_map_type::BPF_MAP_TYPE_LRU_HASH as u32
    });
    work.reverse(); // popped from the end
    let work = Mutex::new(work);
    let created = Mutex::new(Vec::new());
    let create_until_done = || -> Result<(), DatapathError> {
        loop {
            let Some((name, definition)) = lock(&work).pop() else {
                return Ok(());
            };
            let map = MapData::create(definition, name, None).map_err(|e| DatapathError::Map {
                map: name,
                reason: e.to_string(),
            })?;
            let path = pin_dir.join(INCOMING).join(name);
            map.pin(&path).map_err(|e| DatapathError::Map {
                map: name,
                reason: format!("pinning at {} failed: {e}", path.display()),
            })?;
            // The pin keeps the map; our descriptor closes here.
            lock(&created).push(name);
        }
    };
    let result = std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("sluice-bpf-maps-2".into())
            .spawn_scoped(scope, create_until_done);
        let mine = create_until_done();
        // Without a helper thread this one took all the work.
        let theirs = helper.map_or(Ok(()), |helper| {
            helper.join().unwrap_or_else(|_| {
                Err(DatapathError::Map {
                    map: "(all)",
                    reason: "the thread creating maps panicked".into(),
                })
            })
        });
        mine.and(theirs)
    });
    // Created maps are unpinned on drop if anything failed.
    let early = EarlyMaps {
        pin_dir: pin_dir.to_path_buf(),
        names: created.into_inner().unwrap_or_else(|e| e.into_inner()),
        kept: false,
    };
    result.map(|()| early)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// bpffs under `pin_dir`, `links/` and an empty `incoming/` (a start that
/// died half-way left its incoming pins: never live).
pub(crate) fn prepare_pin_dir(pin_dir: &Path) -> Result<(), DatapathError> {
    ensure_bpffs(pin_dir)?;
    let incoming = pin_dir.join(INCOMING);
    for dir in [&pin_dir.join("links"), &incoming] {
        std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir {
            path: dir.clone(),
            source,
        })?;
    }
    clear_dir(&incoming)
}
