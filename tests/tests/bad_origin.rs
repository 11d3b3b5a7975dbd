//! The edge in front of a misbehaving origin (the fixture): no cache poisoning through
//! unkeyed headers, Vary honoured, uncacheable responses not stored, contradictory or absurd
//! headers and broken bodies never cached wrongly.

use forecastin_e2e::{cache_status, client, fixture, Edge};

#[tokio::test]
async fn unkeyed_headers_never_reach_the_origin_so_they_cannot_poison_the_cache() {
    let origin = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    let url = format!("{}/echo?b=2&a=1", edge.url);
    let attack = client()
        .get(&url)
        .header("x-forwarded-host", "evil.example")
        .header("x-original-url", "/admin")
        .header("x-custom", "injected")
        .header("cookie", "tracking=1")
        .send()
        .await
        .unwrap();
    let body = attack.text().await.unwrap();
    assert_eq!(
        body,
        "x-forwarded-host=- x-original-url=- x-custom=- cookie=-"
    );
    let victim = client()
        .get(format!("{}/echo?a=1&b=2&utm_source=mail", edge.url))
        .send()
        .await
        .unwrap();
    assert!(
        cache_status(&victim).contains("hit"),
        "the normalized key matched"
    );
    assert_eq!(victim.text().await.unwrap(), body);
}

#[tokio::test]
async fn a_response_that_varies_is_only_served_to_the_same_variant() {
    let origin = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    let url = format!("{}/vary", edge.url);
    let get = |language: &'static str| {
        let url = url.clone();
        async move {
            let response = client()
                .get(&url)
                .header("accept-language", language)
                .send()
                .await
                .unwrap();
            (cache_status(&response), response.text().await.unwrap())
        }
    };
    assert_eq!(get("fr").await.1, "language=fr");
    let (status, body) = get("fr").await;
    assert!(status.contains("hit"), "{status}");
    assert_eq!(body, "language=fr");
    let (status, body) = get("de").await;
    assert!(status.contains("fwd=vary-miss"), "{status}");
    assert_eq!(body, "language=de");
}

#[tokio::test]
async fn uncacheable_and_broken_responses_are_not_stored() {
    let origin = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    for path in ["/no-store", "/private", "/set-cookie", "/error"] {
        let before = origin.requests();
        for _ in 0..2 {
            let response = client()
                .get(format!("{}{path}", edge.url))
                .send()
                .await
                .unwrap();
            let status = cache_status(&response);
            assert!(
                !status.contains("hit") && !status.contains("stored"),
                "{path}: {status}"
            );
        }
        assert_eq!(
            origin.requests(),
            before + 2,
            "{path} reached the origin each time"
        );
    }
    let error = client()
        .get(format!("{}/error", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(error.status(), 500, "the origin's status is passed on");

    let truncated = client()
        .get(format!("{}/truncated", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        truncated.status(),
        502,
        "a body that fails mid-stream is a bad gateway"
    );
    let again = client()
        .get(format!("{}/truncated", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 502, "and it was not stored");
}

#[tokio::test]
async fn contradictory_and_absurd_cache_headers_are_read_safely() {
    let origin = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    // Repeated max-age with different values reads as already stale: never served from cache.
    let first = client()
        .get(format!("{}/malformed", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = client()
        .get(format!("{}/malformed", edge.url))
        .send()
        .await
        .unwrap();
    assert!(
        !cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );

    client()
        .get(format!("{}/absurd", edge.url))
        .send()
        .await
        .unwrap();
    let capped = client()
        .get(format!("{}/absurd", edge.url))
        .send()
        .await
        .unwrap();
    let status = cache_status(&capped);
    assert!(
        status.contains("hit; ttl=3153"),
        "a huge max-age is capped at a year: {status}"
    );
}

#[tokio::test]
async fn credentialed_requests_only_share_public_responses() {
    let origin = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    let with_token = || {
        client()
            .get(format!("{}/not-public", edge.url))
            .header("authorization", "Bearer analyst")
    };
    let first = with_token().send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "shared");
    let second = with_token().send().await.unwrap();
    assert!(
        !cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );
    let with_session = client()
        .get(format!("{}/not-public", edge.url))
        .header("cookie", "session=abc")
        .send()
        .await
        .unwrap();
    assert!(!cache_status(&with_session).contains("stored"));
    // The same response is shared between requests without credentials.
    let anonymous = || client().get(format!("{}/not-public", edge.url)).send();
    assert!(cache_status(&anonymous().await.unwrap()).contains("stored"));
    assert!(cache_status(&anonymous().await.unwrap()).contains("hit"));

    client()
        .get(format!("{}/echo", edge.url))
        .header("authorization", "Bearer analyst")
        .send()
        .await
        .unwrap();
    let public = client()
        .get(format!("{}/echo", edge.url))
        .send()
        .await
        .unwrap();
    assert!(
        cache_status(&public).contains("hit"),
        "a public response is shared"
    );
}

#[tokio::test]
async fn an_origin_slower_than_the_timeout_gets_504() {
    let origin = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    let started = std::time::Instant::now();
    let response = client()
        .get(format!("{}/slow", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "the edge gave up at its timeout"
    );
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "origin_timeout");
}

#[tokio::test]
async fn trace_context_reaches_the_origin_but_not_the_cache_key() {
    let origin = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = |id: &'static str| {
        client()
            .get(format!("{}/rfc/age", edge.url))
            .header("traceparent", parent)
            .header("x-request-id", id)
            .header("x-forwarded-host", "evil.example")
            .send()
    };
    let first = traced("req-1").await.unwrap();
    assert!(cache_status(&first).contains("stored"));
    let second = traced("req-2").await.unwrap();
    assert!(
        cache_status(&second).contains("hit"),
        "trace headers are not keyed"
    );
    let seen = origin.seen("/rfc/age");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["traceparent"], parent);
    assert_eq!(seen[0]["x-request-id"], "req-1");
    assert!(!seen[0].contains_key("x-forwarded-host"));

    let forged = client()
        .post(format!("{}/rfc/unsafe", edge.url))
        .header("traceparent", "00-not-a-trace-01")
        .header("x-request-id", "id with spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    let posted = origin.seen("/rfc/unsafe");
    assert!(
        !posted[0].contains_key("traceparent"),
        "malformed trace context is dropped"
    );
    let sent_id = posted[0]["x-request-id"].to_str().unwrap();
    assert!(
        sent_id.len() == 32 && sent_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "the edge's own id replaces a malformed one: {sent_id}"
    );
    assert_eq!(forged.headers()["x-request-id"], sent_id);
}
