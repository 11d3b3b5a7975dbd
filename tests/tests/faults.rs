//! Freshness under the faults Redis and pods really have: three origin instances on
//! PostgreSQL and a Redis of the test's own, the edge in workerd in front of one of them, and a
//! write made while Redis's writes are paused, while Redis is down (it comes back empty), or by
//! an instance killed between its commit and its publish.
//!
//! While the fault lasts, readers poll the edge and every live instance. Once Redis is back,
//! every instance must serve the new data within a second; the edge must serve it on every
//! read that starts after its purge was delivered, and that purge must wait for the origin's
//! tiers to be clean. Every read, during the fault too, must succeed.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use forecastin_e2e::{
    admin, admin_json, client, free_port, query, redis::PrivateRedis, unix_now_ms as now_ms,
    wait_settled, Backend, Edge, Origin, PURGE_SECRET,
};
use reqwest::Method;
use serde_json::json;

/// The entity the tests rename.
const ENTITY: &str = "DE";
/// How soon after Redis is back every instance must serve the write.
const BOUND_MS: u64 = 1_000;

struct Cluster {
    redis: PrivateRedis,
    /// The writer.
    a: Origin,
    b: Origin,
    c: Origin,
    /// In front of B.
    edge: Edge,
}

async fn cluster() -> Cluster {
    let redis = PrivateRedis::start(free_port());
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let redis_url = redis.url();
    let env = [
        ("REDIS_URL", redis_url.as_str()),
        ("PURGE_SECRET", PURGE_SECRET),
        ("EDGE_PURGE_URL", purge_url.as_str()),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    let c = a.start_sibling(&[]).await;
    let edge = Edge::start_on(edge_port, &b.url).await;
    // Every tier holds the current name: the edge's cache, each L1, L2.
    for _ in 0..2 {
        for base in [&edge.url, &a.url, &b.url, &c.url] {
            assert_eq!(name_at(base).await, Ok("Germany".to_owned()));
        }
    }
    Cluster {
        redis,
        a,
        b,
        c,
        edge,
    }
}

impl Cluster {
    /// The edge, B, C and A: what the readers poll.
    fn everyone(&self) -> Vec<String> {
        [&self.edge.url, &self.b.url, &self.c.url, &self.a.url]
            .map(String::clone)
            .to_vec()
    }
}

async fn name_at(base: &str) -> Result<String, String> {
    let response = client()
        .get(format!("{base}/api/v1/entities/{ENTITY}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    match body["name"].as_str() {
        Some(name) if status == 200 => Ok(name.to_owned()),
        _ => Err(format!("{status}: {body}")),
    }
}

/// One read: where, when it started, what it got.
struct Read {
    base: String,
    started_ms: u64,
    name: Result<String, String>,
}

/// Reads from each base in `bases` every 20 ms (one reader per base, so a slow one delays no
/// other) until stopped.
struct Readers {
    reads: Arc<Mutex<Vec<Read>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    fn start(bases: Vec<String>) -> Self {
        let reads = Arc::new(Mutex::new(Vec::new()));
        let tasks = bases
            .into_iter()
            .map(|base| {
                let log = reads.clone();
                tokio::spawn(async move {
                    loop {
                        let started_ms = now_ms();
                        let name = name_at(&base).await;
                        log.lock().unwrap().push(Read {
                            base: base.clone(),
                            started_ms,
                            name,
                        });
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Readers { reads, tasks }
    }

    fn stop(self) -> Vec<Read> {
        for task in &self.tasks {
            task.abort();
        }
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

/// Checks the reads against the write of `name`: none failed; on each instance, none that
/// started `BOUND_MS` after `redis_back_ms` was stale; at the edge, none that started after
/// the purge was delivered was. Prints, per base, when it first served the write.
fn judge(reads: &[Read], name: &str, redis_back_ms: u64, delivered_ms: u64, edge: &str) {
    let failed: Vec<_> = reads.iter().filter(|r| r.name.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} reads failed, e.g. {:?}",
        failed.len(),
        failed.first().map(|r| (&r.base, &r.name))
    );
    let mut bases: Vec<&str> = reads.iter().map(|r| r.base.as_str()).collect();
    bases.sort_unstable();
    bases.dedup();
    for base in bases {
        let deadline = if base == edge {
            delivered_ms
        } else {
            redis_back_ms + BOUND_MS
        };
        let of_base = || reads.iter().filter(move |r| r.base == base);
        let stale = of_base()
            .filter(|r| r.started_ms > deadline && r.name.as_deref() != Ok(name))
            .count();
        let after = of_base().filter(|r| r.started_ms > deadline).count();
        let since_back = |r: &Read| r.started_ms as i64 - redis_back_ms as i64;
        let first_fresh = of_base()
            .filter(|r| r.name.as_deref() == Ok(name))
            .map(since_back)
            .min();
        let last_stale = of_base()
            .filter(|r| r.name.as_deref() != Ok(name))
            .map(since_back)
            .max();
        eprintln!(
            "{base}: relative to Redis back, last stale read started at {last_stale:?} ms, first \
             fresh at {first_fresh:?} ms; {stale} stale of {after} reads after its deadline"
        );
        assert!(after > 0, "{base}: no read after its deadline");
        assert_eq!(stale, 0, "{base} served stale data after its deadline");
    }
}

/// Sends the rename of the test entity to `base` without waiting for the answer.
fn rename_in_background(base: &str, name: &str) -> tokio::task::JoinHandle<Option<String>> {
    let request = admin(Method::PATCH, base, &format!("/admin/v1/entities/{ENTITY}"))
        .json(&json!({ "name": name }));
    tokio::spawn(async move {
        let response = request.send().await.ok()?;
        assert_eq!(response.status(), 200);
        Some(
            response.headers()["forecastin-purge-id"]
                .to_str()
                .ok()?
                .to_owned(),
        )
    })
}

/// When the delivery of `purge_id` to `provider` was recorded, once settled.
async fn delivered_at(origin: &Origin, purge_id: &str, provider: &str) -> u64 {
    let status = wait_settled(origin, purge_id, Duration::from_secs(15)).await;
    let delivery = status["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["provider"] == provider)
        .unwrap_or_else(|| panic!("no {provider} delivery: {status}"))
        .clone();
    assert_eq!(delivery["status"], "delivered", "{status}");
    delivery["delivered_at_ms"].as_u64().unwrap()
}

/// The id of the newest purge, read from the database (its writer may be dead).
fn newest_purge(origin: &Origin) -> String {
    query(
        origin.database_url().unwrap(),
        "SELECT id FROM purges ORDER BY created_at_ms DESC LIMIT 1",
    )
    .unwrap()
}

#[tokio::test]
async fn a_write_while_redis_writes_are_paused_is_served_everywhere_once_redis_is_back() {
    let cluster = cluster().await;
    let readers = Readers::start(cluster.everyone());
    let paused_ms = now_ms();
    cluster.redis.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    let purge_id = rename_in_background(&cluster.a.url, "Deutschland")
        .await
        .unwrap()
        .expect("the write is answered while Redis is paused");
    let redis_back_ms = paused_ms + 3_000;
    let tiers = delivered_at(&cluster.a, &purge_id, "tiers").await;
    let edge = delivered_at(&cluster.a, &purge_id, "edge").await;
    assert!(
        tiers >= redis_back_ms && edge >= tiers,
        "the tiers were cleared at {tiers}, the edge purged at {edge}, Redis back at {redis_back_ms}"
    );
    tokio::time::sleep(Duration::from_millis(BOUND_MS + 1_000)).await;
    let reads = readers.stop();
    judge(
        &reads,
        "Deutschland",
        redis_back_ms,
        edge,
        &cluster.edge.url,
    );
    cluster.edge.assert_no_panic();
}

/// Redis killed, a write, Redis back (empty) after `outage`.
async fn a_write_while_redis_is_down(outage: Duration, name: &str) {
    let mut cluster = cluster().await;
    let readers = Readers::start(cluster.everyone());
    cluster.redis.stop();
    let purge_id = rename_in_background(&cluster.a.url, name)
        .await
        .unwrap()
        .expect("the write is answered while Redis is down");
    tokio::time::sleep(outage).await;
    cluster.redis.restart();
    let redis_back_ms = now_ms();
    let edge = delivered_at(&cluster.a, &purge_id, "edge").await;
    assert!(
        edge >= redis_back_ms,
        "the edge was purged at {edge}, before Redis was back at {redis_back_ms}"
    );
    tokio::time::sleep(Duration::from_millis(BOUND_MS + 1_000)).await;
    let reads = readers.stop();
    judge(&reads, name, redis_back_ms, edge, &cluster.edge.url);
    cluster.edge.assert_no_panic();
}

#[tokio::test]
async fn a_write_while_redis_is_down_is_served_everywhere_once_redis_is_back() {
    a_write_while_redis_is_down(Duration::from_secs(2), "Allemagne").await;
}

/// Shorter than `L1_DISCONNECTED_TTL_MS`: the readers' L1 entries from just before the write
/// are still young enough to serve when Redis comes back, so the edge's purge must wait until
/// every instance has acknowledged the invalidation.
#[tokio::test]
async fn a_write_during_a_short_redis_outage_reaches_the_edge_only_after_every_instance() {
    a_write_while_redis_is_down(Duration::from_millis(300), "Njemačka").await;
}

#[tokio::test]
async fn a_writer_killed_between_commit_and_publish_loses_no_invalidation() {
    let mut cluster = cluster().await;
    let readers = Readers::start(cluster.everyone()[..3].to_vec());
    // Redis's writes paused, the writer is stuck in its publish after the commit: kill it there.
    let paused_ms = now_ms();
    cluster.redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    let write = rename_in_background(&cluster.a.url, "Alemania");
    let database = cluster.a.database_url().unwrap().to_owned();
    let committed = format!("SELECT name FROM entities WHERE id = '{ENTITY}'");
    while query(&database, &committed).unwrap() != "Alemania" {
        assert!(now_ms() - paused_ms < 1_000, "the write did not commit");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.a.kill().await;
    let killed_ms = now_ms();
    assert!(killed_ms < paused_ms + 1_500, "killed after Redis was back");
    assert_eq!(
        write.await.unwrap(),
        None,
        "the writer answered before it died"
    );
    let purge_id = newest_purge(&cluster.b);
    let redis_back_ms = paused_ms + 1_500;
    let edge = delivered_at(&cluster.b, &purge_id, "edge").await;
    tokio::time::sleep(Duration::from_millis(BOUND_MS + 1_000)).await;
    let reads = readers.stop();
    judge(&reads, "Alemania", redis_back_ms, edge, &cluster.edge.url);
    let status = admin_json(&cluster.b, &format!("/admin/v1/purge/{purge_id}")).await;
    eprintln!("the dead writer's purge: {status}");
    cluster.edge.assert_no_panic();
}
