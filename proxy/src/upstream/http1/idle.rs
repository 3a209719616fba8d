//! The idle HTTP/1.1 connections of one host: checked out most recently
//! used first (the likeliest to still be open), only by the worker whose
//! runtime the socket is registered with; given back when a response was
//! read to its end, unless the connection reached
//! `max_requests_per_connection`. While any are idle, one sweeper task
//! closes those past the cluster's idle timeout (`upstream_cx_idle_timeout`)
//! and those the server closed.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{current_worker, Connection};
use crate::upstream::host::Host;

/// Idle connections kept per host; more are closed.
const MAX_IDLE_PER_HOST: usize = 256;
/// How often the sweeper looks for connections the server closed.
const LIVENESS_PERIOD: Duration = Duration::from_secs(1);

struct Idle {
    connection: Connection,
    since: Instant,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    sweeping: bool,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct IdleConnections {
    state: Mutex<State>,
}

impl IdleConnections {
    /// An idle connection of this worker that can carry a request.
    pub(super) fn checkout(&self) -> Option<Connection> {
        let worker = current_worker();
        let mut state = self.state.lock().unwrap();
        while let Some(index) = state
            .idle
            .iter()
            .rposition(|idle| idle.connection.worker == worker)
        {
            let idle = state.idle.remove(index);
            if idle.connection.is_usable_idle() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// Keeps `connection` for reuse (see the module documentation).
    pub(super) fn give_back(host: &Arc<Host>, connection: Connection) {
        let context = host.pool().context();
        if let Some(max) = context.max_requests_per_connection {
            if connection.requests >= max {
                context.stats.upstream_cx_max_requests.inc();
                return;
            }
        }
        let pool = &host.pool().http1;
        let mut state = pool.state.lock().unwrap();
        if state.idle.len() >= MAX_IDLE_PER_HOST {
            return;
        }
        state.idle.push(Idle {
            connection,
            since: Instant::now(),
        });
        if !state.sweeping {
            state.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(host)));
        }
    }

    /// Number of idle connections held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().unwrap().idle.len()
    }
}

/// Closes timed-out and dead idle connections until none is left idle (or
/// the host is gone); a later give-back starts a new sweeper.
async fn sweep(host: Weak<Host>) {
    loop {
        let next = {
            let Some(host) = host.upgrade() else { return };
            let context = host.pool().context();
            let mut state = host.pool().http1.state.lock().unwrap();
            let now = Instant::now();
            let idle_timeout = context.idle_timeout;
            let mut timed_out = 0;
            state.idle.retain(|idle| {
                if idle_timeout.is_some_and(|timeout| now >= idle.since + timeout) {
                    timed_out += 1;
                    return false;
                }
                idle.connection.is_usable_idle()
            });
            for _ in 0..timed_out {
                context.stats.upstream_cx_idle_timeout.inc();
            }
            if state.idle.is_empty() {
                state.sweeping = false;
                return;
            }
            let first_expiry = idle_timeout
                .and_then(|timeout| state.idle.iter().map(|idle| idle.since + timeout).min());
            let liveness = now + LIVENESS_PERIOD;
            first_expiry.map_or(liveness, |expiry| expiry.min(liveness))
        };
        tokio::time::sleep_until(next).await;
    }
}
