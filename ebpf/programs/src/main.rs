//! Sluice's kernel programs: socket-level load balancing for IPv4.
//!
//! `cgroup/connect4` (TCP and connected UDP) and `cgroup/sendmsg4`
//! (unconnected UDP) rewrite a service VIP:port found in `LB4_SERVICES` to one
//! of its backends in `LB4_BACKENDS` before a packet exists: no NAT, no proxy
//! hop. `cgroup/getpeername4` and `cgroup/recvmsg4` put the VIP back so the
//! application sees the address it asked for. The `*6` hooks do the same for
//! IPv6 sockets using v4-mapped addresses, and for IPv6 services (`lb6`).
//! The backend choice (random, weighted, Maglev) is in `choice`. A service
//! flagged as a redirect to Sluice's L7 listener also has its original
//! destination recorded (`redirect`). Per-CPU counters count connects per
//! service; one shared, atomically incremented counter per backend. Map layouts come from `sluice-ebpf-common`.
//! The XDP program lives in [`xdp`]. Rare events (a connect to a service
//! without backends, an inconsistent backend slot, XDP deny drops at trace)
//! are logged through `aya-log-ebpf`; the daemon forwards them to `tracing`
//! under `sluice::kernel` and sets the kernel-side level at load, so
//! disabled levels cost one load and a branch.
#![no_std]
#![no_main]
// `atomic_xadd`: the BPF target has no compare-and-swap, so `core` offers no
// `AtomicU64::fetch_add` there, yet the kernel has an atomic add instruction.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod choice;
mod lb6;
mod redirect;
mod redirect6;
mod xdp;
mod sockmap;

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_prandom_u32, bpf_get_socket_cookie},
    macros::{cgroup_sock_addr, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::SockAddrContext,
    EbpfContext,
};
use aya_log_ebpf::{debug, warn};
use core::intrinsics::{atomic_xadd, AtomicOrdering};
use sluice_ebpf_common::{
    BackendCounters, Lb4Backend, Lb4BackendKey, Lb4ReverseKey, Lb4ReverseValue, Lb4Service,
    Lb4ServiceKey, ServiceCounters, ServiceInfo, MAX_BACKEND_ENTRIES, MAX_BACKEND_IDS,
    MAX_REVERSE_SK, MAX_SERVICES, PROTO_TCP, PROTO_UDP, SERVICE_FLAG_REDIRECT,
};

/// Allow the syscall to proceed (with the possibly rewritten address).
const ALLOW: i32 = 1;

#[map(name = "LB4_SERVICES")]
static LB4_SERVICES: HashMap<Lb4ServiceKey, Lb4Service> =
    HashMap::with_max_entries(MAX_SERVICES, 0);

#[map(name = "LB4_BACKENDS")]
static LB4_BACKENDS: HashMap<Lb4BackendKey, Lb4Backend> =
    HashMap::with_max_entries(MAX_BACKEND_ENTRIES, 0);

#[map(name = "LB4_SERVICE_COUNTERS")]
static LB4_SERVICE_COUNTERS: PerCpuArray<ServiceCounters> =
    PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// One shared slot per backend id, incremented atomically: a per-CPU array
/// of this size costs 64 Ki per-CPU allocations at map creation (43 ms of
/// start-up on 2 CPUs, and 512 KiB of kernel memory per CPU), for a
/// counter bumped once per connect.
#[map(name = "LB4_BACKEND_COUNTERS")]
static LB4_BACKEND_COUNTERS: Array<BackendCounters> = Array::with_max_entries(MAX_BACKEND_IDS, 0);

/// Written by userspace only (listener names for `sluicectl bpf services`).
#[map(name = "LB4_SERVICE_INFO")]
static LB4_SERVICE_INFO: Array<ServiceInfo> = Array::with_max_entries(MAX_SERVICES, 0);

#[map(name = "LB4_REVERSE_SK")]
static LB4_REVERSE_SK: LruHashMap<Lb4ReverseKey, Lb4ReverseValue> =
    LruHashMap::with_max_entries(MAX_REVERSE_SK, 0);

