//! The database: a primary pool over SQLite or PostgreSQL, chosen by URL, and with PostgreSQL
//! any number of read replicas ([`replicas`]) for the public reads.
//!
//! Queries are written once in SQL both engines accept (`$n` parameters, `||`, row values,
//! `substr`) and run through sqlx's `Any` driver. The few statements that must differ are
//! chosen with [`Backend`]. Transient failures are retried by [`retry`]. Every connection is
//! taken through a metered [`Pool`].

mod pool;
pub mod replicas;

use std::{future::Future, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::MigrateError,
    Any, AnyPool, AssertSqlSafe, ConnectOptions, SqlSafeStr, SqlStr, Transaction,
};

pub use pool::{Conn, Pool};
use replicas::{Replicas, WriteHorizon};

use crate::{background::Background, config::DbConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            anyhow::bail!("database URLs must start with postgres:// or sqlite://")
        }
    }
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct Db {
    /// Writes, admin reads and background work; public reads when no replica can serve them.
    pub primary: Pool,
    /// `None` without `DATABASE_REPLICA_URLS`.
    pub replicas: Option<Arc<Replicas>>,
    pub backend: Backend,
}

impl Db {
    /// Connects, creating the embedded SQLite file if needed, and applies the migrations.
    /// Replicas are connected lazily: one that is down at start joins the rotation later; they
    /// are checked until `background` stops.
    pub async fn connect(
        config: &DbConfig,
        horizon: WriteHorizon,
        background: &Background,
    ) -> anyhow::Result<Db> {
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
        let backend = Backend::of(&url).context("DATABASE_URL")?;
        let pooled = backend == Backend::Postgres && config.transaction_pooler;
        let primary = pool_options(backend, config.max_connections, config)
            .connect_with(connect_options(backend, &url, pooled).context("parsing DATABASE_URL")?)
            .await
            .context("connecting to the database")?;
        migrate(&primary, backend, pooled)
            .await
            .context("applying migrations")?;
        let primary = Pool::new(primary, "primary", config.max_connections, pooled);
        let replicas = if config.replica_urls.is_empty() {
            None
        } else {
            anyhow::ensure!(
                backend == Backend::Postgres,
                "DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL"
            );
            let mut pools = Vec::with_capacity(config.replica_urls.len());
            for (index, url) in config.replica_urls.iter().enumerate() {
                anyhow::ensure!(
                    Backend::of(url)? == Backend::Postgres,
                    "DATABASE_REPLICA_URLS: replica {index} is not a postgres:// URL"
                );
                let options = connect_options(backend, url, false)
                    .with_context(|| format!("parsing DATABASE_REPLICA_URLS (replica {index})"))?;
                let pool = pool_options(backend, config.replica_max_connections, config)
                    .connect_lazy_with(options);
                pools.push(Pool::new(
                    pool,
                    &format!("replica-{index}"),
                    config.replica_max_connections,
                    false,
                ));
            }
            let replicas = Arc::new(Replicas::new(
                primary.clone(),
                pools,
                horizon,
                Duration::from_millis(config.replica_max_lag_ms),
                Duration::from_millis(config.replica_check_interval_ms.max(1)),
            ));
            replicas.note_write().await;
            replicas.spawn_health_checks(background);
            Some(replicas)
        };
        Ok(Db {
            primary,
            replicas,
            backend,
        })
    }

    /// The pool for a public read: a replica in rotation that has replayed every write this
    /// instance knows of, or else the primary.
    pub fn reader(&self) -> &Pool {
        let pool = self
            .replicas
            .as_ref()
            .and_then(|replicas| replicas.reader())
            .unwrap_or(&self.primary);
        pool.count_public_read();
        pool
    }

    /// Every pool, primary first.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        std::iter::once(&self.primary).chain(self.replicas.iter().flat_map(|r| r.pools()))
    }

    /// After a commit: the WAL position replicas must reach before serving reads (raised on
    /// this instance at once), or `None` without replicas.
    pub async fn note_write(&self) -> Option<u64> {
        match &self.replicas {
            Some(replicas) => replicas.note_write().await,
            None => None,
        }
    }

    /// Before a purge goes to the CDN: waits until the replicas in rotation have replayed what
    /// is committed now (see [`replicas`]).
    pub async fn wait_until_replicas_replayed(&self) {
        if let Some(replicas) = &self.replicas {
            let waited = replicas.wait_until_replayed().await;
            ::metrics::histogram!(crate::ops::metrics::PURGE_REPLICA_WAIT)
                .record(waited.as_secs_f64());
        }
    }

    /// Opens a hierarchy write. Writes are serialized: a move must see a tree that no
    /// concurrent move is changing, or two moves could together form a cycle.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.primary.begin(Some("BEGIN IMMEDIATE")).await,
            Backend::Postgres => {
                let mut tx = self.primary.begin(None).await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7263)")
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }
}

/// Applies the migrations. Behind a transaction pooler they run in one transaction (each in a
/// savepoint): the migrator's session lock and its queries then stay on one server.
async fn migrate(pool: &AnyPool, backend: Backend, pooled: bool) -> Result<(), MigrateError> {
    let migrator = match backend {
        Backend::Postgres => &POSTGRES_MIGRATIONS,
        Backend::Sqlite => &SQLITE_MIGRATIONS,
    };
    if !pooled {
        return migrator.run(pool).await;
    }
    let mut transaction = pool.begin().await?;
    migrator.run(&mut *transaction).await?;
    Ok(transaction.commit().await?)
}

/// The options of `url`. Behind a transaction pooler (`pooled`) no statement is kept prepared:
/// the next transaction may run on a server that never saw it.
fn connect_options(
    backend: Backend,
    url: &str,
    pooled: bool,
) -> Result<AnyConnectOptions, sqlx::Error> {
    let url = match backend {
        Backend::Postgres if pooled => {
            with_param(&with_tcp_keepalives(url), "statement-cache-capacity=0")
        }
        Backend::Postgres => with_tcp_keepalives(url),
        Backend::Sqlite => url.to_owned(),
    };
    // Bulk inserts bind thousands of parameters: logging them would flood the log.
    Ok(AnyConnectOptions::from_str(&url)?.disable_statement_logging())
}

fn pool_options(backend: Backend, max_connections: u32, config: &DbConfig) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
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
    with_param(
        url,
        "options[tcp_keepalives_idle]=30&options[tcp_keepalives_interval]=10\
         &options[tcp_keepalives_count]=5",
    )
}

/// `url` with `param` added to its query.
fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
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

/// A query put together at run time from this crate's own constants and numbered
/// placeholders, never from input (values are always bound): the audit `sqlx` asks of SQL
/// that is not a literal.
pub fn composed(sql: &str) -> SqlStr {
    AssertSqlSafe(sql).into_sql_str()
}

/// `$first, $first+1, …` for `count` parameters.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn placeholders_are_numbered_from_the_first() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }

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
