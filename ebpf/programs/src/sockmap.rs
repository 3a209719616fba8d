//! Local acceleration: `sockops` adds every established TCP socket whose
//! peer is on this node (both ends, active and passive; IPv4 and v4-mapped
//! IPv6) to `SOCKMAP_SOCKETS` keyed by its network namespace and 4-tuple, and `sk_msg` (attached to
//! that map) moves each message a member socket sends straight into its peer
//! socket's receive queue (`bpf_msg_redirect_hash` with `BPF_F_INGRESS`),
//! skipping the TCP/IP stack. A socket whose peer is not in the map sends
//! through the stack as usual and is marked in `SOCKMAP_TAINTED`: it never
//! redirects afterwards, because the receiver reads redirected bytes before
//! stack bytes and would otherwise see them out of order. Sockets leave
//! `SOCKMAP_SOCKETS` by themselves when they close.
//!
//! Independent of the other sockops users: its own program, maps and
//! counters (`SOCKMAP_COUNTERS`, per CPU).

use aya_ebpf::{
    bindings::{
        sk_action::SK_PASS, BPF_F_INGRESS, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
    },
    helpers::bpf_get_netns_cookie,
    macros::{map, sk_msg, sock_ops},
    maps::{LruHashMap, PerCpuArray, SockHash},
    programs::{SkMsgContext, SockOpsContext},
};
use sluice_ebpf_common::sockmap::{SockKey, SockmapCounters, MAX_SOCKETS, MAX_TAINTED};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[map(name = "SOCKMAP_SOCKETS")]
static SOCKMAP_SOCKETS: SockHash<SockKey> = SockHash::with_max_entries(MAX_SOCKETS, 0);

#[map(name = "SOCKMAP_COUNTERS")]
static SOCKMAP_COUNTERS: PerCpuArray<SockmapCounters> = PerCpuArray::with_max_entries(1, 0);

/// Sockets that sent through the TCP/IP stack (value unused).
#[map(name = "SOCKMAP_TAINTED")]
static SOCKMAP_TAINTED: LruHashMap<SockKey, u8> = LruHashMap::with_max_entries(MAX_TAINTED, 0);

#[sock_ops]
pub fn sluice_sockops_sockmap(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        return 1;
    }
    let ops = ctx.ops;
    // SAFETY (every `read`): the kernel hands sockops programs a valid
    // context; each field is read once, in place.
    let key = match unsafe { read(&raw const (*ops).family) } {
        AF_INET => unsafe {
            key_of(
                read(&raw const (*ops).local_ip4),
                read(&raw const (*ops).remote_ip4),
                read(&raw const (*ops).local_port),
                read(&raw const (*ops).remote_port),
            )
        },
        AF_INET6 => unsafe {
            match (
                v4_mapped(&raw const (*ops).local_ip6),
                v4_mapped(&raw const (*ops).remote_ip6),
            ) {
                (Some(local), Some(remote)) => key_of(
                    local,
                    remote,
                    read(&raw const (*ops).local_port),
                    read(&raw const (*ops).remote_port),
                ),
                _ => return 1,
            }
        },
        _ => return 1,
    };
    // SAFETY: sockops programs may call bpf_get_netns_cookie on their context.
    let key = SockKey {
        netns_cookie: unsafe { bpf_get_netns_cookie(ctx.ops.cast()) },
        ..key
    };
    if !key.peer_is_local() {
        count(|c| c.sockets_not_local += 1);
        return 1;
    }
    // A new connection reusing a closed one's 4-tuple starts untainted.
    let _ = SOCKMAP_TAINTED.remove(&key);
    // SAFETY: as above; the helper only reads the socket behind the context.
    match SOCKMAP_SOCKETS.update(key, unsafe { &mut *ctx.ops }, 0) {
        Ok(()) => count(|c| c.sockets_added += 1),
        Err(_) => count(|c| c.sockets_add_failed += 1),
    }
    1
}

