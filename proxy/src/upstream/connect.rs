//! Opening TCP connections to upstream hosts: `connect_timeout`,
//! `TCP_NODELAY`, and the connection counters (`upstream_cx_total`,
//! `upstream_cx_active`, `upstream_cx_connect_fail`, per-host `cx_*`),
//! which a [`ConnectionGuard`] keeps right for the connection's lifetime.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::host::{Host, HostStats};
use super::pool::PoolContext;
use super::UpstreamError;

/// Counts one open upstream connection; dropping it counts the close.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    context: Arc<PoolContext>,
    host_stats: Arc<HostStats>,
}

impl ConnectionGuard {
    fn new(context: Arc<PoolContext>, host_stats: Arc<HostStats>) -> Self {
        context.stats.upstream_cx_active.inc();
        host_stats.cx_active.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            context,
            host_stats,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.context.stats.upstream_cx_active.dec();
        self.context.stats.upstream_cx_destroy.inc();
        self.host_stats.cx_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Opens a TCP connection to `host` within the cluster's connect timeout.
pub(crate) async fn connect(
    host: &Host,
    context: &Arc<PoolContext>,
) -> Result<(TcpStream, ConnectionGuard), UpstreamError> {
    let stats = &context.stats;
    stats.upstream_cx_total.inc();
    HostStats::inc(&host.stats().cx_total);
    let attempt = tokio::time::timeout(context.connect_timeout, TcpStream::connect(host.address()));
    let failure = match attempt.await {
        Ok(Ok(stream)) => {
            // Failing to set TCP_NODELAY only costs latency; the connection works.
            let _ = stream.set_nodelay(true);
            let guard = ConnectionGuard::new(context.clone(), host.stats_handle());
            return Ok((stream, guard));
        }
        Ok(Err(error)) => UpstreamError::ConnectFailed(error),
        Err(_elapsed) => {
            stats.upstream_cx_connect_timeout.inc();
            UpstreamError::ConnectTimeout
        }
    };
    stats.upstream_cx_connect_fail.inc();
    HostStats::inc(&host.stats().cx_connect_fail);
    Err(failure)
}

/// A TCP connection to an upstream host (for `tcp_proxy`); keeps the
/// cluster's connection counters until dropped.
#[derive(Debug)]
pub struct UpstreamTcpStream {
    stream: TcpStream,
    _guard: ConnectionGuard,
}

impl UpstreamTcpStream {
    pub(crate) fn new(stream: TcpStream, guard: ConnectionGuard) -> Self {
        UpstreamTcpStream {
            stream,
            _guard: guard,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl AsyncRead for UpstreamTcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamTcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// One request in flight on a pooled connection; see [`ConnState::begin_request`].
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Request bookkeeping of one pooled HTTP connection: how many requests it
/// carried, how many are in flight, and when it was last busy (for the
/// idle timeout).
#[derive(Debug)]
pub(crate) struct ConnState {
    epoch: Instant,
    requests: AtomicU32,
    in_flight: AtomicU32,
    last_active_ms: AtomicU64,
}

impl ConnState {
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            epoch: Instant::now(),
            requests: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            last_active_ms: AtomicU64::new(0),
        })
    }

    /// Counts a request on this connection until the returned guard drops
    /// (also when the caller abandons the request midway).
    pub(crate) fn begin_request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub(crate) fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_active_ms.store(now, Ordering::Release);
    }

    /// Resolves once the connection has had no request in flight for `idle`.
    pub(crate) async fn idle_expired(&self, idle: Duration) {
        loop {
            let last = self.last_active_ms.load(Ordering::Acquire);
            let deadline = self.epoch + Duration::from_millis(last) + idle;
            tokio::time::sleep_until(deadline.into()).await;
            let unchanged = self.last_active_ms.load(Ordering::Acquire) == last;
            if unchanged && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Busy now: check again one idle period after this moment.
                self.touch();
            }
        }
    }
}
