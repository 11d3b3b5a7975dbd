//! The bus between origin instances: L1 invalidations published by the instance that
//! committed a write and applied by every other one.
//!
//! Without `REDIS_URL` the origin is a single instance and the bus does nothing. With it,
//! invalidations go over Redis Pub/Sub, which delivers at most once, so an instance must never
//! trust its L1 beyond what it heard ([`Sequence`] decides, from the numbers alone):
//! - every message carries a sequence number from one Redis counter; a gap means a message
//!   may have been lost, and the L1 is flushed;
//! - a lost message that no later one reveals is caught by the sequence check: every
//!   [`SEQUENCE_CHECK`] each instance reads the counter, and a number it saw there and had
//!   still not applied one check later flushes the L1 (as does a counter that went back: Redis
//!   lost its data);
//! - while the subscription is down or the counter cannot be read, L1 entries older than
//!   `L1_DISCONNECTED_TTL_MS` are not served, and when the subscription comes back the L1 is
//!   flushed (what was missed cannot be known).
//!
//! Each instance acknowledges the sequence it applied in Redis (a key with a short TTL,
//! refreshed while it trusts its L1), so a purge can go to the CDN once every live instance
//! has dropped what it covers ([`Bus::wait_until_applied`]). Publishing is the caller's to
//! retry: the purge outbox drives it until it succeeds (`crate::purge::tiers`).
//!
//! With read replicas, an invalidation also carries the write's WAL position, and every
//! instance raises its [`WriteHorizon`] to it before dropping the L1 entries, so the reads that
//! refill them come from a replica that has the write (see `crate::db::replicas`).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{
    events::Events,
    link::{RedisLink, INVALIDATION_SEQ, WRITE_HORIZON},
    registry::Registry,
    sequence::{Action, Heard, Sequence},
};
use crate::{
    background::Background, cache::l1::L1, clock::now_ms, db::replicas::WriteHorizon, ops::metrics,
};

/// Wait before resubscribing after the subscription dropped.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// How often the invalidation counter is compared with the last invalidation applied.
pub const SEQUENCE_CHECK: Duration = Duration::from_millis(250);
/// Lifetime of an instance's acknowledgement: it lapses soon after the instance stops
/// trusting its L1 (or dies), and waiting for it stops.
const ACK_TTL: Duration = Duration::from_secs(1);

/// Raises the shared write horizon to a write's WAL position (if any) and moves the
/// invalidation sequence, atomically: an L2 filler that reads the new sequence also reads the
/// horizon its database read must satisfy. KEYS: sequence, horizon; ARGV: position or ''.
const ADVANCE: &str = r"
if ARGV[1] ~= '' and tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], ARGV[1])
end
return redis.call('INCR', KEYS[1])
";

#[derive(Debug, Serialize, Deserialize)]
struct Invalidation {
    /// The instance that published it (it has applied it already).
    origin: String,
    seq: u64,
    tags: Vec<String>,
    /// Flush everything (purges by URL, prefix or everything).
    all: bool,
    /// The write's WAL position, with read replicas.
    #[serde(default)]
    position: Option<u64>,
}

struct RedisBus {
    link: RedisLink,
    channel: String,
    seq_key: String,
    horizon_key: String,
    advance_script: redis::Script,
    /// Acknowledgement keys: the prefix, then the instance id.
    ack_prefix: String,
}

struct Inner {
    instance_id: String,
    redis: Option<RedisBus>,
    /// Wakes the acknowledgement of a newly applied invalidation.
    applied: tokio::sync::Notify,
    subscribed: AtomicBool,
    sequence: parking_lot::Mutex<Sequence>,
    /// The sequence's [`Sequence::trusted_until_ms`], for the readers of L1 to see without a
    /// lock.
    trusted_until_ms: AtomicI64,
    disconnected_ttl: Duration,
    horizon: WriteHorizon,
    /// Set when the instance departs: it no longer vouches for its L1.
    departed: AtomicBool,
}

