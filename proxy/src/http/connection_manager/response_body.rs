//! The response body on its way downstream. It counts bytes, enforces the
//! stream idle timeout and the remaining route timeout while the body
//! streams, and when the stream ends (or the client goes away) it closes
//! the books: duration, stats, access log.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::connection::ConnectionContext;
use super::request_body::RequestProgress;
use crate::http::body::{Body, BoxError};
use crate::stream_info::{ResponseFlag, StreamInfo};

/// What must happen once per stream, when it ends.
pub struct StreamEnd {
    pub info: StreamInfo,
    pub context: Arc<ConnectionContext>,
    pub request: Arc<RequestProgress>,
}

impl StreamEnd {
    /// Records the stream's end: `completed` false adds the `DC` flag.
    pub(super) fn finish(mut self, completed: bool) {
        let info = &mut self.info;
        if !completed {
            info.add_flag(ResponseFlag::DownstreamConnectionTermination);
        }
        let elapsed = info.start_instant.elapsed();
        info.duration = Some(elapsed);
        info.bytes_received = self.request.bytes.load(Ordering::Relaxed);
        let hcm = &self.context.hcm;
        let stats = &hcm.stats;
        stats
            .downstream_rq_time
            .record(elapsed.as_secs_f64() * 1000.0);
        stats.downstream_rq_active.dec();
        if completed {
            stats.downstream_rq_completed.inc();
        }
        stats.downstream_cx_rx_bytes_total.add(info.bytes_received);
        stats.downstream_cx_tx_bytes_total.add(info.bytes_sent);
        self.context.active_streams.fetch_sub(1, Ordering::Relaxed);
        hcm.access_logs.log(info);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StreamAborted(&'static str);

pin_project_lite::pin_project! {
    /// The timers are armed the first time the body has nothing to give
    /// (most small bodies are complete by the time they are polled, and
    /// never need one).
    pub struct ResponseBody {
        #[pin]
        inner: Body,
        end: Option<Box<StreamEnd>>,
        idle_timeout: Option<Duration>,
        idle: Option<Pin<Box<tokio::time::Sleep>>>,
        // When the body last gave a frame (or was created), until the idle
        // timer is armed.
        idle_since: Option<tokio::time::Instant>,
        deadline_at: Option<tokio::time::Instant>,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(end) = this.end.take() {
                // hyper does not poll a body that is already complete.
                let completed = this.inner.is_end_stream();
                end.finish(completed);
            }
        }
    }
}

impl ResponseBody {
    pub fn new(
        inner: Body,
        end: Box<StreamEnd>,
        idle_timeout: Option<Duration>,
        deadline: Option<tokio::time::Instant>,
    ) -> Self {
        let streaming = !inner.is_end_stream();
        let idle_timeout = idle_timeout.filter(|_| streaming);
        ResponseBody {
            inner,
            end: Some(end),
            idle_timeout,
            idle: None,
            idle_since: idle_timeout.map(|_| tokio::time::Instant::now()),
            deadline_at: deadline.filter(|_| streaming),
            deadline: None,
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let result = this.inner.poll_frame(cx);
        match result {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(end) = this.end.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        end.info.bytes_sent += data.len() as u64;
                    } else if let Some(trailers) = frame.trailers_ref() {
                        end.info.response_trailers = trailers.clone();
                    }
                }
                match (this.idle.as_mut(), *this.idle_timeout) {
                    (Some(idle), Some(timeout)) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + timeout);
                    }
                    (None, Some(_)) => *this.idle_since = Some(tokio::time::Instant::now()),
                    _ => {}
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(end) = this.end.as_mut() {
                    end.info.add_flag(ResponseFlag::UpstreamRemoteReset);
                }
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                if let Some(end) = this.end.take() {
                    end.finish(true);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let (None, Some(since), Some(timeout)) = (
                    this.idle.as_ref(),
                    this.idle_since.take(),
                    *this.idle_timeout,
                ) {
                    *this.idle = Some(Box::pin(tokio::time::sleep_until(since + timeout)));
                }
                if let (None, Some(at)) = (this.deadline.as_ref(), this.deadline_at.take()) {
                    *this.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
                }
                if let Some(idle) = this.idle.as_mut() {
                    if idle.as_mut().poll(cx).is_ready() {
                        if let Some(end) = this.end.as_mut() {
                            end.info.add_flag(ResponseFlag::StreamIdleTimeout);
                            end.context.hcm.stats.downstream_rq_idle_timeout.inc();
                        }
                        return Poll::Ready(Some(Err(Box::new(StreamAborted(
                            "stream idle timeout",
                        )))));
                    }
                }
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        if let Some(end) = this.end.as_mut() {
                            end.info.add_flag(ResponseFlag::UpstreamRequestTimeout);
                        }
                        return Poll::Ready(Some(Err(Box::new(StreamAborted(
                            "upstream request timeout",
                        )))));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
