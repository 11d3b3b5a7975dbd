//! Data changes purge the CDN through the origin's outbox: end to end through the edge in
//! workerd, and against the Cloudflare and Fastly stand-ins with faults, crashes and bursts.

use std::time::{Duration, Instant};

use forecastin_e2e::{
    admin, admin_json, admin_purge, cache_status, client, free_port, rename,
    standins::{self, Fault},
    wait_settled, Backend, Edge, Origin, PURGE_SECRET,
};
use reqwest::Method;
use serde_json::json;

forecastin_e2e::on_both_backends!(
    a_rename_and_a_move_reach_the_edge_through_the_edge_direct_provider,
    cloudflare_429_500_and_timeouts_are_retried_until_delivered,
    a_crash_between_commit_and_delivery_loses_nothing,
);

const ZONE: &str = "zone-e2e";
const TOKEN: &str = "cf-token-e2e";

fn cloudflare_env(api: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PURGE_PROVIDERS", "cloudflare".to_owned()),
        ("CLOUDFLARE_API_BASE", api.to_owned()),
        ("CLOUDFLARE_ZONE_ID", ZONE.to_owned()),
        ("CLOUDFLARE_API_TOKEN", TOKEN.to_owned()),
        ("PUBLIC_BASE_URL", "https://forecastin.example".to_owned()),
        ("PURGE_TIMEOUT_MS", "1000".to_owned()),
        ("PURGE_RETRY_MAX_MS", "400".to_owned()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// GETs `url` through the edge until `fresh` accepts the body; returns how long it took.
async fn until_fresh(url: &str, fresh: impl Fn(&serde_json::Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let response = client().get(url).send().await.unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        if fresh(&body) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url} stayed stale: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn edge_and_origin(backend: Backend) -> (Origin, Edge) {
    let edge_port = free_port();
    let origin = Origin::start_with(
        backend,
        &[
            ("PURGE_SECRET", PURGE_SECRET),
            (
                "EDGE_PURGE_URL",
                &format!("http://127.0.0.1:{edge_port}/__edge/purge"),
            ),
        ],
    )
    .await;
    let edge = Edge::start_on(edge_port, &origin.url).await;
    (origin, edge)
}

async fn a_rename_and_a_move_reach_the_edge_through_the_edge_direct_provider(backend: Backend) {
    let (origin, edge) = edge_and_origin(backend).await;
    let entity = format!("{}/api/v1/entities/FR-75", edge.url);
    let siblings = format!("{}/api/v1/entities/FR-IDF/children", edge.url);
    for url in [&entity, &siblings, &entity, &siblings] {
        client().get(url.as_str()).send().await.unwrap();
    }
    for url in [&entity, &siblings] {
        let status = cache_status(&client().get(url.as_str()).send().await.unwrap());
        assert!(status.contains("hit"), "{url}: {status}");
    }

    let purge_id = rename(&edge.url, "FR-75", "Paris (Ville)").await;
    let took = until_fresh(&entity, |body| body["name"] == "Paris (Ville)").await;
    until_fresh(&siblings, |body| {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "Paris (Ville)")
    })
    .await;
    let status = wait_settled(&origin, &purge_id, Duration::from_secs(5)).await;
    assert_eq!(status["deliveries"][0]["provider"], "edge");
    assert_eq!(status["deliveries"][0]["status"], "delivered");
    eprintln!("rename visible at the edge after {took:?}");

    let moved = admin(Method::PATCH, &edge.url, "/admin/v1/entities/FR-75")
        .json(&json!({ "parent_id": "FR-ARA" }))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    until_fresh(
        &format!("{}/api/v1/entities/FR-75/ancestors", edge.url),
        |body| {
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == "FR-ARA")
        },
    )
    .await;
    until_fresh(&siblings, |body| {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != "FR-75")
    })
    .await;
    let served = cache_status(&client().get(&entity).send().await.unwrap());
    assert!(
        served.contains("hit") || served.contains("miss"),
        "{served}"
    );
}

