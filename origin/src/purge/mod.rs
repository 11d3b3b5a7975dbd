//! The purge pipeline: data changes purge the origin's own tiers and then the CDN, durably.
//!
//! A write records what it makes stale ([`Outbox::record`]) in the same transaction as the
//! change, one delivery per target: the origin's shared tiers ([`tiers`], with Redis) and
//! each CDN provider. The tiers are cleared at once after commit and retried by a sweeper
//! if that fails. The [`dispatcher`] drains the CDN deliveries of purges whose tiers are
//! clear: it merges and batches them ([`coalesce`]), paces each provider with a token bucket,
//! retries timeouts, 5xx and 429 with backoff (honouring `Retry-After`), and records every
//! outcome ([`deliveries`]). A crash between commit and delivery loses nothing: the rows are
//! there after a restart.

pub mod coalesce;
pub mod deliveries;
pub mod dispatcher;
pub mod providers;
pub mod tiers;

use std::sync::Arc;

use forecastin_shared::dto::{DeliveryStatus, EntityEvent, PurgeRequest, PurgeStatus};
use sqlx::{Any, Transaction};
use tokio::sync::Notify;

use crate::{
    clock::now_ms,
    db::{retry, Db},
    flags::{self, Flags},
};
use tiers::Tiers;

/// What caused a purge.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Write,
    Admin,
}

/// Records purges for the origin's tiers and the configured providers, clears the tiers once
/// they commit, and wakes the dispatcher.
#[derive(Clone, Default)]
pub struct Outbox {
    providers: Arc<[&'static str]>,
    wake: Arc<Notify>,
    /// `None` in tools that serve nothing.
    tiers: Option<Tiers>,
    flags: Option<Flags>,
}

impl Outbox {
    pub fn new(providers: Vec<&'static str>, tiers: Tiers, flags: Flags) -> Self {
        Self {
            providers: providers.into(),
            wake: Arc::new(Notify::new()),
            tiers: Some(tiers),
            flags: Some(flags),
        }
    }

