//! Benchmark: websocket event latency with 1,000 connected clients. Two origin instances on
//! PostgreSQL and Redis; 1,000 clients on instance B; 50 writes on instance A; for every client
//! and event, the time from the event's commit timestamp (`at_ms`, taken on A right after the
//! commit) to its arrival at the client. Also the cost of serializing one stream message.
//!
//! Run: `bench/websocket-fanout.sh` (release origin).

use std::time::{Duration, Instant};

use forecastin_e2e::{admin, free_port, Backend, Origin};
use forecastin_shared::dto::{ChangeKind, EntityEvent, EntityKind, EntitySummary, StreamMessage};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::{connect_async, tungstenite::Message};

const CLIENTS: usize = 1_000;
const WRITES: usize = 50;

fn now_ms() -> i64 {
    forecastin_e2e::unix_now_ms() as i64
}

fn serialization_cost() -> Duration {
    let message = StreamMessage::Event(EntityEvent {
        id: 123_456,
        change: ChangeKind::Moved,
        entity_id: "FR-75".into(),
        path: ["world", "m49-150", "m49-155", "FR", "FR-IDF", "FR-75"]
            .map(String::from)
            .to_vec(),
        entity: Some(EntitySummary {
            id: "FR-75".into(),
            parent_id: Some("FR-IDF".into()),
            kind: EntityKind::Subdivision,
            name: "Paris".into(),
            depth: 5,
        }),
        at_ms: now_ms(),
    });
    let mut batches: Vec<Duration> = (0..21)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..10_000 {
                std::hint::black_box(
                    serde_json::to_string(std::hint::black_box(&message)).unwrap(),
                );
            }
            started.elapsed() / 10_000
        })
        .collect();
    batches.sort();
    batches[10]
}

#[tokio::main]
async fn main() {
    println!(
        "serializing one stream message: median {:.4} ms",
        serialization_cost().as_secs_f64() * 1e3
    );
    let namespace = format!("bench-ws-{}-{}", std::process::id(), free_port());
    let env = [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", namespace.as_str()),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    let url = format!("{}/ws", b.url.replace("http://", "ws://"));
    let mut readers = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let (mut client, _) = connect_async(url.as_str())
            .await
            .expect("a client connects");
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(WRITES);
            while latencies.len() < WRITES {
                match tokio::time::timeout(Duration::from_secs(30), client.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                        let at = message["at_ms"].as_i64().unwrap();
                        latencies.push(Duration::from_millis((now_ms() - at).max(0) as u64));
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            latencies
        }));
    }
    for n in 0..WRITES {
        let written = admin(Method::PATCH, &a.url, "/admin/v1/entities/BE")
            .json(&json!({ "name": format!("Belgium {n}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(written.status(), 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all = Vec::with_capacity(CLIENTS * WRITES);
    for reader in readers {
        all.extend(reader.await.unwrap());
    }
    assert_eq!(all.len(), CLIENTS * WRITES, "every client got every event");
    all.sort();
    let p = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize].as_millis();
    println!(
        "websocket events, commit on A -> client on B, {CLIENTS} clients x {WRITES} writes: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        p(0.50),
        p(0.95),
        p(0.99),
        all.last().unwrap().as_millis()
    );
}
