//! Kernel log records (`aya-log-ebpf` in the programs) into the daemon's
//! `tracing` output under the target `sluice::kernel`.
//!
//! `aya-log` hands each record to a `log::Log`; [`TracingBridge`] re-emits
//! it as a `tracing` event (the program's module as the `program` field).
//! The kernel-side level (`AYA_LOG_LEVEL`, fixed when the object is loaded)
//! is the most verbose level `tracing` enables for `sluice::kernel` at start,
//! so disabled levels are filtered in the kernel and never fill the ring
//! buffer; raising the level later needs a restart of the datapath.

use aya_log::Level as KernelLevel;

/// Where kernel records appear in the daemon's log.
pub const TARGET: &str = "sluice::kernel";

/// Reads the programs' log ring buffer; `flush()` forwards what is there
/// (call it when its fd is readable).
pub type KernelLogger = aya_log::EbpfLogger<TracingBridge>;

/// Forwards `aya-log` records to `tracing`.
pub struct TracingBridge;

impl log::Log for TracingBridge {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let program = record.target();
        let message = record.args();
        match record.level() {
            log::Level::Error => {
                tracing::error!(target: "sluice::kernel", program, "{message}")
            }
            log::Level::Warn => tracing::warn!(target: "sluice::kernel", program, "{message}"),
            log::Level::Info => tracing::info!(target: "sluice::kernel", program, "{message}"),
            log::Level::Debug => {
                tracing::debug!(target: "sluice::kernel", program, "{message}")
            }
            log::Level::Trace => {
                tracing::trace!(target: "sluice::kernel", program, "{message}")
            }
        }
    }

    fn flush(&self) {}
}

/// The `AYA_LOG_LEVEL` value for the current `tracing` filter: the most
/// verbose level enabled for [`TARGET`] (0: none).
pub fn kernel_level() -> u8 {
    let level = if tracing::enabled!(target: "sluice::kernel", tracing::Level::TRACE) {
        KernelLevel::Trace as u8
    } else if tracing::enabled!(target: "sluice::kernel", tracing::Level::DEBUG) {
        KernelLevel::Debug as u8
    } else if tracing::enabled!(target: "sluice::kernel", tracing::Level::INFO) {
        KernelLevel::Info as u8
    } else if tracing::enabled!(target: "sluice::kernel", tracing::Level::WARN) {
        KernelLevel::Warn as u8
    } else if tracing::enabled!(target: "sluice::kernel", tracing::Level::ERROR) {
        KernelLevel::Error as u8
    } else {
        0
    };
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_subscriber_nothing_is_enabled_in_the_kernel() {
        assert_eq!(kernel_level(), 0);
    }

    #[test]
    fn kernel_levels_match_aya_log_numbers() {
        // aya-log-ebpf enables a record when `level <= AYA_LOG_LEVEL`.
        assert_eq!(KernelLevel::Error as u8, 1);
        assert_eq!(KernelLevel::Trace as u8, 5);
    }
}