    /// Stores `request` (with a data write's change `event`) and a pending delivery per
    /// target inside `tx`; returns its id. Every purge goes to every provider, whatever the
    /// flags: `ff.cdn_integration` rolls out what the CDN may store, and a page it stored
    /// before the rollout shrank must still be purged.
    pub async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        source: Source,
        request: &PurgeRequest,
        event: Option<&EntityEvent>,
    ) -> Result<String, sqlx::Error> {
        let id = crate::id::random_hex()[..24].to_owned();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO purges (id, source, request, event, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(match source {
            Source::Write => "write",
            Source::Admin => "admin",
        })
        .bind(serde_json::to_string(request).expect("purge requests serialize"))
        .bind(event.map(|e| serde_json::to_string(e).expect("events serialize")))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let tiers = self
            .tiers
            .as_ref()
            .map(|_| (deliveries::TIERS, tiers::COMMITTER_GRACE.as_millis()));
        let cdn = self.providers.iter().map(|p| (*p, 0));
        for (provider, delay) in tiers.into_iter().chain(cdn) {
            sqlx::query(
                "INSERT INTO purge_deliveries (purge_id, provider, status, next_attempt_at_ms) \
                 VALUES ($1, $2, 'pending', $3)",
            )
            .bind(&id)
            .bind(provider)
            .bind(now + delay as i64)
            .execute(&mut **tx)
            .await?;
        }
        Ok(id)
    }

    /// What follows once the purge's transaction committed, in order (`position` is a data
    /// write's WAL position when there are read replicas):
    /// 1. the hot pages a purge by tags removes are claimed for a new render, so that readers
    ///    (the CDN's refreshes for an earlier purge, still under way) wait for it instead of
    ///    reading the database beside it ([`crate::cache::warm`]);
    /// 2. the purge's first delivery, at once: every instance's tiers drop what it covers and
    ///    its change event goes out ([`Tiers::clear`]); if that fails, the sweepers retry it;
    /// 3. the claimed pages are rendered again, in the background;
    /// 4. the dispatcher wakes for the CDN deliveries, which wait for the first one.
    pub async fn committed(
        &self,
        purge_id: &str,
        request: &PurgeRequest,
        event: Option<EntityEvent>,
        position: Option<u64>,
    ) {
        if let Some(tiers) = &self.tiers {
            let committed_at_ms = now_ms();
            let claimed = tiers.claim_hot(request);
            match tiers.clear([(purge_id, request, event)], position).await {
                Ok(()) => {
                    tiers.rewarm_in_background(claimed);
                    tiers.cleared(purge_id, committed_at_ms).await;
                }
                Err(err) => {
                    tracing::warn!(%err, purge = purge_id, "could not clear the shared tiers; the sweepers retry")
                }
            }
        }
        self.wake.notify_one();
    }

    /// Whether this instance's data changes purge the CDN softly (`ff.predictive_preload`): our
    /// edge refreshes the pages in place before it acknowledges (from the re-rendered tiers);
    /// Fastly marks them stale and may serve the old page once more while it refetches.
    pub fn soft_purges(&self) -> bool {
        self.flags
            .as_ref()
            .is_some_and(|flags| flags.on_this_instance(flags::PREDICTIVE_PRELOAD))
    }

    pub(crate) fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

#[derive(sqlx::FromRow)]
struct PurgeRow {
    id: String,
    source: String,
    request: String,
    created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    provider: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    delivered_at_ms: Option<i64>,
}

/// The purges, newest first, with their deliveries: one by id, or a page by status.
pub struct PurgeLog {
    pub db: Db,
}

impl PurgeLog {
    pub async fn get(&self, id: &str) -> Result<Option<PurgeStatus>, sqlx::Error> {
        let rows: Vec<PurgeRow> = retry(|| async {
            sqlx::query_as("SELECT id, source, request, created_at_ms FROM purges WHERE id = $1")
                .bind(id)
                .fetch_all(&mut *self.db.primary.acquire().await?)
                .await
        })
        .await?;
        Ok(self.with_deliveries(rows).await?.pop())
    }

    /// Up to `limit` purges with a delivery in `status`, older than the `(created, id)` cursor.
    pub async fn by_status(
        &self,
        status: &str,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<PurgeStatus>, sqlx::Error> {
        let (created, id) = before.unwrap_or((i64::MAX, ""));
        let rows: Vec<PurgeRow> = retry(|| async {
            sqlx::query_as(
                "SELECT id, source, request, created_at_ms FROM purges p \
                 WHERE EXISTS (SELECT 1 FROM purge_deliveries d WHERE d.purge_id = p.id \
                 AND d.status = $1) AND (created_at_ms < $2 OR (created_at_ms = $2 AND id < $3)) \
                 ORDER BY created_at_ms DESC, id DESC LIMIT $4",
            )
            .bind(status)
            .bind(created)
            .bind(id)
            .bind(limit)
            .fetch_all(&mut *self.db.primary.acquire().await?)
            .await
        })
        .await?;
        self.with_deliveries(rows).await
    }

    async fn with_deliveries(&self, rows: Vec<PurgeRow>) -> Result<Vec<PurgeStatus>, sqlx::Error> {
        let mut purges = Vec::with_capacity(rows.len());
        for row in rows {
            let deliveries: Vec<DeliveryRow> = retry(|| async {
                sqlx::query_as(
                    "SELECT provider, status, attempts, last_error, delivered_at_ms \
                     FROM purge_deliveries WHERE purge_id = $1 ORDER BY provider",
                )
                .bind(&row.id)
                .fetch_all(&mut *self.db.primary.acquire().await?)
                .await
            })
            .await?;
            purges.push(PurgeStatus {
                request: serde_json::from_str(&row.request).unwrap_or_default(),
                id: row.id,
                source: row.source,
                created_at_ms: row.created_at_ms,
                deliveries: deliveries
                    .into_iter()
                    .map(|d| DeliveryStatus {
                        provider: d.provider,
                        status: d.status,
                        attempts: d.attempts,
                        last_error: d.last_error,
                        delivered_at_ms: d.delivered_at_ms,
                    })
                    .collect(),
            });
        }
        Ok(purges)
    }
}
