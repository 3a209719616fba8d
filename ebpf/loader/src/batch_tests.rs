//! Batch updates against real kernel maps created for the test (root only:
//! skipped with the reason otherwise, and a failure under `CI=true`).

use std::os::fd::{FromRawFd, OwnedFd};

use aya::maps::{Array, HashMap, Map};

use super::*;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// The first members of `union bpf_attr` for `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

fn create_map(map_type: u32, key_size: usize, value_size: usize, max_entries: u32) -> MapData {
    let attr = CreateAttr {
        map_type,
        key_size: key_size as u32,
        value_size: value_size as u32,
        max_entries,
        ..CreateAttr::default()
    };
    // SAFETY: a plain BPF_MAP_CREATE; the fd returned is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const CreateAttr,
            std::mem::size_of::<CreateAttr>(),
        )
    };
    assert!(fd >= 0, "BPF_MAP_CREATE: {}", io::Error::last_os_error());
    // SAFETY: the kernel just gave us this fd.
    MapData::from_fd(unsafe { OwnedFd::from_raw_fd(fd as i32) }).expect("map from fd")
}

fn skip() -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return false;
    }
    let reason = "not root (creating BPF maps needs CAP_BPF)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("batch map tests must run under CI=true, but: {reason}");
    }
    eprintln!("skipping batch map test: {reason}");
    true
}

#[test]
fn a_batch_writes_every_entry_of_a_hash_map() {
    if skip() {
        return;
    }
    let map = create_map(
        BPF_MAP_TYPE_HASH,
        std::mem::size_of::<Lb4BackendKey>(),
        std::mem::size_of::<Lb4Backend>(),
        1024,
    );
    let keys: Vec<Lb4BackendKey> = (0..300)
        .map(|index| Lb4BackendKey {
            service_id: 7,
            slot: index % 2,
            index,
        })
        .collect();
    let values: Vec<Lb4Backend> = (0..300)
        .map(|n| Lb4Backend {
            address: 0x0a00_0000 + n,
            port: n as u16,
            pad: 0,
            backend_id: n,
        })
        .collect();
    update(&map, &keys, &values).unwrap();
    update::<Lb4BackendKey, Lb4Backend>(&map, &[], &[]).unwrap();
    let map: HashMap<_, Lb4BackendKey, Lb4Backend> = HashMap::try_from(Map::HashMap(map)).unwrap();
    for (key, value) in keys.iter().zip(&values) {
        assert_eq!(map.get(key, 0).unwrap(), *value);
    }
    assert_eq!(map.keys().count(), 300);
}

#[test]
fn a_batch_that_does_not_fit_fails() {
    if skip() {
        return;
    }
    let map = create_map(BPF_MAP_TYPE_HASH, 4, 4, 2);
    let error = update(&map, &[1u32, 2, 3], &[1u32, 2, 3]).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::E2BIG), "{error}");
}

#[test]
fn array_entries_are_zeroed() {
    if skip() {
        return;
    }
    let size = std::mem::size_of::<BackendCounters>();
    let map = create_map(BPF_MAP_TYPE_ARRAY, 4, size, 16);
    let mut array: Array<_, BackendCounters> = Array::try_from(Map::Array(map)).unwrap();
    for index in 0..16 {
        array
            .set(index, BackendCounters { connects: 41 }, 0)
            .unwrap();
    }
    zero_entries(IterableMap::map(&array), &[3, 5, 15], size).unwrap();
    for index in 0..16 {
        let expected = if [3, 5, 15].contains(&index) { 0 } else { 41 };
        assert_eq!(
            array.get(&index, 0).unwrap().connects,
            expected,
            "entry {index}"
        );
    }
}

#[test]
fn a_batch_reads_array_entries_in_index_order() {
    if skip() {
        return;
    }
    let size = std::mem::size_of::<BackendCounters>();
    let map = create_map(BPF_MAP_TYPE_ARRAY, 4, size, 16);
    let mut array: Array<_, BackendCounters> = Array::try_from(Map::Array(map)).unwrap();
    for index in 0..16u32 {
        let connects = u64::from(index) * 100 + 7;
        array.set(index, BackendCounters { connects }, 0).unwrap();
    }
    let bytes = lookup_array(IterableMap::map(&array), 5, size).unwrap();
    let values: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values, vec![7, 107, 207, 307, 407]);
    // Asking past the end reads what is there and says so.
    assert!(lookup_array(IterableMap::map(&array), 17, size).is_err());
    assert!(lookup_array(IterableMap::map(&array), 0, size)
        .unwrap()
        .is_empty());
}
