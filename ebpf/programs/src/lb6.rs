//! Socket load balancing for IPv6 services (`LB6_*` maps): the `*6` hooks
//! rewrite a native IPv6 VIP:port to one of its IPv6 backends and show the
//! app the VIP again, mirroring the IPv4 path in `main.rs`. (v4-mapped
//! destinations `::ffff:a.b.c.d` take the IPv4 path instead.) Service ids,
//! backend ids, counters and Maglev tables are shared with IPv4. A service
//! flagged as a redirect to Sluice's L7 listener also has its original
//! destination recorded (`redirect6`).

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::bpf_get_socket_cookie,
    macros::map,
    maps::{HashMap, LruHashMap},
    programs::SockAddrContext,
    EbpfContext,
};
use sluice_ebpf_common::{
    Lb6Backend, Lb6BackendKey, Lb6ReverseKey, Lb6ReverseValue, Lb6Service, Lb6ServiceKey,
    MAX_BACKEND_ENTRIES, MAX_REVERSE_SK, MAX_SERVICES, SERVICE_FLAG_REDIRECT,
};

use crate::{choice, count_backend, count_service, protocol_of, redirect6};

/// `BPF_F_NO_PREALLOC`: IPv6 services are the rarer kind; their maps take
/// memory per entry (preallocated, `LB6_BACKENDS` alone would be ~6.8 MB).
const NO_PREALLOC: u32 = 1;

#[map(name = "LB6_SERVICES")]
static LB6_SERVICES: HashMap<Lb6ServiceKey, Lb6Service> =
    HashMap::with_max_entries(MAX_SERVICES, NO_PREALLOC);

#[map(name = "LB6_BACKENDS")]
static LB6_BACKENDS: HashMap<Lb6BackendKey, Lb6Backend> =
    HashMap::with_max_entries(MAX_BACKEND_ENTRIES, NO_PREALLOC);

#[map(name = "LB6_REVERSE_SK")]
static LB6_REVERSE_SK: LruHashMap<Lb6ReverseKey, Lb6ReverseValue> =
    LruHashMap::with_max_entries(MAX_REVERSE_SK, 0);

/// `::ffff:a.b.c.d`: handled by the IPv4 maps.
#[inline(always)]
pub fn is_v4_mapped(sock_addr: &bpf_sock_addr) -> bool {
    let ip6 = sock_addr.user_ip6;
    ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0xffff_u32.to_be()
}

#[inline(always)]
fn destination(sock_addr: &bpf_sock_addr) -> [u32; 4] {
    // Word by word: the context allows only 4-byte loads of user_ip6.
    [
        sock_addr.user_ip6[0],
        sock_addr.user_ip6[1],
        sock_addr.user_ip6[2],
        sock_addr.user_ip6[3],
    ]
}

#[inline(always)]
fn set_destination(sock_addr: &mut bpf_sock_addr, address: [u32; 4], port: u16) {
    sock_addr.user_ip6[0] = address[0];
    sock_addr.user_ip6[1] = address[1];
    sock_addr.user_ip6[2] = address[2];
    sock_addr.user_ip6[3] = address[3];
    sock_addr.user_port = u32::from(port);
}

/// Rewrites a native IPv6 service destination to a backend; `draw` feeds
/// the backend choice (see `choice`).
#[inline(always)]
pub fn forward(ctx: &SockAddrContext, draw: u32) {
    // SAFETY: the kernel hands cgroup/sock_addr programs a valid context.
    let sock_addr = unsafe { &mut *ctx.sock_addr };
    let Some(protocol) = protocol_of(sock_addr) else {
        return;
    };
    let key = Lb6ServiceKey {
        address: destination(sock_addr),
        port: sock_addr.user_port as u16,
        protocol,
        pad: 0,
    };
    // SAFETY: the value is copied out before any map update.
    let Some(service) = (unsafe { LB6_SERVICES.get(&key) }).copied() else {
        return;
    };
    if service.backend_count == 0 {
        count_service(service.service_id, |c| c.no_backend += 1);
        return;
    }
    let Some(index) = choice::backend_index(ctx.as_ptr(), &service, draw) else {
        count_service(service.service_id, |c| c.no_backend += 1);
        return;
    };
    let backend_key = Lb6BackendKey {
        service_id: service.service_id,
        slot: service.slot,
        index,
    };
    // SAFETY: copied out immediately.
    let Some(backend) = (unsafe { LB6_BACKENDS.get(&backend_key) }).copied() else {
        count_service(service.service_id, |c| c.no_backend += 1);
        return;
    };
    set_destination(sock_addr, backend.address, backend.port);
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let reverse_key = Lb6ReverseKey {
        cookie,
        address: backend.address,
        port: backend.port,
        pad: 0,
        pad2: 0,
    };
    let vip = Lb6ReverseValue {
        address: key.address,
        port: key.port,
        pad: 0,
    };
    // A full LRU evicts the oldest entry; an error only means the app would
    // see the backend's address from getpeername.
    let _ = LB6_REVERSE_SK.insert(&reverse_key, &vip, 0);
    if service.flags & SERVICE_FLAG_REDIRECT != 0 {
        redirect6::remember(cookie, &vip);
        count_service(service.service_id, |c| c.redirects += 1);
    }
    count_service(service.service_id, |c| c.connects += 1);
    count_backend(backend.backend_id);
}

/// Shows the IPv6 VIP instead of the backend a socket was rewritten to.
#[inline(always)]
pub fn reverse(ctx: &SockAddrContext) {
    // SAFETY: the kernel hands cgroup/sock_addr programs a valid context.
    let sock_addr = unsafe { &mut *ctx.sock_addr };
    let key = Lb6ReverseKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        address: destination(sock_addr),
        port: sock_addr.user_port as u16,
        pad: 0,
        pad2: 0,
    };
    // SAFETY: copied out immediately.
    if let Some(vip) = (unsafe { LB6_REVERSE_SK.get(&key) }).copied() {
        set_destination(sock_addr, vip.address, vip.port);
    }
}
