//! HTTP/2 streams run inside their connection's task instead of one tokio
//! task each.
//!
//! hyper's HTTP/2 server hands every new stream (request) to its executor.
//! With `TokioExecutor` that is a `tokio::spawn` per request: a task
//! allocation the size of the whole request future (~8 KiB, copied several
//! times on the way in and out of the task cell), a trip through the
//! scheduler's run queue for every wake-up, and a cross-task wake of the
//! connection whenever a stream has frames to send. [`StreamExecutor`]
//! instead hands the streams started while a connection is being polled to
//! that connection ([`LocalStreams::poll_connection`]), which polls them in
//! the same task, as hyper's HTTP/1 server polls its one request in flight.
//!
//! How the hand-over works: hyper calls the executor synchronously from
//! inside the connection's `poll`. [`LocalStreams::poll_connection`] marks
//! this thread as "capturing" for the duration of that call; the executor
//! parks each future it is given in a thread-local list, and the connection
//! moves them into its own set right after. An executor call outside any
//! connection's poll (nothing in hyper does that today) falls back to
//! `tokio::spawn`, so no future is ever lost. Streams that outlive their
//! connection (still waiting on an upstream when the client goes away) are
//! finished by [`LocalStreams::finish`], as their own tasks would have run
//! to completion.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

/// A stream future handed over by hyper, type-erased.
type LocalStream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The streams captured on this thread during a connection's poll.
#[derive(Default)]
struct Capture {
    active: bool,
    captured: Vec<LocalStream>,
}

thread_local! {
    static CAPTURE: RefCell<Capture> = RefCell::new(Capture::default());
}

/// hyper's executor for the connection manager: runs HTTP/2 streams in
/// the task of the connection that started them (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let mut future = Some(future);
        CAPTURE.with(|capture| {
            let mut capture = capture.borrow_mut();
            if capture.active {
                if let Some(future) = future.take() {
                    capture.captured.push(Box::pin(future));
                }
            }
        });
        if let Some(future) = future {
            tokio::spawn(future);
        }
    }
}

/// The streams one connection runs in its own task.
#[derive(Default)]
pub struct LocalStreams {
    running: FuturesUnordered<LocalStream>,
}

impl LocalStreams {
    /// Polls `connection`, taking over the streams it starts meanwhile,
    /// then polls every stream that is ready to make progress.
    pub fn poll_connection<C: Future + ?Sized>(
        &mut self,
        connection: Pin<&mut C>,
        cx: &mut Context<'_>,
    ) -> Poll<C::Output> {
        let output = {
            let _scope = CaptureScope::enter(&mut self.running);
            connection.poll(cx)
        };
        self.poll_streams(cx);
        output
    }

    /// Runs the streams still in flight to their end (after the connection
    /// itself has ended).
    pub async fn finish(&mut self) {
        std::future::poll_fn(|cx| {
            self.poll_streams(cx);
            if self.running.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Streams started and not yet finished.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.running.len()
    }

    fn poll_streams(&mut self, cx: &mut Context<'_>) {
        // `FuturesUnordered` polls only the streams whose wakers fired (and
        // yields back after a bounded number of polls, waking this task).
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
    }
}

/// Marks this thread as capturing streams until dropped; on drop (also when
/// the connection's poll panics) the captured streams move into `into` and
/// the previous state is restored.
struct CaptureScope<'a> {
    into: &'a mut FuturesUnordered<LocalStream>,
    was_active: bool,
    start: usize,
}

impl<'a> CaptureScope<'a> {
    fn enter(into: &'a mut FuturesUnordered<LocalStream>) -> Self {
        CAPTURE.with(|capture| {
            let mut capture = capture.borrow_mut();
            let scope = CaptureScope {
                into,
                was_active: capture.active,
                start: capture.captured.len(),
            };
            capture.active = true;
            scope
        })
    }
}

impl Drop for CaptureScope<'_> {
    fn drop(&mut self) {
        CAPTURE.with(|capture| {
            let mut capture = capture.borrow_mut();
            capture.active = self.was_active;
            for stream in capture.captured.drain(self.start..) {
                self.into.push(stream);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A "connection" that starts `n` streams on its first poll, each
    /// counting itself done after one yield, and then finishes.
    struct StartsStreams {
        n: usize,
        started: bool,
        done: Arc<AtomicUsize>,
    }

    impl Future for StartsStreams {
        type Output = &'static str;
        fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<&'static str> {
            if self.started {
                return Poll::Ready("closed");
            }
            self.started = true;
            for _ in 0..self.n {
                let done = self.done.clone();
                StreamExecutor.execute(async move {
                    tokio::task::yield_now().await;
                    done.fetch_add(1, Ordering::Relaxed);
                });
            }
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn streams_started_during_the_poll_run_in_the_connection() {
        let done = Arc::new(AtomicUsize::new(0));
        let mut connection = std::pin::pin!(StartsStreams {
            n: 3,
            started: false,
            done: done.clone(),
        });
        let mut streams = LocalStreams::default();
        let first = std::future::poll_fn(|cx| {
            Poll::Ready(streams.poll_connection(connection.as_mut(), cx))
        })
        .await;
        assert!(first.is_pending());
        // Captured, not spawned: they are ours, and nothing ran them yet
        // beyond their first poll (each yielded once).
        assert_eq!(streams.len(), 3);
        assert_eq!(done.load(Ordering::Relaxed), 0);
        let output =
            std::future::poll_fn(|cx| streams.poll_connection(connection.as_mut(), cx)).await;
        assert_eq!(output, "closed");
        streams.finish().await;
        assert_eq!(done.load(Ordering::Relaxed), 3);
        assert_eq!(streams.len(), 0);
        // The thread no longer captures.
        assert!(!CAPTURE.with(|c| c.borrow().active));
    }

    #[tokio::test]
    async fn outside_a_connection_poll_the_executor_spawns() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        StreamExecutor.execute(async move {
            let _ = tx.send(7);
        });
        let value = tokio::time::timeout(std::time::Duration::from_secs(5), rx)
            .await
            .expect("the spawned future ran")
            .expect("sent");
        assert_eq!(value, 7);
    }

    #[test]
    fn a_panicking_connection_poll_stops_capturing() {
        let mut streams = LocalStreams::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let waker = futures_util::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            let mut connection = std::pin::pin!(async {
                StreamExecutor.execute(async {});
                if CAPTURE.with(|c| c.borrow().active) {
                    panic!("connection poll panics");
                }
            });
            let _ = streams.poll_connection(connection.as_mut(), &mut cx);
        }));
        assert!(result.is_err());
        assert!(!CAPTURE.with(|c| c.borrow().active));
        // The stream captured before the panic was handed over, not leaked
        // into the next connection's capture.
        assert!(CAPTURE.with(|c| c.borrow().captured.is_empty()));
        assert_eq!(streams.len(), 1);
    }
}
