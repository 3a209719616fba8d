//! The byte relay of tcp_proxy: both directions between two TCP sockets,
//! with half-close, byte counts and activity for the idle timeout.
//!
//! Each direction moves bytes with `splice(2)` through a pipe (socket →
//! pipe → socket, so payload never enters userspace), driven by tokio's
//! readiness. The pipe is borrowed from the worker's pool while bytes are in
//! flight and given back when the source has nothing to read (`pipe.rs`
//! says why); where no usable pipe can be had (descriptor or per-user pipe
//! limits) the direction moves bytes with `read`/`write` through a
//! userspace buffer instead. End of stream on one side
//! shuts down the write side of the other once everything read has been
//! written; the relay ends when both directions have, or at the first error.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pipe::{self, Pipe, Taken};
use crate::activity::Activity;

/// The userspace buffer of the fallback.
const FALLBACK_BUFFER: usize = 64 * 1024;

/// Bytes moved, readable while the relay runs or after it was dropped.
#[derive(Debug, Default)]
pub struct ByteCounts {
    /// Read from the downstream socket.
    pub downstream_rx: AtomicU64,
    /// Written to the downstream socket.
    pub downstream_tx: AtomicU64,
}

/// Relays both directions between `downstream` and `upstream` until both
/// have seen end of stream, or an error (returned).
pub async fn relay_both(
    downstream: &TcpStream,
    upstream: &TcpStream,
    activity: &Activity,
    counts: &ByteCounts,
) -> io::Result<()> {
    let (mut to_upstream, mut to_downstream) = (Carrier::new(), Carrier::new());
    tokio::try_join!(
        relay(
            downstream,
            upstream,
            &mut to_upstream,
            activity,
            &counts.downstream_rx,
            Count::Read
        ),
        relay(
            upstream,
            downstream,
            &mut to_downstream,
            activity,
            &counts.downstream_tx,
            Count::Written
        ),
    )?;
    Ok(())
}

/// Which bytes of a direction its counter counts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Count {
    /// Read from the source (downstream rx).
    Read,
    /// Written to the destination (downstream tx).
    Written,
}

