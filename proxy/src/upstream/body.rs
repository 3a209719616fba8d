//! The body of an upstream response. It keeps the request counted as
//! active (cluster `upstream_rq_active`, host `rq_active`, the pooled
//! connection's in-flight count) until the body ends or is dropped, and
//! records `upstream_rq_time` when the last byte arrives.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::host::Host;
use super::pool::Lent;
use super::stats::ClusterStats;

/// Counts one request as active from send until its response is done. It
/// is active (for least-request picks) while its connection is set up, but
/// counts in `upstream_rq_total` only once a connection is ready for it, as
/// in Envoy: a failed connect is a connect failure, not an upstream request.
#[derive(Debug)]
pub(crate) struct ActiveRequest {
    stats: Arc<ClusterStats>,
    host: Arc<Host>,
    /// Keeps the request counted on its pooled connection (and lends an
    /// HTTP/1.1 connection until the response is read).
    connection: Option<Lent>,
    start: Instant,
    completed: bool,
    /// `upstream_rq_total` has been counted (on pool ready).
    counted: bool,
}

impl ActiveRequest {
    pub(crate) fn start(stats: Arc<ClusterStats>, host: Arc<Host>) -> ActiveRequest {
        stats.upstream_rq_active.inc();
        host.stats().rq_active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest {
            stats,
            host,
            connection: None,
            start: Instant::now(),
            completed: false,
            counted: false,
        }
    }

    /// A connection is ready for the request: as Envoy (`onPoolReady`),
    /// only now does it count in `upstream_rq_total` and the host's
    /// `rq_total`. Idempotent, for replays on a fresh connection.
    pub(crate) fn pool_ready(&mut self) {
        if !self.counted {
            self.counted = true;
            self.stats.upstream_rq_total.inc();
            self.host.stats().rq_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn on_connection(&mut self, connection: Lent) {
        self.connection = Some(connection);
    }

    /// The response ended: record the request time once, and give the
    /// connection back to its pool.
    pub(crate) fn complete(&mut self) {
        if !self.completed {
            self.completed = true;
            if let Some(connection) = self.connection.as_mut() {
                connection.response_read();
            }
            let elapsed = self.start.elapsed().as_secs_f64() * 1000.0;
            self.stats.upstream_rq_time.record(elapsed);
        }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.stats.upstream_rq_active.dec();
        self.host.stats().rq_active.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body; see the module documentation.
    #[derive(Debug)]
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        active: ActiveRequest,
    }
}

impl UpstreamBody {
    pub(crate) fn new(inner: Incoming, mut active: ActiveRequest) -> UpstreamBody {
        if inner.is_end_stream() {
            active.complete();
        }
        UpstreamBody { inner, active }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        if ended {
            this.active.complete();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
