//! L2: rendered responses shared by every instance, in Redis, with a TTL, between each
//! instance's L1 and the database. Invalidated by the same tags as L1 and the CDN.
//!
//! A fill must not put back what a concurrent write just invalidated. The invalidation
//! sequence of [`crate::bus`] is the guard: a reader notes it before reading the database and
//! its fill is stored (by a script, atomically) only if it has not moved; a writer moves it
//! before deleting the tagged entries. A Redis outage degrades to L1 + database: L2 calls
//! time out fast and are skipped for a second after a failure.
//!
//! With read replicas the writer stores its WAL position beside the sequence, and a reader
//! raises its write horizon to it with the same read, so the database read behind a fill is
//! served by a replica that has the write (see `crate::db::replicas`).

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use redis::{aio::ConnectionManager, AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::{
    clock::now_ms,
    cluster::{RedisLink, INVALIDATION_SEQ, WRITE_HORIZON},
    db::replicas::WriteHorizon,
    metrics,
};

/// How long L2 is skipped after a Redis error.
const BACKOFF_MS: i64 = 1_000;

/// Stores an entry and indexes it under its tags, only if the sequence is unchanged.
/// KEYS: sequence, entry, tag sets…; ARGV: expected sequence, value, TTL seconds.
const FILL: &str = r"
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[2])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return 1
";

/// Deletes every entry indexed under the given tag sets, and the sets. KEYS: tag sets.
const INVALIDATE: &str = r"
local dropped = 0
for i = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for _, key in ipairs(members) do dropped = dropped + redis.call('DEL', key) end
  redis.call('DEL', KEYS[i])
end
return dropped
";

/// A response as stored in L2: enough to render it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub status: u16,
    pub body: String,
    pub tags: Vec<String>,
    /// Entries stored before preloads were kept have none.
    #[serde(default)]
    pub preload: Vec<String>,
}

pub struct L2 {
    connection: ConnectionManager,
    /// Keys of entries and of tag sets: the prefix, then the entry's key or the tag.
    entry_prefix: String,
    tag_prefix: String,
    seq_key: String,
    horizon_key: String,
    horizon: WriteHorizon,
    ttl_secs: u64,
    skip_until_ms: AtomicI64,
    fill_script: Script,
    invalidate_script: Script,
}

impl L2 {
    /// L2 over `link`, entries living `ttl`.
    pub fn new(link: &RedisLink, horizon: WriteHorizon, ttl: Duration) -> Self {
        Self {
            connection: link.connection.clone(),
            entry_prefix: link.key("l2:"),
            tag_prefix: link.key("l2-tag:"),
            seq_key: link.key(INVALIDATION_SEQ),
            horizon_key: link.key(WRITE_HORIZON),
            horizon,
            ttl_secs: ttl.as_secs().max(1),
            skip_until_ms: AtomicI64::new(0),
            fill_script: Script::new(FILL),
            invalidate_script: Script::new(INVALIDATE),
        }
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}{key}", self.entry_prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}{tag}", self.tag_prefix)
    }

    fn available(&self) -> bool {
        now_ms() >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, err: &redis::RedisError) {
        ::metrics::counter!(metrics::L2_ERRORS).increment(1);
        self.skip_until_ms
            .store(now_ms() + BACKOFF_MS, Ordering::Relaxed);
        tracing::warn!(%err, "L2 unavailable; skipping it for a second");
    }

    /// The invalidation sequence now (`None`: L2 unavailable, so do not fill); raises the
    /// write horizon to the newest write's position.
    pub async fn sequence(&self) -> Option<String> {
        if !self.available() {
            return None;
        }
        let mut connection = self.connection.clone();
        match connection
            .mget::<_, (Option<String>, Option<u64>)>(&[&self.seq_key, &self.horizon_key])
            .await
        {
            Ok((seq, position)) => {
                if let Some(position) = position {
                    self.horizon.raise(position);
                }
                Some(seq.unwrap_or_else(|| "0".to_owned()))
            }
            Err(err) => {
                self.failed(&err);
                None
            }
        }
    }

    pub async fn get(&self, key: &str) -> Option<Stored> {
        if !self.available() {
            return None;
        }
        let mut connection = self.connection.clone();
        match connection
            .get::<_, Option<String>>(self.entry_key(key))
            .await
        {
            Ok(Some(value)) => {
                ::metrics::counter!(metrics::L2_HITS).increment(1);
                serde_json::from_str(&value).ok()
            }
            Ok(None) => {
                ::metrics::counter!(metrics::L2_MISSES).increment(1);
                None
            }
            Err(err) => {
                self.failed(&err);
                None
            }
        }
    }

    /// Stores `stored` under `key` unless an invalidation happened since `sequence`.
    pub async fn fill(&self, key: &str, stored: &Stored, sequence: &str) {
        let mut invocation = self.fill_script.prepare_invoke();
        invocation.key(&self.seq_key).key(self.entry_key(key));
        for tag in &stored.tags {
            invocation.key(self.tag_key(tag));
        }
        invocation
            .arg(sequence)
            .arg(serde_json::to_string(stored).expect("entries serialize"))
            .arg(self.ttl_secs);
        let mut connection = self.connection.clone();
        if let Err(err) = invocation.invoke_async::<i64>(&mut connection).await {
            self.failed(&err);
        }
    }

    /// Deletes the entries carrying `tags`, or every entry.
    pub async fn invalidate(&self, tags: &[String], all: bool) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        if all {
            // Entries and tag sets alike (`…:l2:` and `…:l2-tag:`).
            let pattern = format!("{}*", self.entry_prefix.trim_end_matches(':'));
            let keys: Vec<String> = {
                let mut iter = connection.scan_match::<_, String>(&pattern).await?;
                let mut keys = Vec::new();
                while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                    keys.push(key?);
                }
                keys
            };
            for chunk in keys.chunks(500) {
                connection.del::<_, ()>(chunk).await?;
            }
            return Ok(());
        }
        let mut invocation = self.invalidate_script.prepare_invoke();
        for tag in tags {
            invocation.key(self.tag_key(tag));
        }
        invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map(|_| ())
    }
}
