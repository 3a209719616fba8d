//! Where the datapath's start-up time goes: [`StageClock`] times each stage
//! of [`start`](super::start) (waiting for the early load, pinning, the
//! first sync, attaching, …) and logs them in one debug line, so a slow
//! start can be read from `-l debug` without a profiler.

use std::fmt::Write;
use std::time::{Duration, Instant};

/// Durations of consecutive named stages.
pub struct StageClock {
    started: Instant,
    last: Instant,
    stages: Vec<(&'static str, Duration)>,
}

impl StageClock {
    pub fn start() -> Self {
        let now = Instant::now();
        StageClock {
            started: now,
            last: now,
            stages: Vec::new(),
        }
    }

    /// Ends the stage running since the previous call (or the start).
    pub fn stage(&mut self, name: &'static str) {
        let now = Instant::now();
        self.stages.push((name, now - self.last));
        self.last = now;
    }

    /// `name=1.234ms …`, in order, then the total.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for (name, took) in &self.stages {
            let _ = write!(text, "{name}={:.3}ms ", took.as_secs_f64() * 1e3);
        }
        let total = self.last - self.started;
        let _ = write!(text, "total={:.3}ms", total.as_secs_f64() * 1e3);
        text
    }

    /// Logs [`StageClock::summary`] at debug level, with the CPU time the
    /// process has used since exec (every thread, finished ones included).
    pub fn log(&self) {
        let cpu = process_cpu().map(|cpu| cpu.as_secs_f64() * 1e3);
        tracing::debug!(target: "sluice::datapath", "start-up stages: {} process_cpu={:.1}ms", self.summary(), cpu.unwrap_or(f64::NAN));
    }
}

/// User + system CPU time of the whole process (microsecond resolution,
/// unlike the 10 ms ticks of `/proc/PID/stat`).
pub fn process_cpu() -> Option<Duration> {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage to write into.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    Some(Duration::from_micros(
        micros(usage.ru_utime) + micros(usage.ru_stime),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_listed_in_order_with_a_total() {
        let mut clock = StageClock::start();
        clock.stage("first");
        std::thread::sleep(Duration::from_millis(2));
        clock.stage("second");
        let summary = clock.summary();
        let first = summary.find("first=").expect("first stage");
        let second = summary.find("second=").expect("second stage");
        assert!(first < second, "{summary}");
        assert!(
            summary.ends_with("ms") && summary.contains("total="),
            "{summary}"
        );
        let total: f64 = summary
            .rsplit("total=")
            .next()
            .and_then(|t| t.strip_suffix("ms"))
            .and_then(|t| t.parse().ok())
            .expect("total in ms");
        assert!(total >= 2.0, "{summary}");
    }

    #[test]
    fn process_cpu_grows_with_work() {
        let before = process_cpu().expect("getrusage");
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert!(process_cpu().expect("getrusage") > before);
    }
}
