//! Read replicas: which ones may serve a public read, and waiting until they have replayed a
//! write before the CDN is told to refetch.
//!
//! A health loop asks the primary for its WAL position and every replica for the position it
//! has replayed. A replica is in rotation while it answers, is still in recovery, and has not
//! been behind the primary for longer than `REPLICA_MAX_LAG_MS`; otherwise reads skip it until
//! it recovers.
//!
//! Stale re-caching is prevented on two sides (see the README, "Read replicas"):
//! - reads carry a minimum WAL position, the [`WriteHorizon`]: the newest write this instance
//!   knows of (its own commits, other instances' invalidations, the position stored beside the
//!   L2 sequence). A replica serves a read only once it has replayed past it, so a read that
//!   follows an invalidation never fills L1 or L2 from a replica that has not seen the write;
//! - the purge dispatcher sends a batch to the CDN only after every replica in rotation has
//!   replayed past the primary's position at that moment ([`Replicas::wait_until_replayed`]),
//!   so the edge's refetch cannot be answered from a replica that missed the write, whichever
//!   instance it reaches.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use super::pool::Pool;
use crate::{background::Background, ops::metrics};

/// Position of the end of the WAL written so far. Read after a commit returns, it is at or past
/// the commit record, which is flushed before the commit returns (`synchronous_commit` on).
const PRIMARY_POSITION: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
const REPLICA_POSITION: &str = "SELECT pg_is_in_recovery(), \
     COALESCE((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)";
/// How often a dispatcher waiting for a lagging replica asks it again.
const CATCH_UP_POLL: Duration = Duration::from_millis(5);

/// The newest write (as a WAL position) that reads on this instance must see.
#[derive(Clone, Default)]
pub struct WriteHorizon(Arc<AtomicU64>);

