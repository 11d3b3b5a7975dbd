//! The admin API behind the bearer token: create, update (rename, attributes, move) and delete
//! entities, list the live instances, check the hierarchy's consistency. Writes take
//! `If-Match` for optimistic concurrency and invalidate the L1 entries their change made stale.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use forecastin_shared::{
    conditional::matches,
    dto::{ConsistencyReport, Entity, EntityKind, EntityPatch, InstanceInfo, NewEntity, Page},
    ids::is_valid_id,
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    caching::{etag_of, without_preloads},
    extract::{Admin, ApiJson, ApiQuery, EntityId, IfMatch},
    responses::{DatabaseErrors, TokenErrors, WriteErrors},
    AppState,
};
use crate::{
    error::ApiError,
    hierarchy::{write::Written, EntityRow, MAX_NAME_CHARS},
};

/// The response header naming the purge a write recorded (see `GET /admin/v1/purge/{id}`).
pub const PURGE_ID_HEADER: &str = "forecastin-purge-id";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(instances))
        .routes(routes!(consistency))
        .routes(routes!(update, delete))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "name",
            format!("`name` must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "name",
            "`name` must not contain control characters",
        ));
    }
    Ok(())
}

fn check_kind(kind: EntityKind) -> Result<(), ApiError> {
    if kind == EntityKind::World {
        return Err(ApiError::invalid_field(
            "kind",
            "`world` is the root's kind only",
        ));
    }
    Ok(())
}

fn check_reference(field: &str, id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("`{field}` must be 1 to 64 characters from A-Z a-z 0-9 . _ -"),
        ))
    }
}

/// The ETag that `GET /api/v1/entities/{id}` gives this row.
fn etag_of_row(row: &EntityRow) -> String {
    etag_of(&serde_json::to_vec(&row.to_entity()).expect("DTOs serialize"))
}

/// The `If-Match` check, run inside the write's transaction against the current row. The page
/// has a second validator while preloading is off (see [`without_preloads`]): both name it.
fn if_match(condition: &str) -> impl Fn(&EntityRow) -> Result<(), ApiError> + '_ {
    move |row| {
        let etag = etag_of_row(row);
        if matches(condition, &etag) || matches(condition, &without_preloads(&etag)) {
            Ok(())
        } else {
            Err(ApiError::PreconditionFailed)
        }
    }
}

/// Answers a committed write with the entity as it is now.
fn written(written: Written, status: StatusCode) -> Response {
    tracing::info!(tags = ?written.invalidated, "write committed");
    let Some(row) = written.entity else {
        return (
            StatusCode::NO_CONTENT,
            [(PURGE_ID_HEADER, written.purge_id)],
        )
            .into_response();
    };
    let mut response = (status, Json(row.to_entity())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        PURGE_ID_HEADER,
        HeaderValue::try_from(written.purge_id.as_str()).expect("hex is a valid header"),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::try_from(etag_of_row(&row)).expect("hex is a valid header"),
    );
    if status == StatusCode::CREATED {
        headers.insert(
            header::LOCATION,
            HeaderValue::try_from(format!("/api/v1/entities/{}", row.id))
                .expect("ids are valid in a header"),
        );
    }
    response
}

#[utoipa::path(
    post,
    path = "/admin/v1/entities",
    operation_id = "create_entity",
    tag = "admin",
    summary = "Create an entity",
    security(("admin_token" = [])),
    request_body = NewEntity,
    responses(
        (status = 201, description = "Created", body = Entity, headers(("Forecastin-Purge-Id" = String, description = "The purge this write recorded"))),
        WriteErrors,
        TokenErrors,
        DatabaseErrors,
    ),
)]
async fn create(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiJson(new): ApiJson<NewEntity>,
) -> Result<Response, ApiError> {
    check_reference("id", &new.id)?;
    check_reference("parent_id", &new.parent_id)?;
    check_name(&new.name)?;
    check_kind(new.kind)?;
    let done = state.hierarchy.create(&new).await?;
    Ok(written(done, StatusCode::CREATED))
}