#[derive(Clone)]
pub struct Bus(Arc<Inner>);

impl Bus {
    /// The single-instance bus: publishing does nothing, the L1 is always trusted.
    pub fn in_process(instance_id: String, disconnected_ttl: Duration) -> Self {
        Bus(Arc::new(Inner {
            instance_id,
            redis: None,
            applied: tokio::sync::Notify::new(),
            subscribed: AtomicBool::new(true),
            sequence: parking_lot::Mutex::new(Sequence::alone()),
            trusted_until_ms: AtomicI64::new(i64::MAX),
            disconnected_ttl,
            horizon: WriteHorizon::default(),
            departed: AtomicBool::new(false),
        }))
    }

    /// The bus over `link`.
    pub fn redis(
        link: RedisLink,
        instance_id: String,
        disconnected_ttl: Duration,
        horizon: WriteHorizon,
    ) -> Self {
        Bus(Arc::new(Inner {
            instance_id,
            redis: Some(RedisBus {
                channel: link.key("invalidations"),
                seq_key: link.key(INVALIDATION_SEQ),
                horizon_key: link.key(WRITE_HORIZON),
                advance_script: redis::Script::new(ADVANCE),
                ack_prefix: link.key("applied:"),
                link,
            }),
            applied: tokio::sync::Notify::new(),
            subscribed: AtomicBool::new(false),
            sequence: parking_lot::Mutex::default(),
            trusted_until_ms: AtomicI64::new(0),
            disconnected_ttl,
            horizon,
            departed: AtomicBool::new(false),
        }))
    }

    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }

    /// Waits until every live instance (read from `registry` at each look, so that one that
    /// departs meanwhile is no longer waited for) has acknowledged the invalidations published
    /// so far, at most as long as an instance that missed one can go on serving it: after
    /// that it has flushed its L1 (a sequence check found the gap) or no longer serves the
    /// entries (`L1_DISCONNECTED_TTL_MS`). Returns how long it waited.
    pub async fn wait_until_applied(&self, registry: &Registry) -> Duration {
        let started = tokio::time::Instant::now();
        let Some(redis) = &self.0.redis else {
            return Duration::ZERO;
        };
        let bound = self.0.disconnected_ttl + 3 * SEQUENCE_CHECK;
        let mut connection = redis.link.connection.clone();
        let Ok(target) = connection.get::<_, Option<u64>>(&redis.seq_key).await else {
            // What was published cannot be known: wait as long as a miss could be served.
            tokio::time::sleep(bound).await;
            return started.elapsed();
        };
        let target = target.unwrap_or(0);
        loop {
            let keys: Vec<String> = registry
                .live_ids()
                .await
                .iter()
                .map(|id| format!("{}{id}", redis.ack_prefix))
                .collect();
            if keys.is_empty() {
                return started.elapsed();
            }
            let acks = connection
                .mget::<_, Vec<Option<u64>>>(&keys)
                .await
                .unwrap_or_default();
            if acks.len() == keys.len() && acks.iter().all(|ack| ack.is_some_and(|a| a >= target)) {
                return started.elapsed();
            }
            if started.elapsed() >= bound {
                tracing::warn!(
                    ?bound,
                    "not every instance acknowledged the invalidations; waited the bound"
                );
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How old an L1 entry may be to be served: unbounded while the bus is live, the last
    /// sequence check recent and this instance `coordinated` (`ff.horizontal_scaling`); the
    /// disconnected bound otherwise.
    pub fn l1_max_age(&self, coordinated: bool) -> Option<Duration> {
        if self.0.departed.load(Ordering::Acquire) {
            return Some(Duration::ZERO);
        }
        let trusted = coordinated
            && self.0.subscribed.load(Ordering::Acquire)
            && now_ms() < self.0.trusted_until_ms.load(Ordering::Acquire);
        (!trusted).then_some(self.0.disconnected_ttl)
    }

    /// Moves the invalidation sequence and raises the shared write horizon to `position` (the
    /// write's WAL position, with read replicas): from now on no L2 fill that read the
    /// database before the write can land (see [`crate::cache::l2`]). Returns the new sequence (0
    /// without Redis).
    pub async fn advance(&self, position: Option<u64>) -> redis::RedisResult<u64> {
        let Some(redis) = &self.0.redis else {
            return Ok(0);
        };
        redis
            .advance_script
            .key(&redis.seq_key)
            .key(&redis.horizon_key)
            .arg(position.map(|p| p.to_string()).unwrap_or_default())
            .invoke_async(&mut redis.link.connection.clone())
            .await
    }

    /// Tells the other instances to drop `tags` (or everything) from their L1, as invalidation
    /// `seq` (from [`Bus::advance`]).
    pub async fn publish(
        &self,
        seq: u64,
        tags: &[String],
        all: bool,
        position: Option<u64>,
    ) -> redis::RedisResult<()> {
        let Some(redis) = &self.0.redis else {
            return Ok(());
        };
        let message = Invalidation {
            origin: self.0.instance_id.clone(),
            seq,
            tags: tags.to_vec(),
            all,
            position,
        };
        let payload = serde_json::to_string(&message).expect("invalidations serialize");
        redis
            .link
            .connection
            .clone()
            .publish::<_, _, ()>(&redis.channel, payload)
            .await
    }

    /// Applies other instances' invalidations to `l1` and hands their entity events to
    /// `events`, until `background` stops: one subscription for both.
    pub fn spawn_subscriber(&self, l1: Option<Arc<L1>>, events: Events, background: &Background) {
        let (Some(redis), Some(events_channel)) = (&self.0.redis, events.channel()) else {
            return;
        };
        let (client, channel, events_channel) = (
            redis.link.client.clone(),
            redis.channel.clone(),
            events_channel.to_owned(),
        );
        let bus = self.clone();
        background.spawn(async move {
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&[&channel, &events_channel]).await {
                        Ok(()) => {
                            // Whatever was published while unsubscribed is unknown.
                            if let Some(l1) = &l1 {
                                l1.invalidate_all();
                            }
                            bus.resync().await;
                            bus.0.subscribed.store(true, Ordering::Release);
                            ::metrics::gauge!(metrics::REDIS_SUBSCRIBED).set(1.0);
                            tracing::info!("subscribed to L1 invalidations");
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                if message.get_channel_name() == events_channel {
                                    if let Ok(event) =
                                        serde_json::from_slice(message.get_payload_bytes())
                                    {
                                        events.heard(event);
                                    }
                                } else {
                                    bus.apply(l1.as_deref(), message.get_payload_bytes());
                                }
                            }
                            bus.0.subscribed.store(false, Ordering::Release);
                            ::metrics::gauge!(metrics::REDIS_SUBSCRIBED).set(0.0);
                            tracing::warn!("lost the L1 invalidation subscription; reconnecting");
                        }
                        Err(err) => tracing::warn!(%err, "could not subscribe to L1 invalidations"),
                    },
                    Err(err) => tracing::warn!(%err, "could not reach Redis for L1 invalidations"),
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        });
    }

    /// Starts from the counter as it is now: what came before is flushed already.
    async fn resync(&self) {
        let Some(redis) = &self.0.redis else {
            return;
        };
        let mut connection = redis.link.connection.clone();
        if let Ok(seq) = connection.get::<_, Option<u64>>(&redis.seq_key).await {
            self.0.sequence.lock().resubscribed(seq.unwrap_or(0));
        }
    }

    /// Compares the invalidation counter with what this instance applied, every
    /// [`SEQUENCE_CHECK`], until `background` stops.
    pub fn spawn_sequence_check(&self, l1: Option<Arc<L1>>, background: &Background) {
        if self.0.redis.is_none() {
            return;
        }
        let bus = self.clone();
        background.spawn(async move {
            let mut ticks = tokio::time::interval(SEQUENCE_CHECK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => bus.check_sequence(l1.as_deref()).await,
                    () = bus.0.applied.notified() => {}
                }
                bus.acknowledge().await;
            }
        });
    }

    /// Stops vouching for this instance's L1 and withdraws its acknowledgement, so purges stop
    /// waiting for it: a departing instance may still get requests while the load balancer
    /// catches up, and those must not be served from an L1 that no purge waits for.
    pub async fn depart(&self) {
        self.0.departed.store(true, Ordering::Release);
        let Some(redis) = &self.0.redis else {
            return;
        };
        let key = format!("{}{}", redis.ack_prefix, self.0.instance_id);
        let mut connection = redis.link.connection.clone();
        if let Err(err) = connection.del::<_, ()>(&key).await {
            tracing::warn!(%err, "could not withdraw the acknowledgement; it lapses by itself");
        }
    }

    /// Tells the others (see [`Bus::wait_until_applied`]) which invalidation this instance has
    /// applied, while it trusts its L1: an instance that does not lets its acknowledgement lapse.
    async fn acknowledge(&self) {
        let Some(redis) = &self.0.redis else {
            return;
        };
        if self.l1_max_age(true).is_some() {
            return;
        }
        let key = format!("{}{}", redis.ack_prefix, self.0.instance_id);
        let applied = self.0.sequence.lock().applied();
        let mut connection = redis.link.connection.clone();
        let ttl = ACK_TTL.as_millis() as u64;
        if let Err(err) = connection.pset_ex::<_, _, ()>(&key, applied, ttl).await {
            tracing::warn!(%err, "could not acknowledge the applied invalidations");
        }
    }

    /// One sequence check: compares the counter with what this instance applied (see
    /// [`Sequence::checked`]).
    async fn check_sequence(&self, l1: Option<&L1>) {
        let Some(redis) = &self.0.redis else {
            return;
        };
        // Read first: what is applied while the counter is read is newer than `current`.
        let applied = self.0.sequence.lock().applied();
        let mut connection = redis.link.connection.clone();
        let read = connection.get::<_, Option<u64>>(&redis.seq_key).await;
        let mut sequence = self.0.sequence.lock();
        let action = match read {
            Ok(current) => {
                let every = SEQUENCE_CHECK.as_millis() as i64;
                sequence.checked(applied, current.unwrap_or(0), now_ms(), every)
            }
            Err(err) => {
                sequence.check_failed();
                tracing::warn!(%err, "could not check the invalidation sequence; not trusting L1");
                Action::Keep
            }
        };
        // Flushed before the lock is let go: the acknowledgement reads the sequence under it.
        if action == Action::Flush {
            if let Some(l1) = l1 {
                l1.invalidate_all();
            }
        }
        let trusted_until_ms = sequence.trusted_until_ms();
        drop(sequence);
        self.0
            .trusted_until_ms
            .store(trusted_until_ms, Ordering::Release);
        if action == Action::Flush {
            ::metrics::counter!(metrics::L1_SEQUENCE_FLUSHES).increment(1);
            tracing::warn!("an invalidation was lost or Redis lost its counter; L1 flushed");
        }
    }

    fn apply(&self, l1: Option<&L1>, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Invalidation>(payload) else {
            tracing::warn!("ignoring a malformed L1 invalidation");
            return;
        };
        if let Some(position) = message.position {
            self.0.horizon.raise(position);
        }
        let heard = Heard {
            seq: message.seq,
            own: message.origin == self.0.instance_id,
            tags: message.tags,
            all: message.all,
        };
        // Applied, then acknowledged: never the other way round. The lock is held while the L1
        // drops the entries, so a check cannot see the number before they are gone.
        let mut sequence = self.0.sequence.lock();
        match (sequence.heard(heard), l1) {
            (Action::Drop(tags), Some(l1)) => l1.invalidate(&tags),
            (Action::Flush, Some(l1)) => l1.invalidate_all(),
            _ => 0,
        };
        drop(sequence);
        self.0.applied.notify_one();
    }
}
