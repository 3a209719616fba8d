//! Spare tokio timers, re-armed for each request's wait for upstream
//! response headers (route timeout, stream idle timeout), instead of a
//! timer registered and removed per request.
//!
//! Why: a fresh timer whose deadline is earlier than everything else in
//! tokio's timer wheel (the route timeout, 15 s, against idle timeouts of
//! minutes) makes the driver wake its own `epoll_wait` through the eventfd
//! — one `write(2)` and one spurious wake-up per request. A kept timer moved
//! to a *later* deadline is only an atomic update (tokio re-files it when
//! the old deadline passes), so the wheel is touched about once per timeout
//! period, not once per request.
//!
//! Two levels: each downstream connection keeps one spare ([`SpareTimer`],
//! an uncontended lock per request; HTTP/1.1 has one request at a time, so
//! it always finds it), and when the connection ends its spare goes to a
//! per-thread list that the next connection starts from, so a new
//! connection (`Connection: close` traffic) reuses one too. A spare belongs
//! to the runtime that made it: one from another runtime (tests run many,
//! one after the other) is dropped, not used.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// Spares kept per thread; more are dropped (a worker needs about as many
/// as it has requests waiting for headers at once).
const MAX_SPARES: usize = 64;

thread_local! {
    static SPARES: RefCell<Vec<(Id, Pin<Box<Sleep>>)>> = const { RefCell::new(Vec::new()) };
}

/// A timer taken from (and given back to) this thread's spares.
pub(super) struct Spare {
    /// The runtime that runs the timer; `None` outside one (never filed).
    runtime: Option<Id>,
    pub timer: Pin<Box<Sleep>>,
}

/// A timer firing at `deadline`: one of this thread's spares of this
/// runtime if there is one, else a new one.
fn thread_take(deadline: Instant) -> Spare {
    let runtime = Handle::try_current().ok().map(|handle| handle.id());
    if let Some(runtime) = runtime {
        let spare = SPARES.with(|spares| {
            let mut spares = spares.borrow_mut();
            match spares.pop() {
                Some((id, timer)) if id == runtime => Some(timer),
                // Another runtime's spares (a runtime since dropped): none
                // of them is usable here.
                Some(_) => {
                    spares.clear();
                    None
                }
                None => None,
            }
        });
        if let Some(mut timer) = spare {
            timer.as_mut().reset(deadline);
            return Spare {
                runtime: Some(runtime),
                timer,
            };
        }
    }
    Spare {
        runtime,
        timer: Box::pin(tokio::time::sleep_until(deadline)),
    }
}

/// Keeps the timer for this thread's next connection (it stays filed at
/// its deadline; re-arming it later is cheap).
fn thread_give_back(spare: Spare) {
    let Some(runtime) = spare.runtime else {
        return;
    };
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < MAX_SPARES {
            spares.push((runtime, spare.timer));
        }
    });
}

/// One downstream connection's spare timer; see the module documentation.
#[derive(Default)]
pub(super) struct SpareTimer {
    slot: Mutex<Option<Spare>>,
}

impl SpareTimer {
    /// A timer firing at `deadline`: the connection's spare if it is free,
    /// else one of the thread's, else a new one. Give it back with
    /// [`SpareTimer::give_back`].
    pub fn take(&self, deadline: Instant) -> Spare {
        let kept = self.slot.lock().ok().and_then(|mut slot| slot.take());
        match kept {
            Some(mut spare) => {
                spare.timer.as_mut().reset(deadline);
                spare
            }
            None => thread_take(deadline),
        }
    }

    /// Keeps the timer for the connection's next request; a second one
    /// (concurrent HTTP/2 streams) goes to the thread's spares.
    pub fn give_back(&self, spare: Spare) {
        let Ok(mut slot) = self.slot.lock() else {
            return;
        };
        if slot.is_none() {
            *slot = Some(spare);
        } else {
            drop(slot);
            thread_give_back(spare);
        }
    }
}

impl Drop for SpareTimer {
    fn drop(&mut self) {
        if let Some(spare) = self.slot.get_mut().ok().and_then(Option::take) {
            thread_give_back(spare);
        }
    }
}

/// Spares this thread holds (tests).
#[cfg(test)]
fn spare_count() -> usize {
    SPARES.with(|spares| spares.borrow().len())
}

