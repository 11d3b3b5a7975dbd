//! The admin purge API: purge anything by hand through the same outbox as data changes, and
//! follow every purge's delivery per provider.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use forecastin_shared::{
    dto::{ErrorBody, Page, PurgeAccepted, PurgeRequest, PurgeStatus},
    purges,
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{bounded, Admin, ApiJson, ApiQuery},
    responses::{DatabaseErrors, TokenErrors, WriteErrors},
    AppState,
};
use crate::{error::ApiError, purge::Source};

/// Default and largest page of the purge list.
const LIST_LIMIT: (i64, i64) = (20, 100);

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
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

#[utoipa::path(
    post,
    path = "/admin/v1/purge",
    operation_id = "create_purge",
    tag = "purges",
    summary = "Purge URLs, tags, prefixes or everything, from the origin's tiers and every CDN",
    security(("admin_token" = [])),
    request_body = PurgeRequest,
    responses(
        (
            status = 202,
            description = "Recorded; delivered in the background",
            body = PurgeAccepted,
            headers(("Location" = String, description = "Where to follow its delivery")),
        ),
        WriteErrors,
        TokenErrors,
        DatabaseErrors,
    ),
)]
async fn create(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiJson(request): ApiJson<PurgeRequest>,
) -> Result<Response, ApiError> {
    check(&request)?;
    let outbox = &state.hierarchy.outbox;
    let mut tx = state.hierarchy.db.primary.begin(None).await?;
    let id = outbox
        .record(&mut tx, Source::Admin, &request, None)
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

#[utoipa::path(
    get,
    path = "/admin/v1/purge/{id}",
    operation_id = "get_purge",
    tag = "purges",
    summary = "A purge and its delivery per provider",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "The purge id (`Forecastin-Purge-Id` of a write)")),
    responses(
        (status = 200, body = PurgeStatus),
        (status = 404, description = "No purge by that id", body = ErrorBody),
        TokenErrors,
        DatabaseErrors,
    ),
)]
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

#[utoipa::path(
    get,
    path = "/admin/v1/purge",
    operation_id = "list_purges",
    tag = "purges",
    summary = "Purges by delivery status, newest first",
    security(("admin_token" = [])),
    params(
        ("status" = Option<String>, Query, description = "`pending`, `delivered` or `failed` (default)", pattern = "^(pending|delivered|failed)$"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page", min_length = 2, pattern = "^[A-Za-z0-9_-]+$"),
    ),
    responses(
        (status = 200, body = Page<PurgeStatus>),
        (status = 400, description = "A malformed `status`, `limit` or `cursor`", body = ErrorBody),
        TokenErrors,
        DatabaseErrors,
    ),
)]
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
