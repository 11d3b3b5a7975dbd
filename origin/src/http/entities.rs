//! The public read API of the hierarchy: an entity, its ancestors, its children, its
//! descendants, and search by name. Every response goes through [`serve_cached`].

use std::sync::Arc;

use axum::{extract::State, http::HeaderMap, response::Response};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use forecastin_shared::{
    dto::{Ancestors, Entity, EntitySummary, Page},
    params::{Param, CURSOR, LIST_LIMIT, MAX_DEPTH, QUERY, SEARCH_LIMIT},
    preload,
    routes::{CHILDREN_PARAMS, DESCENDANTS_PARAMS, SEARCH_PARAMS},
    tags::{self, Resource},
};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    caching::{serve_cached, Fresh},
    extract::{Declared, EntityId, Route},
    responses::{DatabaseErrors, NotModified, ReadErrors},
    AppState,
};
use crate::{
    error::ApiError,
    hierarchy::{search_pattern, EntityRow},
};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(entity))
        .routes(routes!(ancestors))
        .routes(routes!(children))
        .routes(routes!(descendants))
        .routes(routes!(search))
}

/// The routes' declared parameters (`forecastin_shared::routes`).
struct Children;
struct Descendants;
struct Search;

impl Route for Children {
    const PARAMS: &'static [Param] = CHILDREN_PARAMS;
}
impl Route for Descendants {
    const PARAMS: &'static [Param] = DESCENDANTS_PARAMS;
}
impl Route for Search {
    const PARAMS: &'static [Param] = SEARCH_PARAMS;
}

type ChildrenQuery = Declared<Children>;
type DescendantsQuery = Declared<Descendants>;
type SearchQuery = Declared<Search>;

/// Cursors are opaque to clients: the sort key of the last item served, base64url-encoded.
fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("\u{1f}"))
}

/// The parts of a cursor this API issued: no other control character than the separator.
fn decode_cursor<const N: usize>(cursor: &str) -> Result<[String; N], ApiError> {
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(foreign_cursor)?;
    let parts: Vec<String> = text.split('\u{1f}').map(str::to_owned).collect();
    if parts.iter().any(|part| part.chars().any(char::is_control)) {
        return Err(foreign_cursor());
    }
    parts.try_into().map_err(|_| foreign_cursor())
}

fn foreign_cursor() -> ApiError {
    ApiError::bad_parameter("cursor", "the cursor is not one this API issued")
}

/// The checked `limit` and `cursor` of a page request.
struct PageParams {
    limit: i64,
    cursor: String,
    /// The decoded sort key of the last item of the previous page.
    after: Option<[String; 2]>,
}

impl PageParams {
    /// `limit` is the route's page size parameter.
    fn parse<R: Route>(query: &Declared<R>, limit: &Param) -> Result<Self, ApiError> {
        let cursor = query.get(&CURSOR);
        Ok(Self {
            limit: query.integer(limit),
            after: cursor.map(decode_cursor::<2>).transpose()?,
            cursor: cursor.unwrap_or_default().to_owned(),
        })
    }

    /// The normalized parameters, for the L1 key.
    fn key(&self) -> String {
        format!("limit={}&cursor={}", self.limit, self.cursor)
    }

    /// The `(sort key, id)` position of lists ordered by a name: the name for children, the
    /// lowercased name for search.
    fn after_name_id(&self) -> Option<(&str, &str)> {
        self.after
            .as_ref()
            .map(|[name, id]| (name.as_str(), id.as_str()))
    }
}

/// Turns `limit + 1` fetched rows into a page of at most `limit`, with a cursor to the rest.
fn page(
    mut rows: Vec<EntityRow>,
    limit: i64,
    cursor_of: impl Fn(&EntityRow) -> String,
) -> Page<forecastin_shared::dto::EntitySummary> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Page {
        next_cursor: more.then(|| rows.last().map(&cursor_of)).flatten(),
        items: rows.iter().map(EntityRow::to_summary).collect(),
    }
}