#[utoipa::path(
    patch,
    path = "/admin/v1/entities/{id}",
    operation_id = "update_entity",
    tag = "admin",
    summary = "Rename, retype, change attributes or move (with the subtree)",
    security(("admin_token" = [])),
    params(EntityId, ("If-Match" = String, Header, description = "The ETag read from `GET /api/v1/entities/{id}`, or `*`")),
    request_body = EntityPatch,
    responses(
        (status = 200, description = "Updated", body = Entity, headers(("Forecastin-Purge-Id" = String, description = "The purge this write recorded"))),
        WriteErrors,
        TokenErrors,
        DatabaseErrors,
    ),
)]
async fn update(
    State(state): State<Arc<AppState>>,
    _: Admin,
    EntityId(id): EntityId,
    IfMatch(condition): IfMatch,
    ApiJson(patch): ApiJson<EntityPatch>,
) -> Result<Response, ApiError> {
    if patch == EntityPatch::default() {
        return Err(ApiError::InvalidBody {
            field: None,
            message: "the patch changes nothing: give name, kind, attributes or parent_id".into(),
        });
    }
    if let Some(name) = &patch.name {
        check_name(name)?;
    }
    if let Some(kind) = patch.kind {
        check_kind(kind)?;
    }
    if let Some(parent_id) = &patch.parent_id {
        check_reference("parent_id", parent_id)?;
    }
    let done = state
        .hierarchy
        .update(&id, &patch, if_match(&condition))
        .await?;
    Ok(written(done, StatusCode::OK))
}

/// The live origin instances.
#[utoipa::path(
    get,
    path = "/admin/v1/instances",
    operation_id = "list_instances",
    tag = "operations",
    summary = "The live origin instances",
    security(("admin_token" = [])),
    responses((status = 200, body = Page<InstanceInfo>), TokenErrors),
)]
async fn instances(State(state): State<Arc<AppState>>, _: Admin) -> Json<Page<InstanceInfo>> {
    Json(Page {
        items: state.cluster.registry.live().await,
        next_cursor: None,
    })
}

/// Checks the materialized paths against the parent links (a full scan: an operator's tool).
#[utoipa::path(
    get,
    path = "/admin/v1/hierarchy/consistency",
    operation_id = "check_consistency",
    tag = "operations",
    summary = "Check every materialized path against the parent links (a full scan)",
    security(("admin_token" = [])),
    responses((status = 200, body = ConsistencyReport), TokenErrors, DatabaseErrors),
)]
async fn consistency(
    State(state): State<Arc<AppState>>,
    _: Admin,
) -> Result<Json<ConsistencyReport>, ApiError> {
    Ok(Json(state.hierarchy.check_consistency().await?))
}

#[derive(Deserialize)]
struct DeleteQuery {
    cascade: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/admin/v1/entities/{id}",
    operation_id = "delete_entity",
    tag = "admin",
    summary = "Delete an entity (with its subtree when `cascade=true`)",
    security(("admin_token" = [])),
    params(
        EntityId,
        ("cascade" = Option<bool>, Query, description = "Required to delete an entity with children"),
        ("If-Match" = String, Header, description = "The ETag read from `GET /api/v1/entities/{id}`, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted", headers(("Forecastin-Purge-Id" = String, description = "The purge this write recorded"))),
        WriteErrors,
        TokenErrors,
        DatabaseErrors,
    ),
)]
async fn delete(
    State(state): State<Arc<AppState>>,
    _: Admin,
    EntityId(id): EntityId,
    ApiQuery(query): ApiQuery<DeleteQuery>,
    IfMatch(condition): IfMatch,
) -> Result<Response, ApiError> {
    let cascade = match query.cascade.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_parameter(
                "cascade",
                "`cascade` must be true or false",
            ))
        }
    };
    let done = state
        .hierarchy
        .delete(&id, cascade, if_match(&condition))
        .await?;
    Ok(written(done, StatusCode::NO_CONTENT))
}
