//! The instance registry: every instance announces itself in Redis with a TTL of three
//! heartbeats and refreshes it every heartbeat, so `GET /admin/v1/instances` lists the live
//! ones and a dead instance disappears within three heartbeats. Without Redis the registry
//! is this instance alone.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use forecastin_shared::dto::InstanceInfo;
use futures_util::TryStreamExt;
use redis::AsyncCommands;

use crate::{clock::now_ms, cluster::RedisLink, l1::L1};

pub struct Registry {
    me: InstanceInfo,
    requests: Arc<AtomicU64>,
    /// Requests being served right now.
    pub inflight: AtomicI64,
    l1: Option<Arc<L1>>,
    redis: Option<RedisLink>,
    interval: Duration,
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

    /// This instance, now.
    fn current(&self) -> InstanceInfo {
        InstanceInfo {
            heartbeat_at_ms: now_ms(),
            requests: self.requests.load(Ordering::Relaxed),
            l1_entries: self.l1.as_ref().map_or(0, |l1| l1.len() as u64),
            ..self.me.clone()
        }
    }

    /// Heartbeats for as long as the process runs.
    pub fn spawn_heartbeat(self: &Arc<Self>) {
        let Some(link) = self.redis.clone() else {
            return;
        };
        let registry = self.clone();
        tokio::spawn(async move {
            let ttl_ms = (registry.interval.as_millis() as u64 * 3).max(1);
            let key = Self::key(&link, &registry.me.id);
            let mut ticks = tokio::time::interval(registry.interval);
            loop {
                ticks.tick().await;
                let info = serde_json::to_string(&registry.current()).expect("instances serialize");
                let mut connection = link.connection.clone();
                if let Err(err) = connection.pset_ex::<_, _, ()>(&key, info, ttl_ms).await {
                    tracing::warn!(%err, "heartbeat failed");
                }
            }
        });
    }

    /// The live instances, by id.
    pub async fn live(&self) -> Vec<InstanceInfo> {
        let Some(link) = &self.redis else {
            return vec![self.current()];
        };
        let mut connection = link.connection.clone();
        let pattern = Self::key(link, "*");
        let scanned = match connection.scan_match::<_, String>(&pattern).await {
            Ok(iter) => iter.try_collect().await,
            Err(err) => Err(err),
        };
        let keys: Vec<String> = match scanned {
            Ok(keys) => keys,
            Err(err) => {
                tracing::warn!(%err, "could not list instances");
                return vec![self.current()];
            }
        };
        let mut instances = Vec::with_capacity(keys.len());
        for key in keys {
            if let Ok(Some(value)) = connection.get::<_, Option<String>>(&key).await {
                if let Ok(info) = serde_json::from_str::<InstanceInfo>(&value) {
                    instances.push(info);
                }
            }
        }
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances
    }
}
