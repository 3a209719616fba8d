//! In-process raw TCP backends for `tcp_proxy` tests.
//!
//! - [`TcpBackend::echo`] echoes every byte back; when the client half-closes,
//!   it writes [`ECHO_EOF_REPLY`] after the echoed bytes and then closes, so a
//!   test can see that the backend saw EOF and could still answer.
//! - [`TcpBackend::greeter`] writes a fixed greeting on accept and closes
//!   its side at once (the backend closes first).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the echo backend writes after it read EOF from its client.
pub const ECHO_EOF_REPLY: &[u8] = b"backend-saw-eof";

pub struct TcpBackend {
    pub address: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Connections whose client side reached EOF (half-close seen).
    pub eofs: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
enum Mode {
    Echo,
    Greet(&'static [u8]),
}

impl TcpBackend {
    /// An echo backend on 127.0.0.1 (any free port).
    pub async fn echo() -> TcpBackend {
        Self::start(Mode::Echo).await
    }

    /// Writes `greeting`, then closes the connection.
    pub async fn greeter(greeting: &'static [u8]) -> TcpBackend {
        Self::start(Mode::Greet(greeting)).await
    }

    async fn start(mode: Mode) -> TcpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let eofs = Arc::new(AtomicUsize::new(0));
        let (conns, eofs2) = (connections.clone(), eofs.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let mode = mode.clone();
                let eofs = eofs2.clone();
                tokio::spawn(async move {
                    match mode {
                        Mode::Echo => echo(stream, eofs).await,
                        Mode::Greet(greeting) => {
                            let mut stream = stream;
                            let _ = stream.write_all(greeting).await;
                            let _ = stream.shutdown().await;
                        }
                    }
                });
            }
        });
        TcpBackend {
            address,
            connections,
            eofs,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }
}

async fn echo(mut stream: TcpStream, eofs: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => {
                eofs.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(ECHO_EOF_REPLY).await;
                let _ = stream.shutdown().await;
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
