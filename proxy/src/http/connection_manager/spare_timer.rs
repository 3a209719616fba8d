//! One tokio timer kept per downstream connection and re-armed for each
//! request's wait for upstream response headers (route timeout, stream idle
//! timeout), instead of a timer registered and removed per request.
//!
//! Why: a fresh timer whose deadline is earlier than everything else in
//! tokio's timer wheel (the route timeout, 15 s, against idle timeouts of
//! minutes) makes the driver wake its own `epoll_wait` through the eventfd
//! — one `write(2)` and one spurious wake-up per request. A kept timer moved
//! to a *later* deadline is only an atomic update (tokio re-files it when
//! the old deadline passes), so a keep-alive connection pays the wheel once
//! per timeout period, not once per request. HTTP/1.1 has one request at a
//! time per connection, so it always finds the spare; concurrent HTTP/2
//! streams that find it taken use a timer of their own, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// The connection's spare timer; see the module documentation.
#[derive(Default)]
pub(super) struct SpareTimer {
    slot: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl SpareTimer {
    /// A timer firing at `deadline`: the connection's spare if it is free,
    /// else a new one. Give it back with [`SpareTimer::give_back`].
    pub fn take(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        let spare = self.slot.lock().map(|mut slot| slot.take()).ok().flatten();
        match spare {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `timer` for the connection's next request (it stays filed at
    /// its deadline; re-arming it later is cheap). A second timer is dropped.
    pub fn give_back(&self, timer: Pin<Box<Sleep>>) {
        if let Ok(mut slot) = self.slot.lock() {
            if slot.is_none() {
                *slot = Some(timer);
            }
        }
    }
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
    async fn the_spare_is_reused_and_fires_at_its_later_deadline() {
        let spare = SpareTimer::default();
        let mut first = spare.take(Instant::now() + SHORT);
        // Polled once, so it is filed in the timer wheel at the early deadline.
        std::future::poll_fn(|cx| {
            assert!(first.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        let first_address = &*first as *const Sleep;
        spare.give_back(first);
        let started = Instant::now();
        let mut again = spare.take(started + LONGER);
        assert_eq!(
            &*again as *const Sleep, first_address,
            "the spare is reused"
        );
        let mut pending = std::future::pending::<()>();
        assert!(race(&mut pending, &mut again).await.is_none());
        let waited = started.elapsed();
        assert!(
            waited >= LONGER,
            "fired after {waited:?}, not at its new deadline"
        );
    }

    #[tokio::test]
    async fn a_taken_spare_means_a_new_timer_and_only_one_is_kept() {
        let spare = SpareTimer::default();
        let held = spare.take(Instant::now() + LONGER);
        let other = spare.take(Instant::now() + LONGER);
        assert_ne!(&*held as *const Sleep, &*other as *const Sleep);
        let kept = &*held as *const Sleep;
        spare.give_back(held);
        spare.give_back(other);
        let next = spare.take(Instant::now() + LONGER);
        assert_eq!(&*next as *const Sleep, kept);
    }

    #[tokio::test]
    async fn a_ready_future_wins_over_an_expired_timer() {
        let spare = SpareTimer::default();
        let mut timer = spare.take(Instant::now());
        tokio::time::sleep(SHORT).await;
        let mut ready = std::future::ready(7);
        assert_eq!(race(&mut ready, &mut timer).await, Some(7));
    }

    #[tokio::test]
    async fn an_earlier_deadline_is_honoured() {
        let spare = SpareTimer::default();
        spare.give_back(spare.take(Instant::now() + Duration::from_secs(60)));
        let started = Instant::now();
        let mut timer = spare.take(started + SHORT);
        let mut pending = std::future::pending::<()>();
        let fired = tokio::time::timeout(Duration::from_secs(5), race(&mut pending, &mut timer));
        assert_eq!(
            fired.await.ok(),
            Some(None),
            "the re-armed timer did not fire"
        );
        assert!(started.elapsed() >= SHORT);
    }
}
