//! Operational endpoints: liveness, readiness and Prometheus metrics.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use serde_json::json;

use super::AppState;
use crate::{flags, metrics};

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_millis(1000);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let probe = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&state.hierarchy.db.pool);
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ok(Err(err)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": err.to_string() })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": "database timed out" })),
        ),
    }
}

async fn prometheus(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let pool = &state.hierarchy.db.pool;
    let idle = pool.num_idle() as f64;
    ::metrics::gauge!(metrics::DB_POOL_CONNECTIONS, "state" => "idle").set(idle);
    ::metrics::gauge!(metrics::DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(pool.size() as f64 - idle);
    if let Some(l1) = &state.l1 {
        ::metrics::gauge!(metrics::L1_ENTRIES).set(l1.len() as f64);
    }
    if state.flags.on_this_instance(flags::AUTO_SCALING) {
        let inflight = state
            .registry
            .inflight
            .load(std::sync::atomic::Ordering::Relaxed);
        ::metrics::gauge!(metrics::INFLIGHT).set(inflight as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