impl WriteHorizon {
    pub fn raise(&self, position: u64) {
        self.0.fetch_max(position, Ordering::AcqRel);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

struct Replica {
    pool: Pool,
    in_rotation: AtomicBool,
    /// Highest position seen replayed (replay only moves forward).
    replayed: AtomicU64,
}

pub struct Replicas {
    primary: Pool,
    members: Vec<Replica>,
    next: AtomicUsize,
    horizon: WriteHorizon,
    max_lag: Duration,
    check_interval: Duration,
    /// The primary's position over the last few checks: how long a replica has been behind is
    /// the age of the oldest sample it has not replayed.
    primary_samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Replicas {
    /// Replicas start out of rotation until the first check has seen them.
    pub fn new(
        primary: Pool,
        pools: Vec<Pool>,
        horizon: WriteHorizon,
        max_lag: Duration,
        check_interval: Duration,
    ) -> Self {
        let members = pools
            .into_iter()
            .map(|pool| Replica {
                pool,
                in_rotation: AtomicBool::new(false),
                replayed: AtomicU64::new(0),
            })
            .collect();
        Self {
            primary,
            members,
            next: AtomicUsize::new(0),
            horizon,
            max_lag,
            check_interval,
            primary_samples: Mutex::default(),
        }
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.members.iter().map(|replica| &replica.pool)
    }

    /// The next replica in rotation (round robin) that has replayed past the write horizon.
    pub fn reader(&self) -> Option<&Pool> {
        let horizon = self.horizon.get();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.members.len())
            .map(|offset| &self.members[(start + offset) % self.members.len()])
            .find(|replica| {
                replica.in_rotation.load(Ordering::Acquire)
                    && replica.replayed.load(Ordering::Acquire) >= horizon
            })
            .map(|replica| &replica.pool)
    }
    /// The primary's WAL position now.
    pub async fn primary_position(&self) -> Result<u64, sqlx::Error> {
        let position: i64 = sqlx::query_scalar(PRIMARY_POSITION)
            .fetch_one(&mut *self.primary.acquire().await?)
            .await?;
        Ok(position as u64)
    }

    /// Raises the write horizon to the primary's position: called after a commit, and at
    /// start (an instance cannot know which writes came before it).
    pub async fn note_write(&self) -> Option<u64> {
        match self.primary_position().await {
            Ok(position) => {
                self.horizon.raise(position);
                Some(position)
            }
            Err(err) => {
                // Without the position, no replica can prove it is current: reads go to the
                // primary until the next check raises the horizon.
                tracing::warn!(%err, "could not read the primary's WAL position");
                self.horizon.raise(u64::MAX);
                None
            }
        }
    }

    /// Checks every replica now and then every `REPLICA_CHECK_INTERVAL_MS`, until `background`
    /// stops.
    pub fn spawn_health_checks(self: &Arc<Self>, background: &Background) {
        let replicas = self.clone();
        background.spawn(async move {
            let mut ticks = tokio::time::interval(replicas.check_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                replicas.check().await;
            }
        });
    }

    async fn check(&self) {
        let now = Instant::now();
        match self.primary_position().await {
            Ok(position) => {
                let mut samples = self.primary_samples.lock().expect("not poisoned");
                samples.push_back((now, position));
                // Keep enough history to tell "behind for longer than the bound".
                let keep = self.max_lag * 2 + self.check_interval * 4;
                while samples.len() > 1 && samples[0].0 + keep < now {
                    samples.pop_front();
                }
                if self.horizon.get() == u64::MAX {
                    self.horizon.0.store(position, Ordering::Release);
                }
            }
            Err(err) => tracing::warn!(%err, "replica check: the primary did not answer"),
        }
        let checks = self
            .members
            .iter()
            .map(|replica| self.check_one(replica, now));
        futures_util::future::join_all(checks).await;
    }

    async fn check_one(&self, replica: &Replica, now: Instant) {
        let verdict = match self.replay_position(replica).await {
            Ok((true, _)) => {
                let lag = self.lag(replica.replayed.load(Ordering::Acquire), now);
                ::metrics::gauge!(metrics::DB_REPLICA_LAG, "pool" => replica.pool.name().to_owned())
                    .set(lag.as_secs_f64());
                if lag <= self.max_lag {
                    Ok(())
                } else {
                    Err(format!("{} ms behind the primary", lag.as_millis()))
                }
            }
            Ok((false, _)) => Err("not in recovery (promoted?)".to_owned()),
            Err(err) => Err(err.to_string()),
        };
        let in_rotation = verdict.is_ok();
        let was = replica.in_rotation.swap(in_rotation, Ordering::AcqRel);
        ::metrics::gauge!(metrics::DB_REPLICA_IN_ROTATION, "pool" => replica.pool.name().to_owned())
            .set(if in_rotation { 1.0 } else { 0.0 });
        match (was, verdict) {
            (false, Ok(())) => tracing::info!(replica = replica.pool.name(), "replica in rotation"),
            (true, Err(reason)) => {
                tracing::warn!(replica = replica.pool.name(), %reason, "replica out of rotation")
            }
            _ => {}
        }
    }

    /// Asks `replica` how far it has replayed and records it; `(in recovery, position)`.
    async fn replay_position(&self, replica: &Replica) -> Result<(bool, u64), sqlx::Error> {
        let probe = async {
            let (in_recovery, position): (bool, i64) = sqlx::query_as(REPLICA_POSITION)
                .fetch_one(&mut *replica.pool.acquire().await?)
                .await?;
            Ok::<_, sqlx::Error>((in_recovery, position as u64))
        };
        let (in_recovery, position) =
            tokio::time::timeout(self.max_lag.max(self.check_interval), probe)
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
        replica.replayed.fetch_max(position, Ordering::AcqRel);
        Ok((in_recovery, position))
    }

    fn lag(&self, replayed: u64, now: Instant) -> Duration {
        behind_for(
            &self.primary_samples.lock().expect("not poisoned"),
            replayed,
            now,
        )
    }

    /// Waits until every replica in rotation has replayed the primary's current position, or
    /// has left the rotation for lagging. Returns how long it waited.
    ///
    /// A replica that leaves the rotation here left it in this instance's view; the other
    /// instances, checking on their own clocks, see the same lag at most one check later, so
    /// the purge waits three more checks (one of margin) before the CDN refetches from any of
    /// them.
    pub async fn wait_until_replayed(&self) -> Duration {
        let started = Instant::now();
        let Ok(target) = self.primary_position().await else {
            // The primary is down: nothing new can have been committed to wait for.
            return Duration::ZERO;
        };
        // The health loop takes a replica out after `max_lag`; past that (plus a check or two)
        // something is wrong with the loop itself, and the purge must not wait forever.
        let give_up = started + self.max_lag + self.check_interval * 4;
        let lagging = |replica: &&Replica| {
            replica.in_rotation.load(Ordering::Acquire)
                && replica.replayed.load(Ordering::Acquire) < target
        };
        let waited_for: Vec<&Replica> = self.members.iter().filter(lagging).collect();
        loop {
            let behind: Vec<&Replica> = self.members.iter().filter(lagging).collect();
            if behind.is_empty() {
                let one_left = waited_for
                    .iter()
                    .any(|replica| !replica.in_rotation.load(Ordering::Acquire));
                if one_left {
                    tokio::time::sleep(self.check_interval * 3).await;
                }
                return started.elapsed();
            }
            if Instant::now() >= give_up {
                tracing::warn!(
                    replicas = ?behind.iter().map(|r| r.pool.name()).collect::<Vec<_>>(),
                    "replicas neither caught up nor left the rotation; purging anyway"
                );
                return started.elapsed();
            }
            let polls = behind.iter().map(|replica| self.replay_position(replica));
            futures_util::future::join_all(polls).await;
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }
}

/// How long a replica that replayed up to `replayed` has been behind a primary whose position
/// was sampled as `samples` (oldest first): the age of the oldest sample it has not reached.
fn behind_for(samples: &VecDeque<(Instant, u64)>, replayed: u64, now: Instant) -> Duration {
    samples
        .iter()
        .find(|(_, position)| *position > replayed)
        .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_replayed() {
        let now = Instant::now();
        let samples: VecDeque<(Instant, u64)> = [(3000, 100), (2000, 100), (1000, 250), (0, 400)]
            .into_iter()
            .map(|(ago_ms, position)| (now - Duration::from_millis(ago_ms), position))
            .collect();
        assert_eq!(behind_for(&samples, 400, now), Duration::ZERO, "caught up");
        assert_eq!(
            behind_for(&samples, 500, now),
            Duration::ZERO,
            "ahead of the last sample"
        );
        assert_eq!(
            behind_for(&samples, 250, now),
            Duration::ZERO,
            "behind only the newest"
        );
        assert_eq!(behind_for(&samples, 100, now), Duration::from_millis(1000));
        assert_eq!(behind_for(&samples, 0, now), Duration::from_millis(3000));
    }

    #[test]
    fn the_horizon_only_moves_forward() {
        let horizon = WriteHorizon::default();
        horizon.raise(10);
        horizon.raise(4);
        assert_eq!(horizon.get(), 10);
    }
}