async fn cloudflare_429_500_and_timeouts_are_retried_until_delivered(backend: Backend) {
    let cloudflare = standins::cloudflare(ZONE, TOKEN, 0).await;
    cloudflare.script(&[
        Fault::TooManyRequests { retry_after: 1 },
        Fault::ServerError,
        Fault::ServerError,
        Fault::Hang(Duration::from_millis(1_500)),
    ]);
    let env = cloudflare_env(&cloudflare.url);
    let origin = Origin::start_with(backend, &borrowed(&env)).await;
    let mut purges = Vec::new();
    for (i, id) in ["DE", "ES", "IT", "PT", "NL"].iter().enumerate() {
        purges.push((id, rename(&origin.url, id, &format!("Renamed {i}")).await));
    }
    for (id, purge_id) in &purges {
        let status = wait_settled(&origin, purge_id, Duration::from_secs(30)).await;
        let delivery = &status["deliveries"][0];
        assert_eq!(delivery["status"], "delivered", "{id}: {status}");
        // One first attempt, plus at most one per scripted fault.
        assert!(delivery["attempts"].as_i64().unwrap() <= 5, "{status}");
        let tag = format!("e:{id}");
        assert!(
            cloudflare
                .accepted()
                .iter()
                .any(|a| a.kind == "tags" && a.items.contains(&tag)),
            "{tag} never reached Cloudflare"
        );
    }
    assert!(cloudflare.requests() >= 5, "the four faults were all met");
    let pending = admin_json(&origin, "/admin/v1/purge?status=pending").await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 0);
}