/// Polls `future` until it completes or `timer` fires, the future first (so
/// an output that is ready wins over an expired timer, as with
/// `tokio::time::timeout_at`). `None`: the timer fired first.
pub(super) async fn race<F: Future + Unpin>(
    future: &mut F,
    timer: &mut Pin<Box<Sleep>>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(output) = Pin::new(&mut *future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SHORT: Duration = Duration::from_millis(20);
    const LONGER: Duration = Duration::from_millis(60);

    #[tokio::test]
    async fn a_spare_is_reused_and_fires_at_its_later_deadline() {
        let mut first = thread_take(Instant::now() + SHORT);
        let first_timer = &mut first.timer;
        // Polled once, so it is filed in the timer wheel at the early deadline.
        std::future::poll_fn(|cx| {
            assert!(first_timer.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        let first_address = &*first.timer as *const Sleep;
        thread_give_back(first);
        let started = Instant::now();
        let mut again = thread_take(started + LONGER);
        assert_eq!(
            &*again.timer as *const Sleep, first_address,
            "the spare is reused"
        );
        let mut pending = std::future::pending::<()>();
        assert!(race(&mut pending, &mut again.timer).await.is_none());
        let waited = started.elapsed();
        assert!(
            waited >= LONGER,
            "fired after {waited:?}, not at its new deadline"
        );
    }

    #[tokio::test]
    async fn spares_are_bounded_and_taken_last_in_first_out() {
        let timers: Vec<_> = (0..MAX_SPARES + 3)
            .map(|_| thread_take(Instant::now() + LONGER))
            .collect();
        let last = &*timers[MAX_SPARES - 1].timer as *const Sleep;
        for timer in timers {
            thread_give_back(timer);
        }
        assert_eq!(spare_count(), MAX_SPARES);
        assert_eq!(
            &*thread_take(Instant::now() + LONGER).timer as *const Sleep,
            last
        );
    }

    #[test]
    fn another_runtimes_spares_are_dropped_not_used() {
        let make_runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        };
        let first = make_runtime();
        first.block_on(async { thread_give_back(thread_take(Instant::now() + LONGER)) });
        drop(first);
        assert_eq!(spare_count(), 1);
        make_runtime().block_on(async {
            let started = Instant::now();
            let mut spare = thread_take(started + SHORT);
            assert_eq!(spare_count(), 0, "the old runtime's spare was dropped");
            let mut pending = std::future::pending::<()>();
            assert!(race(&mut pending, &mut spare.timer).await.is_none());
            assert!(started.elapsed() >= SHORT);
        });
        assert_eq!(spare_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_keeps_one_spare_and_hands_it_to_the_thread_when_it_ends() {
        while spare_count() > 0 {
            drop(thread_take(Instant::now()));
        }
        let connection = SpareTimer::default();
        let first = connection.take(Instant::now() + LONGER);
        let kept = &*first.timer as *const Sleep;
        connection.give_back(first);
        let again = connection.take(Instant::now() + LONGER);
        assert_eq!(
            &*again.timer as *const Sleep, kept,
            "the connection's spare"
        );
        // A second timer at once (HTTP/2): a new one, given to the thread.
        let second = connection.take(Instant::now() + LONGER);
        connection.give_back(again);
        connection.give_back(second);
        assert_eq!(spare_count(), 1);
        drop(connection);
        assert_eq!(
            spare_count(),
            2,
            "the connection's spare went to the thread"
        );
        let next = SpareTimer::default().take(Instant::now() + LONGER);
        assert_eq!(
            &*next.timer as *const Sleep, kept,
            "a new connection reuses it"
        );
    }

    #[tokio::test]
    async fn a_ready_future_wins_over_an_expired_timer() {
        let mut spare = thread_take(Instant::now());
        tokio::time::sleep(SHORT).await;
        let mut ready = std::future::ready(7);
        assert_eq!(race(&mut ready, &mut spare.timer).await, Some(7));
    }

    #[tokio::test]
    async fn an_earlier_deadline_is_honoured() {
        thread_give_back(thread_take(Instant::now() + Duration::from_secs(60)));
        let started = Instant::now();
        let mut spare = thread_take(started + SHORT);
        let mut pending = std::future::pending::<()>();
        let fired =
            tokio::time::timeout(Duration::from_secs(5), race(&mut pending, &mut spare.timer));
        assert_eq!(
            fired.await.ok(),
            Some(None),
            "the re-armed timer did not fire"
        );
        assert!(started.elapsed() >= SHORT);
    }
}
