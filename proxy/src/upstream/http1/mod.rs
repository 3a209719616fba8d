//! The HTTP/1.1 side of the upstream pools, written for a proxy: a pooled
//! connection is owned by the request that borrowed it and driven from that
//! request's own task. The request writes its head and body and reads the
//! response on the socket directly; the response body hands the connection
//! back to the idle list when its last byte is read. No connection task,
//! no channel and no cross-task wake-up per request (hyper's client
//! dispatch cost about a third of the instructions of a proxied request).
//!
//! Idle connections are not polled by anyone: a connection is checked for
//! a close or stray bytes (from the readiness the runtime already tracks)
//! when it is checked out, and a sweeper task per host closes the idle
//! ones that timed out or that the server closed (see [`idle`]).

mod decode;
mod encode;
mod exchange;
mod idle;
mod response;

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

pub(crate) use exchange::send;
pub(crate) use idle::IdleConnections;
pub(crate) use response::ResponseBody;

use super::connect::{connect, ConnectionGuard};
use super::host::Host;
use super::pool::PoolContext;
use super::UpstreamError;

/// Bytes read at once at first; doubled while reads fill it, up to
/// [`MAX_READ`].
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 128 * 1024;

/// An open HTTP/1.1 connection to one host.
pub(crate) struct Connection {
    io: TcpStream,
    /// Bytes read and not yet consumed.
    read_buffer: BytesMut,
    /// Where request heads are written (the allocation is reused).
    head_buffer: BytesMut,
    /// Bytes to write, in order (empty between requests).
    write_queue: VecDeque<Bytes>,
    read_size: usize,
    /// Requests this connection has carried (for `max_requests_per_connection`).
    requests: u32,
    /// The runtime (worker thread) whose I/O driver the socket is registered
    /// with: reused only from that worker, so its wake-ups stay local.
    worker: u64,
    _guard: ConnectionGuard,
}

impl Connection {
    /// Opens a connection to `host` under the cluster's connect timeout.
    async fn open(host: &Host, context: &Arc<PoolContext>) -> Result<Connection, UpstreamError> {
        let (io, guard) = connect(host, context).await?;
        context.stats.upstream_cx_http1_total.inc();
        Ok(Connection {
            io,
            read_buffer: BytesMut::new(),
            head_buffer: BytesMut::new(),
            write_queue: VecDeque::with_capacity(4),
            read_size: FIRST_READ,
            requests: 0,
            worker: current_worker(),
            _guard: guard,
        })
    }

    /// Whether an idle connection can carry a request: the server has not
    /// closed it and sent nothing unasked. Costs no system call unless the
    /// runtime saw the socket become readable.
    fn is_usable_idle(&self) -> bool {
        if !self.read_buffer.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.io.peer_addr().ok())
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

/// A small number naming the current thread (each worker runs its own
/// single-threaded runtime).
fn current_worker() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static WORKER: Cell<u64> = const { Cell::new(0) };
    }
    WORKER.with(|worker| {
        if worker.get() == 0 {
            worker.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        worker.get()
    })
}
