//! Pipes for the splice relay, and the per-thread pool that lends them.
//!
//! A relay direction holds a pipe only while bytes are in flight: when its
//! source has nothing to read it gives the (empty) pipe back to the pool of
//! its worker thread, and takes one again when bytes arrive. So idle
//! connections hold no pipe. That matters beyond descriptors: Linux charges
//! pipe buffers to the user (`fs.pipe-user-pages-soft`, 64 MiB by default)
//! and, for a process without CAP_SYS_RESOURCE/CAP_SYS_ADMIN past that
//! limit, refuses `F_SETPIPE_SZ` and creates new pipes with two slots — a
//! relay that kept two 256 KiB pipes per connection fell from 5.1 to
//! 2.2 Gbit/s on a bulk connection once 600 idle connections were open.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The pipe size asked for: bytes one splice moves at most.
pub const PIPE_SIZE: usize = 256 * 1024;
/// A pipe smaller than this (the kernel's per-user limit refused the size
/// and even the default) is not worth splicing through: the relay uses its
/// userspace buffer instead.
pub const MIN_PIPE_SIZE: usize = 64 * 1024;
/// Empty pipes a worker thread keeps for reuse.
const MAX_IDLE_PIPES: usize = 16;

/// An empty pipe, lent out by [`take`] and returned by [`give_back`].
#[derive(Debug)]
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Bytes the pipe holds at most (its size as the kernel set it).
    pub capacity: usize,
}

thread_local! {
    static IDLE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// What [`take`] found.
#[derive(Debug)]
pub enum Taken {
    Pipe(Pipe),
    /// No usable pipe (out of descriptors, or the per-user pipe limit left
    /// only a tiny one): move bytes through userspace instead.
    Unavailable,
}

/// An empty pipe from this thread's pool, or a new one.
pub fn take() -> io::Result<Taken> {
    if let Some(pipe) = IDLE.with(|idle| idle.borrow_mut().pop()) {
        return Ok(Taken::Pipe(pipe));
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => Ok(Taken::Unavailable),
            _ => Err(error),
        };
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A larger pipe means fewer splices per byte. The kernel may refuse the
    // size (per-user limit): the pipe then keeps the size it has.
    // SAFETY: F_SETPIPE_SZ and F_GETPIPE_SZ on a pipe we own.
    let size = unsafe {
        libc::fcntl(
            write.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            PIPE_SIZE as libc::c_int,
        );
        libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
    };
    let capacity = usize::try_from(size).map_err(|_| io::Error::last_os_error())?;
    Ok(usable(Pipe {
        read,
        write,
        capacity,
    }))
}

/// The pipe, or `Unavailable` when it is too small to be worth it.
fn usable(pipe: Pipe) -> Taken {
    if pipe.capacity < MIN_PIPE_SIZE {
        Taken::Unavailable
    } else {
        Taken::Pipe(pipe)
    }
}

/// Returns an EMPTY pipe to this thread's pool (closed when the pool is full).
pub fn give_back(pipe: Pipe) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() < MAX_IDLE_PIPES {
            idle.push(pipe);
        }
    });
}

/// Pipes waiting in this thread's pool.
#[cfg(test)]
pub fn idle_count() -> usize {
    IDLE.with(|idle| idle.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_pipe() -> Pipe {
        match take().unwrap() {
            Taken::Pipe(pipe) => pipe,
            Taken::Unavailable => panic!("no pipe"),
        }
    }

    #[test]
    fn a_pipe_is_reused_from_the_pool_and_the_pool_is_bounded() {
        let pipe = new_pipe();
        assert!(pipe.capacity >= MIN_PIPE_SIZE);
        let fd = pipe.read.as_raw_fd();
        give_back(pipe);
        assert_eq!(idle_count(), 1);
        let again = new_pipe();
        assert_eq!(again.read.as_raw_fd(), fd, "the pooled pipe comes back");
        assert_eq!(idle_count(), 0);
        let many: Vec<Pipe> = (0..MAX_IDLE_PIPES + 3).map(|_| new_pipe()).collect();
        many.into_iter().for_each(give_back);
        give_back(again);
        assert_eq!(idle_count(), MAX_IDLE_PIPES);
    }

    #[test]
    fn a_pipe_below_the_minimum_is_not_used() {
        let mut pipe = new_pipe();
        // What the kernel leaves an unprivileged user past the pipe limit.
        // SAFETY: F_SETPIPE_SZ on a pipe we own.
        let size = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, 8192) };
        pipe.capacity = usize::try_from(size).unwrap();
        assert!(pipe.capacity < MIN_PIPE_SIZE);
        assert!(matches!(usable(pipe), Taken::Unavailable));
        assert!(matches!(usable(new_pipe()), Taken::Pipe(_)));
    }
}
