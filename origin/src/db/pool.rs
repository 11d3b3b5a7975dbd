//! A connection pool that reports its health: connections in use and idle, tasks waiting for
//! one, utilisation, and how long every acquire took, each labelled with the pool's name
//! (`primary`, `replica-0`, …). Every query of the origin takes its connection through here.
//!
//! Behind a transaction pooler ([`crate::config::DbConfig::transaction_pooler`]) a connection
//! is handed out inside a transaction ([`Conn`]): sqlx parses an unnamed statement and executes
//! it in two exchanges, which the pooler may otherwise send to two servers. What only reads
//! lets the transaction roll back when the connection is dropped; what writes calls
//! [`Conn::commit`].

use std::{
    ops::{Deref, DerefMut},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use sqlx::{pool::PoolConnection, Any, AnyConnection, AnyPool, SqlSafeStr, Transaction};

use crate::ops::metrics;

#[derive(Clone)]
pub struct Pool {
    inner: AnyPool,
    name: Arc<str>,
    max_connections: u32,
    /// Hand connections out inside a transaction (behind a transaction pooler).
    in_transactions: bool,
    waiting: Arc<AtomicUsize>,
    // Registered once: the acquire path records without building labels.
    acquire_seconds: ::metrics::Histogram,
    public_reads: ::metrics::Counter,
}

impl Pool {
    /// Call after the metrics recorder is installed, which registers the pool's series.
    pub fn new(inner: AnyPool, name: &str, max_connections: u32, in_transactions: bool) -> Self {
        Self {
            inner,
            name: name.into(),
            max_connections,
            in_transactions,
            waiting: Arc::default(),
            acquire_seconds: ::metrics::histogram!(metrics::DB_POOL_ACQUIRE, "pool" => name.to_owned()),
            public_reads: ::metrics::counter!(metrics::DB_PUBLIC_READS, "pool" => name.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sqlx pool itself, for what runs once at start (migrations).
    pub fn sqlx(&self) -> &AnyPool {
        &self.inner
    }

    /// A connection, waiting at most the pool's acquire timeout; inside a transaction behind
    /// a transaction pooler.
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        let connection = self.connection().await?;
        if self.in_transactions {
            Ok(Conn::InTransaction(
                Transaction::begin(connection, None).await?,
            ))
        } else {
            Ok(Conn::Plain(connection))
        }
    }

    async fn connection(&self) -> Result<PoolConnection<Any>, sqlx::Error> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let connection = self.inner.acquire().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.acquire_seconds.record(started.elapsed().as_secs_f64());
        connection
    }

    /// Counts a public read this pool was chosen for (`db_public_reads_total`).
    pub fn count_public_read(&self) {
        self.public_reads.increment(1);
    }

    /// A transaction opened with `statement` (or the driver's plain `BEGIN`).
    pub async fn begin(
        &self,
        statement: Option<&'static str>,
    ) -> Result<Transaction<'static, Any>, sqlx::Error> {
        let connection = self.connection().await?;
        Transaction::begin(connection, statement.map(SqlSafeStr::into_sql_str)).await
    }

    /// Publishes the pool's gauges; called when `/metrics` is scraped.
    pub fn report(&self) {
        let name = self.name.to_string();
        let idle = self.inner.num_idle() as f64;
        let in_use = f64::from(self.inner.size()) - idle;
        ::metrics::gauge!(metrics::DB_POOL_CONNECTIONS, "pool" => name.clone(), "state" => "idle")
            .set(idle);
        ::metrics::gauge!(metrics::DB_POOL_CONNECTIONS, "pool" => name.clone(), "state" => "in_use")
            .set(in_use);
        ::metrics::gauge!(metrics::DB_POOL_WAITERS, "pool" => name.clone())
            .set(self.waiting.load(Ordering::Relaxed) as f64);
        ::metrics::gauge!(metrics::DB_POOL_UTILIZATION, "pool" => name)
            .set(in_use / f64::from(self.max_connections.max(1)));
    }
}

/// A pooled connection, in a transaction of its own behind a transaction pooler.
pub enum Conn {
    Plain(PoolConnection<Any>),
    /// Rolled back when dropped, unless committed.
    InTransaction(Transaction<'static, Any>),
}

impl Conn {
    /// Makes what was written on this connection durable: commits its transaction, if it has
    /// one (outside one, each statement committed by itself).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Plain(_) => Ok(()),
            Conn::InTransaction(transaction) => transaction.commit().await,
        }
    }
}

impl Deref for Conn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Conn::Plain(connection) => connection,
            Conn::InTransaction(transaction) => transaction,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Plain(connection) => connection,
            Conn::InTransaction(transaction) => transaction,
        }
    }
}
