//! The edge as an HTTP cache in workerd, in front of the real origin: misses become hits,
//! conditional requests, stale content when the origin fails or while it refreshes, static
//! assets, and what is never cached.

use std::time::Duration;

use forecastin_e2e::{admin, cache_status, client, Edge, Origin, ADMIN_TOKEN};

const ENTITY_ROUTE: &str = "/api/v1/entities/{id}";

#[tokio::test]
async fn a_miss_is_stored_and_the_next_request_is_a_hit_without_the_origin() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;
    let url = format!("{}/api/v1/entities/FR/ancestors", edge.url);

    let first = client().get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let status = cache_status(&first);
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
        "{status}"
    );
    for internal in [
        "cache-tag",
        "surrogate-key",
        "cdn-cache-control",
        "x-forecastin-edge-meta",
    ] {
        assert!(first.headers().get(internal).is_none(), "{internal} leaked");
    }
    assert!(first.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("s-maxage=60"));
    let served = origin.served("/api/v1/entities/{id}/ancestors").await;
    let body = first.text().await.unwrap();

    let second = client().get(&url).send().await.unwrap();
    let status = cache_status(&second);
    assert!(status.starts_with("forecastin-edge; hit; ttl="), "{status}");
    assert!(second.headers().contains_key("age"));
    assert!(
        second.headers().get("cf-cache-status").is_none(),
        "the runtime cache's own status is internal"
    );
    assert!(second.headers()["server-timing"]
        .to_str()
        .unwrap()
        .starts_with("edge;dur="));
    assert_eq!(second.text().await.unwrap(), body);
    assert_eq!(
        origin.served("/api/v1/entities/{id}/ancestors").await,
        served,
        "the hit reached the origin"
    );
}

#[tokio::test]
async fn conditional_requests_get_304_from_the_cache() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;
    let url = format!("{}/api/v1/entities/DE", edge.url);
    let first = client().get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let served = origin.served(ENTITY_ROUTE).await;

    let conditional = client()
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.status(), 304);
    assert!(cache_status(&conditional).contains("hit"));
    assert_eq!(conditional.headers()["etag"], etag.as_str());
    assert!(conditional.text().await.unwrap().is_empty());
    let other = client()
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    // Answers from storage without a body keep the stored fields (RFC 9110 §9.3.2, §15.4.5).
    let head = client().head(&url).send().await.unwrap();
    assert!(cache_status(&head).contains("hit"));
    assert_eq!(head.headers()["content-type"], "application/json");
    assert_eq!(conditional_again(&url, &etag).await, "application/json");
    assert_eq!(origin.served(ENTITY_ROUTE).await, served);
}

#[tokio::test]
async fn stale_content_is_served_when_the_origin_is_down() {
    let mut origin = Origin::start(&[
        ("CACHE_S_MAXAGE", "1"),
        ("CACHE_STALE_WHILE_REVALIDATE", "0"),
        ("CACHE_STALE_IF_ERROR", "300"),
    ])
    .await;
    let edge = Edge::start(&origin.url).await;
    let url = format!("{}/api/v1/entities/IT", edge.url);
    let fresh = client().get(&url).send().await.unwrap();
    let body = fresh.text().await.unwrap();

    origin.kill().await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let stale = client().get(&url).send().await.unwrap();
    assert_eq!(stale.status(), 200);
    let status = cache_status(&stale);
    assert!(
        status.contains("fwd=stale") && status.contains("detail=stale-if-error"),
        "{status}"
    );
    assert_eq!(stale.text().await.unwrap(), body);

    let never_cached = client()
        .get(format!("{}/api/v1/entities/ES", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(never_cached.status(), 502);
    let error: serde_json::Value = never_cached.json().await.unwrap();
    assert_eq!(error["error"]["code"], "origin_unreachable");

    origin.restart().await;
    let revalidated = client().get(&url).send().await.unwrap();
    let status = cache_status(&revalidated);
    assert!(
        status.contains("fwd=stale") && status.contains("fwd-status=304"),
        "{status}"
    );
    assert_eq!(
        revalidated.headers()["content-type"],
        "application/json",
        "the 304 merge kept the stored type"
    );
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let origin = Origin::start(&[
        ("CACHE_S_MAXAGE", "1"),
        ("CACHE_STALE_WHILE_REVALIDATE", "60"),
    ])
    .await;
    let edge = Edge::start(&origin.url).await;
    let url = format!("{}/api/v1/entities/PT", edge.url);
    client().get(&url).send().await.unwrap();

    let renamed = admin(reqwest::Method::PATCH, &edge.url, "/admin/v1/entities/PT")
        .json(&serde_json::json!({"name": "Portuguese Republic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200, "writes pass through the edge");
    assert!(cache_status(&renamed).contains("fwd=method"));

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let stale = client().get(&url).send().await.unwrap();
    let status = cache_status(&stale);
    assert!(
        status.contains("hit") && status.contains("detail=stale-while-revalidate"),
        "{status}"
    );
    let body: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(body["name"], "Portugal", "the stale copy is served at once");

    let mut refreshed = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let response = client().get(&url).send().await.unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        refreshed = body["name"].as_str().unwrap().to_owned();
        if refreshed == "Portuguese Republic" {
            break;
        }
    }
    assert_eq!(
        refreshed, "Portuguese Republic",
        "the background refresh stored the new version"
    );
}

#[tokio::test]
async fn static_assets_are_immutable_and_the_page_revalidates() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;
    let page = client().get(format!("{}/", edge.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("must-revalidate"));
    let html = page.text().await.unwrap();
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let asset_url = format!("{}{script}", edge.url);
    client().get(&asset_url).send().await.unwrap();
    let asset = client().get(&asset_url).send().await.unwrap();
    assert!(
        cache_status(&asset).contains("hit"),
        "{}",
        cache_status(&asset)
    );
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let again = client().get(format!("{}/", edge.url)).send().await.unwrap();
    assert!(cache_status(&again).contains("hit"));
}

#[tokio::test]
async fn writes_range_requests_and_heads_are_handled_apart() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;
    let created = client()
        .post(format!("{}/admin/v1/entities", edge.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"id": "FR-75.e2e", "parent_id": "FR-75", "kind": "actor", "name": "Mairie de Paris"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "the body reached the origin");
    assert_eq!(cache_status(&created), "forecastin-edge; fwd=method");

    let url = format!("{}/api/v1/entities/FR-75.e2e", edge.url);
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(
        cache_status(&head).contains("stored"),
        "HEAD fills the cache with a GET"
    );
    let get = client().get(&url).send().await.unwrap();
    assert!(cache_status(&get).contains("hit"));
    assert!(get.text().await.unwrap().contains("Mairie de Paris"));

    let ranged = client()
        .get(&url)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.status(),
        206,
        "a range is cut from the stored response"
    );
    assert!(
        cache_status(&ranged).contains("hit"),
        "{}",
        cache_status(&ranged)
    );
    assert_eq!(
        ranged.headers()["content-range"]
            .to_str()
            .unwrap()
            .split('/')
            .next(),
        Some("bytes 0-3")
    );
    assert_eq!(ranged.text().await.unwrap(), "{\"id");
}

/// The `Content-Type` of a 304 answered from storage.
async fn conditional_again(url: &str, etag: &str) -> String {
    let response = client()
        .get(url)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned()
}
