//! Benchmark: cross-instance L1 invalidation. Three origin processes on one PostgreSQL
//! database and one Redis; 200 renames on A of an entity that B has in its L1; for each, the
//! time from A's response to B's first response with the new name.
//!
//! Run: `bench/cross-instance.sh` (release origin).

use std::time::{Duration, Instant};

use forecastin_e2e::{free_port, get_json, rename, Backend, Origin};

const WRITES: usize = 200;

async fn name_on(origin: &Origin) -> String {
    get_json(&format!("{}/api/v1/entities/SE", origin.url)).await["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let namespace = format!("bench-{}-{}", std::process::id(), free_port());
    let env = [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", namespace.as_str()),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    let _c = a.start_sibling(&[]).await;
    let mut latencies = Vec::with_capacity(WRITES);
    for n in 0..WRITES {
        name_on(&b).await; // in B's L1
        let name = format!("Sverige {n}");
        rename(&a.url, "SE", &name).await;
        let started = Instant::now();
        while name_on(&b).await != name {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "write {n} never reached B"
            );
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "cross-instance L1 invalidation over {WRITES} writes: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
}
