//! Feature flags through the admin API, and `ff.cdn_integration` rolling out what the CDN may
//! store while every change is purged.

mod common;

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
};
use common::TestApp;
use serde_json::json;

/// A Cloudflare provider that is never reached (nothing listens on port 9): deliveries are
/// recorded and stay pending, which is all these tests look at.
const UNREACHABLE_CLOUDFLARE: [&str; 8] = [
    "--purge-providers",
    "cloudflare",
    "--cloudflare-api-base",
    "http://127.0.0.1:9/client/v4",
    "--cloudflare-zone-id",
    "zone",
    "--cloudflare-api-token",
    "token",
];

/// The flag gauges live in the process's one metrics recorder: the tests that set flags and
/// read them back take turns, or one's start (every flag at its stored value) overwrites what
/// the other just set.
static FLAG_METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The purge's CDN deliveries (its `tiers` delivery is always there).
async fn deliveries_of(app: &TestApp, purge_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM purge_deliveries WHERE purge_id = $1 AND provider <> 'tiers'",
    )
    .bind(purge_id)
    .fetch_one(app.state.hierarchy.db.primary.sqlx())
    .await
    .unwrap()
}

/// What a page tells the CDN about storing it, if anything.
async fn told_the_cdn(app: &TestApp, uri: &str) -> Option<String> {
    let page = app.get(uri).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("cache-control").contains("s-maxage"),
        "browsers and the CDN still get Cache-Control"
    );
    let told = page
        .headers
        .get("cdn-cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        told.as_deref(),
        page.headers
            .get("surrogate-control")
            .map(|v| v.to_str().unwrap()),
        "Cloudflare and Fastly are told the same"
    );
    told
}

