//! The accept loop of one listener on one worker: accept, count, pick the
//! filter chain of the listener's current generation, and hand the
//! connection to its network filter, until the listener is stopped.
//! [`serve_accepted`] is the part after `accept()`, shared with connections
//! the kernel redirected to Sluice (`redirect.rs`), which are served with
//! their original destination as the local address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::config::NetworkFilter;
use super::manager::{Generation, ListenerSlot};
use crate::stream_info::{ResponseFlag, StreamInfo};

pub async fn accept_loop(listener: TcpListener, slot: Arc<ListenerSlot>) {
    let mut stopped = slot.stopped();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let generation = slot.current();
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(target: "sluice::listener", listener = %generation.config.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(_) => continue,
        };
        serve_accepted(&generation, stream, remote, local);
    }
    tracing::debug!(target: "sluice::listener", listener = %slot.name, "listener closed");
}

/// Serves an accepted connection with `generation` of a listener, as if it
/// had been accepted on `local`: counts it, picks the filter chain by
/// `local`, and spawns its network filter (on the current runtime).
pub fn serve_accepted(
    generation: &Generation,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) {
    let config = &generation.config;
    let stats = &config.stats;
    stats.downstream_cx_total.inc();
    let Some(chain) = config.select_chain(local) else {
        stats.no_filter_chain_match.inc();
        if !config.access_logs.is_empty() {
            let mut info = StreamInfo::new(Some(remote), Some(local));
            info.add_flag(ResponseFlag::NoRouteFound);
            info.duration = Some(info.start_instant.elapsed());
            config.access_logs.log(&info);
        }
        return;
    };
    let _ = stream.set_nodelay(true);
    let filter = chain.filter.clone();
    let config = config.clone();
    let drain = generation.drain.signal();
    // Boxed before spawning: the connection's future is kilobytes (hyper's
    // HTTP/1 + HTTP/2 connection state), and spawning moves it by value
    // several times on the way into the task cell; a box moves as a pointer
    // (callgrind: ~2,000 instructions of memcpy per accepted connection).
    tokio::spawn(Box::pin(async move {
        let stats = &config.stats;
        let info =
            (!config.access_logs.is_empty()).then(|| StreamInfo::new(Some(remote), Some(local)));
        stats.downstream_cx_active.inc();
        match filter {
            NetworkFilter::Http(hcm) => {
                crate::http::connection_manager::serve_connection(hcm, stream, remote, local, drain)
                    .await
            }
            NetworkFilter::Tcp(tcp) => tcp.serve(stream, remote, local).await,
        }
        stats.downstream_cx_active.dec();
        stats.downstream_cx_destroy.inc();
        // Listener access logs describe the connection, once it closes.
        if let Some(mut info) = info {
            info.duration = Some(info.start_instant.elapsed());
            config.access_logs.log(&info);
        }
    }));
}
