//! Liveness, readiness and metrics.

mod common;

use std::{sync::Arc, time::Duration};

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

forecastin_e2e::on_both_backends!(
    setup = common::TestApp::on;health_readiness_and_metrics_report_the_truth);

async fn health_readiness_and_metrics_report_the_truth(app: TestApp) {
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    app.get("/api/v1/entities/FR").await;
    app.get("/api/v1/entities/FR").await;

    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8(metrics.body).unwrap();
    for needle in [
        "http_requests_total{route=\"/api/v1/entities/{id}\",method=\"GET\",status=\"200\"}",
        "http_request_duration_seconds_bucket{route=\"/api/v1/entities/{id}\",method=\"GET\"",
        "l1_cache_hits_total",
        "l1_cache_misses_total",
        "db_pool_connections{pool=\"primary\",state=\"idle\"}",
        "db_pool_connections{pool=\"primary\",state=\"in_use\"}",
        "db_pool_waiters{pool=\"primary\"}",
        "db_pool_utilization_ratio{pool=\"primary\"}",
        "db_pool_acquire_seconds_bucket{pool=\"primary\",le=\"0.001\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    app.state.hierarchy.db.primary.sqlx().close().await;
    let readyz = readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        readyz.json(),
        serde_json::json!({ "status": "unavailable" }),
        "says nothing more"
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

/// `/readyz` once the background check has seen the change (it asks twice a second).
async fn readiness_becomes(app: &TestApp, status: StatusCode) -> common::TestResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let readyz = app.get("/readyz").await;
        if readyz.status == status || std::time::Instant::now() > deadline {
            assert_eq!(readyz.status, status);
            return readyz;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_fails_when_the_primary_pool_is_exhausted_sqlite() {
    readiness_fails_when_the_primary_pool_is_exhausted(
        TestApp::sqlite_with(&["--acquire-timeout-ms", "300"]).await,
    )
    .await;
}

#[tokio::test]
async fn readiness_fails_when_the_primary_pool_is_exhausted_postgres() {
    readiness_fails_when_the_primary_pool_is_exhausted(
        TestApp::postgres_with(&["--acquire-timeout-ms", "300"]).await,
    )
    .await;
}

/// Every connection held elsewhere: the background check gives up after the acquire
/// timeout, and the metrics show the pool full; released, the instance is ready again.
async fn readiness_fails_when_the_primary_pool_is_exhausted(app: TestApp) {
    let pool = app.state.hierarchy.db.primary.clone();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await;

    let text = String::from_utf8(app.get("/metrics").await.body).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert_eq!(value("db_pool_utilization_ratio{pool=\"primary\"}"), 1.0);
    assert_eq!(
        value("db_pool_connections{pool=\"primary\",state=\"in_use\"}"),
        4.0
    );

    drop(held);
    readiness_becomes(&app, StatusCode::OK).await;
}

/// Thirty made-up methods add one `other` series, not thirty.
#[tokio::test]
async fn made_up_methods_do_not_mint_metric_series() {
    let app = TestApp::sqlite().await;
    for n in 0..30 {
        let method = axum::http::Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
        app.send(
            axum::http::Request::builder()
                .method(method)
                .uri("/api/v1/entities/FR")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    }
    let text = String::from_utf8(app.get("/metrics").await.body).unwrap();
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
}

/// A request whose client goes away half-way (its future dropped while it waits for a
/// database connection) no longer counts as in flight.
#[tokio::test]
async fn a_request_dropped_half_way_leaves_the_in_flight_count() {
    let app = TestApp::sqlite_with(&["--acquire-timeout-ms", "5000"]).await;
    let pool = app.state.hierarchy.db.primary.clone();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    let inflight = || {
        app.state
            .cluster
            .registry
            .inflight
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        app.get("/api/v1/entities/DE"),
    );
    let probe = async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        inflight()
    };
    let (abandoned, during) = tokio::join!(waiting, probe);
    assert!(
        abandoned.is_err(),
        "the request was still waiting for a connection"
    );
    assert_eq!(during, 1, "it counted while it waited");
    assert_eq!(inflight(), 0, "and stopped counting when it was dropped");
    drop(held);
}

/// Nothing keeps an application's state alive once the application is dropped (no `Arc` cycle:
/// the warmer renders through the application it belongs to), and every background loop ends
/// with it: with Redis, the heartbeat, the bus's subscriber and sequence check and the sharing
/// of hot pages among them.
#[tokio::test]
async fn a_dropped_application_frees_its_state_and_ends_its_loops() {
    let redis =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let namespace = format!("lifetime-{}", std::process::id());
    let app = TestApp::sqlite_with(&["--redis-url", &redis, "--redis-namespace", &namespace]).await;
    assert_eq!(app.get("/api/v1/entities/FR").await.status, StatusCode::OK);
    let edit = json!({"name": "France (renamed)"});
    let changed = app
        .admin(Method::PATCH, "/admin/v1/entities/FR", Some(edit))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.json());
    let state = Arc::downgrade(&app.state);
    let background = app.state.lifetime.background.clone();
    assert!(
        !background.ended(Duration::from_millis(200)).await,
        "the loops run while the application does"
    );
    drop(app);
    assert!(
        background.ended(Duration::from_secs(10)).await,
        "a loop outlived its application"
    );
    assert!(
        state.upgrade().is_none(),
        "something still holds the dropped application's state"
    );
}
