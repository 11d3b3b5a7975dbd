//! A rolling deploy of three origin instances under writes, as Kubernetes runs one: each
//! instance in turn gets a replacement, leaves the load balancer and is sent SIGTERM. Every
//! purge reaches the CDN without waiting for a departed instance, and every websocket client
//! of a departing instance resumes on another within the seed's 5 s, from its last event id,
//! with nothing missed and nothing twice.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use forecastin_e2e::{admin, standins, wait_settled, Backend, Origin};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Long, so that a purge waiting for a departed instance (this bound plus three sequence
/// checks) stands out from one that does not.
const DISCONNECTED_TTL_MS: u64 = 4_000;
/// Purges must reach the CDN well within the bound above.
const PURGE_DELAY_MAX_MS: i64 = 2_500;
/// The seed's bound on a client's way back to the stream.
const RESUMED_WITHIN: Duration = Duration::from_secs(5);
const ENTITIES: [&str; 5] = ["SE", "NO", "DK", "FI", "IS"];
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// Writes that land before each instance departs, and after the last.
const WRITES_A_PHASE: usize = 10;

/// Waits until [`WRITES_A_PHASE`] more writes have landed, however slow the machine.
async fn more_writes(count: &AtomicUsize) {
    let target = count.load(Ordering::SeqCst) + WRITES_A_PHASE;
    let started = Instant::now();
    while count.load(Ordering::SeqCst) < target {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the writes stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The load balancer's view: the instances that get new requests.
type Live = Arc<Mutex<Vec<String>>>;

fn another(live: &Live, than: &str) -> Option<String> {
    live.lock().unwrap().iter().find(|u| *u != than).cloned()
}

/// What one stream client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Event ids and the names the events carried, in order of arrival.
    events: Vec<(u64, String)>,
    resets: usize,
    /// From a stream's end to the next one's start.
    gaps: Vec<Duration>,
}

/// Follows the stream from `start`, moving to another live instance when a stream ends, until
/// told to stop.
async fn follow(live: Live, start: String, mut stop: watch::Receiver<bool>) -> Seen {
    let mut seen = Seen::default();
    let mut url = start;
    let mut last: Option<u64> = None;
    let mut ended_at: Option<Instant> = None;
    loop {
        let query = last.map_or_else(String::new, |id| format!("?last_event_id={id}"));
        let address = format!("{}/ws{query}", url.replacen("http", "ws", 1));
        if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&address).await {
            if let Some(ended) = ended_at.take() {
                seen.gaps.push(ended.elapsed());
            }
            loop {
                tokio::select! {
                    frame = socket.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            let message: Value = serde_json::from_str(&text).unwrap();
                            if message["type"] == "reset" {
                                seen.resets += 1;
                            } else {
                                let id = message["id"].as_u64().unwrap();
                                let name = message["entity"]["name"].as_str().unwrap_or_default();
                                seen.events.push((id, name.to_owned()));
                                last = Some(id);
                            }
                        }
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                    _ = stop.changed() => return seen,
                }
            }
            ended_at = Some(Instant::now());
        } else {
            ended_at.get_or_insert_with(Instant::now);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if *stop.borrow() {
            return seen;
        }
        url = another(&live, &url).unwrap_or(url);
    }
}

