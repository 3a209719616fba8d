//! Connections the kernel redirected to Sluice (transparent L7 redirect):
//! accepted on the daemon's redirect address (`--datapath-redirect-to`, one
//! `SO_REUSEPORT` socket per worker), each is matched by its original
//! destination — recovered from the kernel by the client's address — to
//! the `bind_to_port: false` listener on that address and served by it
//! exactly as if it had been accepted there (filter chain, stats, access
//! logs, drain), as Envoy hands over `use_original_dst` connections.
//!
//! A connection with no recorded original destination, or whose original
//! destination has no listener (removed since the kernel redirected it),
//! is closed and counted under `datapath.redirect.`.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Weak;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::accept::serve_accepted;
use super::manager::ListenerManager;
use crate::stats::{Counter, Store};

/// Where redirected connections were going, by client address: the
/// kernel's map, or a fake in tests. One per accepting worker.
pub trait OriginalDestinations: Send {
    /// The original destination of the connection from `client`, forgotten
    /// once read; `None` if none was recorded.
    fn take(&mut self, client: SocketAddrV4) -> Option<SocketAddrV4>;
}

/// `datapath.redirect.*` counters.
#[derive(Debug, Clone)]
pub struct RedirectStats {
    /// Connections accepted on the redirect address.
    pub downstream_cx_total: Counter,
    /// Closed: the kernel recorded no original destination for the client.
    pub no_original_destination: Counter,
    /// Closed: no `bind_to_port: false` listener on the original destination.
    pub no_listener: Counter,
}

impl RedirectStats {
    pub fn new(store: &Store) -> Self {
        let name = |stat: &str| format!("datapath.redirect.{stat}");
        RedirectStats {
            downstream_cx_total: store.counter(&name("downstream_cx_total")),
            no_original_destination: store.counter(&name("no_original_destination")),
            no_listener: store.counter(&name("no_listener")),
        }
    }
}

/// What one worker's redirect accept loop needs.
pub struct RedirectAcceptor {
    pub destinations: Box<dyn OriginalDestinations>,
    pub listeners: Weak<ListenerManager>,
    pub stats: RedirectStats,
    pub stopped: watch::Receiver<bool>,
}

pub async fn redirect_accept_loop(listener: TcpListener, mut acceptor: RedirectAcceptor) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = acceptor.stopped.wait_for(|stop| *stop) => break,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(target: "sluice::listener", %error, "accept on the redirect address failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        acceptor.stats.downstream_cx_total.inc();
        let client = match remote {
            SocketAddr::V4(client) => Some(client),
            SocketAddr::V6(client) => client
                .ip()
                .to_ipv4_mapped()
                .map(|ip| SocketAddrV4::new(ip, client.port())),
        };
        let Some(original) = client.and_then(|client| acceptor.destinations.take(client)) else {
            acceptor.stats.no_original_destination.inc();
            tracing::debug!(target: "sluice::listener", %remote, "redirected connection without an original destination: closed");
            continue;
        };
        let Some(listeners) = acceptor.listeners.upgrade() else {
            break;
        };
        let original = SocketAddr::V4(original);
        let Some(generation) = listeners.virtual_listener_for(original) else {
            acceptor.stats.no_listener.inc();
            tracing::debug!(target: "sluice::listener", %remote, %original, "no listener for the original destination of a redirected connection: closed");
            continue;
        };
        serve_accepted(&generation, stream, remote, original);
    }
    tracing::debug!(target: "sluice::listener", "redirect address closed");
}
