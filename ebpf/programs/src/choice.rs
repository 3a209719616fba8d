//! The backend-pick step of socket load balancing, shared by the IPv4 and
//! IPv6 hooks, and the `LB_MAGLEV` map it reads.
//!
//! A service's `flags` say how its backend is chosen:
//! - neither flag: uniformly at random among the slot's `backend_count`
//!   backends (`draw % backend_count`);
//! - `SERVICE_FLAG_WEIGHTED`: a random entry of the slot's Maglev table,
//!   which holds each backend in proportion to its `load_balancing_weight`;
//! - `SERVICE_FLAG_MAGLEV` (cluster `lb_policy` MAGLEV or RING_HASH): the
//!   table entry of a hash of the client's **network-namespace cookie**
//!   (`bpf_get_netns_cookie`). There is no source port yet at connect time,
//!   and a socket cookie is new for every connection; the netns is the
//!   client's identity that survives across connects (in a DaemonSet one pod
//!   is one netns), so every connect from one pod sticks to one backend while
//!   the backend set is unchanged, as Cilium's socket-LB session affinity
//!   does, and moves for only about 1/N of the pods when one of N backends
//!   goes away (Maglev's minimal disruption).
//!
//! The table is part of a backend slot (`MaglevKey { service_id, slot }`):
//! userspace writes the new slot's backends and table, then flips the
//! service entry, so a connect never pairs a table with the other slot.

use aya_ebpf::{helpers::bpf_get_netns_cookie, macros::map, maps::HashMap};
use sluice_ebpf_common::{
    Lb4Service, MaglevKey, MaglevTable, MAGLEV_TABLE_SIZE, MAX_MAGLEV_TABLES, SERVICE_FLAG_MAGLEV,
    SERVICE_FLAG_WEIGHTED,
};

/// `BPF_F_NO_PREALLOC`: tables take memory only for services that have one.
const NO_PREALLOC: u32 = 1;

#[map(name = "LB_MAGLEV")]
static LB_MAGLEV: HashMap<MaglevKey, MaglevTable> =
    HashMap::with_max_entries(MAX_MAGLEV_TABLES, NO_PREALLOC);

/// Index of the chosen backend in the service's active slot; `draw` is the
/// caller's random (or per-socket) number. `None` when the service says it
/// has a table and the table is missing (never, if userspace kept order).
#[inline(always)]
pub fn backend_index(ctx: *mut core::ffi::c_void, service: &Lb4Service, draw: u32) -> Option<u32> {
    if service.flags & (SERVICE_FLAG_MAGLEV | SERVICE_FLAG_WEIGHTED) == 0 {
        return Some(draw % service.backend_count);
    }
    let hash = if service.flags & SERVICE_FLAG_MAGLEV != 0 {
        // SAFETY: cgroup/sock_addr programs may call bpf_get_netns_cookie.
        mix(unsafe { bpf_get_netns_cookie(ctx) })
    } else {
        draw
    };
    let key = MaglevKey {
        service_id: service.service_id,
        slot: service.slot,
    };
    let table = LB_MAGLEV.get_ptr(&key)?;
    let entry = hash % MAGLEV_TABLE_SIZE;
    // Verifier gotcha: the compiler knows `entry < MAGLEV_TABLE_SIZE` and
    // would drop the check the verifier needs; a volatile reload hides it.
    // SAFETY: reading back a local just written.
    let entry = unsafe { core::ptr::read_volatile(&entry) };
    if entry >= MAGLEV_TABLE_SIZE {
        return None;
    }
    // SAFETY: `table` points at a live map value; `entry` is in bounds.
    let index = unsafe { *(*table).backend_index.as_ptr().add(entry as usize) };
    Some(u32::from(index))
}

/// A 64 → 32-bit mix (splitmix64's finalizer) so that neighbouring cookies
/// land on unrelated table entries.
#[inline(always)]
fn mix(value: u64) -> u32 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}
