//! Worker threads: each runs a single-threaded runtime that accepts on its
//! own `SO_REUSEPORT` socket of every bound listener, so connections are
//! spread by the kernel and served without cross-thread handoff.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::drain::DrainSignal;
use crate::listener::{bind_listener_sockets, ListenerConfig};

/// Bound sockets: for each listener, one socket per worker.
pub struct BoundListeners {
    listeners: Vec<(Arc<ListenerConfig>, Vec<std::net::TcpListener>)>,
}

impl BoundListeners {
    /// (listener name, bound address) for `/listeners`.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(config, sockets)| {
                let address = sockets.first()?.local_addr().ok()?;
                Some((config.name.clone(), address))
            })
            .collect()
    }
}

/// Binds every listener that binds to a port, `workers` sockets each.
pub fn bind_all(
    listeners: &[Arc<ListenerConfig>],
    workers: usize,
) -> Result<BoundListeners, String> {
    let mut bound = Vec::new();
    for listener in listeners.iter().filter(|l| l.bind_to_port) {
        let sockets = bind_listener_sockets(listener.address, workers)
            .map_err(|error| format!("listener '{}': {error}", listener.name))?;
        tracing::info!(target: "sluice::listener", name = %listener.name, address = %sockets[0].local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        bound.push((listener.clone(), sockets));
    }
    Ok(BoundListeners { listeners: bound })
}

/// Starts the worker threads. They run until the process exits.
pub fn start(
    bound: BoundListeners,
    workers: usize,
    drain: DrainSignal,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut per_worker: Vec<Vec<(Arc<ListenerConfig>, std::net::TcpListener)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for (config, sockets) in bound.listeners {
        for (worker, socket) in sockets.into_iter().enumerate() {
            per_worker[worker].push((config.clone(), socket));
        }
    }
    let mut handles = Vec::with_capacity(workers);
    for (index, sockets) in per_worker.into_iter().enumerate() {
        let drain = drain.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wrk:worker_{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(error) => {
                        tracing::error!(target: "sluice::main", %error, "worker runtime failed to start");
                        return;
                    }
                };
                runtime.block_on(async move {
                    for (config, socket) in sockets {
                        match tokio::net::TcpListener::from_std(socket) {
                            Ok(listener) => {
                                tokio::spawn(crate::listener::accept_loop(listener, config, drain.clone()));
                            }
                            Err(error) => {
                                tracing::error!(target: "sluice::listener", %error, "cannot register listener socket");
                            }
                        }
                    }
                    // Connections keep running after their listener closes.
                    std::future::pending::<()>().await;
                });
            })?;
        handles.push(handle);
    }
    Ok(handles)
}
