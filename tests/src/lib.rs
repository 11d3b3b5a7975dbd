//! Harness of the end-to-end tests: real processes on loopback.
//!
//! - [`Origin`]: the `forecastin-origin` binary on a temporary SQLite database (or the URL
//!   given), which a test can kill and restart.
//! - [`Edge`]: the Worker in workerd through `wrangler dev --local`, pointed at an origin.
//! - [`fixture`]: a deliberately misbehaving HTTP origin (cache-poisoning echo, broken bodies,
//!   contradictory headers), to prove the edge survives bad origin input.
//!
//! The Worker must be built first (`./scripts/build-edge`, which `./scripts/test` runs).

pub mod fixture;
mod process;

pub use process::{Edge, Origin};

use forecastin_shared::{headers, signing};

/// The purge secret the edge is started with.
pub const PURGE_SECRET: &str = "e2e-purge-secret";
/// The origin's admin token in these tests.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds")
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends a purge to the edge, signed as the origin signs it, with `secret` at `timestamp`.
pub async fn signed_purge(
    edge: &Edge,
    body: &serde_json::Value,
    secret: &str,
    timestamp: u64,
) -> reqwest::Response {
    let body = body.to_string();
    let signature = signing::sign(secret.as_bytes(), timestamp, body.as_bytes());
    client()
        .post(format!("{}/__edge/purge", edge.url))
        .header(headers::PURGE_TIMESTAMP, timestamp.to_string())
        .header(headers::PURGE_SIGNATURE, signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the edge answers")
}

/// The `Cache-Status` of a response ("" when absent).
pub fn cache_status(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(headers::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
