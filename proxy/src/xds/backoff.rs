//! Jittered exponential backoff for reconnecting to a control plane, as
//! Envoy's `JitteredExponentialBackOffStrategy` (500 ms base, 30 s cap): the
//! ceiling doubles per failed attempt, each delay is uniform in
//! [0, ceiling], and a stream that delivered a response resets it.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            ceiling: base,
        }
    }

    /// Envoy's xDS reconnect backoff: 500 ms base, 30 s cap.
    pub fn envoy_default() -> Backoff {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// The next delay; the ceiling then doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.cap);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Back to the base delay after a healthy stream.
    pub fn reset(&mut self) {
        self.ceiling = self.base;
    }

    /// The current ceiling, for tests and logs.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_jitters_below_the_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(500));
    }
}