#[cgroup_sock_addr(connect4)]
pub fn sluice_connect4(ctx: SockAddrContext) -> i32 {
    // Each TCP connection picks a backend uniformly at random.
    forward(&ctx, Family::V4, unsafe { bpf_get_prandom_u32() });
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sluice_sendmsg4(ctx: SockAddrContext) -> i32 {
    forward(&ctx, Family::V4, cookie_draw(&ctx));
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub fn sluice_getpeername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, Family::V4);
    ALLOW
}

#[cgroup_sock_addr(recvmsg4)]
pub fn sluice_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, Family::V4);
    ALLOW
}

/// IPv6 sockets reach IPv4 services through v4-mapped addresses
/// (`::ffff:a.b.c.d`, what dual-stack runtimes such as Java's use); the
/// kernel runs only the `*6` hooks for them.
#[cgroup_sock_addr(connect6)]
pub fn sluice_connect6(ctx: SockAddrContext) -> i32 {
    let draw = unsafe { bpf_get_prandom_u32() };
    if lb6::is_v4_mapped(unsafe { &*ctx.sock_addr }) {
        forward(&ctx, Family::V4MappedV6, draw);
    } else {
        lb6::forward(&ctx, draw);
    }
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sluice_sendmsg6(ctx: SockAddrContext) -> i32 {
    let draw = cookie_draw(&ctx);
    if lb6::is_v4_mapped(unsafe { &*ctx.sock_addr }) {
        forward(&ctx, Family::V4MappedV6, draw);
    } else {
        lb6::forward(&ctx, draw);
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn sluice_getpeername6(ctx: SockAddrContext) -> i32 {
    if lb6::is_v4_mapped(unsafe { &*ctx.sock_addr }) {
        reverse(&ctx, Family::V4MappedV6);
    } else {
        lb6::reverse(&ctx);
    }
    ALLOW
}

#[cgroup_sock_addr(recvmsg6)]
pub fn sluice_recvmsg6(ctx: SockAddrContext) -> i32 {
    if lb6::is_v4_mapped(unsafe { &*ctx.sock_addr }) {
        reverse(&ctx, Family::V4MappedV6);
    } else {
        lb6::reverse(&ctx);
    }
    ALLOW
}

/// Where the IPv4 address sits in `bpf_sock_addr`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `user_ip4`.
    V4,
    /// `user_ip6` holding `::ffff:a.b.c.d` (other IPv6 addresses are left alone).
    V4MappedV6,
}

/// Every datagram of one unconnected UDP socket goes to the same backend.
#[inline(always)]
fn cookie_draw(ctx: &SockAddrContext) -> u32 {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    (cookie as u32) ^ ((cookie >> 32) as u32)
}

#[inline(always)]
fn protocol_of(sock_addr: &bpf_sock_addr) -> Option<u8> {
    match sock_addr.protocol {
        6 => Some(PROTO_TCP),
        17 => Some(PROTO_UDP),
        _ => None,
    }
}

/// The destination IPv4 address (network order), if the family has one.
#[inline(always)]
fn ipv4_of(sock_addr: &bpf_sock_addr, family: Family) -> Option<u32> {
    match family {
        Family::V4 => Some(sock_addr.user_ip4),
        Family::V4MappedV6 => {
            let ip6 = sock_addr.user_ip6;
            (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0xffff_u32.to_be()).then_some(ip6[3])
        }
    }
}

#[inline(always)]
fn set_destination(sock_addr: &mut bpf_sock_addr, family: Family, address: u32, port: u16) {
    match family {
        Family::V4 => sock_addr.user_ip4 = address,
        // The first three words already say "v4-mapped".
        Family::V4MappedV6 => sock_addr.user_ip6[3] = address,
    }
    sock_addr.user_port = u32::from(port);
}

/// Rewrites the destination if it is a known service with a backend; `draw`
/// picks the backend. Inlined: BPF subprogram calls must not take
/// aggregates (the verifier rejects the half-initialised registers).
#[inline(always)]
fn forward(ctx: &SockAddrContext, family: Family, draw: u32) {
    // SAFETY: the kernel hands cgroup/sock_addr programs a valid context.
    let sock_addr = unsafe { &mut *ctx.sock_addr };
    let Some(protocol) = protocol_of(sock_addr) else {
        return;
    };
    let Some(address) = ipv4_of(sock_addr, family) else {
        return;
    };
    let key = Lb4ServiceKey {
        address,
        port: sock_addr.user_port as u16,
        protocol,
        pad: 0,
    };
    // SAFETY: the value is copied out before any map update.
    let Some(service) = (unsafe { LB4_SERVICES.get(&key) }).copied() else {
        return;
    };
    if service.backend_count == 0 {
        count_service(service.service_id, |c| c.no_backend += 1);
        // Debug, and filtered in the kernel unless `sluice::kernel` is at
        // debug: an app retrying a dead VIP must not flood the log.
        debug!(
            ctx,
            "connect to service {} ({:i}:{}) left unchanged: no backend",
            service.service_id,
            u32::from_be(key.address),
            u16::from_be(key.port)
        );
        return;
    }
    let Some(index) = choice::backend_index(ctx.as_ptr(), &service, draw) else {
        count_service(service.service_id, |c| c.no_backend += 1);
        return;
    };
    let backend_key = Lb4BackendKey {
        service_id: service.service_id,
        slot: service.slot,
        index,
    };
    // SAFETY: copied out immediately.
    let Some(backend) = (unsafe { LB4_BACKENDS.get(&backend_key) }).copied() else {
        count_service(service.service_id, |c| c.no_backend += 1);
        // The service entry names a backend slot userspace did not fill:
        // a sync bug, never expected.
        warn!(
            ctx,
            "service {} slot {} has no backend at index {}",
            service.service_id,
            service.slot,
            backend_key.index
        );
        return;
    };
    set_destination(sock_addr, family, backend.address, backend.port);
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let reverse_key = Lb4ReverseKey {
        cookie,
        address: backend.address,
        port: backend.port,
        pad: 0,
    };
    let vip = Lb4ReverseValue {
        address: key.address,
        port: key.port,
        pad: 0,
    };
    // A full LRU evicts the oldest entry; an error here only means the app
    // would see the backend's address from getpeername.
    let _ = LB4_REVERSE_SK.insert(&reverse_key, &vip, 0);
    if service.flags & SERVICE_FLAG_REDIRECT != 0 {
        redirect::remember(cookie, &vip);
        count_service(service.service_id, |c| c.redirects += 1);
    }
    count_service(service.service_id, |c| c.connects += 1);
    count_backend(backend.backend_id);
}

#[inline(always)]
fn count_backend(backend_id: u32) {
    if let Some(counters) = LB4_BACKEND_COUNTERS.get_ptr_mut(backend_id) {
        // SAFETY: the slot is a valid, 8-byte aligned u64 for the map's
        // lifetime, shared by every CPU: hence the atomic add.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                core::ptr::addr_of_mut!((*counters).connects),
                1,
            )
        };
    }
}

#[inline(always)]
fn count_service(service_id: u32, update: impl FnOnce(&mut ServiceCounters)) {
    if let Some(counters) = LB4_SERVICE_COUNTERS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU slot, this program is its only writer on this CPU.
        update(unsafe { &mut *counters });
    }
}

/// Shows the VIP instead of the backend a socket was rewritten to.
#[inline(always)]
fn reverse(ctx: &SockAddrContext, family: Family) {
    // SAFETY: the kernel hands cgroup/sock_addr programs a valid context.
    let sock_addr = unsafe { &mut *ctx.sock_addr };
    let Some(address) = ipv4_of(sock_addr, family) else {
        return;
    };
    let key = Lb4ReverseKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        address,
        port: sock_addr.user_port as u16,
        pad: 0,
    };
    // SAFETY: copied out immediately.
    if let Some(vip) = (unsafe { LB4_REVERSE_SK.get(&key) }).copied() {
        set_destination(sock_addr, family, vip.address, vip.port);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
