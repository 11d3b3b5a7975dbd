//! Operational endpoints: liveness, readiness and Prometheus metrics.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::{flags, metrics};

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_millis(1000);

/// The probes, and `/metrics` unless it has a listener of its own ([`metrics_routes`]).
pub fn routes(with_metrics: bool) -> OpenApiRouter<Arc<AppState>> {
    let probes = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz));
    if with_metrics {
        probes.merge(metrics_routes())
    } else {
        probes
    }
}

/// `/metrics` alone, for the `METRICS_ADDR` listener.
pub fn metrics_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(prometheus))
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "Liveness: the process serves (never through the edge)",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")),
)]
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when the primary pool hands out a connection within its acquire timeout and that
/// connection answers; the replicas' state is reported beside (they are optional for reads).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "Readiness: the primary database answers; the replicas' state beside",
    responses(
        (status = 200, description = "`{\"status\": \"ready\", \"replicas\": …}`"),
        (status = 503, description = "The primary pool gave no working connection in time"),
    ),
)]
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let db = &state.hierarchy.db;
    let probe = async {
        let mut connection = db.primary.acquire().await?;
        tokio::time::timeout(
            READY_TIMEOUT,
            sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&mut *connection),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
    };
    let replicas = db.replicas.as_ref().map(|replicas| replicas.status());
    match probe.await {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "replicas": replicas })),
        ),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": err.to_string() })),
        ),
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics (on `METRICS_ADDR` instead when it is set)",
    responses((status = 200, description = "The Prometheus text format", content_type = "text/plain")),
)]
async fn prometheus(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.hierarchy.db.pools().for_each(|pool| pool.report());
    if let Some(l1) = &state.l1 {
        ::metrics::gauge!(metrics::L1_ENTRIES).set(l1.len() as f64);
        ::metrics::gauge!(metrics::L1_BYTES).set(l1.bytes() as f64);
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
