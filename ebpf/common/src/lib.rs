//! Map key/value layouts shared by the kernel programs (`ebpf/programs`) and
//! userspace (`ebpf/loader`, `sluicectl`), so a layout can never drift.
//!
//! Every type is `#[repr(C)]` with explicit padding fields (the verifier and
//! `bpftool` see exactly these bytes). Addresses and ports are stored in
//! network byte order, as the kernel hands them to `cgroup/connect4`
//! (`bpf_sock_addr.user_ip4`, `user_port`), so the programs never swap bytes.
//!
//! Load-balancing maps follow Cilium's shape (`lb4_services`, `lb4_backends`)
//! with double-buffered backend slots: userspace writes a service's new backend
//! list into the slot the service entry does not point at, then flips the
//! service entry in one map update, so a connect never sees a half-written
//! service.
#![no_std]

pub mod sockmap;

/// Names of the maps in the object, as pinned under the pin directory and as
/// `bpftool map dump pinned <pin-dir>/<name>` shows them.
pub mod map_names {
    pub const LB4_SERVICES: &str = "LB4_SERVICES";
    pub const LB4_BACKENDS: &str = "LB4_BACKENDS";
    pub const LB4_SERVICE_COUNTERS: &str = "LB4_SERVICE_COUNTERS";
    pub const LB4_BACKEND_COUNTERS: &str = "LB4_BACKEND_COUNTERS";
    pub const LB4_REVERSE_SK: &str = "LB4_REVERSE_SK";
    pub const LB4_SERVICE_INFO: &str = "LB4_SERVICE_INFO";
    pub const XDP_DENY4: &str = "XDP_DENY4";
    pub const XDP_COUNTERS: &str = "XDP_COUNTERS";
    pub const LB_MAGLEV: &str = "LB_MAGLEV";
    pub const LB6_SERVICES: &str = "LB6_SERVICES";
    pub const LB6_BACKENDS: &str = "LB6_BACKENDS";
    pub const LB6_REVERSE_SK: &str = "LB6_REVERSE_SK";
    pub const REDIRECT_BY_COOKIE: &str = "REDIRECT_BY_COOKIE";
    pub const REDIRECT_ORIGINAL_DST: &str = "REDIRECT_ORIGINAL_DST";
    pub const XDP_DENY6: &str = "XDP_DENY6";
    pub const XDP_SERVICE_COUNTERS: &str = "XDP_SERVICE_COUNTERS";
    pub const REDIRECT6_BY_COOKIE: &str = "REDIRECT6_BY_COOKIE";
    pub const REDIRECT6_ORIGINAL_DST: &str = "REDIRECT6_ORIGINAL_DST";
    /// Every map the object defines, for `sluicectl bpf dump` and clean-up.
    pub const ALL: [&str; 18] = [
        LB4_SERVICES,
        LB4_BACKENDS,
        LB4_SERVICE_COUNTERS,
        LB4_BACKEND_COUNTERS,
        LB4_REVERSE_SK,
        LB4_SERVICE_INFO,
        XDP_DENY4,
        XDP_COUNTERS,
        LB_MAGLEV,
        LB6_SERVICES,
        LB6_BACKENDS,
        LB6_REVERSE_SK,
        REDIRECT_BY_COOKIE,
        REDIRECT_ORIGINAL_DST,
        XDP_DENY6,
        XDP_SERVICE_COUNTERS,
        REDIRECT6_BY_COOKIE,
        REDIRECT6_ORIGINAL_DST,
    ];
}

/// Names of the programs in the object (their function names).
pub mod program_names {
    pub const CONNECT4: &str = "sluice_connect4";
    pub const SENDMSG4: &str = "sluice_sendmsg4";
    pub const GETPEERNAME4: &str = "sluice_getpeername4";
    pub const RECVMSG4: &str = "sluice_recvmsg4";
    pub const CONNECT6: &str = "sluice_connect6";
    pub const SENDMSG6: &str = "sluice_sendmsg6";
    pub const GETPEERNAME6: &str = "sluice_getpeername6";
    pub const RECVMSG6: &str = "sluice_recvmsg6";
    pub const XDP: &str = "sluice_xdp";
    /// sockops: re-keys a redirected connection's original destination by
    /// the client's address once it is established.
    pub const SOCKOPS_REDIRECT: &str = "sluice_sockops_redirect";
}

