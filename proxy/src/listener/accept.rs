//! The accept loop of one listener on one worker: accept, count, pick the
//! filter chain, and hand the connection to its network filter, until the
//! listeners are closed by a drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::config::{ListenerConfig, NetworkFilter};
use crate::drain::DrainSignal;

pub async fn accept_loop(listener: TcpListener, config: Arc<ListenerConfig>, drain: DrainSignal) {
    let mut closed = drain.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closed.listeners_closed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(target: "sluice::listener", listener = %config.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(_) => continue,
        };
        let stats = &config.stats;
        stats.downstream_cx_total.inc();
        let Some(chain) = config.select_chain(local) else {
            stats.no_filter_chain_match.inc();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let filter = chain.filter.clone();
        let config = config.clone();
        let drain = drain.clone();
        tokio::spawn(async move {
            let stats = &config.stats;
            stats.downstream_cx_active.inc();
            match filter {
                NetworkFilter::Http(hcm) => {
                    crate::http::connection_manager::serve_connection(
                        hcm, stream, remote, local, drain,
                    )
                    .await
                }
                NetworkFilter::Tcp(tcp) => tcp.serve(stream, remote, local).await,
            }
            stats.downstream_cx_active.dec();
            stats.downstream_cx_destroy.inc();
        });
    }
    tracing::debug!(target: "sluice::listener", listener = %config.name, "listener closed");
}
