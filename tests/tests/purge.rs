//! The edge's signed purge endpoint, end to end: by URL, tag, prefix and everything, and the
//! requests it must refuse without purging anything.

use forecastin_e2e::{
    cache_status, client, fresh_nonce, set_rollout, signed_purge, unix_now, Edge, Origin,
    PURGE_SECRET,
};
use serde_json::json;

async fn status_of(url: &str) -> String {
    cache_status(&client().get(url).send().await.unwrap())
}

async fn warm(edge: &Edge, paths: &[&str]) {
    for path in paths {
        client()
            .get(format!("{}{path}", edge.url))
            .send()
            .await
            .unwrap();
        let status = status_of(&format!("{}{path}", edge.url)).await;
        assert!(status.contains("hit"), "{path}: {status}");
    }
}

#[tokio::test]
async fn purges_by_url_tag_prefix_and_everything_remove_exactly_their_entries() {
    let origin = Origin::start(&[]).await;
    // Pages fetched ahead (likely-next navigation) would add entries these counts leave out.
    set_rollout(&origin.url, "ff.predictive_preload", 0).await;
    let edge = Edge::start(&origin.url).await;
    let paths = [
        "/api/v1/entities/FR",
        "/api/v1/entities/FR/children",
        "/api/v1/entities/FR-75/ancestors",
        "/api/v1/entities/DE",
        "/api/v1/search?q=paris",
    ];
    warm(&edge, &paths).await;
    let url = |path: &str| format!("{}{path}", edge.url);

    // Renaming France would purge e:FR and s:FR: FR itself and Paris's breadcrumb.
    let by_tag = signed_purge(
        &edge,
        &json!({"tags": ["e:FR", "s:FR"]}),
        PURGE_SECRET,
        unix_now(),
        &fresh_nonce(),
    )
    .await;
    assert_eq!(by_tag.status(), 200);
    assert_eq!(
        by_tag.json::<serde_json::Value>().await.unwrap()["purged"],
        2
    );
    assert!(status_of(&url("/api/v1/entities/FR"))
        .await
        .contains("fwd=uri-miss"));
    assert!(status_of(&url("/api/v1/entities/FR-75/ancestors"))
        .await
        .contains("fwd=uri-miss"));
    assert!(status_of(&url("/api/v1/entities/DE")).await.contains("hit"));
    assert!(status_of(&url("/api/v1/entities/FR/children"))
        .await
        .contains("hit"));

    let by_url = signed_purge(
        &edge,
        &json!({"urls": ["/api/v1/search?utm_source=x&q=paris"]}),
        PURGE_SECRET,
        unix_now(),
        &fresh_nonce(),
    )
    .await;
    assert_eq!(by_url.status(), 200);
    assert!(status_of(&url("/api/v1/search?q=paris"))
        .await
        .contains("fwd=uri-miss"));

    warm(&edge, &paths).await;
    let by_prefix = signed_purge(
        &edge,
        &json!({"prefixes": ["/api/v1/entities/FR"]}),
        PURGE_SECRET,
        unix_now(),
        &fresh_nonce(),
    )
    .await;
    assert_eq!(
        by_prefix.json::<serde_json::Value>().await.unwrap()["purged"],
        3
    );
    assert!(status_of(&url("/api/v1/entities/FR/children"))
        .await
        .contains("fwd=uri-miss"));
    assert!(status_of(&url("/api/v1/entities/DE")).await.contains("hit"));

    let everything = signed_purge(
        &edge,
        &json!({"everything": true}),
        PURGE_SECRET,
        unix_now(),
        &fresh_nonce(),
    )
    .await;
    assert_eq!(everything.status(), 200);
    for path in paths {
        assert!(
            status_of(&url(path)).await.contains("fwd=uri-miss"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn unsigned_stale_replayed_and_malformed_purges_are_refused_and_purge_nothing() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;
    warm(&edge, &["/api/v1/entities/FR"]).await;
    let body = json!({"tags": ["e:FR"]});

    let unsigned = client()
        .post(format!("{}/__edge/purge", edge.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let wrong_secret =
        signed_purge(&edge, &body, "not-the-secret", unix_now(), &fresh_nonce()).await;
    assert_eq!(wrong_secret.status(), 401);
    let too_old = signed_purge(&edge, &body, PURGE_SECRET, unix_now() - 301, &fresh_nonce()).await;
    assert_eq!(too_old.status(), 401);
    let error: serde_json::Value = too_old.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unauthenticated");
    for malformed in [
        json!({}),
        json!({"tags": ["a b"]}),
        json!({"urls": ["ftp://x/y"]}),
        json!({"colour": 1}),
    ] {
        let response =
            signed_purge(&edge, &malformed, PURGE_SECRET, unix_now(), &fresh_nonce()).await;
        assert_eq!(response.status(), 400, "{malformed}");
    }
    assert!(status_of(&format!("{}/api/v1/entities/FR", edge.url))
        .await
        .contains("hit"));

    let timestamp = unix_now();
    // Identical purges signed in the same second are two requests, both carried out.
    for _ in 0..2 {
        let twin = signed_purge(
            &edge,
            &json!({"urls": ["/twin"]}),
            PURGE_SECRET,
            timestamp,
            &fresh_nonce(),
        )
        .await;
        assert_eq!(twin.status(), 200);
    }
    let nonce = fresh_nonce();
    let body = json!({"urls": ["/nothing"]});
    let send = || signed_purge(&edge, &body, PURGE_SECRET, timestamp, &nonce);
    assert_eq!(send().await.status(), 200);
    let replay = send().await;
    assert_eq!(replay.status(), 401);
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "replayed"
    );
}

/// An index that fails every call (here: every call outlasts a timeout of 0 ms) turns no
/// caching off: fills are stored and hits served, each entry for the brief while an unindexed
/// one is kept; then it is fetched again.
#[tokio::test]
async fn with_the_index_failing_every_call_hits_and_fills_still_work() {
    let origin = Origin::start(&[]).await;
    set_rollout(&origin.url, "ff.predictive_preload", 0).await;
    let edge = Edge::start_with_vars(
        forecastin_e2e::free_port(),
        &origin.url,
        &[("PURGE_INDEX_TIMEOUT_MS", "0")],
    )
    .await;
    let paths = [
        "/api/v1/entities/FR",
        "/api/v1/entities/DE/ancestors",
        "/api/v1/entities/IT/children",
        "/api/v1/search?q=rom",
    ];
    let url = |path: &str| format!("{}{path}", edge.url);
    for path in paths {
        let first = status_of(&url(path)).await;
        assert!(first.contains("stored"), "{path}: {first}");
    }
    for _ in 0..3 {
        for path in paths {
            let again = status_of(&url(path)).await;
            assert!(again.contains("hit"), "{path}: {again}");
        }
    }
    // Kept 10 s, not the hour the origin allows: a purge by tag would have missed them.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    for path in paths {
        let later = status_of(&url(path)).await;
        assert!(later.contains("fwd=uri-miss"), "{path}: {later}");
    }
    edge.assert_no_panic();
}
