//! The XDP program on `--datapath-xdp-iface` interfaces: per-CPU packet and
//! byte counters per interface (`XDP_COUNTERS`, by ifindex) and per
//! destination service (`XDP_SERVICE_COUNTERS`, by the service id of
//! `LB4_SERVICES`), and source CIDR deny lists for IPv4 (`XDP_DENY4`) and
//! IPv6 (`XDP_DENY6`) that drop before an skb exists.
//!
//! Parsing is bounds-checked against `data_end` at every step: untagged
//! Ethernet, IPv4 with its IHL (options skipped; non-first fragments carry
//! no ports and are not counted per service), the IPv6 fixed header.
//! Anything else passes untouched.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{lpm_trie::Key, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use aya_log_ebpf::trace;
use sluice_ebpf_common::{
    Ipv6Prefix, Lb4ServiceKey, XdpCounters, XdpServiceCounters, MAX_DENY_ENTRIES, MAX_IFINDEX,
    MAX_SERVICES, PROTO_TCP, PROTO_UDP,
};

use crate::LB4_SERVICES;

/// `BPF_F_NO_PREALLOC`: LPM tries must be created with it.
const NO_PREALLOC: u32 = 1;

/// Source CIDRs (IPv4, network order) that XDP drops before the stack.
#[map(name = "XDP_DENY4")]
static XDP_DENY4: LpmTrie<u32, u8> = LpmTrie::with_max_entries(MAX_DENY_ENTRIES, NO_PREALLOC);

/// Source CIDRs (IPv6, network order) that XDP drops before the stack.
#[map(name = "XDP_DENY6")]
static XDP_DENY6: LpmTrie<Ipv6Prefix, u8> =
    LpmTrie::with_max_entries(MAX_DENY_ENTRIES, NO_PREALLOC);

#[map(name = "XDP_COUNTERS")]
static XDP_COUNTERS: PerCpuArray<XdpCounters> = PerCpuArray::with_max_entries(MAX_IFINDEX, 0);

#[map(name = "XDP_SERVICE_COUNTERS")]
static XDP_SERVICE_COUNTERS: PerCpuArray<XdpServiceCounters> =
    PerCpuArray::with_max_entries(MAX_SERVICES, 0);

const ETH_HEADER_LEN: usize = 14;
const ETH_TYPE_OFFSET: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV4_FRAGMENT_OFFSET: usize = 6;
const IPV4_PROTOCOL_OFFSET: usize = 9;
const IPV4_SOURCE_OFFSET: usize = 12;
const IPV4_DESTINATION_OFFSET: usize = 16;
/// Fragment offset bits of the flags/fragment-offset field (host order).
const IPV4_FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

const IPV6_HEADER_LEN: usize = 40;
const IPV6_SOURCE_OFFSET: usize = 8;

/// Destination port offset in both the TCP and the UDP header.
const L4_DESTINATION_PORT_OFFSET: usize = 2;

/// Counts every packet per interface, drops packets whose source is denied,
/// counts IPv4 TCP/UDP packets to a known service per service.
#[xdp]
pub fn sluice_xdp(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    // SAFETY: the kernel hands XDP programs a valid xdp_md.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let counters = XDP_COUNTERS.get_ptr_mut(ifindex);
    let length = (end - start) as u64;
    if let Some(counters) = counters {
        // SAFETY: per-CPU slot, this program is its only writer on this CPU.
        unsafe {
            (*counters).packets += 1;
            (*counters).bytes += length;
        }
    }
    if start + ETH_HEADER_LEN > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds checked against data_end just above.
    let ethertype = u16::from_be(unsafe { read::<u16>(start + ETH_TYPE_OFFSET) });
    let verdict = match ethertype {
        ETH_P_IP => ipv4(&ctx, start + ETH_HEADER_LEN, end, length),
        ETH_P_IPV6 => ipv6(&ctx, start + ETH_HEADER_LEN, end),
        _ => xdp_action::XDP_PASS,
    };
    if verdict == xdp_action::XDP_DROP {
        if let Some(counters) = counters {
            // SAFETY: as above.
            unsafe { (*counters).dropped += 1 };
        }
    }
    verdict
}

/// Reads a `T` at `address` (the caller checked `address + size_of::<T>()`
/// against `data_end`).
#[inline(always)]
unsafe fn read<T>(address: usize) -> T {
    core::ptr::read_unaligned(address as *const T)
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, ip: usize, end: usize, length: u64) -> u32 {
    if ip + IPV4_MIN_HEADER_LEN > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 20-byte minimum header is within bounds (checked above).
    let (version_ihl, source, destination, protocol, fragment) = unsafe {
        (
            read::<u8>(ip),
            read::<u32>(ip + IPV4_SOURCE_OFFSET),
            read::<u32>(ip + IPV4_DESTINATION_OFFSET),
            read::<u8>(ip + IPV4_PROTOCOL_OFFSET),
            u16::from_be(read::<u16>(ip + IPV4_FRAGMENT_OFFSET)),
        )
    };
    if XDP_DENY4.get(Key::new(32, source)).is_some() {
        trace!(
            ctx,
            "xdp: dropped a packet from denied {:i}",
            u32::from_be(source)
        );
        return xdp_action::XDP_DROP;
    }
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4
        || header_len < IPV4_MIN_HEADER_LEN
        || fragment & IPV4_FRAGMENT_OFFSET_MASK != 0
        || (protocol != PROTO_TCP && protocol != PROTO_UDP)
    {
        return xdp_action::XDP_PASS;
    }
    let l4 = ip + header_len;
    if l4 + L4_DESTINATION_PORT_OFFSET + 2 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds checked just above.
    let port = unsafe { read::<u16>(l4 + L4_DESTINATION_PORT_OFFSET) };
    let key = Lb4ServiceKey {
        address: destination,
        port,
        protocol,
        pad: 0,
    };
    // SAFETY: copied out immediately.
    if let Some(service) = unsafe { LB4_SERVICES.get(&key) }.copied() {
        if let Some(counters) = XDP_SERVICE_COUNTERS.get_ptr_mut(service.service_id) {
            // SAFETY: per-CPU slot, this program is its only writer on this CPU.
            unsafe {
                (*counters).packets += 1;
                (*counters).bytes += length;
            }
        }
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, ip: usize, end: usize) -> u32 {
    if ip + IPV6_HEADER_LEN > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the fixed header is within bounds (checked above).
    let source = unsafe { read::<Ipv6Prefix>(ip + IPV6_SOURCE_OFFSET) };
    if XDP_DENY6.get(Key::new(128, source)).is_some() {
        trace!(ctx, "xdp: dropped a packet from denied {:i}", source);
        return xdp_action::XDP_DROP;
    }
    xdp_action::XDP_PASS
}
