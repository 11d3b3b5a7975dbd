//! Configuration, read from the environment (or the matching command-line flags).
//!
//! With nothing set the origin runs on an embedded SQLite file under `DATA_DIR`, loads the demo
//! hierarchy into it, and generates an admin token that it prints once.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// `text` for a terminal, or `json`: one JSON object per line, with the request's span
    /// fields (its id among them), for log pipelines. `RUST_LOG` filters either.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// An OpenTelemetry collector's OTLP/HTTP base URL: each request's span is exported to
    /// `/v1/traces` under it, a child of the `traceparent` the request carried. Unset: no
    /// traces leave the process.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// The admin API, `/metrics`, `/healthz` and `/readyz` on a listener of their own, which
    /// the public load balancer does not expose (unset: all on `LISTEN_ADDR`, as in
    /// development).
    #[arg(long, env = "ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// The edge's credentials, comma-separated: the current one, then the previous one while
    /// it is rotated. Set, the public routes answer only requests that carry one of them in
    /// `x-forecastin-edge-auth` (403 otherwise). Unset: anyone, as in development.
    #[arg(long, env = "EDGE_AUTH", hide_env_values = true, value_delimiter = ',')]
    pub edge_auth: Vec<String>,

    /// How long a public read may run before the origin answers 503 and drops its work, with
    /// the database connection it holds: a little less than the edge waits
    /// (`ORIGIN_TIMEOUT_MS`, 5,000), so the edge gets an answer rather than giving up on one
    /// still running. The event stream and the admin API are not limited.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 4_500,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// Kernel send buffer of each connection, bytes (unset: the kernel tunes it).
    #[arg(long, env = "TCP_SEND_BUFFER_BYTES")]
    pub tcp_send_buffer_bytes: Option<u32>,

    /// Bearer token for `/admin/*`. Generated and printed at start when unset.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Load the ISO 3166 hierarchy into an empty database at start.
    #[arg(long, env = "SEED_DEMO_DATA", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed_demo_data: bool,

    /// The rollout, in percent, of every feature flag that no operator has set yet: the seed's
    /// first step (10) in a new deployment (deploy/k8s), everything on for the demo.
    #[arg(long, env = "FLAG_ROLLOUT_START", default_value_t = 100,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub flag_rollout_start: u8,

    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub cache: CacheConfig,

    #[command(flatten)]
    pub purge: PurgeConfig,

    #[command(flatten)]
    pub cluster: ClusterConfig,
}

/// Shortest `ADMIN_TOKEN` and `PURGE_SECRET` outside the demo: 256 bits of a random hex or
/// base64 string are more than this, a guessable word is not.
pub const MIN_SECRET_BYTES: usize = 32;

impl Config {
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_timeout_ms)
    }

    /// The zero-configuration demo: the embedded database, as `./scripts/run` starts it.
    pub fn is_demo(&self) -> bool {
        self.db.database_url.is_none()
    }

    /// Refuses secrets short enough to guess, except in the demo (where they are warned of).
    /// Each `EDGE_AUTH` credential counts on its own.
    /// The edge's credentials given (an empty one, `EDGE_AUTH=`, is none).
    pub fn edge_credentials(&self) -> impl Iterator<Item = &str> {
        self.edge_auth
            .iter()
            .map(String::as_str)
            .filter(|credential| !credential.is_empty())
    }

    pub fn check_secrets(&self) -> anyhow::Result<()> {
        let secrets = [
            ("ADMIN_TOKEN", self.admin_token.as_deref()),
            ("PURGE_SECRET", self.purge.purge_secret.as_deref()),
        ]
        .into_iter()
        .chain(
            self.edge_credentials()
                .map(|secret| ("EDGE_AUTH", Some(secret))),
        );
        for (name, secret) in secrets {
            let Some(secret) = secret.filter(|s| !s.is_empty()) else {
                continue;
            };
            if secret.len() >= MIN_SECRET_BYTES {
                continue;
            }
            let problem = format!(
                "{name} is {} bytes; at least {MIN_SECRET_BYTES} are needed \
                 (e.g. `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)",
                secret.len()
            );
            if !self.is_demo() {
                anyhow::bail!(problem);
            }
            tracing::warn!("{problem}; accepted for the demo on the embedded database only");
        }
        Ok(())
    }
}

