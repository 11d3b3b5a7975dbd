//! Feature flags with gradual rollout (10 → 25 → 50 → 100 %), stored in the database and
//! changed at runtime through the admin API.
//!
//! A flag is on for a key (a user, an entity, an instance) when the key's bucket, a stable
//! hash of flag and key into 0–99, is below the rollout percentage: the same key always lands
//! on the same side, and raising the percentage only turns keys on. Every instance reloads
//! the flags twice a second, so a change reaches all of them within a second.

use std::{collections::HashMap, sync::Arc, time::Duration};

use forecastin_shared::dto::FeatureFlag;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};

use crate::{
    background::Background,
    clock::now_ms,
    db::{retry, Db},
};

/// Instances coordinate their caches through Redis (keyed by instance).
pub const HORIZONTAL_SCALING: &str = "ff.horizontal_scaling";
/// Data changes purge the CDN providers (keyed by entity).
pub const CDN_INTEGRATION: &str = "ff.cdn_integration";
/// Instances export their in-flight load for autoscaling (keyed by instance).
pub const AUTO_SCALING: &str = "ff.auto_scaling";

/// Instances preload pages: they render the hot pages a purge removed again before the CDN
/// purge, purge the CDN softly for data changes, and warm up before they report ready (keyed
/// by instance).
pub const PREDICTIVE_PRELOAD: &str = "ff.predictive_preload";

/// How often every instance rereads the flags.
const RELOAD_EVERY: Duration = Duration::from_millis(500);

/// The bucket of `key` for `flag`, 0 to 99.
pub fn bucket(flag: &str, key: &str) -> u8 {
    let digest = Sha256::digest(format!("{flag}\u{0}{key}").as_bytes());
    (u16::from_be_bytes([digest[0], digest[1]]) % 100) as u8
}

#[derive(sqlx::FromRow)]
struct FlagRow {
    name: String,
    rollout_percent: i64,
    description: String,
    updated_at_ms: i64,
}

impl From<FlagRow> for FeatureFlag {
    fn from(row: FlagRow) -> Self {
        FeatureFlag {
            name: row.name,
            rollout_percent: row.rollout_percent.clamp(0, 100) as u8,
            description: row.description,
            updated_at_ms: row.updated_at_ms,
        }
    }
}

/// Flags keyed by the instance, whose buckets are worked out once (they gate hot paths).
const PER_INSTANCE: [&str; 3] = [HORIZONTAL_SCALING, AUTO_SCALING, PREDICTIVE_PRELOAD];

#[derive(Clone)]
pub struct Flags {
    db: Db,
    current: Arc<RwLock<HashMap<String, FeatureFlag>>>,
    /// This instance's bucket for each of [`PER_INSTANCE`].
    instance_buckets: [u8; PER_INSTANCE.len()],
}

impl Flags {
    /// Reads the flags, first setting those no operator has set yet to `start` percent (a new
    /// deployment begins its rollouts at their first step).
    pub async fn load(db: Db, instance_id: &str, start: u8) -> Result<Self, sqlx::Error> {
        retry(|| async {
            let mut connection = db.primary.acquire().await?;
            sqlx::query("UPDATE feature_flags SET rollout_percent = $1 WHERE updated_at_ms = 0")
                .bind(i64::from(start))
                .execute(&mut *connection)
                .await?;
            connection.commit().await
        })
        .await?;
        let flags = Flags {
            db,
            current: Arc::default(),
            instance_buckets: PER_INSTANCE.map(|flag| bucket(flag, instance_id)),
        };
        flags.reload().await?;
        Ok(flags)
    }

    /// Whether `flag` is on for `key`; an unknown flag is off.
    pub fn enabled(&self, flag: &str, key: &str) -> bool {
        self.on_for_bucket(flag, bucket(flag, key))
    }

