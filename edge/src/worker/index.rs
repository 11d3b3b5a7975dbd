//! The index of stored entries, a Durable Object with SQLite storage: which cache keys carry
//! which tags, so purges by tag and prefix can find them (the Cache API can only delete by
//! key); which purges ran recently, so a response fetched before a purge and stored after it
//! is taken back out; and which signed purges were already used, to refuse replays.
//!
//! It serves the edge-direct purge only (development and single-location deployments:
//! `cache.delete` clears one data centre), and is on only where that is configured
//! (`PURGE_INDEX_SHARDS`; production purges through the zone API and has none). It is off the
//! hot path: a fill registers from `waitUntil`, after the client has its answer. Rows expire
//! with their entries (one kept briefly after a registration that timed out may leave a row
//! that outlives it, harmless: a purge deletes what is no longer there).
//!
//! Keys are spread over several objects by a hash of the key (`index-0` …), so no one object
//! takes every fill. Each object's single-threaded execution orders the registrations of its
//! keys against purges; a purge is resolved by every object. A call that fails or outlasts
//! `PURGE_INDEX_TIMEOUT_MS` fails alone: the entry it registered is kept briefly instead.

use std::time::Duration;

use forecastin_shared::signing;
use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{
    durable_object, Delay, DurableObject, Env, Method, Request, RequestInit, Response, Result,
    SqlStorage, SqlStorageValue, State,
};

use super::now_ms;
use crate::core::purge::{indexable, locator, shard_of, Purge};

const BINDING: &str = "EDGE_INDEX";
/// How long purges and nonces are remembered: longer than any origin fetch, and than any
/// window a signature is valid in.
const MEMORY_MS: u64 = signing::NONCE_MEMORY_SECS * 1000;