async fn existing(state: &AppState, id: &str) -> Result<EntityRow, ApiError> {
    state
        .hierarchy
        .entity(id)
        .await?
        .ok_or_else(|| ApiError::EntityNotFound(id.to_owned()))
}

#[utoipa::path(
    get,
    path = "/api/v1/entities/{id}",
    operation_id = "get_entity",
    tag = "hierarchy",
    summary = "One entity",
    params(EntityId),
    responses(
        (status = 200, description = "The entity", body = Entity),
        NotModified,
        ReadErrors,
        DatabaseErrors,
    ),
)]
async fn entity(
    State(state): State<Arc<AppState>>,
    EntityId(id): EntityId,
    headers: HeaderMap,
) -> Response {
    serve_cached(&state, format!("entity/{id}"), &headers, || async {
        let row = existing(&state, &id).await?;
        let tags = tags::for_response(Resource::Entity, &row.id, row.ancestor_ids());
        Ok(Fresh::ok(&row.to_entity(), tags).preloading(vec![preload::children_page(&row.id)]))
    })
    .await
}

#[utoipa::path(
    get,
    path = "/api/v1/entities/{id}/ancestors",
    operation_id = "get_ancestors",
    tag = "hierarchy",
    summary = "The breadcrumb of an entity",
    params(EntityId),
    responses(
        (status = 200, description = "Its ancestors, root first, without the entity", body = Ancestors),
        NotModified,
        ReadErrors,
        DatabaseErrors,
    ),
)]
async fn ancestors(
    State(state): State<Arc<AppState>>,
    EntityId(id): EntityId,
    headers: HeaderMap,
) -> Response {
    serve_cached(&state, format!("ancestors/{id}"), &headers, || async {
        let (row, ancestors) = state
            .hierarchy
            .with_ancestors(&id)
            .await?
            .ok_or_else(|| ApiError::EntityNotFound(id.clone()))?;
        let body = Ancestors {
            id: row.id.clone(),
            items: ancestors.iter().map(EntityRow::to_summary).collect(),
        };
        let tags = tags::for_response(Resource::Ancestors, &row.id, row.ancestor_ids());
        Ok(Fresh::ok(&body, tags))
    })
    .await
}

#[utoipa::path(
    get,
    path = "/api/v1/entities/{id}/children",
    operation_id = "list_children",
    tag = "hierarchy",
    summary = "The children of an entity, by name",
    params(EntityId, ChildrenQuery),
    responses(
        (status = 200, description = "A page of children", body = Page<EntitySummary>),
        NotModified,
        ReadErrors,
        DatabaseErrors,
    ),
)]
async fn children(
    State(state): State<Arc<AppState>>,
    EntityId(id): EntityId,
    query: ChildrenQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page_params = PageParams::parse(&query, &LIST_LIMIT)?;
    let key = format!("children/{id}?{}", page_params.key());
    Ok(serve_cached(&state, key, &headers, || async {
        let parent = existing(&state, &id).await?;
        let rows = state
            .hierarchy
            .children(&id, page_params.after_name_id(), page_params.limit + 1)
            .await?;
        let body = page(rows, page_params.limit, |last| {
            encode_cursor(&[&last.name, &last.id])
        });
        let first_child = body.items.first().filter(|_| page_params.after.is_none());
        let likely_next = first_child.map_or_else(Vec::new, |child| {
            vec![
                preload::entity_page(&child.id),
                preload::breadcrumb(&child.id),
            ]
        });
        let tags = tags::for_response(Resource::Children, &parent.id, parent.ancestor_ids());
        Ok(Fresh::ok(&body, tags).preloading(likely_next))
    })
    .await)
}

