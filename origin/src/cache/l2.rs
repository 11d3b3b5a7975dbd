//! L2: rendered responses shared by every instance, in Redis, with a TTL, between each
//! instance's L1 and the database. Invalidated by the same tags as L1 and the CDN.
//!
//! A fill must not put back what a concurrent write just invalidated. The invalidation
//! sequence of [`crate::cluster::bus`] is the guard: a reader notes it before reading the database and
//! its fill is stored (by a script, atomically) only if it has not moved; a writer moves it
//! before deleting the tagged entries. A Redis outage degrades to L1 + database: L2 calls
//! time out fast and are skipped for a second after a failure.
//!
//! With read replicas the writer stores its WAL position beside the sequence, and a reader
//! raises its write horizon to it with the same read, so the database read behind a fill is
//! served by a replica that has the write (see `crate::db::replicas`).
//!
//! Nothing a reader sends makes Redis hold or do unbounded work: entries are stored under a
//! fixed-size digest of their key; each tag's index is a sorted set of those digests scored by
//! expiry, trimmed of expired members at every fill and held to a bound
//! ([`Limits::max_tag_members`]; a fill into a full index evicts the entry that would expire
//! first, so readers who fill it can churn L2 but not turn it off), and an invalidation
//! empties a set in batches of [`INVALIDATE_BATCH`], so no one script blocks Redis for long.
//! The key names carry the format's version (`l2v2`): instances of the release before keep to
//! their own entries and tag sets during a rollout (every instance clears L2, so each clears
//! its own).

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use redis::{aio::ConnectionManager, AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::{
    clock::now_ms,
    cluster::link::{RedisLink, INVALIDATION_SEQ, WRITE_HORIZON},
    db::replicas::WriteHorizon,
    ops::metrics,
};

/// How long L2 is skipped after a Redis error.
const BACKOFF_MS: i64 = 1_000;

/// Entries deleted by one call while a tag is invalidated.
pub const INVALIDATE_BATCH: usize = 1_000;

/// Stores an entry and indexes it under its tags, only if the sequence is unchanged; a tag
/// whose index is full gives up the entry that would expire first (-1: raced an
/// invalidation; otherwise how many entries were evicted). KEYS: sequence, entry, tag sets…;
/// ARGV: expected sequence, value, TTL seconds, digest, most members, entry key prefix.
const FILL: &str = r"
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[3])
local evicted = 0
redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl)
for i = 3, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZREM', KEYS[i], ARGV[4])
  while redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[5]) do
    local first = redis.call('ZPOPMIN', KEYS[i])
    redis.call('UNLINK', ARGV[6] .. first[1])
    evicted = evicted + 1
  end
  redis.call('ZADD', KEYS[i], now + ttl * 1000, ARGV[4])
  redis.call('EXPIRE', KEYS[i], ttl)
end
return evicted
";

/// Deletes up to a batch of the entries indexed under a tag, taking them out of its index;
/// returns how many it took. KEYS: the tag's index; ARGV: entry key prefix, batch size.
const INVALIDATE: &str = r"
local taken = redis.call('ZPOPMIN', KEYS[1], ARGV[2])
for i = 1, #taken, 2 do redis.call('UNLINK', ARGV[1] .. taken[i]) end
return #taken / 2
";

/// A response as stored in L2: enough to render it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub status: u16,
    pub body: String,
    pub tags: Vec<String>,
    /// Entries stored before preloads were kept have none.
    #[serde(default)]
    pub preload: Vec<String>,
}

/// How long entries live, and how many one tag may index.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub ttl: Duration,
    /// The tag of every page below the root reaches it first, so L2 holds about this many
    /// pages; each costs its tags' indexes about 100 bytes of Redis memory per tag.
    pub max_tag_members: usize,
}

pub struct L2 {
    connection: ConnectionManager,
    /// Keys of entries and of tag sets: the prefix, then the entry's key digest or the tag.
    entry_prefix: String,
    tag_prefix: String,
    seq_key: String,
    horizon_key: String,
    horizon: WriteHorizon,
    ttl_secs: u64,
    max_tag_members: usize,
    skip_until_ms: AtomicI64,
    fill_script: Script,
    invalidate_script: Script,
}

impl L2 {
    /// L2 over `link`, within `limits`.
    pub fn new(link: &RedisLink, horizon: WriteHorizon, limits: Limits) -> Self {
        Self {
            connection: link.connection.clone(),
            entry_prefix: link.key("l2v2:"),
            tag_prefix: link.key("l2v2-tag:"),
            seq_key: link.key(INVALIDATION_SEQ),
            horizon_key: link.key(WRITE_HORIZON),
            horizon,
            ttl_secs: limits.ttl.as_secs().max(1),
            max_tag_members: limits.max_tag_members.max(1),
            skip_until_ms: AtomicI64::new(0),
            fill_script: Script::new(FILL),
            invalidate_script: Script::new(INVALIDATE),
        }
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}{}", self.entry_prefix, digest(key))
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

    pub async fn get(&self, key: &str) -> Option<Entry> {
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

    /// Stores `entry` under `key` unless an invalidation happened since `sequence`; a tag that
    /// indexes the most live entries it may gives up the one that would expire first.
    pub async fn fill(&self, key: &str, entry: &Entry, sequence: &str) {
        let mut invocation = self.fill_script.prepare_invoke();
        let id = digest(key);
        invocation
            .key(&self.seq_key)
            .key(format!("{}{id}", self.entry_prefix));
        for tag in &entry.tags {
            invocation.key(self.tag_key(tag));
        }
        invocation
            .arg(sequence)
            .arg(serde_json::to_string(entry).expect("entries serialize"))
            .arg(self.ttl_secs)
            .arg(&id)
            .arg(self.max_tag_members)
            .arg(&self.entry_prefix);
        let mut connection = self.connection.clone();
        match invocation.invoke_async::<i64>(&mut connection).await {
            Ok(evicted) if evicted > 0 => {
                ::metrics::counter!(metrics::L2_TAG_EVICTIONS).increment(evicted as u64)
            }
            Ok(_) => {}
            Err(err) => self.failed(&err),
        }
    }

    /// Deletes the entries carrying `tags`, or every entry.
    pub async fn invalidate(&self, tags: &[String], all: bool) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        if all {
            // Entries and tag sets alike (`…:l2v2:` and `…:l2v2-tag:`).
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
        for tag in tags {
            let index = self.tag_key(tag);
            loop {
                let taken: usize = self
                    .invalidate_script
                    .key(&index)
                    .arg(&self.entry_prefix)
                    .arg(INVALIDATE_BATCH)
                    .invoke_async(&mut connection)
                    .await?;
                if taken < INVALIDATE_BATCH {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The fixed-size name of an entry in Redis: the first 128 bits of its key's SHA-256.
fn digest(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}