/// Capacity of `LB4_SERVICES`.
pub const MAX_SERVICES: u32 = 4096;
/// Most backends one service may have (per slot).
pub const MAX_BACKENDS_PER_SERVICE: u32 = 256;
/// Capacity of `LB4_BACKENDS` (two slots per service on average 16 backends).
pub const MAX_BACKEND_ENTRIES: u32 = 65536;
/// Capacity of `LB4_REVERSE_SK` (an LRU: the oldest sockets' entries go first).
pub const MAX_REVERSE_SK: u32 = 65536;
/// Capacity of `REDIRECT_BY_COOKIE` and `REDIRECT_ORIGINAL_DST` (LRUs).
pub const MAX_REDIRECTS: u32 = 65536;
/// Capacity of the per-backend counter array: backend ids are `0..MAX_BACKEND_IDS`.
pub const MAX_BACKEND_IDS: u32 = 65536;

/// IP protocol numbers used in [`Lb4ServiceKey::protocol`].
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Key of `LB4_SERVICES`: a virtual IPv4 address, port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lb4ServiceKey {
    /// VIP, network byte order (as `bpf_sock_addr.user_ip4`).
    pub address: u32,
    /// Port, network byte order (low 16 bits of `bpf_sock_addr.user_port`).
    pub port: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub protocol: u8,
    pub pad: u8,
}

/// Value of `LB4_SERVICES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lb4Service {
    /// Index into `LB4_SERVICE_COUNTERS`; stable for the service's lifetime.
    pub service_id: u32,
    /// Number of backends in the active slot (0 = no backend: connect is left
    /// alone and fails as it would without Sluice).
    pub backend_count: u32,
    /// Active backend slot, 0 or 1.
    pub slot: u32,
    /// `SERVICE_FLAG_*` bits: how the kernel treats connects to this service.
    pub flags: u32,
}

/// [`Lb4Service::flags`]: the service is a transparent redirect to Sluice's
/// L7 listener; the kernel records the original destination for it.
pub const SERVICE_FLAG_REDIRECT: u32 = 1 << 0;
/// [`Lb4Service::flags`]: pick the backend from the service's Maglev table
/// (consistent by client) instead of uniformly at random.
pub const SERVICE_FLAG_MAGLEV: u32 = 1 << 1;

/// [`Lb4Service::flags`]: pick the backend from the service's Maglev table
/// at random (the endpoints have unequal `load_balancing_weight`s; the
/// table holds each backend in proportion to its weight).
pub const SERVICE_FLAG_WEIGHTED: u32 = 1 << 2;

/// Entries of a Maglev table: a prime, so that every backend's permutation
/// visits every entry. With at most [`MAX_BACKENDS_PER_SERVICE`] backends
/// each holds at least 3 entries; with few backends shares are within a
/// fraction of a percent of their weights.
pub const MAGLEV_TABLE_SIZE: u32 = 1021;
/// Capacity of `LB_MAGLEV`: both slots of every service.
pub const MAX_MAGLEV_TABLES: u32 = 2 * MAX_SERVICES;

/// Key of `LB_MAGLEV`: the table of a service's backend `slot` (the table is
/// part of the slot, so flipping the service entry switches both at once).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaglevKey {
    pub service_id: u32,
    pub slot: u32,
}

/// Value of `LB_MAGLEV`: entry `i` is the index (in the slot's backend list)
/// of the backend that owns hash bucket `i`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    pub backend_index: [u16; MAGLEV_TABLE_SIZE as usize],
    pub pad: u16,
}

/// Key of `LB4_BACKENDS`: the `index`-th backend of a service's `slot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lb4BackendKey {
    pub service_id: u32,
    pub slot: u32,
    pub index: u32,
}

/// Value of `LB4_BACKENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lb4Backend {
    /// Backend address, network byte order.
    pub address: u32,
    /// Backend port, network byte order.
    pub port: u16,
    pub pad: u16,
    /// Index into `LB4_BACKEND_COUNTERS`.
    pub backend_id: u32,
}

/// Per-CPU value of `LB4_SERVICE_COUNTERS` (indexed by service id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Connects (TCP) and sends (UDP) rewritten to a backend.
    pub connects: u64,
    /// Connects to the VIP while it had no backend (left unchanged).
    pub no_backend: u64,
    /// Connects redirected to Sluice's L7 listener (services flagged
    /// [`SERVICE_FLAG_REDIRECT`]; also counted in `connects`).
    pub redirects: u64,
}

/// Value of `LB4_BACKEND_COUNTERS` (indexed by backend id; one slot shared
/// by every CPU, incremented atomically).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounters {
    pub connects: u64,
}

/// Capacity of `XDP_DENY4` (source CIDRs dropped by XDP).
pub const MAX_DENY_ENTRIES: u32 = 16384;
/// Capacity of `XDP_COUNTERS`: interfaces are counted by ifindex below this.
pub const MAX_IFINDEX: u32 = 4096;

