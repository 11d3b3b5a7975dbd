//! Benchmark: moving a 10,000-node subtree at 1,000,000 entities on PostgreSQL.
//!
//! A release origin on a database grown with `forecastin-origin generate`, plus a subtree of
//! 10,000 nodes (1 + 99 actors + 9,900 topics) under France or Germany. Four readers fetch
//! breadcrumbs (`/ancestors`) of random entities and of the subtree's nodes at a steady pace;
//! first idle for a few seconds, then while the subtree moves to the other country. Reported:
//! the move's commit time (the PATCH round trip), the time until every sampled read of the
//! moved nodes is correct, and the readers' p50/p99 idle and during the move.
//!
//! Run: `bench/subtree-move.sh` (release origin; the database is kept for later runs).

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use forecastin_e2e::{admin, client, get_json, postgres_server, query, Origin};
use reqwest::Method;

const READERS: usize = 4;
/// Each reader's pace: 4 x 500 reads/s, a steady load well below what the machine sustains
/// (about 11,000 reads/s with the readers unpaced), as traffic is; a saturated machine would
/// measure its run queue, not the move.
const READ_EVERY: Duration = Duration::from_millis(2);
const IDLE: Duration = Duration::from_secs(5);

fn sql(url: &str, statement: &str) -> String {
    query(url, statement).unwrap_or_else(|err| panic!("{statement}: {err}"))
}

/// The benchmark database at `entities` plus the subtree, made once and reused.
fn database(entities: u64) -> String {
    let server = postgres_server();
    let name = format!("forecastin_bench_move_{entities}");
    let (base, _) = server.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    if sql(
        &server,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    )
    .is_empty()
    {
        sql(&server, &format!("CREATE DATABASE {name}"));
    }
    let started = Instant::now();
    let status = Command::new(Origin::binary())
        .args(["generate", "--entities", &entities.to_string()])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .status()
        .expect("the origin generates");
    assert!(status.success());
    if sql(&url, "SELECT 1 FROM entities WHERE id = 'mv'").is_empty() {
        let columns = "(id, parent_id, kind, name, search_name, path, depth, updated_at)";
        sql(
            &url,
            &format!(
                "INSERT INTO entities {columns} SELECT 'mv', 'FR', 'actor', 'Moved subtree', \
                 'moved subtree', path || 'mv/', depth + 1, now()::text FROM entities \
                 WHERE id = 'FR'"
            ),
        );
        sql(
            &url,
            &format!(
                "INSERT INTO entities {columns} SELECT 'mv.a' || a, 'mv', 'actor', \
                 'Moved actor ' || a, 'moved actor ' || a, r.path || 'mv.a' || a || '/', \
                 r.depth + 1, now()::text FROM entities r, generate_series(0, 98) a \
                 WHERE r.id = 'mv'"
            ),
        );
        sql(
            &url,
            &format!(
                "INSERT INTO entities {columns} SELECT a.id || '.t' || t, a.id, 'topic', \
                 'Moved topic ' || t, 'moved topic ' || t, a.path || a.id || '.t' || t || '/', \
                 a.depth + 1, now()::text FROM entities a, generate_series(0, 99) t \
                 WHERE a.parent_id = 'mv'"
            ),
        );
        sql(&url, "ANALYZE entities");
    }
    assert_eq!(
        sql(
            &url,
            "SELECT COUNT(*) FROM entities WHERE path LIKE '%/mv/%'"
        ),
        "10000"
    );
    eprintln!("database ready in {:?}", started.elapsed());
    url
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// A read: when it started and ended.
type Span = (Instant, Instant);

/// Readers fetching breadcrumbs of `ids` round robin (each from its own offset) until `stop`.
async fn read_until(origin: String, ids: Arc<Vec<String>>, stop: Arc<AtomicBool>) -> Vec<Span> {
    let tasks = (0..READERS).map(|reader| {
        let (ids, stop, origin) = (ids.clone(), stop.clone(), origin.clone());
        tokio::spawn(async move {
            let http = client();
            let mut spans = Vec::new();
            let mut n = reader * 7_919;
            let mut pace = tokio::time::interval(READ_EVERY);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                n = (n + 104_729) % ids.len();
                let started = Instant::now();
                let response = http
                    .get(format!("{origin}/api/v1/entities/{}/ancestors", ids[n]))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                spans.push((started, Instant::now()));
            }
            spans
        })
    });
    let mut spans = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        spans.extend(task.unwrap());
    }
    spans
}

