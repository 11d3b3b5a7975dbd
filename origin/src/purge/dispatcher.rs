//! The background task that drains the outbox.
//!
//! Each round claims due deliveries (a lease: their next attempt is pushed past the time the
//! round may take, so another origin instance skips them, and a crashed instance's claims come
//! due again), merges them per provider into batches, sends each batch when the provider's
//! token bucket allows, and records the outcome of every delivery. On PostgreSQL the claim
//! uses `FOR UPDATE SKIP LOCKED`, so several instances drain one outbox without double work.

use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU32,
    time::Duration,
};

use forecastin_shared::dto::PurgeRequest;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::Client;

use super::{
    coalesce::batches,
    now_ms,
    providers::{Outcome, Provider},
    Outbox,
};
use crate::{
    db::{retry, Backend, Db},
    metrics,
};

/// Deliveries claimed per round.
const CLAIM_LIMIT: i64 = 500;
/// How long a claim holds: longer than a round can take.
const LEASE_MS: i64 = 60_000;
/// First retry delay; doubled per attempt up to the configured maximum.
const BASE_RETRY_MS: u64 = 250;
/// How often an idle dispatcher looks for deliveries that came due (retries, other instances).
const IDLE_POLL: Duration = Duration::from_millis(250);

pub struct Dispatcher {
    db: Db,
    providers: Vec<(Provider, DefaultDirectRateLimiter)>,
    client: Client,
    outbox: Outbox,
    retry_max_ms: u64,
}

#[derive(sqlx::FromRow)]
struct Claimed {
    purge_id: String,
    provider: String,
    attempts: i64,
}

/// A stored purge as read back: its request, or why it cannot be read.
type Stored = Result<PurgeRequest, String>;

#[derive(sqlx::FromRow)]
struct Pending {
    id: String,
    request: String,
    created_at_ms: i64,
}

/// The token bucket of a provider: `per_minute` requests per minute, bursts of `burst`.
fn bucket(per_minute: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_minute = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst))
}

/// Exponential backoff with jitter: half the doubled delay plus a random part of the other
/// half, so retries of many deliveries spread out.
pub fn backoff(attempts: i64, max_ms: u64) -> Duration {
    let doubled = BASE_RETRY_MS
        .saturating_mul(1 << attempts.clamp(0, 20))
        .min(max_ms);
    let half = doubled / 2;
    Duration::from_millis(half + rand::rng().random_range(0..=half))
}

impl Dispatcher {
    pub fn new(
        db: Db,
        providers: Vec<Provider>,
        outbox: Outbox,
        timeout: Duration,
        retry_max_ms: u64,
    ) -> Self {
        Self {
            db,
            providers: providers
                .into_iter()
                .map(|provider| {
                    let limiter = bucket(provider.rate.0, provider.rate.1);
                    (provider, limiter)
                })
                .collect(),
            client: Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client with a timeout builds"),
            outbox,
            retry_max_ms,
        }
    }

    /// Runs forever (until the task is dropped).
    pub async fn run(self) {
        let wake = self.outbox.waker();
        loop {
            match self.round().await {
                Ok(0) => {
                    let _ = tokio::time::timeout(IDLE_POLL, wake.notified()).await;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "purge dispatcher round failed; retrying");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
            self.report_depth().await;
        }
    }

    /// One round: claim, deliver, record. Returns how many deliveries it settled.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let claimed = self.claim().await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<&str> = claimed.iter().map(|c| c.purge_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let pending = self.load(&ids).await?;
        // The CDN refetches as soon as it is purged: the replicas must have the write by then.
        self.db.wait_until_replicas_replayed().await;
        let mut by_provider: BTreeMap<&str, Vec<&Claimed>> = BTreeMap::new();
        for delivery in &claimed {
            by_provider
                .entry(delivery.provider.as_str())
                .or_default()
                .push(delivery);
        }
        let work = self.providers.iter().filter_map(|(provider, limiter)| {
            let deliveries = by_provider.remove(provider.name())?;
            Some(self.deliver(provider, limiter, deliveries, &pending))
        });
        futures_util::future::join_all(work).await;
        Ok(claimed.len())
    }