/// One direction, counting into `counter` as `count` says.
async fn relay(
    from: &TcpStream,
    to: &TcpStream,
    carrier: &mut Carrier,
    activity: &Activity,
    counter: &AtomicU64,
    count: Count,
) -> io::Result<()> {
    loop {
        if carrier.buffered() == 0 {
            from.readable().await?;
            let read = match from.try_io(Interest::READABLE, || carrier.fill(from.as_raw_fd())) {
                Ok(0) => {
                    // End of stream: pass the half-close on.
                    return match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
                        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
                        _ => Ok(()),
                    };
                }
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing to read: wait without holding a pipe.
                    carrier.release();
                    continue;
                }
                Err(e) => return Err(e),
            };
            activity.touch();
            if count == Count::Read {
                counter.fetch_add(read as u64, Ordering::Relaxed);
            }
        }
        while carrier.buffered() > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || carrier.drain(to.as_raw_fd())) {
                Ok(written) => {
                    activity.touch();
                    if count == Count::Written {
                        counter.fetch_add(written as u64, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Where one direction's bytes wait between reading and writing.
enum Carrier {
    /// Splicing through a pipe borrowed from the worker's pool while bytes
    /// are in flight (`None` while the direction is idle).
    Splice { pipe: Option<Pipe>, buffered: usize },
    /// Reading and writing through a userspace buffer: where no usable pipe
    /// could be had (descriptors or the per-user pipe limit exhausted).
    Buffer {
        data: Box<[u8]>,
        start: usize,
        end: usize,
    },
}

impl Carrier {
    /// A splicing carrier; it takes its pipe when the first bytes arrive.
    fn new() -> Carrier {
        Carrier::Splice {
            pipe: None,
            buffered: 0,
        }
    }

    fn buffer() -> Carrier {
        Carrier::Buffer {
            data: vec![0; FALLBACK_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn buffered(&self) -> usize {
        match self {
            Carrier::Splice { buffered, .. } => *buffered,
            Carrier::Buffer { start, end, .. } => end - start,
        }
    }

    /// Reads from socket `fd` into the empty carrier; 0 is end of stream.
    fn fill(&mut self, fd: RawFd) -> io::Result<usize> {
        if let Carrier::Splice { pipe: None, .. } = self {
            match pipe::take()? {
                Taken::Pipe(taken) => {
                    *self = Carrier::Splice {
                        pipe: Some(taken),
                        buffered: 0,
                    }
                }
                Taken::Unavailable => *self = Carrier::buffer(),
            }
        }
        match self {
            Carrier::Splice {
                pipe: Some(pipe),
                buffered,
            } => {
                let n = splice(fd, pipe.write.as_raw_fd(), pipe.capacity)?;
                *buffered += n;
                Ok(n)
            }
            Carrier::Splice { pipe: None, .. } => unreachable!("a pipe was taken above"),
            Carrier::Buffer { data, start, end } => {
                // SAFETY: `data` is a valid, writable buffer of its length.
                let n = unsafe { libc::read(fd, data.as_mut_ptr().cast(), data.len()) };
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
                (*start, *end) = (0, n);
                Ok(n)
            }
        }
    }

    /// Gives an empty pipe back to the worker's pool (the direction waits
    /// for its source now).
    fn release(&mut self) {
        if let Carrier::Splice { pipe, buffered: 0 } = self {
            if let Some(pipe) = pipe.take() {
                pipe::give_back(pipe);
            }
        }
    }

    /// Writes what the carrier holds to socket `fd`, as much as it takes.
    fn drain(&mut self, fd: RawFd) -> io::Result<usize> {
        match self {
            Carrier::Splice {
                pipe: Some(pipe),
                buffered,
            } => {
                let n = splice(pipe.read.as_raw_fd(), fd, *buffered)?;
                *buffered -= n;
                Ok(n)
            }
            Carrier::Splice { pipe: None, .. } => Ok(0),
            Carrier::Buffer { data, start, end } => {
                let pending = &data[*start..*end];
                // SAFETY: `pending` is valid for reads of its length;
                // MSG_NOSIGNAL turns a closed peer into EPIPE, not SIGPIPE.
                let n = unsafe {
                    libc::send(
                        fd,
                        pending.as_ptr().cast(),
                        pending.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
                *start += n;
                Ok(n)
            }
        }
    }
}

impl Drop for Carrier {
    /// An empty pipe goes back to the pool; one still holding bytes (the
    /// relay ended on an error or a timeout) is closed with them.
    fn drop(&mut self) {
        self.release();
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors, no offsets; the kernel checks the rest.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close_and_counts() {
        let (mut client, downstream) = pair().await;
        let (upstream, mut server) = pair().await;
        let counts = ByteCounts::default();
        let activity = Activity::default();
        let relay = relay_both(&downstream, &upstream, &activity, &counts);
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let peers = async {
            let (mut server_read, mut server_write) = server.split();
            let echo = async {
                // The server answers with a fixed reply, then closes its side.
                let mut got = Vec::new();
                server_read.read_to_end(&mut got).await.unwrap();
                server_write.write_all(b"done").await.unwrap();
                server_write.shutdown().await.unwrap();
                got
            };
            let (mut client_read, mut client_write) = client.split();
            let send = async {
                client_write.write_all(&payload).await.unwrap();
                client_write.shutdown().await.unwrap();
                let mut reply = Vec::new();
                client_read.read_to_end(&mut reply).await.unwrap();
                reply
            };
            tokio::join!(echo, send)
        };
        let (result, (got, reply)) =
            tokio::time::timeout(std::time::Duration::from_secs(20), async {
                tokio::join!(relay, peers)
            })
            .await
            .expect("relay finishes");
        result.unwrap();
        assert_eq!(got, payload);
        assert_eq!(reply, b"done");
        assert_eq!(counts.downstream_rx.load(Ordering::Relaxed), 3_000_000);
        assert_eq!(counts.downstream_tx.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn an_idle_direction_gives_its_pipe_back_to_the_pool() {
        let (mut client, downstream) = pair().await;
        let (upstream, mut server) = pair().await;
        let counts = ByteCounts::default();
        let activity = Activity::default();
        let relay = relay_both(&downstream, &upstream, &activity, &counts);
        tokio::pin!(relay);
        // Each test runs on its own thread: this pool starts empty.
        assert_eq!(pipe::idle_count(), 0);
        for round in 0..3 {
            let bytes = async {
                client.write_all(&[round; 100_000]).await.unwrap();
                let mut got = vec![0u8; 100_000];
                server.read_exact(&mut got).await.unwrap();
                assert!(got.iter().all(|b| *b == round));
            };
            tokio::select! {
                _ = &mut relay => panic!("the relay ended early"),
                () = bytes => {}
            }
            // Let the relay find its source empty.
            tokio::select! {
                _ = &mut relay => panic!("the relay ended early"),
                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
            }
            // The one direction that moved bytes took one pipe and gave it
            // back; the other never needed one.
            assert_eq!(pipe::idle_count(), 1, "round {round}");
        }
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), relay)
            .await
            .expect("relay finishes")
            .unwrap();
        assert_eq!(counts.downstream_rx.load(Ordering::Relaxed), 300_000);
    }

    #[tokio::test]
    async fn the_buffer_fallback_moves_bytes_too() {
        let (mut a, b) = pair().await;
        let (c, mut d) = pair().await;
        let mut carrier = Carrier::Buffer {
            data: vec![0; 16].into_boxed_slice(),
            start: 0,
            end: 0,
        };
        let counter = AtomicU64::new(0);
        let activity = Activity::default();
        a.write_all(b"hello fallback, longer than the buffer")
            .await
            .unwrap();
        a.shutdown().await.unwrap();
        relay(&b, &c, &mut carrier, &activity, &counter, Count::Read)
            .await
            .unwrap();
        let mut got = Vec::new();
        d.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello fallback, longer than the buffer");
        assert_eq!(counter.load(Ordering::Relaxed), got.len() as u64);
    }
}
