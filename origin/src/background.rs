//! The instance's background loops and the one signal that ends them all. Every loop (the
//! heartbeat, the bus's subscriber and sequence check, the flags' reload, the tiers sweeper,
//! the purge dispatcher, the replica and readiness checks, the sharing of hot pages) is spawned
//! on [`Background`]; they stop when the instance has served its last request
//! ([`Background::stop`]) or when the application that owns them is dropped (see
//! [`Background::stop_on_drop`]), so no loop outlives the state it works for.

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::TaskTracker,
};

#[derive(Clone, Default)]
pub struct Background {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Background {
    /// Runs `work` until it ends or the background stops, whichever comes first: `work` is
    /// dropped where it waits, so it must leave nothing half done that matters (what it does
    /// is retried by the next instance or the next loop).
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = work => {}
            }
        })
    }

    /// Runs the loop that `start` makes from the stop signal: for a loop that finishes what it
    /// is doing when told to stop (the purge dispatcher's round under way).
    pub fn spawn_until<F, W>(&self, start: F) -> JoinHandle<()>
    where
        F: FnOnce(CancellationToken) -> W,
        W: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(start(self.stop.clone()))
    }

    /// A guard that stops every loop when it is dropped: the application's state holds it.
    pub fn stop_on_drop(&self) -> DropGuard {
        self.stop.clone().drop_guard()
    }

    /// Stops every loop and waits for them, at most `timeout`; false if some were still
    /// running then.
    pub async fn stop(&self, timeout: Duration) -> bool {
        self.stop.cancel();
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }

    /// Waits, at most `timeout`, until every loop has ended by itself (once the application is
    /// dropped, say); false if some were still running then.
    pub async fn ended(&self, timeout: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// The instance's lifetime, as its state holds it: the signal that it departs (its event
/// streams close, see [`crate::depart`]) and its loops, which stop when the state is dropped.
pub struct Lifetime {
    pub departing: CancellationToken,
    pub background: Background,
    _stop_on_drop: DropGuard,
}

impl Lifetime {
    pub fn new(background: Background) -> Self {
        Self {
            departing: CancellationToken::new(),
            _stop_on_drop: background.stop_on_drop(),
            background,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };

    use super::*;

    #[tokio::test]
    async fn a_dropped_guard_stops_every_loop() {
        let background = Background::default();
        let guard = background.stop_on_drop();
        background.spawn(std::future::pending());
        background.spawn(std::future::pending());
        assert!(!background.ended(Duration::from_millis(50)).await);
        drop(guard);
        assert!(background.ended(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_loop_told_to_stop_finishes_its_work_first() {
        let background = Background::default();
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        background.spawn_until(|stop| async move {
            stop.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(background.stop(Duration::from_secs(5)).await);
        assert!(finished.load(Ordering::SeqCst));
    }
}
