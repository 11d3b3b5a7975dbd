//! Latency of ancestor resolution, first-page descendant retrieval and search, served by the real
//! router in-process (server-side time: routing, cache, database, JSON), on SQLite and
//! PostgreSQL, at several hierarchy sizes, with L1 off (the database path) and L1 warm (hits).
//!
//! Run: `bench/hierarchy.sh` (or `cargo bench -p forecastin-origin --bench hierarchy`).
//! Settings (environment): `BENCH_SIZES` (default `100000,1000000`), `BENCH_BACKENDS`
//! (`sqlite,postgres`), `BENCH_SAMPLES` (requests per measurement, default 3000),
//! `BENCH_POSTGRES_URL` (server URL, default the local one). Databases are kept under
//! `.bench/` and as `forecastin_bench_<size>` on PostgreSQL, and reused on later runs.

use std::time::{Duration, Instant};

use axum::{body::Body, http::Request, Router};
use clap::Parser;
use forecastin_origin::{
    background::Background, config::Config, db::Db, hierarchy::Hierarchy, purge::Outbox, seed,
};
use http_body_util::BodyExt;
use rand::{rngs::StdRng, seq::IndexedRandom, SeedableRng};
use sqlx::{postgres::PgConnection, AssertSqlSafe, Connection, Executor};
use tower::ServiceExt;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// Database URL for a backend and size, creating the PostgreSQL database if needed.
async fn database_url(backend: &str, size: u64) -> String {
    match backend {
        "sqlite" => {
            std::fs::create_dir_all("../.bench").unwrap();
            format!("sqlite://../.bench/hierarchy-{size}.db?mode=rwc")
        }
        "postgres" => {
            let server = env_or(
                "BENCH_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            );
            let name = format!("forecastin_bench_{size}");
            let mut conn = PgConnection::connect(&server).await.unwrap();
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap();
            if exists.is_none() {
                conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
            }
            let (base, _) = server.rsplit_once('/').unwrap();
            format!("{base}/{name}")
        }
        other => panic!("unknown backend {other}"),
    }
}

async fn app(url: &str, l1_capacity: &str) -> Router {
    let Args { config } = Args::try_parse_from([
        "bench",
        "--database-url",
        url,
        "--admin-token",
        "bench-admin-token-of-at-least-32-bytes",
        "--l1-capacity",
        l1_capacity,
    ])
    .unwrap();
    forecastin_origin::build(&config).await.unwrap().0
}

/// Server-side latency of each URI, in order.
async fn measure(router: &Router, uris: &[String]) -> Vec<Duration> {
    let mut times = Vec::with_capacity(uris.len());
    for uri in uris {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let started = Instant::now();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        response.into_body().collect().await.unwrap();
        times.push(started.elapsed());
        assert!(status.is_success(), "{uri}: {status}");
    }
    times
}

fn report(backend: &str, size: u64, operation: &str, path: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "| {backend} | {size} | {operation} | {path} | {:.0} | {:.0} | {:.0} |",
        percentile(&times, 0.50),
        percentile(&times, 0.95),
        percentile(&times, 0.99),
    );
}

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = env_or("BENCH_SIZES", "100000,1000000")
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SIZES holds integers"))
        .collect();
    let backends = env_or("BENCH_BACKENDS", "sqlite,postgres");
    let samples: usize = env_or("BENCH_SAMPLES", "3000").parse().unwrap();
    println!("| backend | entities | operation | path | p50 µs | p95 µs | p99 µs |");
    println!("|---|---|---|---|---|---|---|");
    for size in sizes {
        for backend in backends.split(',') {
            let url = database_url(backend, size).await;
            let started = Instant::now();
            {
                let Args { config } =
                    Args::try_parse_from(["bench", "--database-url", &url]).unwrap();
                let hierarchy = Hierarchy::new(
                    Db::connect(&config.db, Default::default(), &Background::default())
                        .await
                        .unwrap(),
                    Outbox::default(),
                );
                seed::load_demo_if_empty(&hierarchy).await.unwrap();
                seed::generate(&hierarchy, size).await.unwrap();
                if backend == "postgres" {
                    sqlx::query("ANALYZE entities")
                        .execute(hierarchy.db.primary.sqlx())
                        .await
                        .unwrap();
                }
                eprintln!("{backend} at {size}: ready in {:?}", started.elapsed());
            }
            let db_path = app(&url, "0").await;
            let with_l1 = app(&url, "1000000").await;

            let pool = {
                let Args { config } =
                    Args::try_parse_from(["bench", "--database-url", &url]).unwrap();
                Db::connect(&config.db, Default::default(), &Background::default())
                    .await
                    .unwrap()
                    .primary
                    .sqlx()
                    .clone()
            };
            let leaves: Vec<String> =
                sqlx::query_scalar("SELECT id FROM entities WHERE kind = 'topic' LIMIT 20000")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let roots: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM entities WHERE kind IN ('country', 'subdivision', 'actor') \
                 LIMIT 20000",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let mut rng = StdRng::seed_from_u64(7);
            let pick = |ids: &[String], rng: &mut StdRng, format: &dyn Fn(&str) -> String| {
                (0..samples)
                    .map(|_| format(ids.choose(rng).unwrap()))
                    .collect::<Vec<_>>()
            };
            let ancestors = pick(&leaves, &mut rng, &|id| {
                format!("/api/v1/entities/{id}/ancestors")
            });
            let descendants = pick(&roots, &mut rng, &|id| {
                format!("/api/v1/entities/{id}/descendants?limit=50")
            });
            // One or two letters (a prefix), and four letters of a real name (a substring).
            let letters = || 'a'..='z';
            let prefixes: Vec<String> = letters()
                .map(String::from)
                .chain(letters().flat_map(|a| letters().map(move |b| format!("{a}{b}"))))
                .collect();
            let short = pick(&prefixes, &mut rng, &|q| format!("/api/v1/search?q={q}"));
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT lower(substr(name, 1, 4)) FROM entities WHERE kind = 'topic' LIMIT 20000",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let substring = pick(&names, &mut rng, &|name| {
                format!("/api/v1/search?q={}", urlencode(name))
            });

            for (operation, uris) in [
                ("ancestors", &ancestors),
                ("descendants p1", &descendants),
                ("search 1-2 chars", &short),
                ("search 4 chars", &substring),
            ] {
                measure(&db_path, &uris[..uris.len().min(200)]).await; // warm the pool
                report(
                    backend,
                    size,
                    operation,
                    "DB (L1 off)",
                    measure(&db_path, uris).await,
                );
                measure(&with_l1, uris).await; // fill L1
                report(
                    backend,
                    size,
                    operation,
                    "L1 hit",
                    measure(&with_l1, uris).await,
                );
            }
        }
    }
}
