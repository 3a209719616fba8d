//! Activity tracking for byte streams and request bodies, so idle timeouts
//! (tcp_proxy, HTTP connections, the stream idle timer) need no timer per
//! read or write.
//!
//! Times are milliseconds of the kernel's coarse monotonic clock: idle
//! timeouts are configured in milliseconds and checked against each other,
//! and a coarse read (one tick is 1–4 ms) costs a fraction of a precise one
//! — this runs on every read and write of every connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a stream last moved bytes (made: now).
#[derive(Debug)]
pub struct LastActive {
    at_ms: AtomicU64,
}

impl Default for LastActive {
    fn default() -> Self {
        LastActive {
            at_ms: AtomicU64::new(coarse_now_ms()),
        }
    }
}

impl LastActive {
    #[inline]
    pub fn touch(&self) {
        self.at_ms.store(coarse_now_ms(), Ordering::Relaxed);
    }

    /// How long since the last byte moved.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = self.at_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(coarse_now_ms().saturating_sub(last))
    }
}

/// A [`LastActive`] shared by a stream and whoever watches it idle.
pub type Activity = Arc<LastActive>;

fn coarse_now_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC_COARSE
    // exists on every Linux this runs on (since 2.6.32), so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
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
