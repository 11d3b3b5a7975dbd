//! The outbox's delivery rows, as the loops that drain them see them: claim the due ones
//! under a lease, read the purges they deliver, record each outcome.
//!
//! A claim pushes a delivery's next attempt past the time its loop may take, so another
//! origin instance skips it and a crashed instance's claims come due again. On PostgreSQL the
//! claim uses `FOR UPDATE SKIP LOCKED`, so several instances drain one outbox without double
//! work.

use std::{collections::HashMap, time::Duration};

use forecastin_shared::dto::{EntityEvent, PurgeRequest};
use rand::RngExt;

use super::providers::Outcome;
use crate::{
    clock::now_ms,
    db::{composed, placeholders, retry, Backend, Db},
    ops::metrics,
};

/// Deliveries claimed per round.
const CLAIM_LIMIT: i64 = 500;
/// First retry delay; doubled per attempt up to the loop's maximum.
const BASE_RETRY_MS: u64 = 250;

/// The provider name of the deliveries that clear the origin's own tiers (see
/// `super::tiers`): the first of every purge, which its CDN deliveries wait for.
pub const TIERS: &str = "tiers";

/// Which deliveries a loop drains.
#[derive(Debug, Clone, Copy)]
pub enum Due<'a> {
    /// Clearing the origin's own tiers.
    Tiers,
    /// These CDN providers' (the ones this instance is configured for: an instance never holds
    /// a delivery it cannot make), each purge only once its tiers are clear: the CDN refetches
    /// from them.
    Cdn(&'a [&'static str]),
}

