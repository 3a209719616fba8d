//! The accept loop of one listener on one worker: accept, count, pick the
//! filter chain of the listener's current generation, and hand the
//! connection to its network filter, until the listener is stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::config::NetworkFilter;
use super::manager::ListenerSlot;
use crate::stream_info::{ResponseFlag, StreamInfo};

pub async fn accept_loop(listener: TcpListener, slot: Arc<ListenerSlot>) {
    let mut stopped = slot.stopped();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let generation = slot.current();
        let config = &generation.config;
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
            if !config.access_logs.is_empty() {
                let mut info = StreamInfo::new(Some(remote), Some(local));
                info.add_flag(ResponseFlag::NoRouteFound);
                info.duration = Some(info.start_instant.elapsed());
                config.access_logs.log(&info);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let filter = chain.filter.clone();
        let config = config.clone();
        let drain = generation.drain.signal();
        tokio::spawn(async move {
            let stats = &config.stats;
            let info = (!config.access_logs.is_empty())
                .then(|| StreamInfo::new(Some(remote), Some(local)));
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
            // Listener access logs describe the connection, once it closes.
            if let Some(mut info) = info {
                info.duration = Some(info.start_instant.elapsed());
                config.access_logs.log(&info);
            }
        });
    }
    tracing::debug!(target: "sluice::listener", listener = %slot.name, "listener closed");
}
