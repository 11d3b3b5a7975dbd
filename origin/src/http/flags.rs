//! The admin API of feature flags: list them, set a flag's rollout percentage.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    Json,
};
use forecastin_shared::dto::{FeatureFlag, FlagUpdate, Page};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Admin, ApiJson},
    responses::{DatabaseErrors, TokenErrors, WriteErrors},
    AppState,
};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(set))
}

#[utoipa::path(
    get,
    path = "/admin/v1/flags",
    operation_id = "list_flags",
    tag = "operations",
    summary = "The feature flags and their rollout",
    security(("admin_token" = [])),
    responses((status = 200, body = Page<FeatureFlag>), TokenErrors),
)]
async fn list(State(state): State<Arc<AppState>>, _: Admin) -> Json<Page<FeatureFlag>> {
    Json(Page {
        items: state.flags.all(),
        next_cursor: None,
    })
}

#[utoipa::path(
    put,
    path = "/admin/v1/flags/{name}",
    operation_id = "set_flag",
    tag = "operations",
    summary = "Set a flag's rollout percentage (every instance follows within a second)",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The flag, e.g. `ff.predictive_preload`")),
    request_body = FlagUpdate,
    responses((status = 200, body = FeatureFlag), WriteErrors, TokenErrors, DatabaseErrors),
)]
async fn set(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<FlagUpdate>,
) -> Result<Json<FeatureFlag>, ApiError> {
    if update.rollout_percent > 100 {
        return Err(ApiError::invalid_field(
            "rollout_percent",
            "`rollout_percent` is 0 to 100",
        ));
    }
    state
        .flags
        .set(&name, update.rollout_percent)
        .await?
        .map(Json)
        .ok_or(ApiError::FlagNotFound(name))
}
