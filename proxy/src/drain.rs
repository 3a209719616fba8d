//! Draining: the signal that tells the connections of one listener
//! generation to wind down (listener replaced or removed by LDS,
//! `/drain_listeners`, SIGTERM), shared by that generation's connections.

use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where a listener generation is in its drain sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainState {
    Serving,
    /// Connections are asked to close: all at once (`immediate`) or spread
    /// over `period` (Envoy's gradual strategy).
    Draining {
        started: Instant,
        period: Duration,
        immediate: bool,
    },
}

/// The sending side, owned by the listener manager.
#[derive(Debug, Clone)]
pub struct DrainControl {
    tx: watch::Sender<DrainState>,
}

/// The receiving side, cloned into every connection.
#[derive(Debug, Clone)]
pub struct DrainSignal {
    rx: watch::Receiver<DrainState>,
}

/// A new drain pair in the `Serving` state.
pub fn channel() -> (DrainControl, DrainSignal) {
    let (tx, rx) = watch::channel(DrainState::Serving);
    (DrainControl { tx }, DrainSignal { rx })
}

impl DrainControl {
    /// Starts draining (once; later calls may only make it immediate).
    pub fn start(&self, period: Duration, immediate: bool) {
        self.tx.send_if_modified(|state| match state {
            DrainState::Serving => {
                *state = DrainState::Draining {
                    started: Instant::now(),
                    period,
                    immediate,
                };
                true
            }
            DrainState::Draining {
                immediate: current, ..
            } if immediate && !*current => {
                *current = true;
                true
            }
            DrainState::Draining { .. } => false,
        });
    }

    pub fn state(&self) -> DrainState {
        *self.tx.borrow()
    }

    pub fn signal(&self) -> DrainSignal {
        DrainSignal {
            rx: self.tx.subscribe(),
        }
    }
}

impl DrainSignal {
    pub fn state(&self) -> DrainState {
        *self.rx.borrow()
    }

    /// Resolves once connections should start closing; returns how long
    /// this connection may wait before closing (zero for immediate).
    pub async fn connection_should_close(&mut self) -> Duration {
        loop {
            let spread = match *self.rx.borrow_and_update() {
                DrainState::Serving => None,
                DrainState::Draining {
                    started,
                    period,
                    immediate,
                } => Some(if immediate {
                    Duration::ZERO
                } else {
                    // Gradual: spread closes uniformly over what remains of
                    // the period, so clients do not all reconnect at once.
                    let remaining = period.saturating_sub(started.elapsed());
                    remaining.mul_f64(rand::random::<f64>())
                }),
            };
            if let Some(wait) = spread {
                return wait;
            }
            if self.rx.changed().await.is_err() {
                // The generation is gone: close now.
                return Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn immediate_drain_closes_connections_at_once() {
        let (control, mut signal) = channel();
        assert_eq!(signal.state(), DrainState::Serving);
        control.start(Duration::from_secs(60), true);
        let wait = signal.connection_should_close().await;
        assert_eq!(wait, Duration::ZERO);
    }

    #[tokio::test]
    async fn gradual_drain_spreads_within_the_period() {
        let (control, mut signal) = channel();
        control.start(Duration::from_secs(10), false);
        let wait = signal.connection_should_close().await;
        assert!(wait <= Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_gradual_drain_can_become_immediate() {
        let (control, mut signal) = channel();
        control.start(Duration::from_secs(600), false);
        control.start(Duration::from_secs(600), true);
        assert!(matches!(
            control.state(),
            DrainState::Draining {
                immediate: true,
                ..
            }
        ));
        assert_eq!(signal.connection_should_close().await, Duration::ZERO);
    }

    #[tokio::test]
    async fn a_dropped_control_closes_connections() {
        let (control, mut signal) = channel();
        drop(control);
        let wait = tokio::time::timeout(Duration::from_secs(5), signal.connection_should_close())
            .await
            .expect("woken");
        assert_eq!(wait, Duration::ZERO);
    }
}
