//! Sluice's kernel programs: socket-level load balancing for IPv4.
//!
//! `cgroup/connect4` (TCP and connected UDP) and `cgroup/sendmsg4`
//! (unconnected UDP) rewrite a service VIP:port found in `LB4_SERVICES` to one
//! of its backends in `LB4_BACKENDS` before a packet exists: no NAT, no proxy
//! hop. `cgroup/getpeername4` and `cgroup/recvmsg4` put the VIP back so the
//! application sees the address it asked for. Per-CPU counters count connects
//! per service and per backend. Map layouts come from `sluice-ebpf-common`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_prandom_u32, bpf_get_socket_cookie},
    macros::{cgroup_sock_addr, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::SockAddrContext,
    EbpfContext,
};
use sluice_ebpf_common::{
    BackendCounters, Lb4Backend, Lb4BackendKey, Lb4ReverseKey, Lb4ReverseValue, Lb4Service,
    Lb4ServiceKey, ServiceCounters, ServiceInfo, MAX_BACKEND_ENTRIES, MAX_BACKEND_IDS,
    MAX_REVERSE_SK, MAX_SERVICES, PROTO_TCP, PROTO_UDP,
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

#[map(name = "LB4_BACKEND_COUNTERS")]
static LB4_BACKEND_COUNTERS: PerCpuArray<BackendCounters> =
    PerCpuArray::with_max_entries(MAX_BACKEND_IDS, 0);

/// Written by userspace only (listener names for `sluicectl bpf services`).
#[map(name = "LB4_SERVICE_INFO")]
static LB4_SERVICE_INFO: Array<ServiceInfo> = Array::with_max_entries(MAX_SERVICES, 0);

#[map(name = "LB4_REVERSE_SK")]
static LB4_REVERSE_SK: LruHashMap<Lb4ReverseKey, Lb4ReverseValue> =
    LruHashMap::with_max_entries(MAX_REVERSE_SK, 0);

#[cgroup_sock_addr(connect4)]
pub fn sluice_connect4(ctx: SockAddrContext) -> i32 {
    // Each TCP connection picks a backend uniformly at random.
    forward(&ctx, unsafe { bpf_get_prandom_u32() });
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sluice_sendmsg4(ctx: SockAddrContext) -> i32 {
    // Every datagram of one unconnected UDP socket goes to the same backend.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    forward(&ctx, (cookie as u32) ^ ((cookie >> 32) as u32));
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub fn sluice_getpeername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[cgroup_sock_addr(recvmsg4)]
pub fn sluice_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[inline(always)]
fn protocol_of(sock_addr: &bpf_sock_addr) -> Option<u8> {
    match sock_addr.protocol {
        6 => Some(PROTO_TCP),
        17 => Some(PROTO_UDP),
        _ => None,
    }
}

/// Rewrites the destination if it is a known service with a backend; `draw`
/// picks the backend. Inlined: BPF subprogram calls must not take
/// aggregates (the verifier rejects the half-initialised registers).
#[inline(always)]
fn forward(ctx: &SockAddrContext, draw: u32) {
    // SAFETY: the kernel hands cgroup/sock_addr programs a valid context.
    let sock_addr = unsafe { &mut *ctx.sock_addr };
    let Some(protocol) = protocol_of(sock_addr) else {
        return;
    };
    let key = Lb4ServiceKey {
        address: sock_addr.user_ip4,
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
        return;
    }
    let backend_key = Lb4BackendKey {
        service_id: service.service_id,
        slot: service.slot,
        index: draw % service.backend_count,
    };
    // SAFETY: copied out immediately.
    let Some(backend) = (unsafe { LB4_BACKENDS.get(&backend_key) }).copied() else {
        count_service(service.service_id, |c| c.no_backend += 1);
        return;
    };
    sock_addr.user_ip4 = backend.address;
    sock_addr.user_port = u32::from(backend.port);
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
    count_service(service.service_id, |c| c.connects += 1);
    if let Some(counters) = LB4_BACKEND_COUNTERS.get_ptr_mut(backend.backend_id) {
        // SAFETY: per-CPU slot, this program is its only writer on this CPU.
        unsafe { (*counters).connects += 1 };
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
fn reverse(ctx: &SockAddrContext) {
    // SAFETY: the kernel hands cgroup/sock_addr programs a valid context.
    let sock_addr = unsafe { &mut *ctx.sock_addr };
    let key = Lb4ReverseKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        address: sock_addr.user_ip4,
        port: sock_addr.user_port as u16,
        pad: 0,
    };
    // SAFETY: copied out immediately.
    if let Some(vip) = (unsafe { LB4_REVERSE_SK.get(&key) }).copied() {
        sock_addr.user_ip4 = vip.address;
        sock_addr.user_port = u32::from(vip.port);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