#[sk_msg]
pub fn sluice_sk_msg_sockmap(ctx: SkMsgContext) -> u32 {
    let msg = ctx.msg;
    // SAFETY (every `read`): the kernel hands sk_msg programs a valid
    // context; each field is read once, in place.
    let size = u64::from(unsafe { read(&raw const (*msg).size) });
    let key = match unsafe { read(&raw const (*msg).family) } {
        AF_INET => unsafe {
            key_of(
                read(&raw const (*msg).local_ip4),
                read(&raw const (*msg).remote_ip4),
                read(&raw const (*msg).local_port),
                read(&raw const (*msg).remote_port),
            )
        },
        AF_INET6 => unsafe {
            match (
                v4_mapped(&raw const (*msg).local_ip6),
                v4_mapped(&raw const (*msg).remote_ip6),
            ) {
                (Some(local), Some(remote)) => key_of(
                    local,
                    remote,
                    read(&raw const (*msg).local_port),
                    read(&raw const (*msg).remote_port),
                ),
                _ => return SK_PASS,
            }
        },
        _ => return SK_PASS,
    };
    // SAFETY: sk_msg programs may call bpf_get_netns_cookie on their context.
    let key = SockKey {
        netns_cookie: unsafe { bpf_get_netns_cookie(ctx.msg.cast()) },
        ..key
    };
    // SAFETY: only the presence of the entry is used.
    let tainted = unsafe { SOCKMAP_TAINTED.get(&key) }.is_some();
    if !tainted {
        let verdict = SOCKMAP_SOCKETS.redirect_msg(&ctx, key.peer(), u64::from(BPF_F_INGRESS));
        if verdict == i64::from(SK_PASS) {
            count(|c| {
                c.redirected_messages += 1;
                c.redirected_bytes += size;
            });
            return SK_PASS;
        }
        // The peer is not in the map: from now on this socket uses the stack.
        let _ = SOCKMAP_TAINTED.insert(&key, &1, 0);
    }
    count(|c| {
        c.missed_messages += 1;
        c.missed_bytes += size;
    });
    // Without a redirect target set, SK_PASS sends through the stack.
    SK_PASS
}

/// A key (without its namespace) from the kernel's fields: addresses in network order, `local_port`
/// in host order, `remote_port` in network order (high 16 bits on
/// little-endian; the low 16 bits are also accepted).
#[inline(always)]
fn key_of(local_ip4: u32, remote_ip4: u32, local_port: u32, remote_port: u32) -> SockKey {
    let network_order = if remote_port & 0xffff == 0 {
        (remote_port >> 16) as u16
    } else {
        remote_port as u16
    };
    SockKey {
        netns_cookie: 0,
        local_ip4,
        remote_ip4,
        local_port: local_port & 0xffff,
        remote_port: u32::from(u16::from_be(network_order)),
    }
}

/// A context field, read with a load of its own at its fixed offset: the
/// verifier rejects context loads through a computed pointer, which LLVM
/// would otherwise produce by merging the IPv4 and IPv6 branches.
///
/// # Safety
/// `field` points into the program's context.
#[inline(always)]
unsafe fn read(field: *const u32) -> u32 {
    core::ptr::read_volatile(field)
}

/// The IPv4 address of a v4-mapped IPv6 address (`::ffff:a.b.c.d`).
///
/// # Safety
/// `address` points into the program's context.
#[inline(always)]
unsafe fn v4_mapped(address: *const [u32; 4]) -> Option<u32> {
    let words = address as *const u32;
    let mapped =
        read(words) == 0 && read(words.add(1)) == 0 && read(words.add(2)) == 0xffff_u32.to_be();
    mapped.then(|| read(words.add(3)))
}

#[inline(always)]
fn count(update: impl FnOnce(&mut SockmapCounters)) {
    if let Some(counters) = SOCKMAP_COUNTERS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; programs run with preemption off on it.
        update(unsafe { &mut *counters });
    }
}
