//! Transparent redirect to Sluice's L7 listener: original destination
//! recovery.
//!
//! A service flagged `SERVICE_FLAG_REDIRECT` is an LB4 service whose one
//! backend is the daemon's redirect address; `connect4`/`connect6` rewrite
//! it like any other service and then call [`remember`], which keeps the
//! VIP:port the app asked for under the socket's cookie
//! (`REDIRECT_BY_COOKIE`). The daemon cannot know a client's cookie, so
//! `sluice_sockops_redirect` re-keys the entry by the client's own address
//! (local IPv4 and port, what the daemon sees as the accepted socket's
//! peer) into `REDIRECT_ORIGINAL_DST` once the client is established,
//! which happens before the daemon's `accept()` returns. The daemon reads
//! and deletes that entry; the `STATE_CB` on close deletes whatever is
//! left (a connect that failed, a connection the daemon never accepted).
//!
//! Connections redirected from IPv6 services are recorded in the same way
//! in `redirect6`'s maps (keyed by the client's IPv6 address); this
//! program drives both.
//!
//! This program does nothing else: sockmap acceleration is another program.
//! It ORs its callback flag into the socket's flags so that other sockops
//! programs on the same cgroup keep theirs.

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_TCP_CLOSE,
    },
    helpers::bpf_get_socket_cookie,
    macros::{map, sock_ops},
    maps::LruHashMap,
    programs::SockOpsContext,
    EbpfContext,
};
use sluice_ebpf_common::{RedirectKey, RedirectOriginalDst, MAX_REDIRECTS};

use crate::redirect6;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

/// Socket cookie → original destination, from connect until established.
#[map(name = "REDIRECT_BY_COOKIE")]
static REDIRECT_BY_COOKIE: LruHashMap<u64, RedirectOriginalDst> =
    LruHashMap::with_max_entries(MAX_REDIRECTS, 0);

/// Client address → original destination, read by the daemon.
#[map(name = "REDIRECT_ORIGINAL_DST")]
static REDIRECT_ORIGINAL_DST: LruHashMap<RedirectKey, RedirectOriginalDst> =
    LruHashMap::with_max_entries(MAX_REDIRECTS, 0);

/// Called by the connect hooks after rewriting a redirect service: keeps
/// the original destination under the socket's cookie. A full LRU evicts
/// the oldest entry; a failed insert means the daemon closes the
/// connection (counted), never that it is misrouted.
#[inline(always)]
pub fn remember(cookie: u64, original: &RedirectOriginalDst) {
    let _ = REDIRECT_BY_COOKIE.insert(&cookie, original, 0);
}

#[sock_ops]
pub fn sluice_sockops_redirect(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => on_connect(&ctx),
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => on_established(&ctx),
        BPF_SOCK_OPS_STATE_CB => on_state_change(&ctx),
        _ => {}
    }
    0
}

#[inline(always)]
fn cookie_of(ctx: &SockOpsContext) -> u64 {
    // SAFETY: bpf_get_socket_cookie accepts a sock_ops context.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// A redirected socket asks for state callbacks, so its entries are
/// removed when it closes, whether or not it ever connects.
#[inline(always)]
fn on_connect(ctx: &SockOpsContext) {
    let cookie = cookie_of(ctx);
    // SAFETY: only tested for presence.
    if unsafe { REDIRECT_BY_COOKIE.get(&cookie) }.is_some() || redirect6::is_pending(cookie) {
        let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    }
}

#[inline(always)]
fn on_established(ctx: &SockOpsContext) {
    let cookie = cookie_of(ctx);
    // SAFETY: copied out before any map update.
    let Some(original) = (unsafe { REDIRECT_BY_COOKIE.get(&cookie) }).copied() else {
        redirect6::on_established(ctx, cookie);
        return;
    };
    if let Some(key) = client_key(ctx) {
        let _ = REDIRECT_ORIGINAL_DST.insert(&key, &original, 0);
    }
    let _ = REDIRECT_BY_COOKIE.remove(&cookie);
}

#[inline(always)]
fn on_state_change(ctx: &SockOpsContext) {
    // args[1] is the new state.
    if ctx.arg(1) != BPF_TCP_CLOSE {
        return;
    }
    let cookie = cookie_of(ctx);
    let _ = REDIRECT_BY_COOKIE.remove(&cookie);
    if let Some(key) = client_key(ctx) {
        let _ = REDIRECT_ORIGINAL_DST.remove(&key);
    }
    redirect6::on_close(ctx, cookie);
}

/// The client's IPv4 address and port: `local_ip4` for IPv4 sockets, the
/// v4-mapped `local_ip6` for IPv6 sockets that reached an IPv4 service.
#[inline(always)]
fn client_key(ctx: &SockOpsContext) -> Option<RedirectKey> {
    let address = match ctx.family() {
        AF_INET => ctx.local_ip4(),
        AF_INET6 => {
            // One constant-offset load per word: the verifier refuses loads
            // through a pointer computed from the context (an array copy).
            // SAFETY: the kernel hands sock_ops programs a valid context.
            let word = |i: usize| unsafe {
                core::ptr::read_volatile(core::ptr::addr_of!((*ctx.ops).local_ip6[i]))
            };
            if word(0) != 0 || word(1) != 0 || word(2) != 0xffff_u32.to_be() {
                return None;
            }
            word(3)
        }
        _ => return None,
    };
    Some(RedirectKey {
        address,
        // sock_ops' local_port is in host order.
        port: (ctx.local_port() as u16).to_be(),
        pad: 0,
    })
}
