//! The small static bundle of the hierarchy browser, compiled into the binary.
//!
//! Fingerprinted files (`app.<first 10 hex digits of their SHA-256>.js`) never change under
//! their name and are cacheable for a year; `index.html` names them and is cached briefly
//! with revalidation, so a new bundle reaches users within a minute.

use axum::{
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use forecastin_shared::{conditional::none_match, dto::ErrorBody};
use std::sync::Arc;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{caching::etag_of, responses::NotModified, AppState};
use crate::error::ApiError;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub(super) const REVALIDATE: &str = "public, max-age=0, s-maxage=60, must-revalidate";

/// (name, content type, bytes).
const FILES: [(&str, &str, &[u8]); 2] = [
    (
        "app.f4668858b6.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/app.f4668858b6.js"),
    ),
    (
        "app.b4b2d2b7a0.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/app.b4b2d2b7a0.css"),
    ),
];
const INDEX: &[u8] = include_bytes!("../../static/index.html");

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(static_file))
}

#[utoipa::path(
    get,
    path = "/",
    operation_id = "get_page",
    tag = "page",
    summary = "The analysts' page",
    responses(
        (status = 200, description = "HTML, revalidated after a minute", content_type = "text/html"),
        NotModified,
    ),
)]
async fn page(headers: HeaderMap) -> Response {
    asset(&headers, "text/html; charset=utf-8", REVALIDATE, INDEX)
}

#[utoipa::path(
    get,
    path = "/static/{file}",
    operation_id = "get_static_file",
    tag = "page",
    summary = "The page's script and style, named by their hash (immutable)",
    params(("file" = String, Path, description = "e.g. `app.<hash>.js`")),
    responses(
        (status = 200, description = "The file, cacheable for a year"),
        NotModified,
        (status = 404, description = "No such file", body = ErrorBody),
    ),
)]
async fn static_file(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or(ApiError::RouteNotFound)?;
    Ok(asset(&headers, content_type, IMMUTABLE, bytes))
}

pub(super) fn asset(
    request: &HeaderMap,
    content_type: &'static str,
    cache_control: &'static str,
    bytes: &'static [u8],
) -> Response {
    let etag = etag_of(bytes);
    let not_modified = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::try_from(etag).expect("hex is a valid header"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn every_fingerprint_is_the_hash_of_its_file() {
        for (name, _, bytes) in FILES {
            let digest = hex::encode(Sha256::digest(bytes));
            let fingerprint = name.split('.').nth(1).unwrap();
            assert!(
                digest.starts_with(fingerprint),
                "{name} changed: rename it to app.{}.<ext> and update index.html",
                &digest[..10]
            );
        }
    }

    #[test]
    fn the_page_names_every_asset() {
        let page = std::str::from_utf8(INDEX).unwrap();
        for (name, _, _) in FILES {
            assert!(page.contains(&format!("/static/{name}")), "{name}");
        }
    }
}
