//! Draining: the server-wide signal that listeners stop accepting and open
//! connections wind down (`/drain_listeners`, SIGTERM), shared by every
//! worker and connection.

use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where the server is in its drain sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainState {
    Serving,
    /// Connections are asked to close: all at once (`immediate`) or spread
    /// over `period` (Envoy's gradual strategy). Listeners keep accepting
    /// only while `keep_accepting` (a graceful `/drain_listeners`).
    Draining {
        started: Instant,
        period: Duration,
        immediate: bool,
        keep_accepting: bool,
    },
    /// Listeners are closed; remaining connections finish on their own.
    ListenersClosed {
        started: Instant,
        period: Duration,
        immediate: bool,
    },
}

/// The sending side, owned by the server.
#[derive(Debug, Clone)]
pub struct DrainControl {
    tx: watch::Sender<DrainState>,
}

/// The receiving side, cloned into every accept loop and connection.
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
    /// Starts draining connections. With `keep_accepting`, listeners keep
    /// accepting during the period (Envoy's graceful drain) and close at its end.
    pub fn start(&self, period: Duration, immediate: bool, keep_accepting: bool) {
        self.tx.send_if_modified(|state| match state {
            DrainState::Serving => {
                *state = DrainState::Draining {
                    started: Instant::now(),
                    period,
                    immediate,
                    keep_accepting,
                };
                true
            }
            _ => false,
        });
    }

    /// Closes every listener now, draining connections if not yet draining.
    pub fn close_listeners(&self, period: Duration, immediate: bool) {
        self.tx.send_if_modified(|state| match *state {
            DrainState::ListenersClosed { .. } => false,
            DrainState::Draining {
                started,
                period,
                immediate,
                ..
            } => {
                *state = DrainState::ListenersClosed {
                    started,
                    period,
                    immediate,
                };
                true
            }
            DrainState::Serving => {
                *state = DrainState::ListenersClosed {
                    started: Instant::now(),
                    period,
                    immediate,
                };
                true
            }
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
                    ..
                }
                | DrainState::ListenersClosed {
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
                // The server is gone: close now.
                return Duration::ZERO;
            }
        }
    }

    /// Resolves once listeners must stop accepting.
    pub async fn listeners_closed(&mut self) {
        loop {
            if let DrainState::ListenersClosed { .. } = *self.rx.borrow_and_update() {
                return;
            }
            if self.rx.changed().await.is_err() {
                return;
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
        control.start(Duration::from_secs(60), true, true);
        let wait = signal.connection_should_close().await;
        assert_eq!(wait, Duration::ZERO);
    }

    #[tokio::test]
    async fn gradual_drain_spreads_within_the_period() {
        let (control, mut signal) = channel();
        control.start(Duration::from_secs(10), false, true);
        let wait = signal.connection_should_close().await;
        assert!(wait <= Duration::from_secs(10));
    }

    #[tokio::test]
    async fn closing_listeners_wakes_accept_loops() {
        let (control, mut signal) = channel();
        let waiter = tokio::spawn(async move { signal.listeners_closed().await });
        control.close_listeners(Duration::from_secs(1), true);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("accept loop woken")
            .unwrap();
        assert!(matches!(
            control.state(),
            DrainState::ListenersClosed { .. }
        ));
    }
}
