//! Harness of the end-to-end tests: real processes on loopback.
//!
//! - [`Origin`]: the `forecastin-origin` binary on a temporary SQLite database (or the URL
//!   given), which a test can kill and restart.
//! - [`Edge`]: the Worker in workerd through `wrangler dev --local`, pointed at an origin.
//! - [`replica::StreamingPair`]: a private PostgreSQL primary with a streaming replica.
//! - [`pgbouncer::PgBouncer`]: Debian's PgBouncer in front of the machine's PostgreSQL.
//! - [`redis::PrivateRedis`]: a Redis server of one test's own, to stop, restart or pause.
//! - [`load::run_locust`]: the analyst load test, for the smoke runs; [`stream`]: a `/ws` client.
//! - [`fixture`]: a deliberately misbehaving HTTP origin (cache-poisoning echo, broken bodies,
//!   contradictory headers), to prove the edge survives bad origin input.
//!
//! The Worker must be built first (`./scripts/build-edge`, which `./scripts/test` runs).

pub mod fixture;
pub mod load;
pub mod pgbouncer;
mod process;
pub mod redis;
pub mod replica;
pub mod standins;
pub mod stream;

pub use process::{
    free_port, postgres_server, psql, query, repo_root, tool, Backend, Edge, Origin,
};

use forecastin_shared::{headers, signing};

/// The purge secret the edge is started with.
pub const PURGE_SECRET: &str = "e2e-purge-secret-of-at-least-32-bytes";
/// The origin's admin token in these tests.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-of-at-least-32-bytes";
/// The edge's credential at the origin; origins started with `EDGE_AUTH` set to it answer
/// their public routes to the edge only.
pub const EDGE_AUTH: &str = "e2e-edge-credential-of-at-least-32-bytes";

/// The HTTP client of these tests; build every client here. The workspace builds one reqwest,
/// with the origin's TLS (rustls without a default crypto provider), and such a client panics
/// unless a provider is installed first, even for plain HTTP.
pub fn client() -> reqwest::Client {
    // Fails only when one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds")
}

pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch, as the origin records times.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A nonce no other call in this process uses.
pub fn fresh_nonce() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("e2e-{}-{n:012}", std::process::id())
}

/// Sends a purge to the edge, signed as the origin signs it, with `secret` at `timestamp`
/// under `nonce`.
pub async fn signed_purge(
    edge: &Edge,
    body: &serde_json::Value,
    secret: &str,
    timestamp: u64,
    nonce: &str,
) -> reqwest::Response {
    let body = body.to_string();
    let url = format!("{}/__edge/purge", edge.url);
    let destination = signing::Destination::new("POST", &url.parse().expect("the edge's URL"));
    signing::signed_headers(
        secret.as_bytes(),
        timestamp,
        nonce,
        &destination,
        body.as_bytes(),
    )
    .into_iter()
    .fold(client().post(&url), |call, (name, value)| {
        call.header(name, value)
    })
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

/// An admin request to `base` (the origin, or the edge, which forwards it). Changes to an
/// entity carry `If-Match: *`: these tests are the only writer, and reading the current ETag
/// through an edge could see a copy a purge has yet to reach.
pub fn admin(method: reqwest::Method, base: &str, path: &str) -> reqwest::RequestBuilder {
    let changes_entity = (method == reqwest::Method::PATCH || method == reqwest::Method::DELETE)
        && path.starts_with("/admin/v1/entities/");
    let request = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if changes_entity {
        request.header("if-match", "*")
    } else {
        request
    }
}

/// Polls the origin's purge status until no delivery is pending; returns the status.
pub async fn wait_settled(
    origin: &Origin,
    purge_id: &str,
    limit: std::time::Duration,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let status = admin_json(origin, &format!("/admin/v1/purge/{purge_id}")).await;
        let deliveries = status["deliveries"].as_array().cloned().unwrap_or_default();
        if !deliveries.is_empty() && deliveries.iter().all(|d| d["status"] != "pending") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "purge {purge_id} still pending: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// GETs an admin resource of the origin as JSON.
pub async fn admin_json(origin: &Origin, path: &str) -> serde_json::Value {
    admin(reqwest::Method::GET, &origin.url, path)
        .send()
        .await
        .expect("the origin answers")
        .json()
        .await
        .expect("a JSON body")
}

/// Runs each listed `async fn(Backend)` once on SQLite and once on PostgreSQL; with
/// `setup = path::to::function;` first, each gets what `function(backend).await` makes instead
/// (the origin's tests: an application in process).
#[macro_export]
macro_rules! on_both_backends {
    (@each $module:ident $backend:ident $setup:path; $($case:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($setup($crate::Backend::$backend).await).await;
                }
            )*
        }
    };
    (setup = $($setup:ident)::+; $($case:ident),* $(,)?) => {
        $crate::on_both_backends!(@each sqlite Sqlite super::$($setup)::+; $($case),*);
        $crate::on_both_backends!(@each postgres Postgres super::$($setup)::+; $($case),*);
    };
    ($($case:ident),* $(,)?) => {
        $crate::on_both_backends!(@each sqlite Sqlite ::std::future::ready; $($case),*);
        $crate::on_both_backends!(@each postgres Postgres ::std::future::ready; $($case),*);
    };
}

/// GETs `url` and parses the JSON body.
pub async fn get_json(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON body")
}

/// Sets a feature flag's rollout through `base`'s admin API, then waits until every instance
/// has read it (they reread the flags twice a second).
pub async fn set_rollout(base: &str, flag: &str, percent: u8) {
    let response = admin(
        reqwest::Method::PUT,
        base,
        &format!("/admin/v1/flags/{flag}"),
    )
    .json(&serde_json::json!({ "rollout_percent": percent }))
    .send()
    .await
    .expect("the server answers");
    assert_eq!(response.status(), 200, "setting {flag}");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
}

/// Posts an admin purge to `base` (the origin's admin API); returns its id once accepted.
pub async fn admin_purge(base: &str, body: serde_json::Value) -> String {
    let accepted = admin(reqwest::Method::POST, base, "/admin/v1/purge")
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(accepted.status(), 202, "purging {body}");
    accepted.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .expect("an accepted purge has an id")
        .to_owned()
}

/// Renames entity `id` through the admin API of `base` (the origin, or the edge that forwards
/// it); returns the id of the purge the write recorded.
pub async fn rename(base: &str, id: &str, name: &str) -> String {
    let response = admin(
        reqwest::Method::PATCH,
        base,
        &format!("/admin/v1/entities/{id}"),
    )
    .json(&serde_json::json!({ "name": name }))
    .send()
    .await
    .expect("the server answers");
    assert_eq!(response.status(), 200, "renaming {id}");
    response.headers()["forecastin-purge-id"]
        .to_str()
        .expect("an ASCII purge id")
        .to_owned()
}
