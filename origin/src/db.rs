//! The database connection: one pool over SQLite or PostgreSQL, chosen by URL.
//!
//! Queries are written once in SQL both engines accept (`$n` parameters, `||`, row values,
//! `substr`) and run through sqlx's `Any` driver. The few statements that must differ are
//! chosen with [`Backend`]. Transient failures are retried by [`Db::retry`].

use std::{future::Future, str::FromStr, time::Duration};

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    Any, AnyPool, ConnectOptions, Transaction,
};

use crate::config::DbConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Connects, creating the embedded SQLite file if needed, and applies the migrations.
    pub async fn connect(config: &DbConfig) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("creating the data dir {}", config.data_dir.display())
                })?;
                format!(
                    "sqlite://{}?mode=rwc",
                    config.data_dir.join("forecastin.db").display()
                )
            }
        };
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite://");
        };
        let url = match backend {
            Backend::Postgres => with_tcp_keepalives(&url),
            Backend::Sqlite => url,
        };
        let options = AnyConnectOptions::from_str(&url)
            .context("parsing DATABASE_URL")?
            // Bulk inserts bind thousands of parameters: logging them would flood the log.
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout())
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; NORMAL sync is the
                        // durable-on-commit setting WAL is designed for.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .context("connecting to the database")?;
        let migrator = match backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&pool).await.context("applying migrations")?;
        Ok(Db { pool, backend })
    }

    /// Opens a hierarchy write. Writes are serialized: a move must see a tree that no
    /// concurrent move is changing, or two moves could together form a cycle.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7263)")
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }
}

/// Runs `op`, retrying it after 0.5 s, 1 s and 2 s while it fails with a transient error
/// (lost connection, pool timeout, serialization failure, locked SQLite file).
pub async fn retry<T, E, F, Fut>(op: F) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_factor(2.0)
        .with_max_times(3);
    op.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(E::is_transient)
        .notify(|err, delay| tracing::warn!(%err, ?delay, "transient database error, retrying"))
        .await
}

/// Server-side TCP keepalives (idle 30 s, interval 10 s, count 5) for every PostgreSQL
/// connection, unless the URL already sets them: sqlx has no client-side socket option, so the
/// server probes instead and drops connections whose peer vanished.
fn with_tcp_keepalives(url: &str) -> String {
    if url.contains("tcp_keepalives") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}options[tcp_keepalives_idle]=30&options[tcp_keepalives_interval]=10\
         &options[tcp_keepalives_count]=5"
    )
}

/// Errors that may go away if the operation is tried again.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for sqlx::Error {
    fn is_transient(&self) -> bool {
        match self {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(db) => matches!(
                db.code().as_deref(),
                // PostgreSQL: serialization failure, deadlock, admin shutdown, connection failures
                Some("40001" | "40P01" | "57P01" | "08000" | "08003" | "08006")
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED
            | Some("5" | "6")
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_after_half_a_second_one_and_two() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<u32, sqlx::Error> = retry(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err(sqlx::Error::PoolTimedOut),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(started.elapsed(), Duration::from_millis(500 + 1000 + 2000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fourth_failure_or_a_permanent_error_is_returned() {
        let calls = AtomicU32::new(0);
        let result: Result<(), sqlx::Error> = retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(sqlx::Error::PoolTimedOut)
        })
        .await;
        assert!(matches!(result, Err(sqlx::Error::PoolTimedOut)));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "one attempt and three retries"
        );

        let permanent = AtomicU32::new(0);
        let result: Result<(), sqlx::Error> = retry(|| async {
            permanent.fetch_add(1, Ordering::SeqCst);
            Err(sqlx::Error::RowNotFound)
        })
        .await;
        assert!(result.is_err());
        assert_eq!(permanent.load(Ordering::SeqCst), 1);
    }
}