#[derive(Serialize, Deserialize)]
struct Registration {
    key: String,
    tags: Vec<String>,
    fetch_started_ms: u64,
    /// When storage drops the entry: the row goes then too.
    expires_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Registered {
    keep: bool,
}

#[derive(Serialize, Deserialize)]
struct PurgeCommand {
    nonce: String,
    purge: Purge,
}

/// The keys one object found a purge to cover, and when it recorded the purge.
#[derive(Serialize, Deserialize)]
struct Resolved {
    keys: Vec<String>,
    at_ms: u64,
}

/// The keys a purge covers, and when each object recorded it.
pub struct Resolution {
    pub keys: Vec<String>,
    at_ms: Vec<u64>,
}

impl Resolution {
    /// When the last object recorded the purge: a fetch started after it postdates the purge
    /// in every object.
    pub fn recorded_ms(&self) -> u64 {
        self.at_ms.iter().copied().max().unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize)]
struct Completion {
    keys: Vec<String>,
    /// When the index resolved the purge: a key registered since was stored again after the
    /// cache deleted it, by a fill the purge does not cover, and stays indexed. Absent (from
    /// a Worker of an earlier version during a deploy): every row stays, and rows of deleted
    /// entries expire with them.
    #[serde(default)]
    purged_at_ms: u64,
}

/// Most objects the index is spread over.
const MAX_SHARDS: u32 = 64;
/// How long a call to an object may take, unless `PURGE_INDEX_TIMEOUT_MS` says otherwise.
const DEFAULT_TIMEOUT_MS: u64 = 2_000;

/// The index as configured: how many objects, and how long a call to one may take.
#[derive(Debug, Clone, Copy)]
pub struct Index {
    shards: u32,
    timeout_ms: u64,
}

impl Index {
    /// From `PURGE_INDEX_SHARDS` (unset or 0: no index) and `PURGE_INDEX_TIMEOUT_MS`.
    pub fn configured(
        shards: Option<String>,
        timeout_ms: Option<String>,
    ) -> std::result::Result<Option<Index>, String> {
        let shards = match shards.as_deref().map(str::trim) {
            None | Some("" | "0") => return Ok(None),
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_SHARDS).contains(n))
                .ok_or(format!("PURGE_INDEX_SHARDS must be 0 to {MAX_SHARDS}"))?,
        };
        let timeout_ms = match timeout_ms {
            None => DEFAULT_TIMEOUT_MS,
            Some(ms) => ms
                .trim()
                .parse()
                .map_err(|_| "PURGE_INDEX_TIMEOUT_MS must be a number of milliseconds")?,
        };
        Ok(Some(Index { shards, timeout_ms }))
    }

    /// Sends a command to object `shard`, within the timeout.
    async fn call<T: Serialize>(
        &self,
        env: &Env,
        shard: u32,
        path: &str,
        body: &T,
    ) -> Result<Response> {
        // No call takes no time: with a timeout of 0 every call fails, without being made.
        let too_slow =
            || worker::Error::RustError(format!("index-{shard} took over {} ms", self.timeout_ms));
        if self.timeout_ms == 0 {
            return Err(too_slow());
        }
        let stub = env
            .durable_object(BINDING)?
            .get_by_name(&format!("index-{shard}"))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&serde_json::to_string(body)?)));
        let request = Request::new_with_init(&format!("https://index{path}"), &init)?;
        let call = std::pin::pin!(stub.fetch_with_request(request));
        let delay = std::pin::pin!(Delay::from(Duration::from_millis(self.timeout_ms)));
        match select(call, delay).await {
            Either::Left((response, _)) => response,
            Either::Right(_) => Err(too_slow()),
        }
    }

    /// Records that `key` is stored with `tags` until `expires_at_ms`; `false` means a purge
    /// covering it ran after its fetch started, and it must be deleted. An error (the object
    /// failed or was slow, or the entry is past the bounds of [`indexable`]) leaves it
    /// unindexed.
    pub async fn register(
        &self,
        env: &Env,
        key: &str,
        tags: Vec<String>,
        fetch_started_ms: u64,
        expires_at_ms: u64,
    ) -> Result<bool> {
        if !indexable(key, &tags) {
            return Err(worker::Error::RustError(
                "the entry is past the index's bounds".into(),
            ));
        }
        let registration = Registration {
            key: key.to_owned(),
            tags,
            fetch_started_ms,
            expires_at_ms,
        };
        let shard = shard_of(key, self.shards);
        let mut response = self.call(env, shard, "/register", &registration).await?;
        Ok(response.json::<Registered>().await?.keep)
    }

    /// Resolves a purge to the keys to delete in every object, spends its nonce there, and
    /// has each remember it so that fills racing it are taken back out; `None` if `nonce` was
    /// used before. Forgets no entry: a purge interrupted before [`Index::complete`] finds
    /// the same keys when the origin retries it.
    pub async fn resolve(
        &self,
        env: &Env,
        nonce: String,
        purge: Purge,
    ) -> Result<Option<Resolution>> {
        let command = PurgeCommand { nonce, purge };
        let mut resolution = Resolution {
            keys: Vec::new(),
            at_ms: Vec::new(),
        };
        // One object after another: purges are rare beside fills, and `join_all` would add
        // 12 KB to the Worker.
        for shard in 0..self.shards {
            let mut response = self.call(env, shard, "/resolve", &command).await?;
            if response.status_code() == 409 {
                return Ok(None);
            }
            let resolved: Resolved = response.json().await?;
            resolution.keys.extend(resolved.keys);
            resolution.at_ms.push(resolved.at_ms);
        }
        // Every object answers the purge's URLs too: each key once.
        resolution.keys.sort_unstable();
        resolution.keys.dedup();
        Ok(Some(resolution))
    }

    /// Marks a purge done once `keys` are deleted from the cache: each object forgets its
    /// rows of them, but not those registered again since it recorded the purge (see
    /// [`Completion`]).
    pub async fn complete(
        &self,
        env: &Env,
        keys: Vec<String>,
        resolution: &Resolution,
    ) -> Result<()> {
        let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); self.shards as usize];
        for key in keys {
            by_shard[shard_of(&key, self.shards) as usize].push(key);
        }
        for (shard, (keys, &purged_at_ms)) in
            by_shard.into_iter().zip(&resolution.at_ms).enumerate()
        {
            if !keys.is_empty() {
                let completion = Completion { keys, purged_at_ms };
                self.call(env, shard as u32, "/complete", &completion)
                    .await?;
            }
        }
        Ok(())
    }
}

