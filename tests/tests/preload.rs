//! Predictive preloading end to end, with the edge in workerd in front of the origin:
//! concurrent misses collapse at the edge and at the origin, a write's hot pages are rendered
//! again before the CDN purge and refreshed by the edge's soft purge, and the soft purge API
//! reaches each provider as it can take it.

use std::time::Duration;

use forecastin_e2e::{
    admin, admin_purge, cache_status, client, free_port, fresh_nonce, rename, set_rollout,
    signed_purge, standins, unix_now, wait_settled, Edge, Origin, PURGE_SECRET,
};
use reqwest::Method;
use serde_json::json;

const DESCENDANTS_ROUTE: &str = "/api/v1/entities/{id}/descendants";
const ENTITY_ROUTE: &str = "/api/v1/entities/{id}";
const CHILDREN_ROUTE: &str = "/api/v1/entities/{id}/children";
const ANCESTORS_ROUTE: &str = "/api/v1/entities/{id}/ancestors";

/// A page that takes the origin a while to render: 500 descendants of a region. With a
/// `max_depth` of its own (not the default 32, which is the page without one) it names no next
/// page to fetch ahead, so only this page reaches the origin.
fn big_page(region: &str) -> String {
    format!("/api/v1/entities/{region}/descendants?limit=500&max_depth=31")
}

/// Responses the origin computed from the database (see `origin_renders_total`) for requests,
/// and for its own preloading.
async fn renders(origin: &Origin) -> (u64, u64) {
    let cause = |cause: &str| format!("origin_renders_total{{cause=\"{cause}\"}}");
    (
        origin.counter(&cause("request")).await,
        origin.counter(&cause("preload")).await,
    )
}

/// `n` GETs of `base` + `path` at once, each on its own connection opened beforehand (with a
/// GET of `base` + `probe`) so that they reach the server together; returns their bodies, each
/// checked to be a 200.
async fn all_at_once(base: &str, probe: &str, path: &str, n: usize) -> Vec<String> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let client = forecastin_e2e::client();
        client.get(format!("{base}{probe}")).send().await.unwrap();
        clients.push(client);
    }
    let requests = clients.iter().map(|client| async move {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test]
async fn fifty_concurrent_misses_reach_the_origin_at_most_twice_and_the_database_once() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;

    // At the edge: one isolate, one origin fetch for the key.
    let before = (
        origin.served(DESCENDANTS_ROUTE).await,
        renders(&origin).await.0,
    );
    let bodies = all_at_once(&edge.url, "/__edge/health", &big_page("m49-150"), 50).await;
    let after = (
        origin.served(DESCENDANTS_ROUTE).await,
        renders(&origin).await.0,
    );
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
    let fetched = after.0 - before.0;
    assert!(
        (1..=2).contains(&fetched),
        "50 concurrent misses at the edge sent {fetched} requests to the origin"
    );
    assert_eq!(
        after.1 - before.1,
        1,
        "the database was read more than once"
    );

    // At the origin itself: 50 concurrent L1 misses, one database read.
    let before = renders(&origin).await.0;
    let bodies = all_at_once(&origin.url, "/healthz", &big_page("m49-142"), 50).await;
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(
        renders(&origin).await.0 - before,
        1,
        "50 concurrent misses at the origin read the database more than once"
    );
    assert!(origin.counter("origin_collapsed_misses_total").await > 0);
    edge.assert_no_panic();
}

async fn edge_and_origin(env: &[(&str, &str)]) -> (Origin, Edge) {
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let mut all = vec![
        ("PURGE_SECRET", PURGE_SECRET),
        ("EDGE_PURGE_URL", purge_url.as_str()),
    ];
    all.extend_from_slice(env);
    let origin = Origin::start(&all).await;
    let edge = Edge::start_on(edge_port, &origin.url).await;
    (origin, edge)
}

async fn get_at(url: &str) -> (String, serde_json::Value) {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    (cache_status(&response), response.json().await.unwrap())
}

