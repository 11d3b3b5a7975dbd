//! The bus between origin instances: L1 invalidations published by the instance that
//! committed a write and applied by every other one.
//!
//! Without `REDIS_URL` the origin is a single instance and the bus does nothing. With it,
//! invalidations go over Redis Pub/Sub, which delivers at most once, so an instance must never
//! trust its L1 beyond what it heard:
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
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use forecastin_shared::dto::EntityEvent;

use super::{
    events::Events,
    link::{RedisLink, INVALIDATION_SEQ, WRITE_HORIZON},
    registry::Registry,
};
use crate::{
    background::Background, cache::l1::L1, clock::now_ms, db::replicas::WriteHorizon, metrics,
};

/// Wait before resubscribing after the subscription dropped.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// How often the invalidation counter is compared with the last invalidation applied.
pub const SEQUENCE_CHECK: Duration = Duration::from_millis(250);
/// Lifetime of an instance's acknowledgement: it lapses soon after the instance stops
/// trusting its L1 (or dies), and waiting for it stops.
const ACK_TTL: Duration = Duration::from_secs(1);

/// Numbers and publishes an event once per announcement. KEYS: the event counter, the
/// announcement's key. ARGV: the highest id this instance has seen, where a counter that Redis
/// lost starts again ([`first_event_id`]), how long the announcement's key lives (ms), the
/// channel, and the event's JSON after its id ([`after_id`]).
///
/// The id is one more than the counter, and than the highest id this instance has seen. A
/// missing counter (a new deployment, or a Redis that lost its data) starts again past any id
/// issued before, so that a client resuming with an old id is told to refetch rather than
/// given nothing; an existing one just counts on, so ids stay consecutive across a rolling
/// deploy and a client resumes on a new instance without a needless reset. The id is kept
/// under the announcement's key, so that a retried announcement (a tiers clear that failed
/// after it, say) returns the same id and publishes nothing.
const ANNOUNCE: &str = r#"
local known = redis.call('GET', KEYS[2])
if known then
  return tonumber(known)
end
local id
if redis.call('EXISTS', KEYS[1]) == 1 then
  id = redis.call('INCR', KEYS[1])
else
  id = tonumber(ARGV[2]) + 1
end
local seen = tonumber(ARGV[1])
if id <= seen then
  id = seen + 1
end
-- As an integer: Lua would write a number this large as `1.8e+15`.
local written = string.format('%d', id)
redis.call('SET', KEYS[1], written)
redis.call('SET', KEYS[2], written, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], '{"id":' .. written .. ARGV[5])
return id
"#;

/// How long an announcement's id is kept: far longer than the tiers clear that made it is
/// retried for (a few hundred milliseconds apart while Redis is up).
const ANNOUNCED_FOR: Duration = Duration::from_secs(3_600);

/// An event's JSON without its leading `{"id":N`, which [`ANNOUNCE`] writes with the id it
/// assigns: the message stays an [`EntityEvent`], as instances of every version read it.
fn after_id(event: &EntityEvent) -> String {
    let json = serde_json::to_string(&EntityEvent {
        id: 0,
        ..event.clone()
    })
    .expect("events serialize");
    json.strip_prefix(r#"{"id":0"#)
        .expect("an event's JSON starts with its id")
        .to_owned()
}

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
    events_channel: String,
    event_seq_key: String,
    announce_script: redis::Script,
    /// Acknowledgement keys: the prefix, then the instance id.
    ack_prefix: String,
    /// Where the event counter starts again if Redis lost it.
    restart_ids_at: u64,
}

struct Inner {
    instance_id: String,
    redis: Option<RedisBus>,
    events: Events,
    /// Event ids of the in-process bus; with Redis, the highest id seen.
    local_event_seq: AtomicU64,
    /// Wakes the acknowledgement of a newly applied invalidation.
    applied: tokio::sync::Notify,
    subscribed: AtomicBool,
    last_seq: AtomicU64,
    /// Until when (ms since the epoch) the last sequence check vouches for the L1.
    trusted_until_ms: AtomicI64,
    disconnected_ttl: Duration,
    horizon: WriteHorizon,
    /// Set when the instance departs: it no longer vouches for its L1.
    departed: AtomicBool,
}

