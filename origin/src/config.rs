//! Configuration, read from the environment (or the matching command-line flags).
//!
//! With nothing set the origin runs on an embedded SQLite file under `DATA_DIR`, loads the demo
//! hierarchy into it, and generates an admin token that it prints once.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Bearer token for `/admin/*`. Generated and printed at start when unset.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Load the ISO 3166 hierarchy into an empty database at start.
    #[arg(long, env = "SEED_DEMO_DATA", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed_demo_data: bool,

    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub cache: CacheConfig,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DbConfig {
    /// `postgres://…` for PostgreSQL, `sqlite://…` for a given SQLite file; unset means the
    /// embedded SQLite file `DATA_DIR/forecastin.db`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where the embedded database lives when `DATABASE_URL` is unset.
    #[arg(long, env = "DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,

    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,

    /// How long a request waits for a pooled connection before failing.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub acquire_timeout_ms: u64,
}

impl DbConfig {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

/// The caching contract put on every public GET response, in seconds.
#[derive(clap::Args, Debug, Clone)]
pub struct CacheConfig {
    /// Browser freshness (`max-age`).
    #[arg(long, env = "CACHE_MAX_AGE", default_value_t = 5)]
    pub max_age: u32,
    /// Shared-cache freshness (`s-maxage`): how long the CDN may serve without asking.
    #[arg(long, env = "CACHE_S_MAXAGE", default_value_t = 60)]
    pub s_maxage: u32,
    #[arg(long, env = "CACHE_STALE_WHILE_REVALIDATE", default_value_t = 30)]
    pub stale_while_revalidate: u32,
    #[arg(long, env = "CACHE_STALE_IF_ERROR", default_value_t = 86_400)]
    pub stale_if_error: u32,
    /// Entries in the in-process L1 cache; 0 turns it off.
    #[arg(long, env = "L1_CAPACITY", default_value_t = 50_000)]
    pub l1_capacity: usize,
}

impl CacheConfig {
    pub fn cache_control(&self) -> String {
        format!(
            "public, max-age={}, s-maxage={}, stale-while-revalidate={}, stale-if-error={}",
            self.max_age, self.s_maxage, self.stale_while_revalidate, self.stale_if_error
        )
    }
}
