//! The instance's background loops and the one signal that ends them all. Every loop (the
//! heartbeat, the bus's subscriber and sequence check, the flags' reload, the tiers sweeper,
//! the purge dispatcher, the replica and readiness checks, the sharing of hot pages) is spawned
//! on [`Background`]; they stop when the instance has served its last request
//! ([`Background::stop`]) or when the application that owns them is dropped (see
//! [`Background::stop_on_drop`]), so no loop outlives the state it works for. The purge
//! dispatcher stops earlier, when the instance departs ([`Lifetime::departing`], which the stop
//! signal also ends), finishing the round under way while the requests in flight drain.

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::TaskTracker,
};

#[derive(Clone, Default)]
pub struct Background {
    stop: CancellationToken,
    /// The loops that end at the stop signal.
    loops: TaskTracker,
    /// The work that ends by a signal of its own, waited for before the loops stop.
    tracked: TaskTracker,
}

impl Background {
    /// Runs `work` until it ends or the background stops, whichever comes first: `work` is
    /// dropped where it waits, so it must leave nothing half done that matters (what it does
    /// is retried by the next instance or the next loop).
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let stop = self.stop.clone();
        self.loops.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = work => {}
            }
        })
    }

    /// Runs `work`, a loop that ends by a signal of its own and finishes what it is doing then
    /// (the purge dispatcher's round under way): the signal must be one the stop signal ends
    /// too, such as [`Lifetime::departing`]. [`Background::stop`] waits for it before it stops
    /// the other loops, which that work may rely on (the replica checks).
    pub fn track(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        self.tracked.spawn(work)
    }

    /// A guard that stops every loop when it is dropped: the application's state holds it.
    pub fn stop_on_drop(&self) -> DropGuard {
        self.stop.clone().drop_guard()
    }

    /// Waits for the tracked work to finish (told to by its own signal), then stops every
    /// loop and waits for them, all within `timeout`; false if some were still running then.
    pub async fn stop(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        self.tracked.close();
        let finished = tokio::time::timeout_at(deadline, self.tracked.wait())
            .await
            .is_ok();
        self.stop.cancel();
        finished && self.ended_by(deadline).await
    }

    /// Waits, at most `timeout`, until every loop and tracked work has ended by itself (once
    /// the application is dropped, say); false if some were still running then.
    pub async fn ended(&self, timeout: Duration) -> bool {
        self.ended_by(tokio::time::Instant::now() + timeout).await
    }

    async fn ended_by(&self, deadline: tokio::time::Instant) -> bool {
        self.tracked.close();
        self.loops.close();
        let both = async {
            self.tracked.wait().await;
            self.loops.wait().await;
        };
        tokio::time::timeout_at(deadline, both).await.is_ok()
    }
}

/// The instance's lifetime, as its state holds it: the signal that it departs (its event
/// streams close and its purge dispatcher stops, see [`crate::depart`]; the background's stop
/// signal ends it too) and its loops, which stop when the state is dropped.
pub struct Lifetime {
    pub departing: CancellationToken,
    pub background: Background,
    _stop_on_drop: DropGuard,
}

impl Lifetime {
    pub fn new(background: Background) -> Self {
        Self {
            departing: background.stop.child_token(),
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
    async fn a_tracked_loop_ends_at_departure_and_is_waited_for() {
        let lifetime = Lifetime::new(Background::default());
        let finished = Arc::new(AtomicBool::new(false));
        let (departing, flag) = (lifetime.departing.clone(), finished.clone());
        lifetime.background.track(async move {
            departing.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        lifetime.departing.cancel();
        assert!(lifetime.background.stop(Duration::from_secs(5)).await);
        assert!(
            finished.load(Ordering::SeqCst),
            "it finished its work first"
        );
        // Stopping ends the departure signal too: a state dropped without departing.
        let lifetime = Lifetime::new(Background::default());
        let departing = lifetime.departing.clone();
        drop(lifetime);
        assert!(departing.is_cancelled());
    }
}
