//! Entity change events for websocket clients: numbered and published by the instance that
//! committed a write ([`Events::announce`]), carried to every instance over Redis Pub/Sub
//! (the bus's subscription hands them over: [`Events::heard`]), kept in a bounded replay
//! buffer and fanned out to each instance's clients.
//!
//! Each event is serialised once, as it arrives; every client is sent the same frame, and
//! the replay buffer holds frames too, bounded in count and in bytes (an event carries the
//! entity, whose attributes may be large).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use forecastin_shared::dto::{EntityEvent, StreamMessage};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::link::RedisLink;

/// Events kept for clients that reconnect (at 200 writes a second, five seconds' worth)...
const REPLAY: usize = 1_024;
/// ...and the bytes their frames may take at most.
const REPLAY_BYTES: usize = 8 * 1024 * 1024;
/// Events in flight to this instance's clients before a lagging client is dropped.
const FAN_OUT: usize = 4_096;

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

/// Where the event ids start again after a restart that lost the count (the in-process bus's,
/// or Redis's): past any id issued before, so that a client resuming with an old id is told
/// to refetch rather than given nothing: the start time in microseconds (fewer than a million
/// events a second are made), which stays below 2^53, the integers JavaScript holds exactly.
fn first_event_id() -> u64 {
    u64::try_from(crate::clock::now_ms())
        .unwrap_or_default()
        .saturating_mul(1_000)
}

/// An event with the frame every client is sent for it.
#[derive(Debug)]
pub struct Delivered {
    pub event: EntityEvent,
    pub frame: Utf8Bytes,
}

impl Delivered {
    fn new(event: EntityEvent) -> Self {
        let frame = serde_json::to_string(&StreamMessage::Event(event.clone()))
            .expect("stream messages serialize");
        Self {
            event,
            frame: Utf8Bytes::from(frame),
        }
    }
}

#[derive(Clone, Default)]
struct Replay {
    events: VecDeque<Arc<Delivered>>,
    bytes: usize,
}

#[derive(Clone)]
pub struct Events {
    fan_out: broadcast::Sender<Arc<Delivered>>,
    replay: Arc<Mutex<Replay>>,
    /// The ids given out here without Redis; with it, the highest id heard of.
    last_id: Arc<AtomicU64>,
    /// `None`: the single instance, which numbers its events itself.
    publisher: Option<Arc<Publisher>>,
}

/// Where and how events are numbered and published, with Redis.
struct Publisher {
    link: RedisLink,
    channel: String,
    counter_key: String,
    script: redis::Script,
    /// Where the counter starts again if Redis lost it.
    restart_ids_at: u64,
}

impl Default for Events {
    /// The single instance's events, numbered here.
    fn default() -> Self {
        Self {
            fan_out: broadcast::channel(FAN_OUT).0,
            replay: Arc::default(),
            last_id: Arc::new(AtomicU64::new(first_event_id())),
            publisher: None,
        }
    }
}

/// What a reconnecting client missed.
pub enum Missed {
    /// These events, in order.
    Events(Vec<Arc<Delivered>>),
    /// More than the replay buffer holds.
    TooMany,
}

impl Events {
    /// The events of the instances that share `link`, numbered by one counter in it.
    pub fn redis(link: RedisLink) -> Self {
        Self {
            last_id: Arc::new(AtomicU64::new(0)),
            publisher: Some(Arc::new(Publisher {
                channel: link.key("events"),
                counter_key: link.key("event-seq"),
                script: redis::Script::new(ANNOUNCE),
                restart_ids_at: first_event_id(),
                link,
            })),
            ..Self::default()
        }
    }

    /// The Pub/Sub channel the instances' events travel on, with Redis.
    pub fn channel(&self) -> Option<&str> {
        self.publisher
            .as_deref()
            .map(|publisher| publisher.channel.as_str())
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
        let Some(publisher) = &self.publisher else {
            event.id = self.last_id.fetch_add(1, Ordering::AcqRel) + 1;
            self.deliver(event);
            return Ok(());
        };
        let link = &publisher.link;
        event.id = publisher
            .script
            .key(&publisher.counter_key)
            .key(link.key(&format!("announced:{announcement}")))
            .arg(self.last_id.load(Ordering::Acquire))
            .arg(publisher.restart_ids_at)
            .arg(ANNOUNCED_FOR.as_millis() as u64)
            .arg(&publisher.channel)
            .arg(after_id(&event))
            .invoke_async(&mut link.connection.clone())
            .await?;
        // Delivered again if an earlier attempt delivered it: a known id is skipped.
        self.heard(event);
        Ok(())
    }

    /// Takes an event published by any instance (this one included).
    pub fn heard(&self, event: EntityEvent) {
        self.last_id.fetch_max(event.id, Ordering::AcqRel);
        self.deliver(event);
    }

    fn deliver(&self, event: EntityEvent) {
        let id = event.id;
        // The publishing instance delivers its own event at once and again from Pub/Sub.
        let known = |replay: &Replay| {
            replay
                .events
                .iter()
                .rev()
                .take(64)
                .any(|known| known.event.id == id)
        };
        if known(&self.replay.lock()) {
            return;
        }
        // Serialised outside the lock; checked again in case the other copy came meanwhile.
        let delivered = Arc::new(Delivered::new(event));
        {
            let mut replay = self.replay.lock();
            if known(&replay) {
                return;
            }
            if replay.events.back().is_some_and(|last| last.event.id >= id) {
                // Ids can arrive out of order from two publishers: keep the buffer sorted.
                let at = replay.events.partition_point(|e| e.event.id < id);
                replay.events.insert(at, delivered.clone());
            } else {
                replay.events.push_back(delivered.clone());
            }
            replay.bytes += delivered.frame.len();
            while replay.events.len() > REPLAY || replay.bytes > REPLAY_BYTES {
                let Some(oldest) = replay.events.pop_front() else {
                    break;
                };
                replay.bytes -= oldest.frame.len();
            }
        }
        let _ = self.fan_out.send(delivered);
    }

