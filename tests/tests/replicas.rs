//! Read replicas against a real PostgreSQL streaming replica (see
//! `forecastin_e2e::replica`): public reads go to the replica and writes to the primary, a
//! stopped or lagging replica leaves the rotation and comes back, and a purge never lets the
//! edge cache what a replica that has not replayed the write still holds.

use std::time::{Duration, Instant};

use forecastin_e2e::{
    cache_status, client, free_port, rename, replica::StreamingPair, wait_settled, Edge, Origin,
    PURGE_SECRET,
};

fn replica_env<'a>(pair: &'a StreamingPair, max_lag_ms: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("DATABASE_URL", pair.primary_url.as_str()),
        ("DATABASE_REPLICA_URLS", pair.replica_url.as_str()),
        ("REPLICA_MAX_LAG_MS", max_lag_ms),
        // Every read reaches the database, so the pool that served it is visible.
        ("L1_CAPACITY", "0"),
    ]
}

/// `(in rotation, lag in ms)` of the origin's only replica, from its metrics.
async fn replica_state(origin: &Origin) -> (bool, u64) {
    let in_rotation = origin.sample("db_replica_in_rotation").await == Some(1.0);
    let lag_seconds = origin
        .sample("db_replica_lag_seconds")
        .await
        .unwrap_or_default();
    (in_rotation, (lag_seconds * 1000.0) as u64)
}