#[tokio::test]
async fn a_renamed_hot_entity_is_a_hit_with_its_new_name_a_second_later_without_a_refill_read() {
    let (origin, edge) = edge_and_origin(&[]).await;
    let page = format!("{}/api/v1/entities/FR", edge.url);
    let breadcrumb = format!("{}/api/v1/entities/FR-75/ancestors", edge.url);
    for url in [&page, &breadcrumb, &page, &breadcrumb] {
        get_at(url).await;
    }
    assert!(get_at(&page).await.0.contains("hit"));
    let before = (
        renders(&origin).await,
        origin.counter("origin_rewarmed_pages_total").await,
        origin.served(ENTITY_ROUTE).await,
    );

    let purge_id = rename(&origin.url, "FR", "France (renamed)").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (status, body) = get_at(&page).await;
    assert_eq!(body["name"], "France (renamed)", "{status}");
    assert!(
        status.contains("hit") && !status.contains("fwd="),
        "the renamed page is not a hit: {status}"
    );
    let (status, body) = get_at(&breadcrumb).await;
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect();
    assert!(names.contains(&"France (renamed)"), "{status}: {names:?}");
    assert!(
        status.contains("hit") && !status.contains("fwd="),
        "{status}"
    );

    let after = (
        renders(&origin).await,
        origin.counter("origin_rewarmed_pages_total").await,
        origin.served(ENTITY_ROUTE).await,
    );
    let rewarmed = after.1 - before.1;
    assert!(
        rewarmed >= 2,
        "only {rewarmed} hot pages were rendered again"
    );
    assert_eq!(
        after.0 .0, before.0 .0,
        "a refill after the write read the database"
    );
    assert!(
        after.0 .1 - before.0 .1 <= rewarmed,
        "the re-warm read the database for more than the pages it rendered"
    );
    assert!(
        after.2 > before.2,
        "the edge refreshed the page from the origin"
    );
    let status = wait_settled(&origin, &purge_id, Duration::from_secs(5)).await;
    assert_eq!(status["request"]["soft"], true, "{status}");
    edge.assert_no_panic();
}

#[tokio::test]
async fn a_soft_purge_the_origin_cannot_refresh_leaves_no_purged_copy() {
    let (mut origin, edge) = edge_and_origin(&[]).await;
    let page = format!("{}/api/v1/entities/IT", edge.url);
    get_at(&page).await;
    assert!(get_at(&page).await.0.contains("hit"));

    origin.kill().await;
    let purge = json!({"tags": ["e:IT"], "soft": true});
    let purged = signed_purge(&edge, &purge, PURGE_SECRET, unix_now(), &fresh_nonce()).await;
    assert_eq!(purged.status(), 200);
    let after = client().get(&page).send().await.unwrap();
    let status = cache_status(&after);
    assert!(
        !status.contains("hit"),
        "the purged copy was served after the acknowledgement: {status}"
    );
    assert_ne!(after.status(), 200, "{status}");

    origin.restart().await;
    let (status, body) = get_at(&page).await;
    assert_eq!(body["id"], "IT");
    assert!(status.contains("fwd=uri-miss"), "{status}");
    edge.assert_no_panic();
}

/// Waits until the origin has served `route` more than `before` times.
async fn until_served(origin: &Origin, route: &str, before: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while origin.served(route).await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edge never fetched {route} ahead"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_edge_fetches_ahead_the_children_of_an_opened_entity_and_the_first_childs_pages() {
    let (origin, edge) = edge_and_origin(&[]).await;
    let children_before = origin.served(CHILDREN_ROUTE).await;
    let opened = client()
        .get(format!("{}/api/v1/entities/DE", edge.url))
        .send()
        .await
        .unwrap();
    let link = opened.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(
        link,
        "</api/v1/entities/DE/children>; rel=preload; as=fetch; crossorigin=anonymous"
    );
    until_served(&origin, CHILDREN_ROUTE, children_before).await;

    let ancestors_before = origin.served(ANCESTORS_ROUTE).await;
    let entities_before = origin.served(ENTITY_ROUTE).await;
    let (status, children) = get_at(&format!("{}/api/v1/entities/DE/children", edge.url)).await;
    assert!(
        status.contains("hit") && !status.contains("fwd="),
        "the children were not fetched ahead: {status}"
    );
    let first_child = children["items"][0]["id"].as_str().unwrap().to_owned();
    until_served(&origin, ANCESTORS_ROUTE, ancestors_before).await;
    until_served(&origin, ENTITY_ROUTE, entities_before).await;
    assert_eq!(
        origin.served(CHILDREN_ROUTE).await,
        children_before + 1,
        "the children were fetched more than once"
    );
    for page in ["", "/ancestors"] {
        let (status, body) =
            get_at(&format!("{}/api/v1/entities/{first_child}{page}", edge.url)).await;
        assert_eq!(body["id"], first_child.as_str());
        assert!(
            status.contains("hit") && !status.contains("fwd="),
            "the first child's page {page:?} was not fetched ahead: {status}"
        );
    }
    edge.assert_no_panic();
}

