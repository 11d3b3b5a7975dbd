//! The one Redis connection the instances coordinate through, built once and handed to L2,
//! the bus and the registry, with the names of this deployment's keys and channels (all
//! under `REDIS_NAMESPACE`, so several deployments can share one Redis).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Longest wait for Redis on a request's path: an outage must degrade the origin, not stall it.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// The invalidation counter: moved by every tiers clear, read by L2 fills and sequence checks.
pub const INVALIDATION_SEQ: &str = "invalidation-seq";
/// The newest write's WAL position, with read replicas.
pub const WRITE_HORIZON: &str = "write-horizon";

#[derive(Clone)]
pub struct RedisLink {
    /// For the Pub/Sub subscription, which needs a connection of its own.
    pub client: redis::Client,
    /// Multiplexed: every command of this instance but the subscription.
    pub connection: ConnectionManager,
    namespace: String,
}

impl RedisLink {
    /// Connects to `url`; keys and channels go under `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client,
            connection,
            namespace: namespace.to_owned(),
        })
    }

    /// The deployment's name for the key or channel `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }
}