impl<'a> Due<'a> {
    /// The condition on the deliveries, and the values of its parameters (numbered from `$4`).
    fn filter(self) -> (String, &'a [&'static str]) {
        match self {
            Due::Tiers => (format!("provider = '{}'", TIERS), &[]),
            Due::Cdn(providers) => (
                format!(
                    "provider IN ({}) AND NOT EXISTS (SELECT 1 FROM purge_deliveries t \
                     WHERE t.purge_id = purge_deliveries.purge_id AND t.provider = '{}' \
                     AND t.status = 'pending')",
                    placeholders(4, providers.len()),
                    TIERS
                ),
                providers,
            ),
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct Claimed {
    pub purge_id: String,
    pub provider: String,
    pub attempts: i64,
}

/// A recorded purge as read back.
pub struct Recorded {
    /// Its request, or why it cannot be read.
    pub request: Result<PurgeRequest, String>,
    /// The change event a data write announces with it.
    pub event: Option<EntityEvent>,
    pub created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    request: String,
    event: Option<String>,
    created_at_ms: i64,
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

/// Claims up to [`CLAIM_LIMIT`] due deliveries of `due` for `lease`.
pub async fn claim(db: &Db, due: Due<'_>, lease: Duration) -> Result<Vec<Claimed>, sqlx::Error> {
    let skip_locked = match db.backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let (condition, providers) = due.filter();
    let sql = format!(
        "UPDATE purge_deliveries SET next_attempt_at_ms = $1 + $2 \
         WHERE (purge_id, provider) IN (SELECT purge_id, provider FROM purge_deliveries \
         WHERE status = 'pending' AND next_attempt_at_ms <= $1 AND {condition} \
         ORDER BY next_attempt_at_ms LIMIT $3{skip_locked}) \
         RETURNING purge_id, provider, attempts"
    );
    retry(|| async {
        let query = sqlx::query_as(composed(&sql))
            .bind(now_ms())
            .bind(lease.as_millis() as i64)
            .bind(CLAIM_LIMIT);
        let mut connection = db.primary.acquire().await?;
        let claimed = providers
            .iter()
            .fold(query, |query, provider| query.bind(*provider))
            .fetch_all(&mut *connection)
            .await?;
        connection.commit().await?;
        Ok::<_, sqlx::Error>(claimed)
    })
    .await
}

/// Extends the claim on the `claimed` deliveries that are still unsettled by `lease` from now:
/// a long round (a provider's token bucket, slow answers) keeps what it is working on.
pub async fn renew(db: &Db, claimed: &[&Claimed], lease: Duration) -> Result<(), sqlx::Error> {
    for chunk in claimed.chunks(300) {
        let rows = (0..chunk.len())
            .map(|n| {
                format!(
                    "(${}, ${}, CAST(${} AS BIGINT))",
                    3 * n + 2,
                    3 * n + 3,
                    3 * n + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        // Settling bumps `attempts`: a row settled since the claim is not ours to extend.
        let sql = format!(
            "UPDATE purge_deliveries SET next_attempt_at_ms = $1 WHERE status = 'pending' \
             AND (purge_id, provider, attempts) IN (VALUES {rows})"
        );
        let until = now_ms() + lease.as_millis() as i64;
        retry(|| async {
            let mut connection = db.primary.acquire().await?;
            chunk
                .iter()
                .fold(sqlx::query(composed(&sql)).bind(until), |q, c| {
                    q.bind(&c.purge_id).bind(&c.provider).bind(c.attempts)
                })
                .execute(&mut *connection)
                .await?;
            connection.commit().await
        })
        .await?;
    }
    Ok(())
}

/// The purges the `claimed` deliveries deliver, by id.
pub async fn load(db: &Db, claimed: &[Claimed]) -> Result<HashMap<String, Recorded>, sqlx::Error> {
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.purge_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut recorded = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let placeholders = placeholders(1, chunk.len());
        let sql = format!(
            "SELECT id, request, event, created_at_ms FROM purges WHERE id IN ({placeholders})"
        );
        let rows: Vec<Row> = retry(|| async {
            chunk
                .iter()
                .fold(sqlx::query_as(composed(&sql)), |q, id| q.bind(*id))
                .fetch_all(&mut *db.primary.acquire().await?)
                .await
        })
        .await?;
        for row in rows {
            let request = serde_json::from_str(&row.request)
                .map_err(|err| format!("the recorded purge no longer parses: {err}"));
            // An unreadable event is not worth a purge: clients refetch on reconnect anyway.
            let event = row.event.and_then(|e| serde_json::from_str(&e).ok());
            recorded.insert(
                row.id,
                Recorded {
                    request,
                    event,
                    created_at_ms: row.created_at_ms,
                },
            );
        }
    }
    Ok(recorded)
}

/// What to record for `delivery`, and when its purge was created: how it was `sent` if its
/// purge could be read, else why not (a purge that cannot be read is never delivered).
pub fn outcome_of(
    recorded: &HashMap<String, Recorded>,
    delivery: &Claimed,
    sent: impl FnOnce() -> Outcome,
) -> (Outcome, i64) {
    match recorded.get(&delivery.purge_id) {
        Some(purge) => match &purge.request {
            Ok(_) => (sent(), purge.created_at_ms),
            Err(reason) => (Outcome::Failed(reason.clone()), purge.created_at_ms),
        },
        None => (
            Outcome::Failed("the purge's record is gone".into()),
            now_ms(),
        ),
    }
}

/// Records how `delivery` went; a retry comes due after a backoff of at most `retry_max_ms`
/// (or later, if the provider asked).
pub async fn settle(
    db: &Db,
    delivery: &Claimed,
    outcome: &Outcome,
    created_at_ms: i64,
    retry_max_ms: u64,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let provider = delivery.provider.as_str();
    let (sql, error, at) = match outcome {
        Outcome::Delivered => {
            ::metrics::histogram!(metrics::PURGE_LATENCY, "provider" => provider.to_owned())
                .record((now - created_at_ms).max(0) as f64 / 1000.0);
            (
                "UPDATE purge_deliveries SET status = 'delivered', attempts = attempts + 1, \
                 last_error = $1, delivered_at_ms = $2 WHERE purge_id = $3 AND provider = $4",
                None,
                now,
            )
        }
        Outcome::Retry { after, error } => {
            let delay = backoff(delivery.attempts, retry_max_ms).max(after.unwrap_or_default());
            (
                "UPDATE purge_deliveries SET attempts = attempts + 1, last_error = $1, \
                 next_attempt_at_ms = $2 WHERE purge_id = $3 AND provider = $4",
                Some(error.clone()),
                now + delay.as_millis() as i64,
            )
        }
        Outcome::Failed(error) => {
            tracing::error!(provider, purge = %delivery.purge_id, %error, "purge refused");
            (
                "UPDATE purge_deliveries SET status = 'failed', attempts = attempts + 1, \
                 last_error = $1, delivered_at_ms = $2 WHERE purge_id = $3 AND provider = $4",
                Some(error.clone()),
                now,
            )
        }
    };
    ::metrics::counter!(metrics::PURGE_DELIVERIES, "provider" => provider.to_owned(), "outcome" => outcome.label()).increment(1);
    retry(|| async {
        let mut connection = db.primary.acquire().await?;
        sqlx::query(sql)
            .bind(error.as_deref())
            .bind(at)
            .bind(&delivery.purge_id)
            .bind(provider)
            .execute(&mut *connection)
            .await?;
        connection.commit().await
    })
    .await
}

/// Reports the outbox's depth and the age of its oldest pending delivery.
pub async fn report_depth(db: &Db) {
    let depth: Result<(i64, Option<i64>), sqlx::Error> = async {
        sqlx::query_as(
            "SELECT COUNT(*), MIN(p.created_at_ms) FROM purge_deliveries d \
             JOIN purges p ON p.id = d.purge_id WHERE d.status = 'pending'",
        )
        .fetch_one(&mut *db.primary.acquire().await?)
        .await
    }
    .await;
    if let Ok((count, oldest)) = depth {
        ::metrics::gauge!(metrics::PURGE_OUTBOX_DEPTH).set(count as f64);
        let age = oldest.map_or(0.0, |oldest| (now_ms() - oldest).max(0) as f64 / 1000.0);
        ::metrics::gauge!(metrics::PURGE_OLDEST_PENDING).set(age);
    }
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
