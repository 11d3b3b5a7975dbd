//! The instance registry: every instance announces itself in Redis with a TTL of three
//! heartbeats and refreshes it every heartbeat, so `GET /admin/v1/instances` lists the live
//! ones and a dead instance disappears within three heartbeats; a stopping one leaves at once
//! ([`Registry::depart`]). Without Redis the registry is this instance alone.
//!
//! The live ids are one sorted set scored by when each heartbeat lapses, so listing them (every
//! dispatcher round) reads that set, not the keyspace, which holds every L2 entry too.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use forecastin_shared::dto::InstanceInfo;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::link::RedisLink;
use crate::{background::Background, cache::l1::L1, clock::now_ms};

pub struct Registry {
    me: InstanceInfo,
    requests: Arc<AtomicU64>,
    /// Requests being served right now.
    pub inflight: AtomicI64,
    l1: Option<Arc<L1>>,
    redis: Option<RedisLink>,
    interval: Duration,
    /// Cancelled when the instance departs: the heartbeat stops and takes the instance out.
    departed: CancellationToken,
    heartbeat: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Registry {
    pub fn new(
        id: String,
        address: String,
        redis: Option<RedisLink>,
        l1: Option<Arc<L1>>,
        interval: Duration,
    ) -> Self {
        Self {
            me: InstanceInfo {
                id,
                address,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at_ms: now_ms(),
                heartbeat_at_ms: now_ms(),
                requests: 0,
                l1_entries: 0,
            },
            requests: Arc::new(AtomicU64::new(0)),
            inflight: AtomicI64::new(0),
            l1,
            redis,
            interval,
            departed: CancellationToken::new(),
            heartbeat: Default::default(),
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.me.id
    }

    /// The counter the HTTP layer bumps for every request.
    pub fn request_counter(&self) -> Arc<AtomicU64> {
        self.requests.clone()
    }

    fn key(link: &RedisLink, id: &str) -> String {
        link.key(&format!("instance:{id}"))
    }

    /// The set of live ids, scored by when their heartbeat lapses (ms since the epoch).
    fn live_key(link: &RedisLink) -> String {
        link.key("instances")
    }

    /// This instance, now.
    fn current(&self) -> InstanceInfo {
        InstanceInfo {
            heartbeat_at_ms: now_ms(),
            requests: self.requests.load(Ordering::Relaxed),
            l1_entries: self.l1.as_ref().map_or(0, |l1| l1.len() as u64),
            ..self.me.clone()
        }
    }

    /// Heartbeats until the instance departs, then takes it out of the registry: in the same
    /// task, so that no heartbeat under way can put it back. An instance that stops without
    /// departing (`background` stops first) lapses in three heartbeats.
    pub fn spawn_heartbeat(self: &Arc<Self>, background: &Background) {
        let Some(link) = self.redis.clone() else {
            return;
        };
        let registry = self.clone();
        let task = background.spawn(async move {
            let mut ticks = tokio::time::interval(registry.interval);
            loop {
                tokio::select! {
                    () = registry.departed.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                if let Err(err) = registry.beat(&link).await {
                    tracing::warn!(%err, "heartbeat failed");
                }
            }
            if let Err(err) = registry.leave(&link).await {
                tracing::warn!(%err, "could not leave the registry; it lapses in three heartbeats");
            }
        });
        *self.heartbeat.lock() = Some(task);
    }

    /// Announces this instance for three heartbeats, and forgets the ids whose heartbeat
    /// lapsed.
    async fn beat(&self, link: &RedisLink) -> redis::RedisResult<()> {
        let ttl_ms = (self.interval.as_millis() as u64 * 3).max(1);
        let info = serde_json::to_string(&self.current()).expect("instances serialize");
        let now = now_ms();
        redis::pipe()
            .atomic()
            .pset_ex(Self::key(link, &self.me.id), info, ttl_ms)
            .ignore()
            .zadd(Self::live_key(link), &self.me.id, now + ttl_ms as i64)
            .ignore()
            .zrembyscore(Self::live_key(link), "-inf", now)
            .ignore()
            .query_async(&mut link.connection.clone())
            .await
    }

    async fn leave(&self, link: &RedisLink) -> redis::RedisResult<()> {
        redis::pipe()
            .atomic()
            .zrem(Self::live_key(link), &self.me.id)
            .ignore()
            .del(Self::key(link, &self.me.id))
            .ignore()
            .query_async(&mut link.connection.clone())
            .await
    }

    /// Leaves the registry at once: the others stop counting this instance (a purge no
    /// longer waits for it).
    pub async fn depart(&self) {
        self.departed.cancel();
        let heartbeat = self.heartbeat.lock().take();
        if let Some(heartbeat) = heartbeat {
            let _ = heartbeat.await;
        }
    }

    /// The ids of the live instances, read each time: an instance that departs drops out at
    /// once.
    pub async fn live_ids(&self) -> Vec<String> {
        let Some(link) = &self.redis else {
            return vec![self.me.id.clone()];
        };
        let live: redis::RedisResult<Vec<String>> = link
            .connection
            .clone()
            .zrangebyscore(Self::live_key(link), now_ms(), "+inf")
            .await;
        live.unwrap_or_else(|err| {
            tracing::warn!(%err, "could not list instances");
            vec![self.me.id.clone()]
        })
    }

    /// The live instances, by id.
    pub async fn live(&self) -> Vec<InstanceInfo> {
        let Some(link) = &self.redis else {
            return vec![self.current()];
        };
        let ids = self.live_ids().await;
        if ids.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = ids.iter().map(|id| Self::key(link, id)).collect();
        let values: Vec<Option<String>> = link
            .connection
            .clone()
            .mget(&keys)
            .await
            .unwrap_or_default();
        let mut instances: Vec<InstanceInfo> = values
            .iter()
            .flatten()
            .filter_map(|value| serde_json::from_str(value).ok())
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances
    }
}