#[derive(Clone)]
pub struct Bus(Arc<Inner>);

/// Where the event ids start again after a restart that lost the count (the in-process bus's,
/// or Redis's): past any id issued before, so that a client resuming with an old id is told
/// to refetch rather than given nothing: the start time in microseconds (fewer than a million
/// events a second are made), which stays below 2^53, the integers JavaScript holds exactly.
fn first_event_id() -> u64 {
    u64::try_from(crate::clock::now_ms())
        .unwrap_or_default()
        .saturating_mul(1_000)
}

impl Bus {
    /// The single-instance bus: publishing does nothing, the L1 is always trusted.
    pub fn in_process(instance_id: String, disconnected_ttl: Duration) -> Self {
        Bus(Arc::new(Inner {
            instance_id,
            redis: None,
            events: Events::default(),
            local_event_seq: AtomicU64::new(first_event_id()),
            applied: tokio::sync::Notify::new(),
            subscribed: AtomicBool::new(true),
            last_seq: AtomicU64::new(0),
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
                events_channel: link.key("events"),
                event_seq_key: link.key("event-seq"),
                announce_script: redis::Script::new(ANNOUNCE),
                ack_prefix: link.key("applied:"),
                restart_ids_at: first_event_id(),
                link,
            }),
            events: Events::default(),
            local_event_seq: AtomicU64::new(0),
            applied: tokio::sync::Notify::new(),
            subscribed: AtomicBool::new(false),
            last_seq: AtomicU64::new(0),
            trusted_until_ms: AtomicI64::new(0),
            disconnected_ttl,
            horizon,
            departed: AtomicBool::new(false),
        }))
    }

    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }

    /// The entity change events this instance has heard of, for its websocket clients.
    pub fn events(&self) -> &Events {
        &self.0.events
    }

    /// Publishes an entity change to the websocket clients of every instance, once per
    /// `announcement` (the purge that carries it): a retry gets the first call's id and
    /// publishes nothing. With Redis the event id comes from a shared counter and the event
    /// reaches this instance's own clients at once and the others' through Pub/Sub.
    pub async fn announce(
        &self,
        announcement: &str,
        mut event: EntityEvent,
    ) -> redis::RedisResult<()> {
        let Some(redis) = &self.0.redis else {
            event.id = self.0.local_event_seq.fetch_add(1, Ordering::AcqRel) + 1;
            self.0.events.deliver(event);
            return Ok(());
        };
        event.id = redis
            .announce_script
            .key(&redis.event_seq_key)
            .key(redis.link.key(&format!("announced:{announcement}")))
            .arg(self.0.local_event_seq.load(Ordering::Acquire))
            .arg(redis.restart_ids_at)
            .arg(ANNOUNCED_FOR.as_millis() as u64)
            .arg(&redis.events_channel)
            .arg(after_id(&event))
            .invoke_async(&mut redis.link.connection.clone())
            .await?;
        // Delivered again if an earlier attempt delivered it: the events skip a known id.
        self.deliver(event);
        Ok(())
    }

    fn deliver(&self, event: EntityEvent) {
        self.0.local_event_seq.fetch_max(event.id, Ordering::AcqRel);
        self.0.events.deliver(event);
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

    /// Applies other instances' invalidations to `l1` and takes their entity events, until
    /// `background` stops.
    pub fn spawn_subscriber(&self, l1: Option<Arc<L1>>, background: &Background) {
        let Some(redis) = &self.0.redis else {
            return;
        };
        let (client, channel, events_channel) = (
            redis.link.client.clone(),
            redis.channel.clone(),
            redis.events_channel.clone(),
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
                                        bus.deliver(event);
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
            self.0.last_seq.store(seq.unwrap_or(0), Ordering::Release);
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
            let mut awaited = None;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        awaited = bus.check_sequence(l1.as_deref(), awaited).await;
                    }
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
        let applied = self.0.last_seq.load(Ordering::Acquire);
        let mut connection = redis.link.connection.clone();
        let ttl = ACK_TTL.as_millis() as u64;
        if let Err(err) = connection.pset_ex::<_, _, ()>(&key, applied, ttl).await {
            tracing::warn!(%err, "could not acknowledge the applied invalidations");
        }
    }

    /// One sequence check. `awaited` is a number the previous check saw in the counter and
    /// this instance had not applied: by now its message should have arrived. Returns the
    /// number the next check awaits.
    async fn check_sequence(&self, l1: Option<&L1>, awaited: Option<u64>) -> Option<u64> {
        let redis = self.0.redis.as_ref()?;
        // Read first: what is applied while the counter is read is newer than `current`.
        let applied = self.0.last_seq.load(Ordering::Acquire);
        let mut connection = redis.link.connection.clone();
        let current = match connection.get::<_, Option<u64>>(&redis.seq_key).await {
            Ok(seq) => seq.unwrap_or(0),
            Err(err) => {
                // Invalidations may be going on that this instance cannot hear of.
                self.0.trusted_until_ms.store(0, Ordering::Release);
                tracing::warn!(%err, "could not check the invalidation sequence; not trusting L1");
                return awaited;
            }
        };
        let lost = awaited.is_some_and(|awaited| applied < awaited);
        let reset = current < applied;
        if lost || reset {
            if let Some(l1) = l1 {
                l1.invalidate_all();
            }
            if reset {
                self.0.last_seq.store(current, Ordering::Release);
            } else {
                self.0.last_seq.fetch_max(current, Ordering::AcqRel);
            }
            ::metrics::counter!(metrics::L1_SEQUENCE_FLUSHES).increment(1);
            tracing::warn!(
                current,
                applied,
                "an invalidation was lost or Redis lost its counter; L1 flushed"
            );
        }
        let vouched = now_ms() + 3 * SEQUENCE_CHECK.as_millis() as i64;
        self.0.trusted_until_ms.store(vouched, Ordering::Release);
        (current > self.0.last_seq.load(Ordering::Acquire)).then_some(current)
    }

    fn apply(&self, l1: Option<&L1>, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Invalidation>(payload) else {
            tracing::warn!("ignoring a malformed L1 invalidation");
            return;
        };
        if let Some(position) = message.position {
            self.0.horizon.raise(position);
        }
        let previous = self.0.last_seq.load(Ordering::Acquire);
        let gap = previous != 0 && message.seq > previous.saturating_add(1);
        // The publisher applied its own message before publishing it.
        if let Some(l1) = l1.filter(|_| gap || message.origin != self.0.instance_id) {
            if gap || message.all {
                l1.invalidate_all();
            } else {
                l1.invalidate(&message.tags);
            }
        }
        // Applied, then acknowledged: never the other way round.
        self.0.last_seq.fetch_max(message.seq, Ordering::AcqRel);
        self.0.applied.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use forecastin_shared::dto::ChangeKind;

    use super::*;

    #[test]
    fn an_announced_event_is_its_json_with_the_assigned_id_in_front() {
        let event = EntityEvent {
            id: 17,
            change: ChangeKind::Updated,
            entity_id: "FR".to_owned(),
            path: vec!["world".to_owned(), "FR".to_owned()],
            entity: None,
            at_ms: 5,
        };
        let published = format!(r#"{{"id":{}{}"#, 1_800_000_000_000_000u64, after_id(&event));
        let read: EntityEvent = serde_json::from_str(&published).unwrap();
        assert_eq!(read.id, 1_800_000_000_000_000);
        assert_eq!(EntityEvent { id: 17, ..read }, event);
    }
}