/// Per-CPU value of `XDP_COUNTERS` (indexed by ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// Packets seen (passed and dropped).
    pub packets: u64,
    pub bytes: u64,
    /// Packets dropped because their source is in `XDP_DENY4` or `XDP_DENY6`.
    pub dropped: u64,
}

/// Per-CPU value of `XDP_SERVICE_COUNTERS` (indexed by service id, like
/// `LB4_SERVICE_COUNTERS`): IPv4 TCP/UDP packets arriving on an XDP
/// interface whose destination ip:port is a service in `LB4_SERVICES`
/// (e.g. clients elsewhere reaching a VIP routed to this node).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpServiceCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Key data of `XDP_DENY6`: an IPv6 source prefix, network byte order.
pub type Ipv6Prefix = [u8; 16];

/// Longest listener name kept in [`ServiceInfo`] (longer names are cut).
pub const SERVICE_NAME_LEN: usize = 112;

/// Service mode in [`ServiceInfo::mode`]: rewritten to a backend in the kernel.
pub const MODE_SOCKET_LB: u32 = 1;
/// Service mode in [`ServiceInfo::mode`]: redirected to Sluice's L7 listener.
pub const MODE_REDIRECT: u32 = 2;

/// Value of `LB4_SERVICE_INFO` (indexed by service id): what userspace
/// knows about a service, for `sluicectl bpf services`. The kernel programs
/// never read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// [`MODE_SOCKET_LB`] or [`MODE_REDIRECT`] (0: unused slot).
    pub mode: u32,
    /// Bytes used in `listener`.
    pub listener_len: u32,
    /// The listener's name, UTF-8, not NUL-terminated.
    pub listener: [u8; SERVICE_NAME_LEN],
}

impl ServiceInfo {
    /// The listener name (cut at a character boundary if it was too long).
    pub fn listener_name(&self) -> &str {
        let len = (self.listener_len as usize).min(SERVICE_NAME_LEN);
        match core::str::from_utf8(&self.listener[..len]) {
            Ok(name) => name,
            Err(e) => core::str::from_utf8(&self.listener[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    pub fn new(mode: u32, listener: &str) -> Self {
        let mut end = listener.len().min(SERVICE_NAME_LEN);
        while !listener.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; SERVICE_NAME_LEN];
        bytes[..end].copy_from_slice(&listener.as_bytes()[..end]);
        ServiceInfo {
            mode,
            listener_len: end as u32,
            listener: bytes,
        }
    }
}

/// Key of `LB4_REVERSE_SK`: a socket (by cookie) rewritten to a backend.
/// `getpeername4`/`recvmsg4` look it up to show the app the VIP again.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lb4ReverseKey {
    pub cookie: u64,
    /// Backend address the socket was sent to, network byte order.
    pub address: u32,
    /// Backend port, network byte order.
    pub port: u16,
    pub pad: u16,
}

/// Value of `LB4_REVERSE_SK`: the VIP the app asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lb4ReverseValue {
    pub address: u32,
    pub port: u16,
    pub pad: u16,
}

/// Key of `LB6_SERVICES`: a virtual IPv6 address, port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lb6ServiceKey {
    /// VIP as `bpf_sock_addr.user_ip6` holds it: four words, network order.
    pub address: [u32; 4],
    /// Port, network byte order.
    pub port: u16,
    pub protocol: u8,
    pub pad: u8,
}

/// Value of `LB6_SERVICES`: the same as an IPv4 service's (service ids,
/// backend ids and counters are one space for both families).
pub type Lb6Service = Lb4Service;
/// Key of `LB6_BACKENDS`.
pub type Lb6BackendKey = Lb4BackendKey;

/// Value of `LB6_BACKENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lb6Backend {
    /// Backend address, as `bpf_sock_addr.user_ip6` words.
    pub address: [u32; 4],
    /// Backend port, network byte order.
    pub port: u16,
    pub pad: u16,
    /// Index into `LB4_BACKEND_COUNTERS`.
    pub backend_id: u32,
}

/// Key of `LB6_REVERSE_SK`: an IPv6 socket (by cookie) rewritten to a backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lb6ReverseKey {
    pub cookie: u64,
    pub address: [u32; 4],
    pub port: u16,
    pub pad: u16,
    pub pad2: u32,
}

/// Value of `LB6_REVERSE_SK`: the IPv6 VIP the app asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lb6ReverseValue {
    pub address: [u32; 4],
    pub port: u16,
    pub pad: u16,
}

