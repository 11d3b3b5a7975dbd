//! The outbox and the admin purge API: a write and its purge commit together; bad purge
//! requests are refused and record nothing; every purge can be followed; the hot pages a purge
//! removes are rendered again at once.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{TestApp, TestResponse};
use forecastin_origin::cache::l1::Rendered;
use serde_json::json;

forecastin_e2e::on_both_backends!(
    setup = common::TestApp::on;
    a_write_records_its_purge_in_the_same_transaction,
    bad_purge_requests_are_refused_and_record_nothing,
    an_admin_purge_is_accepted_and_can_be_followed,
    a_purge_renders_its_hot_pages_again_without_waiting_for_a_cdn,
    a_request_for_a_page_claimed_for_a_new_render_waits_for_it,
);

async fn purge_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM purges")
        .fetch_one(app.state.hierarchy.db.primary.sqlx())
        .await
        .unwrap()
}

async fn a_write_records_its_purge_in_the_same_transaction(app: TestApp) {
    let before = purge_count(&app).await;
    let renamed = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/FR-IDF",
            Some(json!({"name": "IDF"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let purge_id = renamed.header("forecastin-purge-id").to_owned();
    assert_eq!(purge_count(&app).await, before + 1);

    let status = app
        .admin(Method::GET, &format!("/admin/v1/purge/{purge_id}"), None)
        .await;
    assert_eq!(status.status, StatusCode::OK);
    let body = status.json();
    assert_eq!(body["source"], "write");
    let tags: Vec<&str> = body["request"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let idf_searches = forecastin_shared::tags::search_query("idf");
    for tag in [
        "e:FR-IDF",
        "s:FR-IDF",
        "c:FR",
        "n:FR",
        "n:world",
        &idf_searches,
    ] {
        assert!(tags.contains(&tag), "{tag} missing from {tags:?}");
    }
    assert!(
        !tags.contains(&"search") && !tags.contains(&"d:FR"),
        "a rename purges searches by name and only the descendant pages listing it"
    );

    // A refused write records no purge.
    let refused = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/FR",
            Some(json!({"parent_id": "FR-75"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(purge_count(&app).await, before + 1);
}

async fn bad_purge_requests_are_refused_and_record_nothing(app: TestApp) {
    let before = purge_count(&app).await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("t{i}")).collect();
    for (body, field) in [
        (json!({}), None),
        (json!({"urls": [], "tags": []}), None),
        (json!({"tags": ["e:FR"], "colour": "red"}), Some("colour")),
        (json!({"tags": "e:FR"}), Some("tags")),
        (json!({"tags": too_many}), Some("tags")),
        (json!({"tags": ["two words"]}), Some("tags")),
        (json!({"urls": ["ftp://x/y"]}), Some("urls")),
        (json!({"prefixes": ["no-slash"]}), Some("prefixes")),
    ] {
        let response = app
            .admin(Method::POST, "/admin/v1/purge", Some(body.clone()))
            .await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            response.error_field(),
            field.map_or(serde_json::Value::Null, |f| f.into()),
            "{body}"
        );
    }
    for (uri, status) in [
        ("/admin/v1/purge/unknown", StatusCode::NOT_FOUND),
        ("/admin/v1/purge?status=lost", StatusCode::BAD_REQUEST),
        ("/admin/v1/purge?limit=0", StatusCode::BAD_REQUEST),
        ("/admin/v1/purge?cursor=xyz", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            app.admin(Method::GET, uri, None).await.status,
            status,
            "{uri}"
        );
    }
    let anonymous = app.get("/admin/v1/purge?status=failed").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(purge_count(&app).await, before);
}

/// Reads entity `id`'s page `reads` times, then purges its tag (`e:<id>`); returns the L1 entry
/// the purge covered and the purge's response, which accepted it.
async fn read_then_purge(app: &TestApp, id: &str, reads: usize) -> (Arc<Rendered>, TestResponse) {
    for _ in 0..reads {
        app.get(&format!("/api/v1/entities/{id}")).await;
    }
    let l1 = app.state.cache.l1.as_ref().unwrap();
    let cached = l1.get(&format!("entity/{id}"), None).expect("in L1");
    let body = json!({"tags": [format!("e:{id}")]});
    let accepted = app.admin(Method::POST, "/admin/v1/purge", Some(body)).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    (cached, accepted)
}

async fn an_admin_purge_is_accepted_and_can_be_followed(app: TestApp) {
    let (cached, accepted) = read_then_purge(&app, "FR", 1).await;
    let l1 = app.state.cache.l1.as_ref().unwrap();
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted.header("location"), format!("/admin/v1/purge/{id}"));
    // Gone at once, or already rendered again (FR is hot: ff.predictive_preload).
    let now = l1.get("entity/FR", None);
    assert!(
        now.is_none_or(|entry| !Arc::ptr_eq(&entry, &cached)),
        "the origin's own tier is purged at once"
    );

    let status = app
        .admin(Method::GET, &format!("/admin/v1/purge/{id}"), None)
        .await
        .json();
    assert_eq!(status["source"], "admin");
    assert_eq!(status["request"]["tags"], json!(["e:FR"]));

    for n in 0..3 {
        app.admin(
            Method::POST,
            "/admin/v1/purge",
            Some(json!({"urls": [format!("/p{n}")]})),
        )
        .await;
    }
    // With no provider configured there are no deliveries, so nothing is pending or failed.
    let pending = app
        .admin(Method::GET, "/admin/v1/purge?status=pending&limit=2", None)
        .await;
    assert_eq!(pending.status, StatusCode::OK);
    assert_eq!(pending.json()["items"], json!([]));
}

/// No CDN is configured here, so no dispatcher round renders anything: the purge's commit
/// does, with nobody asking for the page.
async fn a_purge_renders_its_hot_pages_again_without_waiting_for_a_cdn(app: TestApp) {
    let (before, _) = read_then_purge(&app, "DE", 3).await;
    let l1 = app.state.cache.l1.as_ref().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let rendered_again = loop {
        match l1.get("entity/DE", None) {
            Some(entry) if !Arc::ptr_eq(&entry, &before) => break entry,
            _ if std::time::Instant::now() > deadline => panic!("DE was not rendered again"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    assert_eq!(rendered_again.body, before.body, "nothing about DE changed");
    let served = app.get("/api/v1/entities/DE").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, rendered_again.body.to_vec());
}

/// What keeps a CDN's refreshes, during a storm of purges, off the database: they wait for the
/// render a purge claimed rather than render beside it.
async fn a_request_for_a_page_claimed_for_a_new_render_waits_for_it(app: TestApp) {
    for _ in 0..3 {
        app.get("/api/v1/entities/IT").await;
    }
    let hot = app.state.cache.warmer.covered(&["e:IT".to_owned()], false);
    assert_eq!(hot, ["/api/v1/entities/IT"], "IT is hot");
    let claims = app.state.cache.warmer.claim(hot);
    let page = app.get("/api/v1/entities/IT");
    tokio::pin!(page);
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(150), &mut page).await;
    assert!(waiting.is_err(), "answered while its page was claimed");
    drop(claims);
    assert_eq!(page.await.status, StatusCode::OK);
    // Pages nobody claimed do not wait.
    let other = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.get("/api/v1/entities/ES"),
    )
    .await;
    assert_eq!(other.expect("ES answered").status, StatusCode::OK);
}