fn latencies(spans: &[Span]) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = spans.iter().map(|(s, e)| *e - *s).collect();
    latencies.sort();
    latencies
}

fn report(label: &str, spans: &[Span]) -> f64 {
    let sorted = latencies(spans);
    let p99 = percentile(&sorted, 0.99);
    println!(
        "{label}: {} reads, p50 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        sorted.len(),
        percentile(&sorted, 0.50),
        sorted.last().unwrap().as_secs_f64() * 1e3
    );
    p99
}

#[tokio::main]
async fn main() {
    let entities: u64 = std::env::var("BENCH_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let url = database(entities);
    // Random entities everywhere, and the subtree's nodes, in a fixed shuffled order.
    let ids: Vec<String> = sql(
        &url,
        "(SELECT id FROM entities TABLESAMPLE SYSTEM (2) REPEATABLE (7) LIMIT 15000) \
         UNION ALL (SELECT id FROM entities WHERE path LIKE '%/mv/%' ORDER BY md5(id) LIMIT 1000)",
    )
    .lines()
    .map(str::to_owned)
    .collect();
    let moved: Vec<String> = ids
        .iter()
        .filter(|id| id.starts_with("mv"))
        .cloned()
        .collect();
    let ids = Arc::new(ids);
    // No L1: every read goes to the database, where the move's writes are.
    let origin = Origin::start(&[("DATABASE_URL", url.as_str()), ("L1_CAPACITY", "0")]).await;
    let (from, to) =
        match get_json(&format!("{}/api/v1/entities/mv", origin.url)).await["parent_id"].as_str() {
            Some("FR") => ("FR", "DE"),
            _ => ("DE", "FR"),
        };

    let stop = Arc::new(AtomicBool::new(false));
    let idle = tokio::spawn(read_until(origin.url.clone(), ids.clone(), stop.clone()));
    tokio::time::sleep(IDLE).await;
    stop.store(true, Ordering::Relaxed);
    let idle = idle.await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(read_until(origin.url.clone(), ids.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let move_started = Instant::now();
    let response = admin(Method::PATCH, &origin.url, "/admin/v1/entities/mv")
        .json(&serde_json::json!({ "parent_id": to }))
        .send()
        .await
        .unwrap();
    let committed = Instant::now();
    assert_eq!(response.status(), 200, "moving the subtree");
    // Every sampled moved node's breadcrumb must name the new country: the first pass
    // counts the reads still stale after the commit, later passes run until none is.
    let mut pending: Vec<&String> = moved.iter().collect();
    let mut stale_in_first_pass = None;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let crumbs = get_json(&format!("{}/api/v1/entities/{id}/ancestors", origin.url)).await;
            if crumbs["items"][3]["id"] != to {
                still.push(id);
            }
        }
        stale_in_first_pass.get_or_insert(still.len());
        pending = still;
        assert!(
            committed.elapsed() < Duration::from_secs(30),
            "reads stayed stale"
        );
    }
    let correct = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let during = during.await.unwrap();
    let overlapping: Vec<Span> = during
        .iter()
        .filter(|(s, e)| *e >= move_started && *s <= committed)
        .copied()
        .collect();

    println!(
        "moved the 10,000-node subtree {from} -> {to} at {entities} entities: commit {:.1} ms \
         (PATCH round trip); reading the breadcrumbs of {} moved nodes right after the commit \
         found {} stale, all correct {:.1} ms after the commit (the reads themselves)",
        (committed - move_started).as_secs_f64() * 1e3,
        moved.len(),
        stale_in_first_pass.unwrap_or(0),
        (correct - committed).as_secs_f64() * 1e3,
    );
    let idle_p99 = report("reads idle", &idle);
    report("reads in the move phase (1 s before to 1 s after)", &during);
    let move_p99 = report("reads overlapping the move's transaction", &overlapping);
    println!("p99 during the move / idle: {:.2}", move_p99 / idle_p99);
}
