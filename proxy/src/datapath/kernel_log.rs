//! Forwards the kernel programs' `aya-log` records into the daemon's
//! `tracing` output (target `sluice::kernel`): a task that drains the log
//! ring buffer whenever it is readable. Which levels the kernel emits is
//! fixed at load from the `tracing` filter (`sluice_ebpf::kernel_log`), so
//! this task only wakes for records someone asked for.

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use sluice_ebpf::kernel_log::KernelLogger;

/// Starts draining `logger`; the task ends with the runtime or on error.
pub fn spawn(logger: KernelLogger) -> Option<tokio::task::JoinHandle<()>> {
    // SAFETY: the fd is the logger's ring buffer map fd, owned by the
    // logger and open (and the same fd) for as long as the AsyncFd holds it.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut logger = match registered {
        Ok(logger) => logger,
        Err(error) => {
            tracing::warn!(target: "sluice::datapath", %error, "kernel log records not forwarded");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}
