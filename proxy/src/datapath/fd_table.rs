//! The process's file descriptor table, grown once before any thread
//! starts.
//!
//! A process starts with room for 64 descriptors; the kernel grows the
//! table when a descriptor past its end is allocated, and once the process
//! has a second thread every growth waits for an RCU grace period
//! (`expand_fdtable` → `synchronize_rcu`): 12–28 ms measured here with
//! `strace -T`, in whichever syscall allocated descriptor 64. The kernel
//! datapath alone holds ~60 descriptors (maps, programs, links, BTF), so
//! with it that wait fell in the middle of start-up, on the way to `/ready`
//! (`BENCHMARKS.md`, start-up with the datapath, fifth pass). Grown while
//! the process is still single-threaded it costs microseconds, and the
//! table never shrinks.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Descriptors the table is grown to hold (~8 KiB of kernel memory), or
/// the soft `RLIMIT_NOFILE` if that is lower.
pub const RESERVED_DESCRIPTORS: u64 = 1024;

/// Grows the descriptor table to [`RESERVED_DESCRIPTORS`] slots (or the
/// soft descriptor limit). Call first thing in `main`, before any thread
/// exists; later it still works, only it then pays the grace period itself.
/// Returns the number of slots now guaranteed, or `None` when it could not
/// (no `/dev/null`, a limit under 64): nothing else depends on it.
pub fn reserve() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let slots = RESERVED_DESCRIPTORS.min(limit.rlim_cur);
    if slots <= 64 {
        return None;
    }
    let null = std::fs::File::open("/dev/null").ok()?;
    // F_DUPFD takes the lowest free descriptor at or above the argument, so
    // an inherited descriptor up there is never replaced.
    // SAFETY: duplicating a descriptor we own; the result is checked.
    let high = unsafe {
        libc::fcntl(
            null.as_raw_fd(),
            libc::F_DUPFD_CLOEXEC,
            (slots - 1) as libc::c_int,
        )
    };
    if high < 0 {
        return None;
    }
    // SAFETY: `high` was just returned by fcntl and is owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(high) });
    Some(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FDSize` in /proc/self/status: slots in the descriptor table.
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("FDSize:"))
            .and_then(|size| size.trim().parse().ok())
            .expect("FDSize line")
    }

    #[test]
    fn reserve_grows_the_table_and_leaves_no_descriptor_open() {
        let slots = reserve().expect("a test process has /dev/null and a limit over 64");
        assert!(slots > 64 && slots <= RESERVED_DESCRIPTORS);
        assert!(table_size() >= slots, "FDSize {} < {slots}", table_size());
        // SAFETY: F_GETFD only queries the descriptor.
        let flags = unsafe { libc::fcntl((slots - 1) as libc::c_int, libc::F_GETFD) };
        assert_eq!(flags, -1, "descriptor {} left open", slots - 1);
    }
}
