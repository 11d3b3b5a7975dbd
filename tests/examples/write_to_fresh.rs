//! Benchmark: how long after an admin write the edge serves the new data, locally, through
//! the edge-direct purge provider. 200 renames of one entity that the edge has cached; for
//! each, the time from the write's response to the first edge response showing the new name.
//!
//! Run: `bench/write-to-fresh.sh` (it builds the release origin and the Worker first).

use std::time::{Duration, Instant};

use forecastin_e2e::{admin, cache_status, client, free_port, Edge, Origin, PURGE_SECRET};
use reqwest::Method;
use serde_json::json;

const WRITES: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let origin = Origin::start(&[
        ("PURGE_SECRET", PURGE_SECRET),
        ("EDGE_PURGE_URL", &purge_url),
    ])
    .await;
    let edge = Edge::start_on(edge_port, &origin.url).await;
    let url = format!("{}/api/v1/entities/FR-75", edge.url);
    client().get(&url).send().await.unwrap();

    let mut latencies = Vec::with_capacity(WRITES);
    let mut misses = 0;
    for n in 0..WRITES {
        let name = format!("Paris {n}");
        let cached = cache_status(&client().get(&url).send().await.unwrap());
        assert!(
            cached.contains("hit"),
            "the entity is cached before the write: {cached}"
        );
        let written = admin(Method::PATCH, &origin.url, "/admin/v1/entities/FR-75")
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(written.status(), 200);
        let started = Instant::now();
        loop {
            let response = client().get(&url).send().await.unwrap();
            let status = cache_status(&response);
            let body: serde_json::Value = response.json().await.unwrap();
            if body["name"] == name.as_str() {
                latencies.push(started.elapsed());
                misses += usize::from(status.contains("fwd=uri-miss"));
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "write {n} never reached the edge"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    latencies.sort();
    println!(
        "write -> fresh at the edge over {WRITES} writes: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {misses} of {WRITES} first fresh reads were misses",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
}
