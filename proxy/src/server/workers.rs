//! Worker threads: each runs a single-threaded runtime and serves the
//! listener sockets the listener manager sends it (one `SO_REUSEPORT`
//! socket per listener per worker, and one for the redirect address), so
//! connections are spread by the kernel and served without cross-thread
//! handoff.

use tokio::sync::mpsc;

use crate::listener::{Serve, ServeCommand};

/// Starts `count` workers; returns the channel to each. Workers run until
/// the process exits (their connections outlive closed listeners).
pub fn start(count: usize) -> std::io::Result<Vec<mpsc::UnboundedSender<ServeCommand>>> {
    let mut senders = Vec::with_capacity(count);
    for index in 0..count.max(1) {
        let (sender, mut commands) = mpsc::unbounded_channel::<ServeCommand>();
        std::thread::Builder::new()
            .name(format!("wrk:worker_{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(error) => {
                        tracing::error!(target: "sluice::main", %error, "worker runtime failed to start");
                        return;
                    }
                };
                runtime.block_on(async move {
                    while let Some(command) = commands.recv().await {
                        match tokio::net::TcpListener::from_std(command.socket) {
                            Ok(listener) => match command.serve {
                                Serve::Listener(slot) => {
                                    tokio::spawn(crate::listener::accept_loop(listener, slot));
                                }
                                Serve::Redirect(acceptor) => {
                                    tokio::spawn(crate::listener::redirect_accept_loop(
                                        listener, acceptor,
                                    ));
                                }
                            },
                            Err(error) => {
                                tracing::error!(target: "sluice::listener", %error, "cannot register listener socket");
                            }
                        }
                    }
                    // Connections keep running after the manager is gone.
                    std::future::pending::<()>().await;
                });
            })?;
        senders.push(sender);
    }
    Ok(senders)
}
