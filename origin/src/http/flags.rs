//! The admin API of feature flags: list them, set a flag's rollout percentage.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    routing::{get, put},
    Json, Router,
};
use forecastin_shared::dto::{FeatureFlag, FlagUpdate, Page};

use super::{
    extract::{Admin, ApiJson},
    AppState,
};
use crate::error::ApiError;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/flags", get(list))
        .route("/admin/v1/flags/{name}", put(set))
}

async fn list(State(state): State<Arc<AppState>>, _: Admin) -> Json<Page<FeatureFlag>> {
    Json(Page {
        items: state.flags.all(),
        next_cursor: None,
    })
}

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
