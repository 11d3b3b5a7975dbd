//! Operational endpoints: liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::{flags, ops::metrics};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(prometheus))
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "Liveness: the process serves (on `ADMIN_ADDR` when it is set; never through the edge)",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")),
)]
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when the last background check of the primary database passed (see
/// [`crate::ops::readiness`]): answering costs nothing and says nothing more.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "Readiness: the primary database answered the last check",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`"),
        (status = 503, description = "`{\"status\": \"unavailable\"}`"),
    ),
)]
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.ops.readiness.is_ready() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable" })),
        )
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics (on `ADMIN_ADDR` when it is set)",
    responses((status = 200, description = "The Prometheus text format", content_type = "text/plain")),
)]
async fn prometheus(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.hierarchy.db.pools().for_each(|pool| pool.report());
    if let Some(l1) = &state.cache.l1 {
        ::metrics::gauge!(metrics::L1_ENTRIES).set(l1.len() as f64);
        ::metrics::gauge!(metrics::L1_BYTES).set(l1.bytes() as f64);
    }
    if state.flags.on_this_instance(flags::AUTO_SCALING) {
        let inflight = state
            .cluster
            .registry
            .inflight
            .load(std::sync::atomic::Ordering::Relaxed);
        ::metrics::gauge!(metrics::INFLIGHT).set(inflight as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.ops.metrics.render(),
    )
}