async fn until_in_rotation(origin: &Origin, wanted: bool, limit: Duration) -> Duration {
    let started = Instant::now();
    while replica_state(origin).await.0 != wanted {
        assert!(
            started.elapsed() < limit,
            "the replica never became in_rotation={wanted}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Public reads the origin sent to `pool`, from its metrics.
async fn reads_on(origin: &Origin, pool: &str) -> u64 {
    let needle = format!("db_public_reads_total{{pool=\"{pool}\"}} ");
    origin
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&needle)?.parse().ok())
        .unwrap_or(0)
}

/// The entity's name as the origin serves it. A read once came back without one and was never
/// seen again: the panic says everything the answer carried (status, the request id to find it
/// in the origin's log, the caching headers, the body).
async fn name_of(base: &str, id: &str) -> String {
    let response = client()
        .get(format!("{base}/api/v1/entities/{id}"))
        .send()
        .await
        .expect("the origin answers");
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|entity| entity["name"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no name for {id}: {status} {headers:?} {body}"))
}

/// Counts the public reads on each pool around `reads`; `(primary, replica)`.
async fn served_by(origin: &Origin, reads: impl std::future::Future<Output = ()>) -> (u64, u64) {
    let before = (
        reads_on(origin, "primary").await,
        reads_on(origin, "replica-0").await,
    );
    reads.await;
    let after = (
        reads_on(origin, "primary").await,
        reads_on(origin, "replica-0").await,
    );
    (after.0 - before.0, after.1 - before.1)
}

/// In rotation means less than the lag bound behind, not caught up: waits until the origin
/// reads from the replica, which it does once the replica has replayed the demo data loaded at
/// start (and the origin has seen it do so).
async fn until_replayed_demo_data(origin: &Origin) {
    let started = Instant::now();
    while served_by(origin, async {
        name_of(&origin.url, "IT").await;
    })
    .await
        != (0, 1)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn public_reads_go_to_the_replica_and_writes_to_the_primary() {
    let Some(pair) = StreamingPair::start_or_skip() else {
        return;
    };
    let origin = Origin::start(&replica_env(&pair, "1000")).await;
    until_in_rotation(&origin, true, Duration::from_secs(10)).await;
    until_replayed_demo_data(&origin).await;

    let (primary, replica) = served_by(&origin, async {
        for _ in 0..20 {
            name_of(&origin.url, "FR").await;
        }
    })
    .await;
    assert_eq!(
        (primary, replica),
        (0, 20),
        "every public read on the replica"
    );

    // The replica is read-only: the write can only have gone to the primary.
    rename(&origin.url, "FR", "France (primary)").await;
    assert_eq!(
        pair.primary_sql("SELECT name FROM entities WHERE id = 'FR'"),
        "France (primary)"
    );
    // Read-your-write: the next read sees it, whichever pool serves it.
    assert_eq!(name_of(&origin.url, "FR").await, "France (primary)");
}

#[tokio::test]
async fn a_stopped_replica_leaves_the_rotation_and_returns_when_it_is_back() {
    let Some(pair) = StreamingPair::start_or_skip() else {
        return;
    };
    let origin = Origin::start(&replica_env(&pair, "1000")).await;
    until_in_rotation(&origin, true, Duration::from_secs(10)).await;

    pair.stop_replica();
    let took = until_in_rotation(&origin, false, Duration::from_secs(5)).await;
    eprintln!("a stopped replica left the rotation after {took:?}");
    let (primary, replica) = served_by(&origin, async {
        for _ in 0..10 {
            assert_eq!(name_of(&origin.url, "DE").await, "Germany");
        }
    })
    .await;
    assert_eq!(
        (primary, replica),
        (10, 0),
        "reads fall back to the primary"
    );

    pair.start_replica();
    let took = until_in_rotation(&origin, true, Duration::from_secs(10)).await;
    eprintln!("the restarted replica came back after {took:?}");
    let (_, replica) = served_by(&origin, async {
        for _ in 0..10 {
            name_of(&origin.url, "DE").await;
        }
    })
    .await;
    assert_eq!(replica, 10, "reads go to the replica again");
}

#[tokio::test]
async fn a_lagging_replica_serves_no_read_it_cannot_answer_and_leaves_the_rotation() {
    let Some(pair) = StreamingPair::start_or_skip() else {
        return;
    };
    let origin = Origin::start(&replica_env(&pair, "600")).await;
    until_in_rotation(&origin, true, Duration::from_secs(10)).await;
    until_replayed_demo_data(&origin).await;

    pair.pause_replay();
    rename(&origin.url, "IT", "Italia").await;
    // The replica is still in rotation but has not replayed the write: the reads that follow
    // it go to the primary.
    let (primary, replica) = served_by(&origin, async {
        for _ in 0..5 {
            assert_eq!(name_of(&origin.url, "IT").await, "Italia");
        }
    })
    .await;
    assert_eq!((primary, replica), (5, 0));
    assert_eq!(
        pair.replica_sql("SELECT name FROM entities WHERE id = 'IT'"),
        "Italy"
    );

    let took = until_in_rotation(&origin, false, Duration::from_secs(5)).await;
    let (_, lag_ms) = replica_state(&origin).await;
    eprintln!("the paused replica left the rotation after {took:?}, {lag_ms} ms behind");
    // It leaves once more than 600 ms behind; `lag_ms` is that lag truncated to whole ms.
    assert!(lag_ms >= 600, "left at {lag_ms} ms of lag");

    pair.resume_replay();
    until_in_rotation(&origin, true, Duration::from_secs(5)).await;
    let (_, replica) = served_by(&origin, async {
        assert_eq!(name_of(&origin.url, "IT").await, "Italia");
    })
    .await;
    assert_eq!(replica, 1, "the caught-up replica serves again");
}

/// The origin's settings with a read replica and the edge-direct purge provider.
fn purge_env<'a>(
    pair: &'a StreamingPair,
    max_lag_ms: &'a str,
    edge_purge_url: &'a str,
) -> Vec<(&'static str, &'a str)> {
    let mut env = replica_env(pair, max_lag_ms);
    env.extend([
        ("PURGE_SECRET", PURGE_SECRET),
        ("EDGE_PURGE_URL", edge_purge_url),
    ]);
    env
}

async fn edge_name(edge: &Edge, id: &str) -> (String, String) {
    let response = client()
        .get(format!("{}/api/v1/entities/{id}", edge.url))
        .send()
        .await
        .unwrap();
    let status = cache_status(&response);
    let body: serde_json::Value = response.json().await.unwrap();
    (body["name"].as_str().unwrap().to_owned(), status)
}

/// Reads `id` through the edge until a hit, which must carry `name`.
async fn until_edge_hit(edge: &Edge, id: &str, name: &str) {
    for _ in 0..20 {
        let (served, status) = edge_name(edge, id).await;
        if status.contains("hit") {
            assert_eq!(served, name, "the edge cached {served:?}");
            return;
        }
    }
    panic!("{id} never became a hit at the edge");
}

#[tokio::test]
async fn a_purge_waits_for_the_replica_to_replay_the_write() {
    let Some(pair) = StreamingPair::start_or_skip() else {
        return;
    };
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let origin = Origin::start(&purge_env(&pair, "10000", &purge_url)).await;
    let edge = Edge::start_on(edge_port, &origin.url).await;
    until_in_rotation(&origin, true, Duration::from_secs(10)).await;
    until_edge_hit(&edge, "ES", "Spain").await;

    pair.pause_replay();
    let purge_id = rename(&origin.url, "ES", "España").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = forecastin_e2e::admin_json(&origin, &format!("/admin/v1/purge/{purge_id}")).await;
    assert_eq!(
        status["deliveries"][0]["status"], "pending",
        "the purge went out before the replica replayed the write: {status}"
    );
    // Meanwhile the edge serves what it had: nothing older can have been put in its cache.
    assert_eq!(edge_name(&edge, "ES").await.0, "Spain");

    let resumed = Instant::now();
    pair.resume_replay();
    let status = wait_settled(&origin, &purge_id, Duration::from_secs(10)).await;
    assert_eq!(status["deliveries"][0]["status"], "delivered", "{status}");
    eprintln!("delivered {:?} after the replay resumed", resumed.elapsed());
    until_edge_hit(&edge, "ES", "España").await;
}

/// The race the replica design exists for, with nothing else to hide it: the edge's origin is
/// an instance that hears nothing of the write (no Redis bus, no L1) and reads the replica;
/// the write happens on another instance while the replica is paused for good.
#[tokio::test]
async fn the_edge_never_caches_the_old_value_from_a_paused_replica() {
    let Some(pair) = StreamingPair::start_or_skip() else {
        return;
    };
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let writer = Origin::start(&purge_env(&pair, "1500", &purge_url)).await;
    let reader = writer.start_sibling(&[]).await;
    let edge = Edge::start_on(edge_port, &reader.url).await;
    for origin in [&writer, &reader] {
        until_in_rotation(origin, true, Duration::from_secs(10)).await;
    }
    until_edge_hit(&edge, "PT", "Portugal").await;

    pair.pause_replay();
    let written = Instant::now();
    let purge_id = rename(&writer.url, "PT", "Portugal (novo)").await;
    // Until the purge is delivered the edge serves its copy; it must never fail meanwhile.
    while wait_settled_now(&writer, &purge_id).await.is_none() {
        let (name, _) = edge_name(&edge, "PT").await;
        assert!(name == "Portugal" || name == "Portugal (novo)", "{name}");
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "the purge never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("purge delivered {:?} after the write", written.elapsed());
    assert!(
        !replica_state(&reader).await.0,
        "the reader still trusts the paused replica"
    );
    // The edge refetched after the purge: from the primary, since the replica left the
    // rotation before the purge went out.
    until_edge_hit(&edge, "PT", "Portugal (novo)").await;
    assert_eq!(
        pair.replica_sql("SELECT name FROM entities WHERE id = 'PT'"),
        "Portugal"
    );
    pair.resume_replay();
}

/// The purge's status once every delivery settled, or `None` while one is pending.
async fn wait_settled_now(origin: &Origin, purge_id: &str) -> Option<serde_json::Value> {
    let status = forecastin_e2e::admin_json(origin, &format!("/admin/v1/purge/{purge_id}")).await;
    let deliveries = status["deliveries"].as_array()?;
    (!deliveries.is_empty() && deliveries.iter().all(|d| d["status"] != "pending"))
        .then_some(status)
}
