//! Transparent redirect to Sluice's L7 listener for IPv6 services: the
//! IPv6 half of `redirect`.
//!
//! An LB6 service flagged `SERVICE_FLAG_REDIRECT` has the daemon's IPv6
//! redirect address as its one backend; `connect6` rewrites it like any
//! other IPv6 service (`lb6`) and then calls [`remember`], which keeps the
//! [VIP]:port the app asked for under the socket's cookie
//! (`REDIRECT6_BY_COOKIE`). `sluice_sockops_redirect` (in `redirect`)
//! calls [`on_established`] once the client is established, which re-keys
//! the entry by the client's own IPv6 address and port (what the daemon
//! sees as the accepted socket's peer) into `REDIRECT6_ORIGINAL_DST`, and
//! [`on_close`] when the socket closes, which deletes what is left.

use aya_ebpf::{macros::map, maps::LruHashMap, programs::SockOpsContext};
use sluice_ebpf_common::{Redirect6Key, Redirect6OriginalDst, MAX_REDIRECTS};

const AF_INET6: u32 = 10;

/// Socket cookie → original IPv6 destination, from connect until established.
#[map(name = "REDIRECT6_BY_COOKIE")]
static REDIRECT6_BY_COOKIE: LruHashMap<u64, Redirect6OriginalDst> =
    LruHashMap::with_max_entries(MAX_REDIRECTS, 0);

/// Client IPv6 address → original IPv6 destination, read by the daemon.
#[map(name = "REDIRECT6_ORIGINAL_DST")]
static REDIRECT6_ORIGINAL_DST: LruHashMap<Redirect6Key, Redirect6OriginalDst> =
    LruHashMap::with_max_entries(MAX_REDIRECTS, 0);

/// Called by `connect6` after rewriting an IPv6 redirect service: keeps
/// the original destination under the socket's cookie. A full LRU evicts
/// the oldest entry; a failed insert means the daemon closes the
/// connection (counted), never that it is misrouted.
#[inline(always)]
pub fn remember(cookie: u64, original: &Redirect6OriginalDst) {
    let _ = REDIRECT6_BY_COOKIE.insert(&cookie, original, 0);
}

/// Whether `cookie` is a socket redirected from an IPv6 service that has
/// not been established yet.
#[inline(always)]
pub fn is_pending(cookie: u64) -> bool {
    // SAFETY: only tested for presence.
    unsafe { REDIRECT6_BY_COOKIE.get(&cookie) }.is_some()
}

/// Moves the cookie's entry (if any) to the client's address.
#[inline(always)]
pub fn on_established(ctx: &SockOpsContext, cookie: u64) {
    // SAFETY: copied out before any map update.
    let Some(original) = (unsafe { REDIRECT6_BY_COOKIE.get(&cookie) }).copied() else {
        return;
    };
    if let Some(key) = client_key(ctx) {
        let _ = REDIRECT6_ORIGINAL_DST.insert(&key, &original, 0);
    }
    let _ = REDIRECT6_BY_COOKIE.remove(&cookie);
}

/// Deletes whatever the closing socket left behind.
#[inline(always)]
pub fn on_close(ctx: &SockOpsContext, cookie: u64) {
    let _ = REDIRECT6_BY_COOKIE.remove(&cookie);
    if let Some(key) = client_key(ctx) {
        let _ = REDIRECT6_ORIGINAL_DST.remove(&key);
    }
}

/// The client's native IPv6 address and port (`local_ip6`, `local_port`);
/// `None` for IPv4 sockets and v4-mapped addresses (the IPv4 maps' case).
#[inline(always)]
fn client_key(ctx: &SockOpsContext) -> Option<Redirect6Key> {
    if ctx.family() != AF_INET6 {
        return None;
    }
    // One constant-offset load per word: the verifier refuses loads
    // through a pointer computed from the context (an array copy).
    // SAFETY: the kernel hands sock_ops programs a valid context.
    let word = |i: usize| unsafe {
        core::ptr::read_volatile(core::ptr::addr_of!((*ctx.ops).local_ip6[i]))
    };
    let address = [word(0), word(1), word(2), word(3)];
    if address[0] == 0 && address[1] == 0 && address[2] == 0xffff_u32.to_be() {
        return None;
    }
    Some(Redirect6Key {
        address,
        // sock_ops' local_port is in host order.
        port: (ctx.local_port() as u16).to_be(),
        pad: 0,
    })
}