    async fn claim(&self) -> Result<Vec<Claimed>, sqlx::Error> {
        let skip_locked = match self.db.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE purge_deliveries SET next_attempt_at_ms = $1 + $2 \
             WHERE (purge_id, provider) IN (SELECT purge_id, provider FROM purge_deliveries \
             WHERE status = 'pending' AND next_attempt_at_ms <= $1 \
             ORDER BY next_attempt_at_ms LIMIT $3{skip_locked}) \
             RETURNING purge_id, provider, attempts"
        );
        retry(|| async {
            sqlx::query_as(&sql)
                .bind(now_ms())
                .bind(LEASE_MS)
                .bind(CLAIM_LIMIT)
                .fetch_all(&mut *self.db.primary.acquire().await?)
                .await
        })
        .await
    }

    async fn load(&self, ids: &[&str]) -> Result<HashMap<String, (Stored, i64)>, sqlx::Error> {
        let mut pending = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let placeholders = (1..=chunk.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT id, request, created_at_ms FROM purges WHERE id IN ({placeholders})"
            );
            let rows: Vec<Pending> = retry(|| async {
                chunk
                    .iter()
                    .fold(sqlx::query_as(&sql), |q, id| q.bind(*id))
                    .fetch_all(&mut *self.db.primary.acquire().await?)
                    .await
            })
            .await?;
            for row in rows {
                let request = serde_json::from_str(&row.request)
                    .map_err(|err| format!("the stored purge no longer parses: {err}"));
                pending.insert(row.id, (request, row.created_at_ms));
            }
        }
        Ok(pending)
    }

    /// Sends a provider's claimed deliveries and records each one's outcome.
    async fn deliver(
        &self,
        provider: &Provider,
        limiter: &DefaultDirectRateLimiter,
        deliveries: Vec<&Claimed>,
        pending: &HashMap<String, (Stored, i64)>,
    ) {
        let requests: Vec<(String, PurgeRequest)> = deliveries
            .iter()
            .filter_map(|d| match pending.get(&d.purge_id) {
                Some((Ok(request), _)) => Some((d.purge_id.clone(), request.clone())),
                _ => None,
            })
            .collect();
        // The worst outcome of the batches that carry each purge.
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        for batch in batches(&requests, provider.batch_limit) {
            limiter.until_ready().await;
            let outcome = provider.send(&self.client, &batch).await;
            ::metrics::counter!(metrics::PURGE_REQUESTS, "provider" => provider.name(), "outcome" => outcome_label(&outcome)).increment(1);
            for purge_id in batch.purges {
                let worst = worse(outcomes.remove(&purge_id), &outcome);
                outcomes.insert(purge_id, worst);
            }
        }
        for delivery in deliveries {
            // Delivered only when every batch carrying it was (or it named nothing to send);
            // a purge that cannot be read is never counted as delivered.
            let outcome = match pending.get(&delivery.purge_id) {
                Some((Ok(_), _)) => outcomes
                    .remove(&delivery.purge_id)
                    .unwrap_or(Outcome::Delivered),
                Some((Err(reason), _)) => Outcome::Failed(reason.clone()),
                None => Outcome::Failed("the purge's record is gone".into()),
            };
            let created = pending
                .get(&delivery.purge_id)
                .map_or(now_ms(), |(_, created)| *created);
            if let Err(err) = self
                .settle(provider.name(), delivery, &outcome, created)
                .await
            {
                // The lease runs out and the delivery is tried again: nothing is lost.
                tracing::warn!(%err, purge = %delivery.purge_id, "could not record a purge outcome");
            }
        }
    }

    async fn settle(
        &self,
        provider: &'static str,
        delivery: &Claimed,
        outcome: &Outcome,
        created_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let (sql, error, at) = match outcome {
            Outcome::Delivered => {
                ::metrics::histogram!(metrics::PURGE_LATENCY, "provider" => provider)
                    .record((now - created_at_ms).max(0) as f64 / 1000.0);
                (
                    "UPDATE purge_deliveries SET status = 'delivered', attempts = attempts + 1, \
                     last_error = $1, delivered_at_ms = $2 WHERE purge_id = $3 AND provider = $4",
                    None,
                    now,
                )
            }
            Outcome::Retry { after, error } => {
                let delay =
                    backoff(delivery.attempts, self.retry_max_ms).max(after.unwrap_or_default());
                (
                    "UPDATE purge_deliveries SET attempts = attempts + 1, last_error = $1, \
                     next_attempt_at_ms = $2 WHERE purge_id = $3 AND provider = $4",
                    Some(error.clone()),
                    now + delay.as_millis() as i64,
                )
            }
            Outcome::Failed(error) => {
                tracing::error!(provider, purge = %delivery.purge_id, %error, "purge refused by the provider");
                (
                    "UPDATE purge_deliveries SET status = 'failed', attempts = attempts + 1, \
                     last_error = $1, delivered_at_ms = $2 WHERE purge_id = $3 AND provider = $4",
                    Some(error.clone()),
                    now,
                )
            }
        };
        ::metrics::counter!(metrics::PURGE_DELIVERIES, "provider" => provider, "outcome" => outcome_label(outcome)).increment(1);
        retry(|| async {
            sqlx::query(sql)
                .bind(error.as_deref())
                .bind(at)
                .bind(&delivery.purge_id)
                .bind(provider)
                .execute(&mut *self.db.primary.acquire().await?)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn report_depth(&self) {
        let depth: Result<(i64, Option<i64>), sqlx::Error> = async {
            sqlx::query_as(
                "SELECT COUNT(*), MIN(p.created_at_ms) FROM purge_deliveries d \
                 JOIN purges p ON p.id = d.purge_id WHERE d.status = 'pending'",
            )
            .fetch_one(&mut *self.db.primary.acquire().await?)
            .await
        }
        .await;
        if let Ok((count, oldest)) = depth {
            ::metrics::gauge!(metrics::PURGE_OUTBOX_DEPTH).set(count as f64);
            let age = oldest.map_or(0.0, |oldest| (now_ms() - oldest).max(0) as f64 / 1000.0);
            ::metrics::gauge!(metrics::PURGE_OLDEST_PENDING).set(age);
        }
    }
}

/// A delivery fails if any of its batches failed, else retries if any must be retried.
fn worse(previous: Option<Outcome>, new: &Outcome) -> Outcome {
    match (previous, new) {
        (Some(failed @ Outcome::Failed(_)), _) => failed,
        (_, Outcome::Failed(error)) => Outcome::Failed(error.clone()),
        (Some(retry @ Outcome::Retry { .. }), _) => retry,
        (_, new) => new.clone(),
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retried",
        Outcome::Failed(_) => "failed",
    }
}

/// Starts the dispatcher for the configured providers, if there are any.
pub fn spawn(dispatcher: Dispatcher) -> Option<tokio::task::JoinHandle<()>> {
    if dispatcher.providers.is_empty() {
        return None;
    }
    Some(tokio::spawn(dispatcher.run()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum() {
        for attempts in 0..12 {
            let doubled = (BASE_RETRY_MS << attempts).min(10_000);
            let delay = backoff(attempts, 10_000).as_millis() as u64;
            assert!(
                (doubled / 2..=doubled).contains(&delay),
                "{attempts}: {delay}"
            );
        }
    }
}