/// Coordination of several origin instances (see `crate::cluster::bus`).
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://…`: instances share L1 invalidations through it. Unset: one instance, an
    /// in-process bus.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of this deployment's Redis keys and channels.
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "forecastin")]
    pub redis_namespace: String,

    /// This instance's name among the others; random when unset.
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// While the invalidation subscription is down, L1 entries older than this are not served.
    #[arg(long, env = "L1_DISCONNECTED_TTL_MS", default_value_t = 1000)]
    pub l1_disconnected_ttl_ms: u64,

    /// Address other instances and operators reach this one at (default: the listen address).
    #[arg(long, env = "ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Messages queued for one websocket client before it is closed as too slow.
    #[arg(long, env = "WS_CLIENT_QUEUE", default_value_t = 256)]
    pub ws_client_queue: usize,

    /// Websocket clients one instance serves at once; more are refused with 503.
    #[arg(long, env = "WS_MAX_CLIENTS", default_value_t = 10_000)]
    pub ws_max_clients: usize,

    /// Websocket clients one address may hold on an instance; more are refused with 429.
    #[arg(long, env = "WS_MAX_PER_ADDRESS", default_value_t = 32)]
    pub ws_max_per_address: usize,

    /// Page origins (`https://host[:port]`, comma-separated) whose scripts may open the event
    /// stream; a browser's handshake from another is refused with 403. Unset: any, as in
    /// development (the manifests set the public site's).
    #[arg(long, env = "WS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub ws_allowed_origins: Vec<String>,

    /// Interval of the instance heartbeat in Redis; an instance is gone after three missed.
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,

    /// Lifetime of L2 entries in Redis, seconds; 0 turns L2 off.
    #[arg(long, env = "L2_TTL_SECS", default_value_t = 300)]
    pub l2_ttl_secs: u64,

    /// Most live L2 entries one cache tag indexes; a fill past it evicts the entry that would
    /// expire first.
    #[arg(long, env = "L2_MAX_TAG_MEMBERS", default_value_t = 100_000)]
    pub l2_max_tag_members: usize,
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

    /// How long a request waits for a pooled connection before failing (every pool).
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub acquire_timeout_ms: u64,

    /// `DATABASE_URL` leads to a pooler in transaction mode (PgBouncer's
    /// `pool_mode = transaction`), which may hand each transaction another server
    /// connection: no statement is kept prepared, and every query runs in a transaction of
    /// its own, so that its parse and its execution reach the same server. The pooler must
    /// reset the server after every transaction (PgBouncer's `server_reset_query_always = 1`),
    /// or a statement prepared in one transaction collides with another client's. (Replicas
    /// are reached directly.)
    #[arg(long, env = "DB_TRANSACTION_POOLER", default_value_t = false, action = clap::ArgAction::Set)]
    pub transaction_pooler: bool,

    /// Read replicas of the PostgreSQL primary, comma-separated `postgres://…` URLs; public
    /// reads go to them (see `crate::db::replicas`).
    #[arg(
        long = "database-replica-urls",
        env = "DATABASE_REPLICA_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub replica_urls: Vec<String>,

    /// Connections of each replica's pool.
    #[arg(long, env = "DB_REPLICA_MAX_CONNECTIONS", default_value_t = 16)]
    pub replica_max_connections: u32,

    /// A replica behind the primary for longer than this leaves the rotation until it catches up.
    #[arg(long, env = "REPLICA_MAX_LAG_MS", default_value_t = 1000)]
    pub replica_max_lag_ms: u64,

    /// How often every replica's health and replay position are checked.
    #[arg(long, env = "REPLICA_CHECK_INTERVAL_MS", default_value_t = 100)]
    pub replica_check_interval_ms: u64,
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
    /// Memory the L1 entries may take, in bytes (bodies, keys, tags and bookkeeping).
    #[arg(long, env = "L1_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub l1_max_bytes: usize,
    /// Largest response body kept in L1 or L2; larger ones are served but not cached.
    #[arg(long, env = "CACHE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
}

impl CacheConfig {
    pub fn cache_control(&self) -> String {
        format!(
            "public, max-age={}, s-maxage={}, stale-while-revalidate={}, stale-if-error={}",
            self.max_age, self.s_maxage, self.stale_while_revalidate, self.stale_if_error
        )
    }
}