async fn flags_roll_out_what_the_cdn_stores_and_are_validated(app: TestApp) {
    let flags = app.admin(Method::GET, "/admin/v1/flags", None).await.json();
    let names: Vec<&str> = flags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ff.auto_scaling",
            "ff.cdn_integration",
            "ff.horizontal_scaling",
            "ff.predictive_preload"
        ]
    );

    let on = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/AT",
            Some(json!({"name": "Österreich"})),
        )
        .await;
    assert_eq!(
        deliveries_of(&app, on.header("forecastin-purge-id")).await,
        1
    );
    assert_eq!(told_the_cdn(&app, "/api/v1/entities/AT").await, None);

    let off = app
        .admin(
            Method::PUT,
            "/admin/v1/flags/ff.cdn_integration",
            Some(json!({"rollout_percent": 0})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(off.json()["rollout_percent"], 0);
    let gated = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/AT",
            Some(json!({"name": "Austria"})),
        )
        .await;
    assert_eq!(gated.status, StatusCode::OK);
    assert_eq!(
        deliveries_of(&app, gated.header("forecastin-purge-id")).await,
        1,
        "every change is purged, whatever the rollout"
    );
    for uri in ["/api/v1/entities/AT", "/api/v1/entities/AT/children"] {
        assert_eq!(
            told_the_cdn(&app, uri).await.as_deref(),
            Some("no-store"),
            "{uri} outside the rollout"
        );
    }

    for (uri, body, status, field) in [
        (
            "/admin/v1/flags/ff.nope",
            json!({"rollout_percent": 10}),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "/admin/v1/flags/ff.auto_scaling",
            json!({"rollout_percent": 101}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("rollout_percent"),
        ),
        (
            "/admin/v1/flags/ff.auto_scaling",
            json!({"rollout_percent": 1000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("rollout_percent"),
        ),
        (
            "/admin/v1/flags/ff.auto_scaling",
            json!({"rollout_percent": 10, "x": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("x"),
        ),
    ] {
        let response = app.admin(Method::PUT, uri, Some(body.clone())).await;
        assert_eq!(response.status, status, "{uri} {body}");
        if let Some(field) = field {
            assert_eq!(response.error_field(), field, "{body}");
        }
    }
    let metrics = String::from_utf8(app.get("/metrics").await.body).unwrap();
    assert!(
        metrics.contains("feature_flag_rollout_percent{flag=\"ff.cdn_integration\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sqlite_flags_roll_out_what_the_cdn_stores_and_are_validated() {
    let _turn = FLAG_METRICS.lock().await;
    flags_roll_out_what_the_cdn_stores_and_are_validated(
        TestApp::sqlite_with(&UNREACHABLE_CLOUDFLARE).await,
    )
    .await;
}

#[tokio::test]
async fn postgres_flags_roll_out_what_the_cdn_stores_and_are_validated() {
    let _turn = FLAG_METRICS.lock().await;
    flags_roll_out_what_the_cdn_stores_and_are_validated(
        TestApp::postgres_with(&UNREACHABLE_CLOUDFLARE).await,
    )
    .await;
}

#[tokio::test]
async fn without_horizontal_scaling_an_instance_does_not_trust_its_l1_beyond_the_bound() {
    let _turn = FLAG_METRICS.lock().await;
    let app = TestApp::sqlite_with(&["--l1-disconnected-ttl-ms", "0"]).await;
    let off = app
        .admin(
            Method::PUT,
            "/admin/v1/flags/ff.horizontal_scaling",
            Some(json!({"rollout_percent": 0})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/entities/JP").await.status, StatusCode::OK);
    // With the database gone, only a trusted L1 entry could answer: it is not trusted.
    app.state.hierarchy.db.primary.sqlx().close().await;
    assert_eq!(
        app.get("/api/v1/entities/JP").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn with_preloading_off_a_page_stored_with_its_preloads_is_replaced_not_revalidated() {
    let _turn = FLAG_METRICS.lock().await;
    let app = TestApp::sqlite().await;
    let with_preloads = app.get("/api/v1/entities/FR").await;
    assert_eq!(
        with_preloads.header("link"),
        "</api/v1/entities/FR/children>; rel=preload; as=fetch; crossorigin=anonymous"
    );
    let stored_etag = with_preloads.header("etag").to_owned();
    let off = app
        .admin(
            Method::PUT,
            "/admin/v1/flags/ff.predictive_preload",
            Some(json!({"rollout_percent": 0})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    let revalidate = |etag: String| {
        Request::builder()
            .uri("/api/v1/entities/FR")
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .unwrap()
    };
    // A 304 would leave the cache's copy with its `Link`: it gets the page without it.
    let replaced = app.send(revalidate(stored_etag.clone())).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert!(replaced.headers.get("link").is_none());
    let new_etag = replaced.header("etag").to_owned();
    assert_ne!(new_etag, stored_etag);
    assert_eq!(
        app.send(revalidate(new_etag.clone())).await.status,
        StatusCode::NOT_MODIFIED
    );
    // The validator served while preloading is off names this version for a write too.
    let write_if = |etag: String, name: &'static str| {
        let app = &app;
        async move {
            app.admin_with(
                Method::PATCH,
                "/admin/v1/entities/FR",
                Some(json!({ "name": name })),
                &[("if-match", etag.as_str())],
            )
            .await
            .status
        }
    };
    assert_eq!(write_if(new_etag, "France (1)").await, StatusCode::OK);
    assert_eq!(
        write_if(stored_etag, "France (2)").await,
        StatusCode::PRECONDITION_FAILED
    );
}

#[tokio::test]
async fn a_new_deployment_starts_the_flags_no_operator_set_at_the_first_step() {
    let _turn = FLAG_METRICS.lock().await;
    let app = TestApp::sqlite_with(&["--flag-rollout-start", "10"]).await;
    let rollouts = |app: &TestApp| {
        let flags = app.state.flags.all();
        flags
            .into_iter()
            .map(|f| (f.name, f.rollout_percent))
            .collect::<Vec<_>>()
    };
    assert!(
        rollouts(&app).iter().all(|(_, percent)| *percent == 10),
        "{:?}",
        rollouts(&app)
    );
    let set = app
        .admin(
            Method::PUT,
            "/admin/v1/flags/ff.auto_scaling",
            Some(json!({"rollout_percent": 25})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    // Another instance starting later (or this one restarting) keeps what the operator set.
    let db = app.state.hierarchy.db.clone();
    let later = forecastin_origin::flags::Flags::load(db, "another", 10)
        .await
        .unwrap();
    let flags = later.all();
    let percent = |name: &str| {
        flags
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .rollout_percent
    };
    assert_eq!(percent("ff.auto_scaling"), 25);
    assert_eq!(percent("ff.cdn_integration"), 10);
}