#[durable_object]
pub struct EdgeIndex {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct KeyRow {
    key: String,
}

#[derive(Deserialize)]
struct PurgeRow {
    purge: String,
}

fn text(value: &str) -> SqlStorageValue {
    SqlStorageValue::String(value.to_owned())
}

fn integer(value: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(value as i64)
}

impl EdgeIndex {
    fn keys(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<String>> {
        Ok(self
            .sql
            .exec(query, bindings)?
            .to_array::<KeyRow>()?
            .into_iter()
            .map(|row| row.key)
            .collect())
    }

    /// Drops what no longer matters: expired entries, and purges and nonces older than
    /// [`MEMORY_MS`].
    fn forget_old(&self, now: u64) -> Result<()> {
        let horizon = integer(now.saturating_sub(MEMORY_MS));
        self.sql
            .exec("DELETE FROM purges WHERE at < ?", vec![horizon.clone()])?;
        self.sql
            .exec("DELETE FROM nonces WHERE at < ?", vec![horizon])?;
        for table in ["stored_tags", "registrations"] {
            self.sql.exec(
                &format!("DELETE FROM {table} WHERE key IN (SELECT key FROM stored_entries WHERE expires_at < ?)"),
                vec![integer(now)],
            )?;
        }
        self.sql.exec(
            "DELETE FROM stored_entries WHERE expires_at < ?",
            vec![integer(now)],
        )?;
        Ok(())
    }

    /// Forgets the rows of `keys`, except those registered at or after `purged_at_ms`: a
    /// reader's fill may store and register a key between the purge's delete and this call.
    fn forget_keys(&self, keys: &[String], purged_at_ms: u64) -> Result<()> {
        for key in keys {
            let registered_since = self.keys(
                "SELECT key FROM registrations WHERE key = ? AND at >= ?",
                vec![text(key), integer(purged_at_ms)],
            )?;
            if !registered_since.is_empty() {
                continue;
            }
            for table in ["stored_entries", "stored_tags", "registrations"] {
                self.sql.exec(
                    &format!("DELETE FROM {table} WHERE key = ?"),
                    vec![text(key)],
                )?;
            }
        }
        Ok(())
    }

    fn register(&self, registration: Registration) -> Result<Registered> {
        self.forget_old(now_ms())?;
        let recent = self
            .sql
            .exec(
                "SELECT purge FROM purges WHERE at >= ?",
                vec![integer(registration.fetch_started_ms)],
            )?
            .to_array::<PurgeRow>()?;
        let purged_since = recent.iter().any(|row| {
            serde_json::from_str::<Purge>(&row.purge)
                .map(|purge| purge.covers(&registration.key, &registration.tags))
                .unwrap_or(true)
        });
        if purged_since {
            return Ok(Registered { keep: false });
        }
        let key = text(&registration.key);
        self.sql.exec(
            "INSERT OR REPLACE INTO stored_entries (key, locator, expires_at) VALUES (?, ?, ?)",
            vec![
                key.clone(),
                text(locator(&registration.key)),
                integer(registration.expires_at_ms),
            ],
        )?;
        self.sql.exec(
            "INSERT OR REPLACE INTO registrations (key, at) VALUES (?, ?)",
            vec![key.clone(), integer(now_ms())],
        )?;
        self.sql
            .exec("DELETE FROM stored_tags WHERE key = ?", vec![key.clone()])?;
        for tag in &registration.tags {
            self.sql.exec(
                "INSERT OR IGNORE INTO stored_tags (tag, key) VALUES (?, ?)",
                vec![text(tag), key.clone()],
            )?;
        }
        Ok(Registered { keep: true })
    }

    fn resolve(&self, command: PurgeCommand) -> Result<Option<Resolved>> {
        let now = now_ms();
        self.forget_old(now)?;
        let seen = self
            .sql
            .exec(
                "SELECT nonce AS key FROM nonces WHERE nonce = ?",
                vec![text(&command.nonce)],
            )?
            .to_array::<KeyRow>()?;
        if !seen.is_empty() {
            return Ok(None);
        }
        let purge = &command.purge;
        let mut keys = purge.keys.clone();
        if purge.everything {
            keys.extend(self.keys("SELECT key FROM stored_entries", vec![])?);
        }
        for tag in &purge.tags {
            keys.extend(self.keys("SELECT key FROM stored_tags WHERE tag = ?", vec![text(tag)])?);
        }
        for prefix in &purge.prefixes {
            keys.extend(self.keys(
                "SELECT key FROM stored_entries WHERE substr(locator, 1, length(?1)) = ?1",
                vec![text(prefix)],
            )?);
        }
        keys.sort();
        keys.dedup();
        // Spent now, so the same signed request cannot run twice at once; a purge cut short
        // is retried by the origin as a new request with a new nonce.
        self.sql.exec(
            "INSERT INTO nonces (nonce, at) VALUES (?, ?)",
            vec![text(&command.nonce), integer(now)],
        )?;
        self.sql.exec(
            "INSERT INTO purges (at, purge) VALUES (?, ?)",
            vec![integer(now), text(&serde_json::to_string(purge)?)],
        )?;
        Ok(Some(Resolved { keys, at_ms: now }))
    }

    fn complete(&self, completion: Completion) -> Result<()> {
        self.forget_keys(&completion.keys, completion.purged_at_ms)
    }
}

impl DurableObject for EdgeIndex {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in [
            "CREATE TABLE IF NOT EXISTS stored_entries (key TEXT PRIMARY KEY, locator TEXT NOT NULL, expires_at INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS stored_entries_by_expiry ON stored_entries (expires_at)",
            "CREATE TABLE IF NOT EXISTS stored_tags (tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, key))",
            "CREATE INDEX IF NOT EXISTS stored_tags_by_key ON stored_tags (key)",
            "DROP TABLE IF EXISTS entries",
            "DROP TABLE IF EXISTS entry_tags",
            // When each key was last registered (a table of its own: storage created before it
            // keeps working).
            "CREATE TABLE IF NOT EXISTS registrations (key TEXT PRIMARY KEY, at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS purges (at INTEGER NOT NULL, purge TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, at INTEGER NOT NULL)",
        ] {
            if let Err(err) = sql.exec(statement, None) {
                worker::console_error!("index schema: {err}");
            }
        }
        Self { sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/register" => Response::from_json(&self.register(req.json().await?)?),
            "/resolve" => match self.resolve(req.json().await?)? {
                Some(resolved) => Response::from_json(&resolved),
                None => Response::error("replayed purge", 409),
            },
            "/complete" => {
                self.complete(req.json().await?)?;
                Response::empty()
            }
            _ => Response::error("not found", 404),
        }
    }
}
