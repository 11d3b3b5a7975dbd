//! Several origin instances behaving as one: three processes on one PostgreSQL database and
//! one Redis, L1 invalidations crossing instances, and no stale L1 value outliving the bound
//! when the Redis subscription is lost.

use std::time::{Duration, Instant};

use forecastin_e2e::{admin, client, get_json, redis::PrivateRedis, rename, Backend, Origin};
use reqwest::Method;
use serde_json::json;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The bound on L1 staleness while an instance's subscription is down, in these tests.
const DISCONNECTED_TTL_MS: u64 = 500;

async fn three_instances() -> (Origin, Origin, Origin) {
    let namespace = format!("e2e-{}-{}", std::process::id(), forecastin_e2e::free_port());
    let ttl = DISCONNECTED_TTL_MS.to_string();
    let env = [
        ("REDIS_URL", REDIS_URL),
        ("REDIS_NAMESPACE", namespace.as_str()),
        ("L1_DISCONNECTED_TTL_MS", ttl.as_str()),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    let c = a.start_sibling(&[]).await;
    (a, b, c)
}

async fn name_on(origin: &Origin, id: &str) -> String {
    let body = get_json(&format!("{}/api/v1/entities/{id}", origin.url)).await;
    body["name"].as_str().unwrap().to_owned()
}

/// Waits until `origin` reports its Redis subscription up again.
async fn until_subscribed(origin: &Origin) {
    let started = Instant::now();
    loop {
        let metrics = origin.metrics().await;
        if metrics.contains("redis_subscription_up 1") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} never resubscribed",
            origin.url
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `origin` serves `name` for `id`; returns how long that took.
async fn until_served(origin: &Origin, id: &str, name: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if name_on(origin, id).await == name {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{} still serves the old {id}",
            origin.url
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_write_on_one_instance_invalidates_the_l1_of_the_others() {
    let (a, b, c) = three_instances().await;
    for round in 0..5 {
        // Both readers have the current value in their L1 (which has no TTL of its own).
        for reader in [&b, &c] {
            name_on(reader, "SE").await;
            name_on(reader, "SE").await;
        }
        let name = format!("Sverige {round}");
        rename(&a.url, "SE", &name).await;
        for reader in [&b, &c] {
            let took = until_served(reader, "SE", &name, Duration::from_secs(2)).await;
            eprintln!("round {round}: {} saw the write after {took:?}", reader.url);
        }
    }
    let metrics = b.metrics().await;
    assert!(
        metrics.contains("l1_cache_hits_total"),
        "the readers served from L1"
    );
}

#[tokio::test]
async fn a_lost_subscription_bounds_l1_staleness_and_recovers() {
    let (a, b, _c) = three_instances().await;
    name_on(&b, "NO").await;
    name_on(&b, "NO").await;

    // Drop every Pub/Sub connection: the instances must notice and resubscribe.
    let killed = std::process::Command::new("redis-cli")
        .args(["-u", REDIS_URL, "CLIENT", "KILL", "TYPE", "pubsub"])
        .output()
        .expect("redis-cli runs");
    assert!(killed.status.success());
    rename(&a.url, "NO", "Norge").await;
    let bound = Duration::from_millis(DISCONNECTED_TTL_MS) + Duration::from_millis(700);
    let took = until_served(&b, "NO", "Norge", bound).await;
    eprintln!("after the subscription was killed, the write was visible on B after {took:?}");

    // Subscribed again, invalidations flow as before.
    until_subscribed(&b).await;
    name_on(&b, "NO").await;
    rename(&a.url, "NO", "Noreg").await;
    until_served(&b, "NO", "Noreg", Duration::from_millis(500)).await;
}

async fn l2_hits(origin: &Origin) -> f64 {
    let metrics = origin.metrics().await;
    metrics
        .lines()
        .filter(|line| line.starts_with("l2_cache_hits_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn l2_is_shared_by_the_instances_and_purged_with_l1() {
    let namespace = format!(
        "e2e-l2-{}-{}",
        std::process::id(),
        forecastin_e2e::free_port()
    );
    let a = Origin::start_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", REDIS_URL),
            ("REDIS_NAMESPACE", namespace.as_str()),
        ],
    )
    .await;
    // Without L1, B and C read through L2.
    let b = a.start_sibling(&[("L1_CAPACITY", "0")]).await;
    let c = a.start_sibling(&[("L1_CAPACITY", "0")]).await;
    assert_eq!(name_on(&c, "DK").await, "Denmark");
    let before = l2_hits(&b).await;
    assert_eq!(name_on(&b, "DK").await, "Denmark");
    assert_eq!(
        l2_hits(&b).await,
        before + 1.0,
        "B was served what C put in L2"
    );

    rename(&a.url, "DK", "Danmark").await;
    assert_eq!(
        name_on(&b, "DK").await,
        "Danmark",
        "the write removed the L2 entry"
    );
    assert_eq!(name_on(&c, "DK").await, "Danmark");
}

#[tokio::test]
async fn a_redis_restart_degrades_to_l1_and_the_database_and_recovers() {
    let port = forecastin_e2e::free_port();
    let mut redis = PrivateRedis::start(port);
    let ttl = DISCONNECTED_TTL_MS.to_string();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("L1_DISCONNECTED_TTL_MS", ttl.as_str()),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    name_on(&b, "FI").await;
    name_on(&b, "FI").await;

    redis.stop();
    // Both instances keep answering reads and writes without Redis.
    rename(&a.url, "FI", "Suomi").await;
    let bound = Duration::from_millis(DISCONNECTED_TTL_MS) + Duration::from_millis(700);
    let took = until_served(&b, "FI", "Suomi", bound).await;
    eprintln!("with Redis down, B served the write after {took:?}");

    redis.restart();
    until_subscribed(&b).await;
    name_on(&b, "FI").await;
    rename(&a.url, "FI", "Finland").await;
    until_served(&b, "FI", "Finland", Duration::from_millis(500)).await;
}

async fn live_instances(origin: &Origin) -> Vec<String> {
    let page = forecastin_e2e::admin_json(origin, "/admin/v1/instances").await;
    let mut addresses: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_owned())
        .collect();
    addresses.sort();
    addresses
}

#[tokio::test]
async fn the_registry_lists_live_instances_and_forgets_a_dead_one_within_three_heartbeats() {
    let namespace = format!(
        "e2e-reg-{}-{}",
        std::process::id(),
        forecastin_e2e::free_port()
    );
    let env = [
        ("REDIS_URL", REDIS_URL),
        ("REDIS_NAMESPACE", namespace.as_str()),
        ("HEARTBEAT_MS", "200"),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    let mut c = a.start_sibling(&[]).await;
    let address = |o: &Origin| o.url.trim_start_matches("http://").to_owned();
    let mut everyone = vec![address(&a), address(&b), address(&c)];
    everyone.sort();
    let started = Instant::now();
    while live_instances(&b).await != everyone {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not all instances announced themselves"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    c.kill().await;
    let killed = Instant::now();
    let gone = address(&c);
    while live_instances(&a).await.contains(&gone) {
        assert!(
            killed.elapsed() < Duration::from_millis(3 * 200 + 400),
            "a dead instance is still listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("the dead instance disappeared after {:?}", killed.elapsed());
    let health_started = Instant::now();
    let health = client()
        .get(format!("{}/healthz", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    eprintln!("healthz answered in {:?}", health_started.elapsed());
}

async fn rollout_on(origin: &Origin, flag: &str) -> i64 {
    let page = forecastin_e2e::admin_json(origin, "/admin/v1/flags").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == flag)
        .and_then(|f| f["rollout_percent"].as_i64())
        .unwrap()
}

#[tokio::test]
async fn a_flag_change_reaches_every_instance_within_a_second() {
    let (a, b, c) = three_instances().await;
    for percent in [10, 25, 50, 100] {
        let set = admin(Method::PUT, &a.url, "/admin/v1/flags/ff.auto_scaling")
            .json(&json!({ "rollout_percent": percent }))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 200);
        let changed = Instant::now();
        for other in [&b, &c] {
            while rollout_on(other, "ff.auto_scaling").await != percent {
                assert!(
                    changed.elapsed() < Duration::from_secs(1),
                    "{} did not see {percent} %",
                    other.url
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        eprintln!(
            "{percent} % reached both other instances after {:?}",
            changed.elapsed()
        );
    }
}
