//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` attributes and the shared DTOs (`forecastin-shared`'s `openapi` feature),
//! and served at `/api/v1/openapi.json`, cacheable like the other public pages. Every route is
//! registered through `utoipa_axum::routes!`, so a route and its description cannot part.

use std::sync::{Arc, LazyLock};

use axum::{http::HeaderMap, response::Response};
use utoipa::{
    openapi::{
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        Header, RefOr,
    },
    Modify, OpenApi,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    assets::{asset, REVALIDATE},
    responses::NotModified,
    AppState,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Forecastin",
        description = "The hierarchy of entities (world, regions, countries, subdivisions, \
                       actors, topics): cacheable public reads, admin writes that purge the CDN, \
                       purges, and a stream of changes."
    ),
    modifiers(&AdminToken),
    tags(
        (name = "hierarchy", description = "Public reads, cacheable by any shared cache"),
        (name = "admin", description = "Writes (the admin token); each purges what it changed"),
        (name = "purges", description = "Purges by hand, and the delivery of every purge"),
        (name = "operations", description = "Probes, metrics, instances and feature flags"),
        (name = "page", description = "The analysts' page"),
    )
)]
struct ApiDoc;

/// The admin token, `Authorization: Bearer $ADMIN_TOKEN`.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// Describes the caching headers of every public read's answer (see `caching.rs`) once, on
/// the finished description (a modifier of [`ApiDoc`] would run before the paths are in).
pub fn add_caching_headers(openapi: &mut utoipa::openapi::OpenApi) {
    let header = |description: &str| {
        let mut header = Header::default();
        header.description = Some(description.to_owned());
        RefOr::T(header)
    };
    let headers = [
        (
            "Cache-Control",
            "`s-maxage`, `stale-while-revalidate`, `stale-if-error`; `max-age` for browsers",
        ),
        ("ETag", "Strong; send it back in `If-None-Match` for a 304"),
        (
            "Cache-Tag",
            "The cache tags the answer depends on (the same in `Surrogate-Key`)",
        ),
    ];
    let reads = openapi.paths.paths.iter_mut().filter(|(path, _)| {
        path.starts_with("/api/v1/entities/") || path.as_str() == "/api/v1/search"
    });
    for (_, item) in reads {
        let Some(get) = &mut item.get else { continue };
        for (status, response) in &mut get.responses.responses {
            if let (RefOr::T(response), "200" | "404") = (response, status.as_str()) {
                for (name, description) in headers {
                    response
                        .headers
                        .insert(name.to_owned(), header(description));
                }
            }
        }
    }
}

/// The description, with `routes` as its paths.
pub fn described(routes: OpenApiRouter<Arc<AppState>>) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes)
}

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(document))
}

/// The document, made once: it depends on the code only.
static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    super::openapi()
        .to_pretty_json()
        .expect("a description made of strings and maps serializes")
        .into_bytes()
});

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "get_openapi",
    tag = "hierarchy",
    summary = "This description (OpenAPI 3.1)",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json"),
        NotModified,
    ),
)]
async fn document(headers: HeaderMap) -> Response {
    asset(&headers, "application/json", REVALIDATE, &DOCUMENT)
}