#[utoipa::path(
    get,
    path = "/api/v1/entities/{id}/descendants",
    operation_id = "list_descendants",
    tag = "hierarchy",
    summary = "The descendants of an entity, level by level",
    params(EntityId, DescendantsQuery),
    responses(
        (status = 200, description = "A page of descendants", body = Page<EntitySummary>),
        NotModified,
        ReadErrors,
        DatabaseErrors,
    ),
)]
async fn descendants(
    State(state): State<Arc<AppState>>,
    EntityId(id): EntityId,
    query: DescendantsQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page_params = PageParams::parse(&query, &LIST_LIMIT)?;
    let max_depth = query.integer(&MAX_DEPTH);
    let after = match &page_params.after {
        None => None,
        Some([depth, path]) => Some((
            depth.parse::<i64>().map_err(|_| foreign_cursor())?,
            path.clone(),
        )),
    };
    let key = format!(
        "descendants/{id}?max_depth={max_depth}&{}",
        page_params.key()
    );
    Ok(serve_cached(&state, key, &headers, || async {
        let root = existing(&state, &id).await?;
        if after
            .as_ref()
            .is_some_and(|(_, path)| !path.starts_with(&root.path))
        {
            return Err(ApiError::bad_parameter(
                "cursor",
                "the cursor belongs to another entity's descendants",
            ));
        }
        let rows = state
            .hierarchy
            .descendants(&root, max_depth, after, page_params.limit + 1)
            .await?;
        let body = page(rows, page_params.limit, |last| {
            encode_cursor(&[&last.depth.to_string(), &last.path])
        });
        let listed: Vec<&str> = body.items.iter().map(|item| item.id.as_str()).collect();
        let tags = tags::for_descendants_page(&root.id, root.ancestor_ids(), &listed);
        // Pages are read on: the next one, as readers ask for it (no `max_depth` given).
        let next_page = body
            .next_cursor
            .as_deref()
            .filter(|_| query.get(&MAX_DEPTH).is_none())
            .map(|cursor| preload::next_descendants_page(&root.id, page_params.limit, cursor));
        Ok(Fresh::ok(&body, tags).preloading(next_page.into_iter().collect()))
    })
    .await)
}

#[utoipa::path(
    get,
    path = "/api/v1/search",
    operation_id = "search",
    tag = "hierarchy",
    summary = "Entities by name",
    params(SearchQuery),
    responses(
        (status = 200, description = "A page of entities, by lowercased name", body = Page<EntitySummary>),
        NotModified,
        ReadErrors,
        DatabaseErrors,
    ),
)]
async fn search(
    State(state): State<Arc<AppState>>,
    query: SearchQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Required, so given: the extractor refused the request otherwise.
    let q = query.get(&QUERY).unwrap_or_default();
    let page_params = PageParams::parse(&query, &SEARCH_LIMIT)?;
    // The pattern, not the lowercased text: `İs` (two characters, a prefix) and `i̇s` (three, a
    // substring) lowercase alike but search differently.
    let key = format!("search?q={}&{}", search_pattern(q), page_params.key());
    Ok(serve_cached(&state, key, &headers, || async {
        let rows = state
            .hierarchy
            .search(q, page_params.after_name_id(), page_params.limit + 1)
            .await?;
        // Search pages are ordered by the lowercased name (see `Hierarchy::search`).
        let body = page(rows, page_params.limit, |last| {
            encode_cursor(&[&last.name.to_lowercase(), &last.id])
        });
        let tags = vec![tags::SEARCH.to_owned(), tags::search_query(q)];
        Ok(Fresh::ok(&body, tags))
    })
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_foreign_input() {
        let cursor = encode_cursor(&["Île-de-France", "FR-IDF"]);
        let [name, id] = decode_cursor::<2>(&cursor).unwrap();
        assert_eq!((name.as_str(), id.as_str()), ("Île-de-France", "FR-IDF"));
        assert!(decode_cursor::<2>("not base64!").is_err());
        assert!(decode_cursor::<2>(&encode_cursor(&["only-one"])).is_err());
        assert!(decode_cursor::<2>(&encode_cursor(&["a\0b", "FR"])).is_err());
    }

    #[test]
    fn the_depth_parameter_reaches_the_deepest_level() {
        use forecastin_shared::params::Rule;
        assert!(matches!(
            MAX_DEPTH.rule,
            Rule::Integer { max, default, .. }
                if max == crate::hierarchy::MAX_DEPTH && default == max
        ));
    }
}
