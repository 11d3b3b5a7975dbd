//! The admin purge API: purge anything by hand through the same outbox as data changes, and
//! follow every purge's delivery per provider.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use forecastin_shared::{
    dto::{Page, PurgeAccepted, PurgeRequest, PurgeStatus},
    purges,
};
use serde::Deserialize;

use super::{
    extract::{bounded, Admin, ApiJson, ApiQuery},
    AppState,
};
use crate::{error::ApiError, purge::Source};

/// Default and largest page of the purge list.
const LIST_LIMIT: (i64, i64) = (20, 100);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/purge", get(list).post(create))
        .route("/admin/v1/purge/{id}", get(show))
}

/// The edge's own rules (`forecastin_shared::purges`): what passes here is accepted there.
fn check(request: &PurgeRequest) -> Result<(), ApiError> {
    purges::validate(request).map_err(|invalid| match invalid.field {
        Some(field) => ApiError::invalid_field(field, invalid.message),
        None => ApiError::InvalidBody {
            field: None,
            message: invalid.message,
        },
    })
}

async fn create(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiJson(request): ApiJson<PurgeRequest>,
) -> Result<Response, ApiError> {
    check(&request)?;
    let outbox = &state.hierarchy.outbox;
    let mut tx = state.hierarchy.db.primary.begin(None).await?;
    let id = outbox
        .record(&mut tx, Source::Admin, &request, None, None)
        .await?;
    tx.commit().await?;
    outbox.committed(&id, &request, None, None).await;
    let location = HeaderValue::try_from(format!("/admin/v1/purge/{id}")).expect("hex path");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(PurgeAccepted { id }),
    )
        .into_response())
}

async fn show(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<PurgeStatus>, ApiError> {
    state
        .purges
        .get(&id)
        .await?
        .map(Json)
        .ok_or(ApiError::PurgeNotFound(id))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Page<PurgeStatus>>, ApiError> {
    let status = query.status.as_deref().unwrap_or("failed");
    if !matches!(status, "pending" | "delivered" | "failed") {
        return Err(ApiError::bad_parameter(
            "status",
            "`status` is pending, delivered or failed",
        ));
    }
    let limit = bounded(
        "limit",
        query.limit.as_deref(),
        1..=LIST_LIMIT.1,
        LIST_LIMIT.0,
    )?;
    let before = query
        .cursor
        .as_deref()
        .map(|cursor| {
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| {
                    let (created, id) = text.split_once('|')?;
                    Some((created.parse::<i64>().ok()?, id.to_owned()))
                })
                .ok_or_else(|| {
                    ApiError::bad_parameter("cursor", "the cursor is not one this API issued")
                })
        })
        .transpose()?;
    let mut items = state
        .purges
        .by_status(
            status,
            before.as_ref().map(|(c, id)| (*c, id.as_str())),
            limit + 1,
        )
        .await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last())
        .flatten()
        .map(|last| URL_SAFE_NO_PAD.encode(format!("{}|{}", last.created_at_ms, last.id)));
    Ok(Json(Page { items, next_cursor }))
}
