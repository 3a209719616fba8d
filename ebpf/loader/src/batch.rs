//! `BPF_MAP_UPDATE_BATCH` and `BPF_MAP_LOOKUP_BATCH` through a map's fd:
//! many entries written or read in one `bpf()` call instead of one call
//! each (aya 0.14 has no batch API).
//!
//! The kernel applies the entries in order and stops at the first that
//! fails, so a failed batch leaves a prefix written, as a loop of single
//! updates would. Used by the socket-LB syncer: an EDS push that moves
//! 10,000 endpoints is then some hundreds of calls instead of 20,000.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{IterableMap, MapData};
use sluice_ebpf_common::{map_names, BackendCounters, Lb4Backend, Lb4BackendKey, Lb6Backend};

use crate::maps::LbMaps;
use crate::DatapathError;

/// `BPF_MAP_LOOKUP_BATCH` and `BPF_MAP_UPDATE_BATCH` (linux/bpf.h, since 5.6).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `keys[i] -> values[i]` (`BPF_ANY`) for every i. `K` and `V` must
/// be the map's key and value layouts (the typed aya map checked the sizes).
pub(crate) fn update<K: aya::Pod, V: aya::Pod>(
    map: &MapData,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    // SAFETY: `Pod` types are plain bytes.
    let value_bytes = unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    };
    update_raw(map, keys, value_bytes)
}

/// Writes zeroes to entries `indices` of an array whose values are
/// `value_size` bytes.
pub(crate) fn zero_entries(map: &MapData, indices: &[u32], value_size: usize) -> io::Result<()> {
    update_raw(map, indices, &vec![0u8; value_size * indices.len()])
}

fn update_raw<K: aya::Pod>(map: &MapData, keys: &[K], values: &[u8]) -> io::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(keys.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "batch too large"))?;
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` points at `count` keys and their values, alive for the
    // call; the kernel reads them and writes back `attr.count`.
    unsafe { bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    if attr.count != count {
        return Err(io::Error::other(format!(
            "batch update wrote {} of {count} entries",
            attr.count
        )));
    }
    Ok(())
}

/// Reads the values of entries `0..count` of an array whose values are
/// `value_size` bytes, in index order.
pub(crate) fn lookup_array(map: &MapData, count: u32, value_size: usize) -> io::Result<Vec<u8>> {
    let mut keys = vec![0u32; count as usize];
    let mut values = vec![0u8; value_size * count as usize];
    if count == 0 {
        return Ok(values);
    }
    let mut next_key = 0u32;
    let mut attr = BatchAttr {
        out_batch: &mut next_key as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` points at room for `count` keys and their values and
    // at the out-batch token, alive for the call; the kernel writes them
    // and `attr.count`.
    match unsafe { bpf_batch(BPF_MAP_LOOKUP_BATCH, &mut attr) } {
        // ENOENT: the array ended before `count` entries (fewer were read).
        Err(error) if error.raw_os_error() != Some(libc::ENOENT) => return Err(error),
        _ => {}
    }
    if attr.count != count || keys.iter().enumerate().any(|(i, k)| *k != i as u32) {
        return Err(io::Error::other(format!(
            "batch lookup read {} of {count} entries",
            attr.count
        )));
    }
    Ok(values)
}

/// One `bpf(command, attr)` call.
///
/// # Safety
/// Every pointer in `attr` is valid for what `command` reads and writes.
unsafe fn bpf_batch(command: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    let result = libc::syscall(
        libc::SYS_bpf,
        command,
        attr as *mut BatchAttr,
        std::mem::size_of::<BatchAttr>(),
    );
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn batch_error(map: &'static str) -> impl Fn(io::Error) -> DatapathError {
    move |error| DatapathError::Map {
        map,
        reason: error.to_string(),
    }
}

/// The syncer's batch writes: each is one `bpf()` call.
impl LbMaps {
    /// Writes IPv4 backend entries, in order.
    pub fn insert_backends(
        &mut self,
        keys: &[Lb4BackendKey],
        values: &[Lb4Backend],
    ) -> Result<(), DatapathError> {
        update(self.backends.map(), keys, values).map_err(batch_error(map_names::LB4_BACKENDS))
    }

    /// Writes IPv6 backend entries, in order.
    pub fn insert_backends6(
        &mut self,
        keys: &[Lb4BackendKey],
        values: &[Lb6Backend],
    ) -> Result<(), DatapathError> {
        update(self.backends6.map(), keys, values).map_err(batch_error(map_names::LB6_BACKENDS))
    }

    /// The `connects` of backend ids `0..count`, in one read (the
    /// per-second counter export).
    pub fn backend_connects_below(&self, count: u32) -> Result<Vec<u64>, DatapathError> {
        let value_size = std::mem::size_of::<BackendCounters>();
        let bytes = lookup_array(self.backend_counters.map(), count, value_size)
            .map_err(batch_error(map_names::LB4_BACKEND_COUNTERS))?;
        let connects = std::mem::offset_of!(BackendCounters, connects);
        Ok(bytes
            .chunks_exact(value_size)
            .map(|value| u64::from_ne_bytes(value[connects..connects + 8].try_into().unwrap()))
            .collect())
    }

    /// Zeroes the counters of these backend ids.
    pub fn zero_backend_counters_of(&mut self, backend_ids: &[u32]) -> Result<(), DatapathError> {
        zero_entries(
            self.backend_counters.map(),
            backend_ids,
            std::mem::size_of::<BackendCounters>(),
        )
        .map_err(batch_error(map_names::LB4_BACKEND_COUNTERS))
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
