//! The body of an upstream response (HTTP/1.1 read straight off its lent
//! connection, or hyper's HTTP/2 stream). It keeps the request counted as
//! active (cluster `upstream_rq_active`, host `rq_active`, an HTTP/2
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
use super::http1;
use super::pool::Lent;
use super::stats::ClusterStats;
use super::UpstreamError;

/// Counts one request as active from send until its response is done. It
/// is active (for least-request picks) while its connection is set up, but
/// counts in `upstream_rq_total` only once a connection is ready for it, as
/// in Envoy: a failed connect is a connect failure, not an upstream request.
#[derive(Debug)]
pub(crate) struct ActiveRequest {
    stats: Arc<ClusterStats>,
    host: Arc<Host>,
    /// Keeps the request counted on its HTTP/2 connection.
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

    /// The response ended: record the request time once.
    pub(crate) fn complete(&mut self) {
        if !self.completed {
            self.completed = true;
            self.connection = None;
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

/// Where the bytes of an upstream response come from.
// The HTTP/1.1 variant carries its connection; boxing it would cost an
// allocation per request (the router boxes the whole body once anyway).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ResponseSource {
    Http1(http1::ResponseBody),
    Http2(Incoming),
}

/// An upstream response body; see the module documentation.
#[derive(Debug)]
pub struct UpstreamBody {
    source: ResponseSource,
    active: ActiveRequest,
}

impl UpstreamBody {
    pub(crate) fn new(source: ResponseSource, active: ActiveRequest) -> UpstreamBody {
        let mut body = UpstreamBody { source, active };
        if body.is_end_stream() {
            body.active.complete();
        }
        body
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            ResponseSource::Http1(body) => Pin::new(body).poll_frame(cx),
            ResponseSource::Http2(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(UpstreamError::from_hyper),
        };
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.is_end_stream(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        if ended {
            this.active.complete();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            ResponseSource::Http1(body) => body.is_end_stream(),
            ResponseSource::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            ResponseSource::Http1(body) => body.size_hint(),
            ResponseSource::Http2(body) => body.size_hint(),
        }
    }
}
