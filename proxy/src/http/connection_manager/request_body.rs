//! The downstream request body on its way upstream: counts bytes for
//! `%BYTES_RECEIVED%` and enforces `request_timeout` (the whole request must
//! arrive in time).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use crate::activity::LastActive;
use crate::http::body::BoxError;

/// Shared between the request body and the stream that owns it.
#[derive(Debug)]
pub struct RequestProgress {
    pub bytes: AtomicU64,
    pub timed_out: AtomicBool,
    /// When request data last arrived (resets the stream idle timer).
    pub activity: LastActive,
}

impl Default for RequestProgress {
    fn default() -> Self {
        RequestProgress {
            bytes: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            // Counts as touched when made.
            activity: LastActive::default(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RequestBody {
        #[pin]
        inner: Incoming,
        progress: Arc<RequestProgress>,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl RequestBody {
    pub fn new(inner: Incoming, progress: Arc<RequestProgress>, timeout: Option<Duration>) -> Self {
        let deadline = if inner.is_end_stream() {
            None
        } else {
            timeout.map(|t| Box::pin(tokio::time::sleep(t)))
        };
        RequestBody {
            inner,
            progress,
            deadline,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request timeout: the request body did not arrive in time")]
pub struct RequestTimedOut;

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                this.progress.timed_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Box::new(RequestTimedOut))));
            }
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.progress
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                this.progress.activity.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Box::new(error)))),
            Poll::Ready(None) => {
                *this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
