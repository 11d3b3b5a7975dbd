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
use forecastin_shared::dto::{Page, PurgeAccepted, PurgeRequest, PurgeStatus};
use serde::Deserialize;

use super::{
    extract::{bounded, Admin, ApiJson, ApiQuery},
    AppState,
};
use crate::{error::ApiError, purge::Source};

/// Most items of each kind in one purge.
const MAX_ITEMS: usize = 1_000;
/// Longest tag (Cloudflare's limit).
const MAX_TAG_LEN: usize = 1_024;
/// Default and largest page of the purge list.
const LIST_LIMIT: (i64, i64) = (20, 100);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/purge", get(list).post(create))
        .route("/admin/v1/purge/{id}", get(show))
}

fn check(request: &PurgeRequest) -> Result<(), ApiError> {
    if request.is_empty() {
        return Err(ApiError::InvalidBody {
            field: None,
            message: "the purge names nothing: give urls, tags, prefixes or everything".into(),
        });
    }
    for (field, items) in [
        ("urls", &request.urls),
        ("tags", &request.tags),
        ("prefixes", &request.prefixes),
    ] {
        if items.len() > MAX_ITEMS {
            return Err(ApiError::invalid_field(
                field,
                format!("`{field}` has {} items, more than {MAX_ITEMS}", items.len()),
            ));
        }
    }
    if let Some(tag) = request.tags.iter().find(|tag| {
        tag.is_empty()
            || tag.len() > MAX_TAG_LEN
            || tag
                .chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control())
    }) {
        return Err(ApiError::invalid_field(
            "tags",
            format!("`{tag}` is not a valid cache tag"),
        ));
    }
    for (field, items) in [("urls", &request.urls), ("prefixes", &request.prefixes)] {
        if let Some(bad) = items.iter().find(|item| {
            !(item.starts_with('/') || item.starts_with("https://") || item.starts_with("http://"))
                || item.chars().any(|c| c.is_whitespace() || c.is_control())
        }) {
            return Err(ApiError::invalid_field(
                field,
                format!("`{bad}` is neither a path starting with / nor an http(s) URL"),
            ));
        }
    }
    Ok(())
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
