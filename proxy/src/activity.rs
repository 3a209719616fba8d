//! Activity tracking for byte streams and request bodies, so idle timeouts
//! (tcp_proxy, HTTP connections, the stream idle timer) need no timer per
//! read or write.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Milliseconds since a fixed origin at which a stream last moved bytes.
#[derive(Debug, Clone)]
pub struct Activity {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    #[inline]
    pub fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long since the last byte moved.
    pub fn idle_for(&self) -> std::time::Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(now.saturating_sub(last))
    }
}

pin_project_lite::pin_project! {
    /// A stream wrapper that records activity and counts bytes.
    pub struct Tracked<S> {
        #[pin]
        inner: S,
        activity: Activity,
        pub bytes_read: u64,
        pub bytes_written: u64,
    }
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Activity) -> Self {
        Tracked {
            inner,
            activity,
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            *this.bytes_read += read as u64;
            this.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            if *n > 0 {
                *this.bytes_written += *n as u64;
                this.activity.touch();
            }
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
