//! Benchmark: warm scale-out. Instance A serves an analyst-like mix (Zipf over the entity,
//! breadcrumb and children pages of the hottest entities) from the database of
//! `WARM_START_ENTITIES` entities (default 1,000,000, grown first if missing) with Redis; then
//! a new instance B starts with `ff.predictive_preload` on and one C with it off. Reported:
//! each one's time from process start to `/readyz`, and its L1 hit ratio over its first 10 s
//! of the same mix, against A's over 10 s.
//!
//! Run: `bench/warm-start.sh` (release origin).

use std::time::{Duration, Instant};

use forecastin_e2e::{admin, client, free_port, get_json, psql, Origin};
use futures_util::StreamExt;
use reqwest::Method;

/// Entities whose pages make up the mix, most popular first, and the Zipf exponent.
const CATALOGUE: usize = 5_000;
const ZIPF: f64 = 1.1;
const CONCURRENCY: usize = 16;
const WINDOW: Duration = Duration::from_secs(10);

/// The hottest entities, breadth first from the root (as the load test ranks them).
async fn catalogue(origin: &Origin) -> Vec<String> {
    let (mut entities, mut queue) = (vec!["world".to_owned()], vec!["world".to_owned()]);
    while let Some(parent) = (!queue.is_empty()).then(|| queue.remove(0)) {
        if entities.len() >= CATALOGUE {
            break;
        }
        let page = get_json(&format!(
            "{}/api/v1/entities/{parent}/children?limit=500",
            origin.url
        ))
        .await;
        for item in page["items"].as_array().into_iter().flatten() {
            let id = item["id"].as_str().unwrap().to_owned();
            entities.push(id.clone());
            queue.push(id);
        }
    }
    entities.truncate(CATALOGUE);
    entities
}

/// Every page of the mix with its Zipf weight: entity, breadcrumb and children of each.
fn pages(entities: &[String]) -> (Vec<String>, Vec<f64>) {
    let mut pages = Vec::new();
    let mut cumulative = Vec::new();
    let mut total = 0.0;
    for (rank, entity) in entities.iter().enumerate() {
        let weight = 1.0 / ((rank + 1) as f64).powf(ZIPF);
        for suffix in ["", "/ancestors", "/children"] {
            total += weight;
            pages.push(format!("/api/v1/entities/{entity}{suffix}"));
            cumulative.push(total);
        }
    }
    (pages, cumulative)
}

/// A page drawn by weight, with a small deterministic generator (xorshift).
fn draw<'a>(pages: &'a [String], cumulative: &[f64], state: &mut u64) -> &'a str {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let target = (*state as f64 / u64::MAX as f64) * cumulative.last().unwrap();
    let index = cumulative.partition_point(|&c| c < target);
    &pages[index.min(pages.len() - 1)]
}

async fn l1(origin: &Origin) -> (u64, u64) {
    (
        origin.counter("l1_cache_hits_total").await,
        origin.counter("l1_cache_misses_total").await,
    )
}

/// Sends the mix to `origin` for `how_long`; returns its L1 hit ratio meanwhile.
async fn drive(
    origin: &Origin,
    (pages, cumulative): &(Vec<String>, Vec<f64>),
    how_long: Duration,
) -> f64 {
    let before = l1(origin).await;
    let started = Instant::now();
    futures_util::stream::iter(0..CONCURRENCY as u64)
        .for_each_concurrent(CONCURRENCY, |worker| async move {
            let mut state = 0x9E37_79B9_7F4A_7C15 ^ (worker + 1);
            while started.elapsed() < how_long {
                let page = draw(pages, cumulative, &mut state);
                let response = client()
                    .get(format!("{}{page}", origin.url))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{page}");
            }
        })
        .await;
    let after = l1(origin).await;
    let (hits, misses) = (after.0 - before.0, after.1 - before.1);
    hits as f64 / (hits + misses).max(1) as f64
}

async fn set_preloading(origin: &Origin, percent: u8) {
    let response = admin(
        Method::PUT,
        &origin.url,
        "/admin/v1/flags/ff.predictive_preload",
    )
    .json(&serde_json::json!({ "rollout_percent": percent }))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Starts a sibling of `a`; returns it and its time from spawn to ready.
async fn start_timed(a: &Origin) -> (Origin, Duration) {
    let started = Instant::now();
    let instance = a.start_sibling(&[]).await;
    (instance, started.elapsed())
}

#[tokio::main]
async fn main() {
    let size: u64 = std::env::var("WARM_START_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let database = format!("forecastin_bench_{size}");
    let server = forecastin_e2e::postgres_server();
    let (base, _) = server.rsplit_once('/').unwrap();
    let url = format!("{base}/{database}");
    if forecastin_e2e::query(&url, "SELECT 1").is_err() {
        psql(&format!("CREATE DATABASE {database}"));
    }
    let status = std::process::Command::new(Origin::binary())
        .args(["generate", "--entities", &size.to_string()])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .status()
        .expect("the origin binary runs");
    assert!(status.success(), "growing the database to {size} entities");

    let namespace = format!("warm-{}-{}", std::process::id(), free_port());
    let a = Origin::start(&[
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", namespace.as_str()),
    ])
    .await;
    set_preloading(&a, 100).await;
    let mix = pages(&catalogue(&a).await);
    // A serves long enough to be warm, and to have shared what it ranks hot.
    drive(&a, &mix, Duration::from_secs(30)).await;
    let warm = drive(&a, &mix, WINDOW).await;

    let (b, b_ready) = start_timed(&a).await;
    let b_hits = drive(&b, &mix, WINDOW).await;
    let b_pages = b.counter("origin_warm_start_pages").await;
    drop(b);

    set_preloading(&a, 0).await;
    let (c, c_ready) = start_timed(&a).await;
    let c_hits = drive(&c, &mix, WINDOW).await;
    set_preloading(&a, 100).await;

    println!(
        "warm scale-out at {size} entities (mix of {} pages):",
        mix.0.len()
    );
    println!("  A (serving for 30 s): L1 hit ratio over 10 s {warm:.4}");
    println!(
        "  B (preloading on): ready in {:.2} s with {b_pages} pages; L1 hit ratio over its first 10 s {b_hits:.4} ({:.1} % of A's)",
        b_ready.as_secs_f64(),
        100.0 * b_hits / warm
    );
    println!(
        "  C (preloading off): ready in {:.2} s; L1 hit ratio over its first 10 s {c_hits:.4} ({:.1} % of A's)",
        c_ready.as_secs_f64(),
        100.0 * c_hits / warm
    );
    drop(c);
}