/// Renames entities through the live instances until told to stop, counting them in `count`;
/// returns the names written and their purges, in order. A write that cannot reach its
/// instance (it left meanwhile) goes to another.
async fn write(
    live: Live,
    stop: watch::Receiver<bool>,
    count: Arc<AtomicUsize>,
) -> Vec<(String, String)> {
    let mut written = Vec::new();
    let mut n = 0;
    while !*stop.borrow() {
        let base = {
            let live = live.lock().unwrap();
            live[n % live.len()].clone()
        };
        let name = format!("Roll {n}");
        let entity = ENTITIES[n % ENTITIES.len()];
        let sent = admin(
            reqwest::Method::PATCH,
            &base,
            &format!("/admin/v1/entities/{entity}"),
        )
        .json(&json!({ "name": name }))
        .send()
        .await;
        match sent {
            Ok(response) => {
                assert_eq!(response.status(), 200, "renaming {entity} through {base}");
                let purge = response.headers()["forecastin-purge-id"].to_str().unwrap();
                written.push((name, purge.to_owned()));
                count.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            Err(err) => assert!(err.is_connect(), "{base}: {err}"),
        }
        tokio::time::sleep(WRITE_EVERY).await;
    }
    written
}

#[tokio::test]
async fn a_rolling_deploy_delays_no_purge_and_loses_no_event() {
    let cloudflare = standins::cloudflare("zone-roll", "token-roll", 0).await;
    let namespace = format!(
        "e2e-roll-{}-{}",
        std::process::id(),
        forecastin_e2e::free_port()
    );
    let ttl = DISCONNECTED_TTL_MS.to_string();
    let env = [
        ("REDIS_URL", REDIS_URL),
        ("REDIS_NAMESPACE", namespace.as_str()),
        ("L1_DISCONNECTED_TTL_MS", ttl.as_str()),
        ("PURGE_PROVIDERS", "cloudflare"),
        ("CLOUDFLARE_API_BASE", cloudflare.url.as_str()),
        ("CLOUDFLARE_ZONE_ID", "zone-roll"),
        ("CLOUDFLARE_API_TOKEN", "token-roll"),
    ];
    let first = Origin::start_with(Backend::Postgres, &env).await;
    let mut old = vec![
        first.start_sibling(&[]).await,
        first.start_sibling(&[]).await,
    ];
    old.insert(0, first);
    let live: Live = Arc::new(Mutex::new(old.iter().map(|o| o.url.clone()).collect()));

    let (stop_clients, clients_stop) = watch::channel(false);
    let clients: Vec<_> = old
        .iter()
        .flat_map(|origin| [origin.url.clone(), origin.url.clone()])
        .map(|url| tokio::spawn(follow(live.clone(), url, clients_stop.clone())))
        .collect();
    // The streams are open before the first write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stop_writes, writes_stop) = watch::channel(false);
    let count = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write(live.clone(), writes_stop, count.clone()));

    let mut new = Vec::new();
    for departing in &mut old {
        more_writes(&count).await;
        let replacement = departing.start_sibling(&[]).await;
        live.lock().unwrap().push(replacement.url.clone());
        live.lock().unwrap().retain(|url| *url != departing.url);
        let took = departing.stop().await;
        eprintln!("{} stopped {took:?} after SIGTERM", departing.url);
        new.push(replacement);
    }
    more_writes(&count).await;
    stop_writes.send(true).unwrap();
    let written = writer.await.unwrap();
    assert!(
        written.len() >= 4 * WRITES_A_PHASE,
        "{} writes",
        written.len()
    );

    let mut slowest = 0;
    for (_, purge) in &written {
        let status = wait_settled(&new[0], purge, Duration::from_secs(15)).await;
        let created = status["created_at_ms"].as_i64().unwrap();
        for delivery in status["deliveries"].as_array().unwrap() {
            assert_eq!(delivery["status"], "delivered", "{status}");
            if delivery["provider"] == "cloudflare" {
                let delay = delivery["delivered_at_ms"].as_i64().unwrap() - created;
                slowest = slowest.max(delay);
            }
        }
    }
    eprintln!(
        "{} writes; the slowest purge reached the CDN after {slowest} ms",
        written.len()
    );
    assert!(
        slowest < PURGE_DELAY_MAX_MS,
        "a purge waited {slowest} ms: for a departed instance?"
    );

    // Every event has reached every instance by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_clients.send(true).unwrap();
    let names: Vec<&str> = written.iter().map(|(name, _)| name.as_str()).collect();
    for (n, client) in clients.into_iter().enumerate() {
        let seen = client.await.unwrap();
        assert_eq!(seen.resets, 0, "client {n} was told to refetch: {seen:?}");
        assert!(
            seen.events.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "client {n} got ids out of order or twice: {:?}",
            seen.events
        );
        let got: Vec<&str> = seen.events.iter().map(|(_, name)| name.as_str()).collect();
        let unique: HashSet<&str> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len(), "client {n} got an event twice");
        assert_eq!(
            got, names,
            "client {n} missed events or got them out of order"
        );
        assert!(!seen.gaps.is_empty(), "client {n} was never moved");
        let longest = seen.gaps.iter().max().unwrap();
        eprintln!("client {n}: {} moves, longest {longest:?}", seen.gaps.len());
        assert!(
            *longest <= RESUMED_WITHIN,
            "client {n} took {longest:?} to resume"
        );
    }
}