    /// A receiver of every event from now on, and what was missed after `last_seen`.
    pub fn subscribe(
        &self,
        last_seen: Option<u64>,
    ) -> (broadcast::Receiver<Arc<Delivered>>, Missed) {
        let replay = self.replay.lock();
        let replay = &replay.events;
        let receiver = self.fan_out.subscribe();
        let missed = match last_seen {
            None => Missed::Events(Vec::new()),
            // Nothing kept (this instance just started: what the client missed is unknown),
            // an id from before the oldest kept event, or one far past the newest (a client
            // of another cluster, or made up; an id a little ahead is one still on its way
            // here): it cannot be resumed, only refetched.
            Some(last)
                if replay.is_empty()
                    || replay
                        .front()
                        .is_some_and(|first| first.event.id > last.saturating_add(1))
                    || replay.back().is_some_and(|newest| {
                        last > newest.event.id.saturating_add(REPLAY as u64)
                    }) =>
            {
                Missed::TooMany
            }
            Some(last) => Missed::Events(
                replay
                    .iter()
                    .filter(|e| e.event.id > last)
                    .cloned()
                    .collect(),
            ),
        };
        (receiver, missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forecastin_shared::dto::ChangeKind;

    fn event(id: u64) -> EntityEvent {
        EntityEvent {
            id,
            change: ChangeKind::Updated,
            entity_id: "FR".into(),
            path: vec!["world".into(), "FR".into()],
            entity: None,
            at_ms: 0,
        }
    }

    #[test]
    fn an_announced_event_is_its_json_with_the_assigned_id_in_front() {
        let event = event(17);
        let published = format!(r#"{{"id":{}{}"#, 1_800_000_000_000_000u64, after_id(&event));
        let read: EntityEvent = serde_json::from_str(&published).unwrap();
        assert_eq!(read.id, 1_800_000_000_000_000);
        assert_eq!(EntityEvent { id: 17, ..read }, event);
    }

    #[test]
    fn an_instance_with_nothing_to_replay_asks_a_resuming_client_to_refetch() {
        let events = Events::default();
        let (_, resumed) = events.subscribe(Some(7));
        assert!(matches!(resumed, Missed::TooMany));
        let (_, fresh) = events.subscribe(None);
        assert!(matches!(fresh, Missed::Events(events) if events.is_empty()));
    }

    #[test]
    fn an_id_never_issued_asks_for_a_refetch() {
        let events = Events::default();
        events.deliver(event(1));
        let (_, just_ahead) = events.subscribe(Some(2));
        assert!(matches!(just_ahead, Missed::Events(ref e) if e.is_empty()));
        for last in [REPLAY as u64 + 2, u64::MAX - 1, u64::MAX] {
            let (_, missed) = events.subscribe(Some(last));
            assert!(matches!(missed, Missed::TooMany), "{last}");
        }
    }

    #[test]
    fn a_reconnecting_client_gets_what_it_missed_in_order() {
        let events = Events::default();
        for id in [1, 2, 4, 3] {
            events.deliver(event(id));
        }
        let (_, missed) = events.subscribe(Some(2));
        let Missed::Events(missed) = missed else {
            panic!("expected a replay")
        };
        assert_eq!(
            missed.iter().map(|e| e.event.id).collect::<Vec<_>>(),
            [3, 4]
        );
    }

    #[test]
    fn an_event_delivered_twice_is_kept_once() {
        let events = Events::default();
        for id in [1, 2, 3, 2, 1] {
            events.deliver(event(id));
        }
        let Missed::Events(all) = events.subscribe(Some(0)).1 else {
            panic!("expected a replay")
        };
        assert_eq!(
            all.iter().map(|e| e.event.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn every_client_gets_one_shared_frame_and_the_replay_is_bounded_in_bytes() {
        let events = Events::default();
        let (mut first, _) = events.subscribe(None);
        let (mut second, _) = events.subscribe(None);
        events.deliver(event(1));
        let (a, b) = (first.try_recv().unwrap(), second.try_recv().unwrap());
        assert!(Arc::ptr_eq(&a, &b), "one delivery, shared");
        assert!(
            a.frame.as_str().starts_with(r#"{"type":"event""#),
            "{}",
            a.frame.as_str()
        );

        let big = |id| EntityEvent {
            entity: Some(forecastin_shared::dto::EntitySummary {
                id: "FR".into(),
                parent_id: Some("world".into()),
                kind: forecastin_shared::dto::EntityKind::Country,
                name: "x".repeat(512 * 1024),
                depth: 1,
            }),
            ..event(id)
        };
        for id in 2..=40 {
            events.deliver(big(id));
        }
        let replay = events.replay.lock();
        assert!(replay.bytes <= REPLAY_BYTES, "{}", replay.bytes);
        assert!(replay.events.len() < 20, "{} kept", replay.events.len());
        assert_eq!(replay.events.back().unwrap().event.id, 40);
        let counted: usize = replay.events.iter().map(|e| e.frame.len()).sum();
        assert_eq!(counted, replay.bytes);
    }

    #[test]
    fn a_client_too_far_behind_is_told_to_reset() {
        let events = Events::default();
        for id in 1..=(REPLAY as u64 + 10) {
            events.deliver(event(id));
        }
        assert!(matches!(events.subscribe(Some(3)).1, Missed::TooMany));
        assert!(
            matches!(events.subscribe(Some(20)).1, Missed::Events(ref e) if e.len() == REPLAY - 10)
        );
    }
}