/// Where purges go and how fast (see `crate::purge`).
#[derive(clap::Args, Debug, Clone)]
pub struct PurgeConfig {
    /// CDN providers that receive purges, comma-separated: `edge`, `cloudflare`, `fastly`.
    /// Unset: `edge` when PURGE_SECRET is set, none otherwise.
    #[arg(
        long = "purge-providers",
        env = "PURGE_PROVIDERS",
        value_delimiter = ','
    )]
    pub providers: Option<Vec<ProviderKind>>,

    /// Shared with the edge Worker, which checks the HMAC of every purge with it.
    #[arg(long, env = "PURGE_SECRET", hide_env_values = true)]
    pub purge_secret: Option<String>,

    /// The edge Worker's purge endpoint.
    #[arg(
        long,
        env = "EDGE_PURGE_URL",
        default_value = "http://127.0.0.1:8787/__edge/purge"
    )]
    pub edge_purge_url: String,

    /// The public origin of the site, to make URL purges absolute for Cloudflare and Fastly.
    #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:8787")]
    pub public_base_url: String,

    #[arg(
        long,
        env = "CLOUDFLARE_API_BASE",
        default_value = "https://api.cloudflare.com/client/v4"
    )]
    pub cloudflare_api_base: String,
    #[arg(long, env = "CLOUDFLARE_ZONE_ID")]
    pub cloudflare_zone_id: Option<String>,
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true)]
    pub cloudflare_api_token: Option<String>,
    /// Cloudflare's purge rate for the plan, requests per minute (Enterprise: 50/s).
    #[arg(long, env = "CLOUDFLARE_PURGE_PER_MINUTE", default_value_t = 3000)]
    pub cloudflare_per_minute: u32,
    /// Cloudflare's purge bucket size for the plan.
    #[arg(long, env = "CLOUDFLARE_PURGE_BURST", default_value_t = 50)]
    pub cloudflare_burst: u32,

    #[arg(
        long,
        env = "FASTLY_API_BASE",
        default_value = "https://api.fastly.com"
    )]
    pub fastly_api_base: String,
    #[arg(long, env = "FASTLY_SERVICE_ID")]
    pub fastly_service_id: Option<String>,
    #[arg(long, env = "FASTLY_API_KEY", hide_env_values = true)]
    pub fastly_api_key: Option<String>,
    /// Mark content stale instead of removing it (`Fastly-Soft-Purge: 1`).
    #[arg(long, env = "FASTLY_SOFT_PURGE", default_value_t = false, action = clap::ArgAction::Set)]
    pub fastly_soft_purge: bool,
    #[arg(long, env = "FASTLY_PURGE_PER_MINUTE", default_value_t = 6000)]
    pub fastly_per_minute: u32,
    #[arg(long, env = "FASTLY_PURGE_BURST", default_value_t = 100)]
    pub fastly_burst: u32,

    #[arg(long, env = "EDGE_PURGE_PER_MINUTE", default_value_t = 60000)]
    pub edge_per_minute: u32,
    #[arg(long, env = "EDGE_PURGE_BURST", default_value_t = 1000)]
    pub edge_burst: u32,

    /// Timeout of one purge request to a provider.
    #[arg(long, env = "PURGE_TIMEOUT_MS", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Longest wait between two attempts of a failing delivery (it is retried until it
    /// succeeds or fails permanently).
    #[arg(long, env = "PURGE_RETRY_MAX_MS", default_value_t = 60_000)]
    pub retry_max_ms: u64,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Edge,
    Cloudflare,
    Fastly,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Edge => "edge",
            Self::Cloudflare => "cloudflare",
            Self::Fastly => "fastly",
        }
    }
}

impl PurgeConfig {
    /// The providers in force, by the rule in the `providers` doc.
    pub fn enabled(&self) -> Vec<ProviderKind> {
        match &self.providers {
            Some(providers) => providers.clone(),
            None if self.purge_secret.is_some() => vec![ProviderKind::Edge],
            None => Vec::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        config: Config,
    }

    fn config(args: &[&str]) -> Config {
        Args::try_parse_from(std::iter::once("origin").chain(args.iter().copied()))
            .unwrap()
            .config
    }

    #[test]
    fn short_secrets_are_refused_outside_the_demo() {
        let long = "x".repeat(MIN_SECRET_BYTES);
        let postgres = ["--database-url", "postgres://db/forecastin"];
        for secret in ["--admin-token", "--purge-secret", "--edge-auth"] {
            let short = config(&[postgres[0], postgres[1], secret, "dev"]);
            let message = short.check_secrets().unwrap_err().to_string();
            assert!(message.contains("at least 32"), "{message}");
            assert!(config(&[postgres[0], postgres[1], secret, &long])
                .check_secrets()
                .is_ok());
            assert!(
                config(&[secret, "dev"]).check_secrets().is_ok(),
                "the demo on the embedded database takes it"
            );
        }
        assert!(config(&postgres).check_secrets().is_ok(), "unset is fine");
    }
}
