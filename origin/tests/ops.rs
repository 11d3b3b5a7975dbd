//! Liveness, readiness and metrics.

mod common;

use axum::http::StatusCode;
use common::TestApp;

on_both_backends!(health_readiness_and_metrics_report_the_truth);

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
        "db_pool_connections{state=\"idle\"}",
        "db_pool_connections{state=\"in_use\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    app.state.hierarchy.db.pool.close().await;
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(readyz.json()["status"], "unavailable");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}