    /// Whether a per-instance flag (one of [`PER_INSTANCE`]) is on for this instance.
    pub fn on_this_instance(&self, flag: &str) -> bool {
        PER_INSTANCE
            .iter()
            .position(|known| *known == flag)
            .is_some_and(|i| self.on_for_bucket(flag, self.instance_buckets[i]))
    }

    fn on_for_bucket(&self, flag: &str, bucket: u8) -> bool {
        self.current
            .read()
            .get(flag)
            .is_some_and(|f| bucket < f.rollout_percent)
    }

    pub fn all(&self) -> Vec<FeatureFlag> {
        let mut flags: Vec<FeatureFlag> = self.current.read().values().cloned().collect();
        flags.sort_by(|a, b| a.name.cmp(&b.name));
        flags
    }

    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<FlagRow> = retry(|| async {
            sqlx::query_as(
                "SELECT name, rollout_percent, description, updated_at_ms FROM feature_flags",
            )
            .fetch_all(&mut *self.db.primary.acquire().await?)
            .await
        })
        .await?;
        let flags: HashMap<String, FeatureFlag> = rows
            .into_iter()
            .map(|row| (row.name.clone(), FeatureFlag::from(row)))
            .collect();
        for flag in flags.values() {
            ::metrics::gauge!(crate::ops::metrics::FLAG_ROLLOUT, "flag" => flag.name.clone())
                .set(f64::from(flag.rollout_percent));
        }
        *self.current.write() = flags;
        Ok(())
    }

    /// Sets a flag's rollout; `None` if there is no such flag.
    pub async fn set(&self, name: &str, percent: u8) -> Result<Option<FeatureFlag>, sqlx::Error> {
        let updated = retry(|| async {
            let query = sqlx::query(
                "UPDATE feature_flags SET rollout_percent = $1, updated_at_ms = $2 WHERE name = $3",
            )
            .bind(i64::from(percent))
            .bind(now_ms())
            .bind(name);
            let mut connection = self.db.primary.acquire().await?;
            let updated = query.execute(&mut *connection).await?;
            connection.commit().await?;
            Ok::<_, sqlx::Error>(updated)
        })
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        self.reload().await?;
        Ok(self.current.read().get(name).cloned())
    }

    /// Rereads the flags every half second until `background` stops.
    pub fn spawn_reload(&self, background: &Background) {
        let flags = self.clone();
        background.spawn(async move {
            let mut ticks = tokio::time::interval(RELOAD_EVERY);
            loop {
                ticks.tick().await;
                if let Err(err) = flags.reload().await {
                    tracing::warn!(%err, "could not reload the feature flags");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> impl Iterator<Item = String> {
        (0..10_000).map(|n| format!("entity-{n}"))
    }

    #[test]
    fn buckets_are_stable_and_spread_evenly() {
        assert_eq!(bucket(CDN_INTEGRATION, "FR"), bucket(CDN_INTEGRATION, "FR"));
        let at_ten = keys().filter(|k| bucket(CDN_INTEGRATION, k) < 10).count();
        assert!(
            (800..1200).contains(&at_ten),
            "{at_ten} of 10,000 keys at 10 %"
        );
    }

    #[test]
    fn raising_the_rollout_only_turns_keys_on() {
        for key in keys().take(2_000) {
            let b = bucket(HORIZONTAL_SCALING, &key);
            let on_at = |percent: u8| b < percent;
            for (lower, higher) in [(10, 25), (25, 50), (50, 100)] {
                assert!(
                    !on_at(lower) || on_at(higher),
                    "{key} went off from {lower} to {higher}"
                );
            }
            assert!(on_at(100) && !on_at(0));
        }
    }

    #[test]
    fn each_flag_buckets_keys_independently() {
        let same = keys()
            .filter(|k| bucket(CDN_INTEGRATION, k) == bucket(AUTO_SCALING, k))
            .count();
        assert!(
            same < 300,
            "{same} of 10,000 keys share a bucket across flags"
        );
    }
}