async fn a_crash_between_commit_and_delivery_loses_nothing(backend: Backend) {
    // Cloudflare is unreachable at first: the purge is committed but cannot be delivered.
    let port = free_port();
    let env = cloudflare_env(&format!("http://127.0.0.1:{port}/client/v4"));
    let mut origin = Origin::start_with(backend, &borrowed(&env)).await;
    let purge_id = rename(&origin.url, "BE", "Belgium (renamed)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    origin.kill().await;

    let cloudflare = standins::cloudflare(ZONE, TOKEN, port).await;
    origin.restart().await;
    let status = wait_settled(&origin, &purge_id, Duration::from_secs(30)).await;
    assert_eq!(status["deliveries"][0]["status"], "delivered", "{status}");
    assert!(cloudflare
        .accepted()
        .iter()
        .any(|a| a.kind == "tags" && a.items.contains(&"e:BE".to_owned())));
}

#[tokio::test]
async fn one_refused_item_in_a_merged_batch_fails_only_its_own_purge() {
    let cloudflare = standins::cloudflare(ZONE, TOKEN, 0).await;
    let origin = Origin::start(&borrowed(&cloudflare_env(&cloudflare.url))).await;
    cloudflare.refuse("t:bad");
    // The first purge's request hangs past the timeout: the next three wait for the round and
    // are claimed, merged and sent together.
    cloudflare.script(&[Fault::Hang(Duration::from_millis(1_500))]);
    let purge = |tags: &[&str]| admin_purge(&origin.url, json!({ "tags": tags }));
    let first = purge(&["t:first"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let good = purge(&["t:a", "t:b"]).await;
    let bad = purge(&["t:bad"]).await;
    let sharing = purge(&["t:c", "t:b"]).await;
    for (id, expected) in [
        (&first, "delivered"),
        (&good, "delivered"),
        (&bad, "failed"),
        (&sharing, "delivered"),
    ] {
        let status = wait_settled(&origin, id, Duration::from_secs(10)).await;
        assert_eq!(status["deliveries"][0]["status"], expected, "{status}");
    }
    let accepted = cloudflare.accepted();
    assert!(
        accepted.iter().any(|a| a.items.len() > 1),
        "no merged batch was sent: {accepted:?}"
    );
    let purged: Vec<&String> = accepted.iter().flat_map(|a| &a.items).collect();
    for tag in ["t:first", "t:a", "t:b", "t:c"] {
        assert!(
            purged.iter().any(|p| *p == tag),
            "{tag} was not purged: {accepted:?}"
        );
    }
    assert!(!purged.iter().any(|p| *p == "t:bad"));
}

#[tokio::test]
async fn a_burst_of_writes_stays_within_the_bucket_and_the_item_limit() {
    let cloudflare = standins::cloudflare(ZONE, TOKEN, 0).await;
    let mut env = cloudflare_env(&cloudflare.url);
    env.push(("CLOUDFLARE_PURGE_PER_MINUTE", "120".to_owned()));
    env.push(("CLOUDFLARE_PURGE_BURST", "2".to_owned()));
    let origin = Origin::start(&borrowed(&env)).await;
    // 1,000 writes: one actor created under each of 1,000 subdivisions.
    let parents: Vec<String> = {
        let mut ids = Vec::new();
        let mut uri = "/api/v1/entities/world/descendants?limit=100".to_owned();
        while ids.len() < 1_000 {
            let page: serde_json::Value = client()
                .get(format!("{}{uri}", origin.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in page["items"].as_array().unwrap() {
                if item["kind"] == "subdivision" {
                    ids.push(item["id"].as_str().unwrap().to_owned());
                }
            }
            uri = format!(
                "/api/v1/entities/world/descendants?limit=100&cursor={}",
                page["next_cursor"].as_str().unwrap()
            );
        }
        ids.truncate(1_000);
        ids
    };
    let mut last_purge = String::new();
    for (n, parent) in parents.iter().enumerate() {
        let created = admin(Method::POST, &origin.url, "/admin/v1/entities")
            .json(&json!({ "id": format!("{parent}.burst{n}"), "parent_id": parent, "kind": "actor", "name": format!("Burst {n}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        last_purge = created.headers()["forecastin-purge-id"]
            .to_str()
            .unwrap()
            .to_owned();
    }
    wait_settled(&origin, &last_purge, Duration::from_secs(120)).await;
    let pending = admin_json(&origin, "/admin/v1/purge?status=pending").await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 0);

    let accepted = cloudflare.accepted();
    assert!(accepted.iter().all(|a| a.items.len() <= 100));
    let every_tag: std::collections::BTreeSet<&String> =
        accepted.iter().flat_map(|a| &a.items).collect();
    for n in [0, 499, 999] {
        assert!(
            every_tag.contains(&format!("e:{}.burst{n}", parents[n])),
            "write {n} was not purged"
        );
    }
    // Token bucket: 2 at once, then one every 500 ms.
    let first = accepted[0].at;
    for (n, request) in accepted.iter().enumerate().skip(2) {
        let earliest =
            Duration::from_millis(500 * (n as u64 - 2)).saturating_sub(Duration::from_millis(100));
        assert!(
            request.at - first >= earliest,
            "request {n} came {:?} after the first",
            request.at - first
        );
    }
    eprintln!("1,000 writes became {} Cloudflare requests", accepted.len());
}

#[tokio::test]
async fn fastly_gets_surrogate_keys_and_urls_and_refusals_are_kept_as_failed() {
    let fastly = standins::fastly("service-e2e", "fastly-key-e2e").await;
    let origin = Origin::start(&[
        ("PURGE_PROVIDERS", "fastly"),
        ("FASTLY_API_BASE", &fastly.url),
        ("FASTLY_SERVICE_ID", "service-e2e"),
        ("FASTLY_API_KEY", "fastly-key-e2e"),
        ("FASTLY_SOFT_PURGE", "true"),
        ("PUBLIC_BASE_URL", "https://forecastin.example"),
    ])
    .await;
    let delivered = admin_purge(
        &origin.url,
        json!({"tags": ["e:FR", "search"], "urls": ["/api/v1/entities/FR"]}),
    )
    .await;
    let status = wait_settled(&origin, &delivered, Duration::from_secs(10)).await;
    assert_eq!(status["deliveries"][0]["status"], "delivered", "{status}");
    let accepted = fastly.accepted();
    assert!(accepted
        .iter()
        .any(|a| a.kind == "surrogate_keys" && a.items == ["e:FR", "search"] && a.soft));
    assert!(accepted
        .iter()
        .any(|a| a.kind == "url" && a.items == ["forecastin.example/api/v1/entities/FR"]));

    let refused = admin_purge(&origin.url, json!({"prefixes": ["/api/"]})).await;
    let status = wait_settled(&origin, &refused, Duration::from_secs(10)).await;
    assert_eq!(status["deliveries"][0]["status"], "failed");
    assert!(status["deliveries"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("prefix"));
    let failed = admin_json(&origin, "/admin/v1/purge?status=failed").await;
    let ids: Vec<&str> = failed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [refused.as_str()]);
    let metrics = origin.metrics().await;
    for needle in [
        "purge_deliveries_total{provider=\"fastly\",outcome=\"failed\"} 1",
        "purge_delivery_latency_seconds_bucket{provider=\"fastly\"",
        "purge_outbox_pending 0",
    ] {
        assert!(metrics.contains(needle), "{needle} missing");
    }
}

/// Rotating the purge secret: the edge already has the new one while an origin still signs
/// with the old. Its purges are refused (401) and retried, not dropped, and an instance with the
/// new secret delivers them.
#[tokio::test]
async fn a_purge_secret_rotation_delays_purges_but_loses_none() {
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let old = Origin::start_with(
        Backend::Postgres,
        &[
            ("PURGE_SECRET", "the-secret-before-rotation-of-32-bytes"),
            ("EDGE_PURGE_URL", &purge_url),
            ("PURGE_RETRY_MAX_MS", "400"),
        ],
    )
    .await;
    let edge = Edge::start_on(edge_port, &old.url).await;
    let url = format!("{}/api/v1/entities/FR", edge.url);
    client().get(&url).send().await.unwrap();
    assert!(cache_status(&client().get(&url).send().await.unwrap()).contains("hit"));

    let purge_id = rename(&old.url, "FR", "France (rotated)").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = admin_json(&old, &format!("/admin/v1/purge/{purge_id}")).await;
    let delivery = &status["deliveries"][0];
    assert_eq!(delivery["status"], "pending", "{status}");
    assert!(
        delivery["last_error"]
            .as_str()
            .unwrap()
            .contains("credentials refused"),
        "{status}"
    );

    let rotated = old.start_sibling(&[("PURGE_SECRET", PURGE_SECRET)]).await;
    let status = wait_settled(&rotated, &purge_id, Duration::from_secs(10)).await;
    assert_eq!(status["deliveries"][0]["status"], "delivered", "{status}");
    let body: serde_json::Value = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["name"], "France (rotated)");
}

/// Rotating the purge secret in order: the edge takes the new secret and keeps the previous
/// one (`PURGE_SECRET_PREVIOUS`) until every origin has switched, so purges signed with either
/// are delivered at once.
#[tokio::test]
async fn with_the_previous_secret_kept_a_rotation_delays_nothing() {
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let old = Origin::start(&[
        ("PURGE_SECRET", "the-secret-before-rotation-of-32-bytes"),
        ("EDGE_PURGE_URL", &purge_url),
    ])
    .await;
    let _edge = Edge::start_with_vars(
        edge_port,
        &old.url,
        &[(
            "PURGE_SECRET_PREVIOUS",
            "the-secret-before-rotation-of-32-bytes",
        )],
    )
    .await;
    let purge_id = rename(&old.url, "FR", "France (rotating)").await;
    let status = wait_settled(&old, &purge_id, Duration::from_secs(5)).await;
    let delivery = &status["deliveries"][0];
    assert_eq!(delivery["status"], "delivered", "{status}");
    assert_eq!(
        delivery["attempts"], 1,
        "accepted at the first attempt: {status}"
    );
}

/// A purge target that answers 404 (a Worker in mid-deploy, a wrong `EDGE_PURGE_URL`) is not
/// the purge's fault: the delivery stays pending and is retried, with the reason recorded, and
/// goes out once the endpoint is there.
#[tokio::test]
async fn a_missing_purge_endpoint_is_retried_not_failed() {
    let missing = forecastin_e2e::fixture::start().await; // no /__edge/purge route: 404
    let edge_port = free_port();
    let wrong_url = format!("{}/__edge/purge", missing.url);
    let origin = Origin::start_with(
        Backend::Postgres,
        &[
            ("PURGE_SECRET", PURGE_SECRET),
            ("EDGE_PURGE_URL", &wrong_url),
            ("PURGE_RETRY_MAX_MS", "200"),
        ],
    )
    .await;
    let purge_id = rename(&origin.url, "DE", "Deutschland").await;
    let started = Instant::now();
    let delivery = loop {
        let status = admin_json(&origin, &format!("/admin/v1/purge/{purge_id}")).await;
        let delivery = status["deliveries"][0].clone();
        if delivery["attempts"].as_i64().unwrap_or(0) >= 3 {
            break delivery;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivery["status"], "pending", "{delivery}");
    assert!(
        delivery["last_error"]
            .as_str()
            .unwrap()
            .contains("no purge endpoint"),
        "{delivery}"
    );
    // The right endpoint comes up (an instance with the right URL shares the outbox).
    let _edge = Edge::start_on(edge_port, &origin.url).await;
    let right_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let _fixed = origin
        .start_sibling(&[("EDGE_PURGE_URL", right_url.as_str())])
        .await;
    let settled = wait_settled(&origin, &purge_id, Duration::from_secs(30)).await;
    assert_eq!(settled["deliveries"][0]["status"], "delivered", "{settled}");
}

/// A stored purge that no longer parses (a bad migration, a hand edit) ends `failed` with the
/// reason, never `delivered` as if it had been sent.
#[tokio::test]
async fn a_stored_purge_that_no_longer_parses_fails_with_the_reason() {
    let cloudflare = standins::cloudflare(ZONE, TOKEN, 0).await;
    // The first attempt is told to wait, which leaves time to damage the stored purge.
    cloudflare.script(&[Fault::TooManyRequests { retry_after: 2 }]);
    let env = cloudflare_env(&cloudflare.url);
    let origin = Origin::start_with(Backend::Postgres, &borrowed(&env)).await;
    let purge_id = rename(&origin.url, "DE", "Deutschland").await;
    forecastin_e2e::query(
        origin.database_url().expect("on PostgreSQL"),
        &format!("UPDATE purges SET request = 'not json' WHERE id = '{purge_id}'"),
    )
    .expect("the purge row is updated");
    let status = wait_settled(&origin, &purge_id, Duration::from_secs(20)).await;
    let delivery = &status["deliveries"][0];
    assert_eq!(delivery["status"], "failed", "{status}");
    assert!(
        delivery["last_error"]
            .as_str()
            .unwrap()
            .contains("no longer parses"),
        "{status}"
    );
}
