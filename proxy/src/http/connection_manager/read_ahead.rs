//! The first read of an AUTO-codec connection, made big. hyper-util's AUTO
//! server reads exactly 24 bytes to tell the HTTP/2 preface from an
//! HTTP/1.1 request, so every new HTTP/1.1 connection cost one extra
//! `recvfrom(2)` (24 bytes, then the rest). [`ReadAhead`] answers that
//! first small read from one read of up to [`READ_AHEAD`] bytes and serves
//! what is left to the codec's next reads; after that it only passes reads
//! and writes through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes asked for by the first read (hyper's first HTTP/1 read buffer is
/// 8 KiB: a request head that fits it still arrives in one read).
pub(super) const READ_AHEAD: usize = 8192;

pin_project_lite::pin_project! {
    /// A stream whose first read is made into a buffer of its own.
    pub(super) struct ReadAhead<S> {
        #[pin]
        inner: S,
        // Read ahead and not yet given out; `None` once drained (or never,
        // when disabled).
        ahead: Option<Box<Ahead>>,
        first: bool,
    }
}

struct Ahead {
    bytes: Vec<u8>,
    given: usize,
}

impl<S> ReadAhead<S> {
    /// `enabled`: read ahead on the first read (AUTO codec); otherwise a
    /// plain pass-through.
    pub fn new(inner: S, enabled: bool) -> Self {
        ReadAhead {
            inner,
            ahead: None,
            first: enabled,
        }
    }
}

impl<S: AsyncRead> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if *this.first && buf.remaining() < READ_AHEAD {
            let mut bytes = vec![0u8; READ_AHEAD];
            let mut into = ReadBuf::new(&mut bytes);
            match this.inner.as_mut().poll_read(cx, &mut into) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {}
            }
            *this.first = false;
            let read = into.filled().len();
            bytes.truncate(read);
            *this.ahead = Some(Box::new(Ahead { bytes, given: 0 }));
        }
        *this.first = false;
        if let Some(ahead) = this.ahead.as_mut() {
            let left = &ahead.bytes[ahead.given..];
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            ahead.given += n;
            if ahead.given == ahead.bytes.len() {
                *this.ahead = None;
            }
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A reader that counts the reads reaching it.
    struct Counting<R> {
        inner: R,
        reads: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    const REQUEST: &[u8] = b"GET /a/long/enough/path HTTP/1.1\r\nhost: example\r\n\r\n";

    #[tokio::test]
    async fn a_small_first_read_then_the_rest_cost_one_read_below() {
        let counting = Counting {
            inner: REQUEST,
            reads: 0,
        };
        let mut stream = ReadAhead::new(counting, true);
        let mut preface = [0u8; 24];
        stream.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface, &REQUEST[..24]);
        let mut rest = vec![0u8; REQUEST.len() - 24];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, &REQUEST[24..]);
        assert_eq!(stream.inner.reads, 1, "one read reached the stream");
        // Drained: further reads pass through (here: end of stream).
        let mut more = [0u8; 16];
        assert_eq!(stream.read(&mut more).await.unwrap(), 0);
        assert_eq!(stream.inner.reads, 2);
    }

    #[tokio::test]
    async fn disabled_it_passes_every_read_through() {
        let counting = Counting {
            inner: REQUEST,
            reads: 0,
        };
        let mut stream = ReadAhead::new(counting, false);
        let mut preface = [0u8; 24];
        stream.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface, &REQUEST[..24]);
        assert!(stream.ahead.is_none());
    }

    #[tokio::test]
    async fn end_of_stream_and_writes_pass_through() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let mut stream = ReadAhead::new(server, true);
        let mut buf = [0u8; 24];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0);

        let (mut client, server) = tokio::io::duplex(64);
        let mut stream = ReadAhead::new(server, true);
        stream.write_all(b"pong").await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