#[tokio::test]
async fn the_edge_fetches_ahead_the_next_page_of_descendants() {
    let (origin, edge) = edge_and_origin(&[]).await;
    let before = origin.served(DESCENDANTS_ROUTE).await;
    let first = client()
        .get(format!(
            "{}/api/v1/entities/m49-150/descendants?limit=20",
            edge.url
        ))
        .send()
        .await
        .unwrap();
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    let body: serde_json::Value = first.json().await.unwrap();
    let cursor = body["next_cursor"].as_str().unwrap();
    let next = format!("/api/v1/entities/m49-150/descendants?limit=20&cursor={cursor}");
    assert_eq!(
        link,
        format!("<{next}>; rel=preload; as=fetch; crossorigin=anonymous")
    );
    until_served(&origin, DESCENDANTS_ROUTE, before + 1).await;
    let (status, page) = get_at(&format!("{}{next}", edge.url)).await;
    assert!(
        status.contains("hit") && !status.contains("fwd="),
        "the next page was not fetched ahead: {status}"
    );
    assert_ne!(page["items"][0], body["items"][0]);
    edge.assert_no_panic();
}

#[tokio::test]
async fn with_preloading_off_a_write_purges_hard_and_the_next_reader_misses() {
    let (origin, edge) = edge_and_origin(&[]).await;
    set_rollout(&origin.url, "ff.predictive_preload", 0).await;
    let page = format!("{}/api/v1/entities/DE", edge.url);
    let opened = client().get(&page).send().await.unwrap();
    assert!(
        opened.headers().get("link").is_none(),
        "likely-next pages were named with preloading off"
    );
    assert!(get_at(&page).await.0.contains("hit"));
    let rewarmed = origin.counter("origin_rewarmed_pages_total").await;

    let purge_id = rename(&origin.url, "DE", "Deutschland").await;
    let status = wait_settled(&origin, &purge_id, Duration::from_secs(5)).await;
    assert!(status["request"].get("soft").is_none(), "{status}");
    let (status, body) = get_at(&page).await;
    assert_eq!(body["name"], "Deutschland");
    assert!(status.contains("fwd=uri-miss"), "{status}");
    assert_eq!(
        origin.counter("origin_rewarmed_pages_total").await,
        rewarmed
    );
}

#[tokio::test]
async fn a_soft_admin_purge_is_soft_at_fastly_and_hard_at_cloudflare() {
    let fastly = standins::fastly("service-soft", "fastly-key-soft").await;
    let cloudflare = standins::cloudflare("zone-soft", "token-soft", 0).await;
    let origin = Origin::start(&[
        ("PURGE_PROVIDERS", "fastly,cloudflare"),
        ("FASTLY_API_BASE", &fastly.url),
        ("FASTLY_SERVICE_ID", "service-soft"),
        ("FASTLY_API_KEY", "fastly-key-soft"),
        ("CLOUDFLARE_API_BASE", &cloudflare.url),
        ("CLOUDFLARE_ZONE_ID", "zone-soft"),
        ("CLOUDFLARE_API_TOKEN", "token-soft"),
        ("PUBLIC_BASE_URL", "https://forecastin.example"),
    ])
    .await;
    for (tag, soft) in [("e:FR", true), ("e:DE", false)] {
        let id = admin_purge(&origin.url, json!({"tags": [tag], "soft": soft})).await;
        let status = wait_settled(&origin, &id, Duration::from_secs(10)).await;
        for delivery in status["deliveries"].as_array().unwrap() {
            assert_eq!(delivery["status"], "delivered", "{status}");
        }
        let at_fastly = fastly.accepted();
        let purged = at_fastly
            .iter()
            .find(|a| a.kind == "surrogate_keys" && a.items == [tag])
            .unwrap_or_else(|| panic!("Fastly did not get {tag}: {at_fastly:?}"));
        assert_eq!(purged.soft, soft, "{tag} at Fastly");
        assert!(cloudflare
            .accepted()
            .iter()
            .any(|a| a.kind == "tags" && a.items == [tag] && !a.soft));
    }

    let refused = admin(Method::POST, &origin.url, "/admin/v1/purge")
        .json(&json!({"tags": ["e:FR"], "soft": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["field"], "soft", "{body}");
}
