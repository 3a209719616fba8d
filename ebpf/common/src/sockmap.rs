//! Map layouts and names of local acceleration (`sockops` + `sk_msg` over a
//! SOCKHASH): established TCP sockets whose peer is on this node are kept in
//! `SOCKMAP_SOCKETS` keyed by their 4-tuple, and each message a socket sends
//! is moved straight into its peer socket's receive queue, skipping the
//! TCP/IP stack. Shared by the kernel programs and userspace.
//!
//! Keys carry the socket's network-namespace cookie: both ends of a local
//! pair (loopback, or a socket's own address) are in one namespace, and the
//! same 4-tuple may be open in other namespaces (every pod has its own
//! loopback), so the 4-tuple alone would let one namespace's connection
//! replace another's entry.
//!
//! Keys hold IPv4 addresses in network order (as the kernel hands them) and
//! ports in host order: the kernel gives `local_port` in host order but
//! `remote_port` in network order (in the high 16 bits on little-endian), so
//! the programs normalise both before building a key. IPv6 sockets carrying
//! v4-mapped addresses (`::ffff:a.b.c.d`, dual-stack listeners) use the same
//! keys, so a dual-stack server pairs with an IPv4 client.

/// Names of the maps, as pinned under the pin directory.
pub mod map_names {
    pub const SOCKMAP_SOCKETS: &str = "SOCKMAP_SOCKETS";
    pub const SOCKMAP_COUNTERS: &str = "SOCKMAP_COUNTERS";
    pub const SOCKMAP_TAINTED: &str = "SOCKMAP_TAINTED";
    /// Every map of local acceleration (pinned when it is on).
    pub const ALL: [&str; 3] = [SOCKMAP_SOCKETS, SOCKMAP_COUNTERS, SOCKMAP_TAINTED];
}

/// Names of the programs (their function names; the sockops link's pin name).
pub mod program_names {
    pub const SOCKOPS: &str = "sluice_sockops_sockmap";
    pub const SK_MSG: &str = "sluice_sk_msg_sockmap";
}

/// Capacity of `SOCKMAP_SOCKETS` (a full map leaves new sockets on the
/// TCP/IP stack, counted in [`SockmapCounters::sockets_add_failed`]).
pub const MAX_SOCKETS: u32 = 65536;
/// Capacity of `SOCKMAP_TAINTED` (an LRU).
pub const MAX_TAINTED: u32 = 65536;

/// Key of `SOCKMAP_SOCKETS` and `SOCKMAP_TAINTED`: one TCP socket seen from
/// its own side.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockKey {
    /// `bpf_get_netns_cookie` of the socket's network namespace.
    pub netns_cookie: u64,
    /// Network order.
    pub local_ip4: u32,
    /// Network order.
    pub remote_ip4: u32,
    /// Host order.
    pub local_port: u32,
    /// Host order.
    pub remote_port: u32,
}

impl SockKey {
    /// The key of the socket at the other end of this connection.
    #[inline(always)]
    pub fn peer(&self) -> SockKey {
        SockKey {
            netns_cookie: self.netns_cookie,
            local_ip4: self.remote_ip4,
            remote_ip4: self.local_ip4,
            local_port: self.remote_port,
            remote_port: self.local_port,
        }
    }

    /// Whether the peer is on this node by address alone: loopback
    /// (127.0.0.0/8) or this socket's own local address.
    #[inline(always)]
    pub fn peer_is_local(&self) -> bool {
        // Network order: the first octet is the lowest byte in memory.
        self.remote_ip4.to_ne_bytes()[0] == 127 || self.remote_ip4 == self.local_ip4
    }
}

/// Per-CPU value of `SOCKMAP_COUNTERS` (one slot, index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockmapCounters {
    /// Established sockets (both ends counted) added to `SOCKMAP_SOCKETS`.
    pub sockets_added: u64,
    /// Established sockets the map refused (full, or the kernel said no).
    pub sockets_add_failed: u64,
    /// Established sockets left alone because the peer is not local.
    pub sockets_not_local: u64,
    /// Messages moved straight into the peer socket.
    pub redirected_messages: u64,
    pub redirected_bytes: u64,
    /// Messages sent through the TCP/IP stack: the peer socket was not in
    /// the map (yet), or this socket already sent that way (it then never
    /// redirects, so its bytes cannot overtake ones still in the stack).
    pub missed_messages: u64,
    pub missed_bytes: u64,
}

impl SockmapCounters {
    /// Sum of two counter sets (per-CPU values are summed in userspace).
    pub fn plus(&self, other: &SockmapCounters) -> SockmapCounters {
        SockmapCounters {
            sockets_added: self.sockets_added + other.sockets_added,
            sockets_add_failed: self.sockets_add_failed + other.sockets_add_failed,
            sockets_not_local: self.sockets_not_local + other.sockets_not_local,
            redirected_messages: self.redirected_messages + other.redirected_messages,
            redirected_bytes: self.redirected_bytes + other.redirected_bytes,
            missed_messages: self.missed_messages + other.missed_messages,
            missed_bytes: self.missed_bytes + other.missed_bytes,
        }
    }

    /// `(name, value)` of every counter, in declaration order (the stat
    /// and `sluicectl bpf counters` names append these to a prefix).
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("sockets_added", self.sockets_added),
            ("sockets_add_failed", self.sockets_add_failed),
            ("sockets_not_local", self.sockets_not_local),
            ("redirected_messages", self.redirected_messages),
            ("redirected_bytes", self.redirected_bytes),
            ("missed_messages", self.missed_messages),
            ("missed_bytes", self.missed_bytes),
        ]
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no implicit padding.
    unsafe impl aya::Pod for super::SockKey {}
    unsafe impl aya::Pod for super::SockmapCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<SockKey>(), 24);
        assert_eq!(size_of::<SockmapCounters>(), 56);
    }

    #[test]
    fn the_peer_key_swaps_both_ends_and_is_an_involution() {
        let key = SockKey {
            netns_cookie: 4097,
            local_ip4: ip([127, 0, 0, 1]),
            remote_ip4: ip([127, 0, 0, 2]),
            local_port: 40000,
            remote_port: 80,
        };
        let peer = key.peer();
        assert_eq!(
            (
                peer.local_ip4,
                peer.remote_ip4,
                peer.local_port,
                peer.remote_port
            ),
            (ip([127, 0, 0, 2]), ip([127, 0, 0, 1]), 80, 40000)
        );
        assert_eq!(peer.peer(), key);
    }

    #[test]
    fn loopback_and_same_address_peers_are_local_others_are_not() {
        let key = |local, remote| SockKey {
            netns_cookie: 1,
            local_ip4: ip(local),
            remote_ip4: ip(remote),
            local_port: 1,
            remote_port: 2,
        };
        assert!(key([127, 0, 0, 1], [127, 0, 0, 1]).peer_is_local());
        assert!(key([127, 0, 0, 1], [127, 9, 0, 3]).peer_is_local());
        assert!(key([192, 0, 2, 7], [192, 0, 2, 7]).peer_is_local());
        assert!(!key([192, 0, 2, 7], [192, 0, 2, 8]).peer_is_local());
        assert!(!key([10, 0, 0, 1], [1, 2, 3, 127]).peer_is_local());
    }
}