/// Key of `REDIRECT_ORIGINAL_DST`: the client end of a redirected TCP
/// connection, as the daemon sees it as the accepted socket's peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RedirectKey {
    /// Client IPv4 address, network byte order.
    pub address: u32,
    /// Client port, network byte order.
    pub port: u16,
    pub pad: u16,
}

/// Value of `REDIRECT_BY_COOKIE` (between connect and established, keyed
/// by socket cookie) and of `REDIRECT_ORIGINAL_DST` (keyed by
/// [`RedirectKey`]): the service VIP:port the client connected to.
pub type RedirectOriginalDst = Lb4ReverseValue;

/// Key of `REDIRECT6_ORIGINAL_DST`: the client end of a connection
/// redirected from an IPv6 service, as the daemon sees it as the accepted
/// socket's peer (on the IPv6 redirect address).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Redirect6Key {
    /// Client IPv6 address, as `bpf_sock_ops.local_ip6` words (network order).
    pub address: [u32; 4],
    /// Client port, network byte order.
    pub port: u16,
    pub pad: u16,
}

/// Value of `REDIRECT6_BY_COOKIE` (keyed by socket cookie) and of
/// `REDIRECT6_ORIGINAL_DST` (keyed by [`Redirect6Key`]): the IPv6 service
/// VIP:port the client connected to.
pub type Redirect6OriginalDst = Lb6ReverseValue;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are `#[repr(C)]`, made only of integers, with every padding
    // byte an explicit field, so any bit pattern is valid.
    unsafe impl aya::Pod for super::Lb4ServiceKey {}
    unsafe impl aya::Pod for super::Lb4Service {}
    unsafe impl aya::Pod for super::Lb4BackendKey {}
    unsafe impl aya::Pod for super::Lb4Backend {}
    unsafe impl aya::Pod for super::ServiceCounters {}
    unsafe impl aya::Pod for super::BackendCounters {}
    unsafe impl aya::Pod for super::Lb4ReverseKey {}
    unsafe impl aya::Pod for super::Lb4ReverseValue {}
    unsafe impl aya::Pod for super::ServiceInfo {}
    unsafe impl aya::Pod for super::XdpCounters {}
    unsafe impl aya::Pod for super::MaglevKey {}
    unsafe impl aya::Pod for super::MaglevTable {}
    unsafe impl aya::Pod for super::Lb6ServiceKey {}
    unsafe impl aya::Pod for super::Lb6Backend {}
    unsafe impl aya::Pod for super::Lb6ReverseKey {}
    unsafe impl aya::Pod for super::Lb6ReverseValue {}
    unsafe impl aya::Pod for super::RedirectKey {}
    unsafe impl aya::Pod for super::Redirect6Key {}
    unsafe impl aya::Pod for super::XdpServiceCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Lb4ServiceKey>(), 8);
        assert_eq!(size_of::<Lb4Service>(), 16);
        assert_eq!(size_of::<Lb4BackendKey>(), 12);
        assert_eq!(size_of::<Lb4Backend>(), 12);
        assert_eq!(size_of::<ServiceCounters>(), 24);
        assert_eq!(size_of::<BackendCounters>(), 8);
        assert_eq!(size_of::<Lb4ReverseKey>(), 16);
        assert_eq!(size_of::<Lb4ReverseValue>(), 8);
        assert_eq!(size_of::<ServiceInfo>(), 120);
        assert_eq!(size_of::<XdpCounters>(), 24);
        assert_eq!(size_of::<MaglevKey>(), 8);
        assert_eq!(size_of::<MaglevTable>(), 2 * MAGLEV_TABLE_SIZE as usize + 2);
        assert_eq!(size_of::<Lb6ServiceKey>(), 20);
        assert_eq!(size_of::<Lb6Backend>(), 24);
        assert_eq!(size_of::<Lb6ReverseKey>(), 32);
        assert_eq!(size_of::<Lb6ReverseValue>(), 20);
        assert_eq!(size_of::<RedirectKey>(), 8);
        assert_eq!(size_of::<Redirect6Key>(), 20);
        assert_eq!(size_of::<XdpServiceCounters>(), 16);
    }

    #[test]
    fn service_info_keeps_names_and_cuts_long_ones_at_a_char_boundary() {
        assert_eq!(
            ServiceInfo::new(MODE_SOCKET_LB, "svc").listener_name(),
            "svc"
        );
        let long = "é".repeat(100); // 200 bytes
        let info = ServiceInfo::new(MODE_SOCKET_LB, &long);
        assert_eq!(info.listener_name(), "é".repeat(56));
    }
}
