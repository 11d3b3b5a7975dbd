//! The HTTP surface of the origin: shared state, the router, and the per-request metrics.

mod admin;
mod assets;
pub mod caching;
mod entities;
pub mod extract;
mod flags;
mod openapi;
mod ops;
mod purges;
mod ws;

use std::{
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::{self, Next},
    response::Response,
    Router,
};
use forecastin_shared::{
    headers::{REQUEST_ID, TRACEPARENT},
    params::{canonical_query, query_string},
    request_id,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    bus::Bus,
    error::ApiError,
    flags::Flags,
    flights::Flights,
    hierarchy::Hierarchy,
    l1::L1,
    l2::L2,
    metrics,
    purge::PurgeLog,
    registry::Registry,
    warm::{warming, Warmer},
};

pub struct AppState {
    pub hierarchy: Hierarchy,
    pub purges: PurgeLog,
    /// `None` when L1 is turned off (`L1_CAPACITY=0`).
    pub l1: Option<Arc<L1>>,
    /// `None` without Redis or with `L2_TTL_SECS=0`.
    pub l2: Option<Arc<L2>>,
    /// The `Cache-Control` value of public GET responses.
    pub cache_control: HeaderValue,
    pub admin_token: String,
    pub metrics: PrometheusHandle,
    /// Coordination with the other instances.
    pub bus: Bus,
    pub registry: Arc<Registry>,
    pub flags: Flags,
    /// Messages queued for one websocket client before it is dropped.
    pub ws_client_queue: usize,
    /// Websocket clients served at once, and the most allowed.
    pub ws_clients: AtomicUsize,
    pub ws_max_clients: usize,
    /// Largest body kept in L1 or L2.
    pub max_cached_body: usize,
    /// L1 misses being computed, which concurrent misses for the same key wait for.
    pub flights: Flights,
    /// What is hot, and the preloading it drives.
    pub warmer: Arc<Warmer>,
}

/// The application. `/metrics` is part of it unless `metrics_apart` (see [`metrics_router`]).
pub fn router(state: Arc<AppState>, metrics_apart: bool) -> Router {
    Router::from(routes(!metrics_apart))
        .fallback(|| async { ApiError::RouteNotFound })
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), track_heat))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok());
                    tracing::info_span!(
                        "request",
                        id = id.unwrap_or_default(),
                        method = %request.method(),
                        uri = %request.uri(),
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn(identify))
        .with_state(state)
}

/// Every route of the application, each with its OpenAPI description.
fn routes(with_metrics: bool) -> OpenApiRouter<Arc<AppState>> {
    openapi::described(
        OpenApiRouter::new()
            .merge(entities::routes())
            .merge(admin::routes())
            .merge(purges::routes())
            .merge(flags::routes())
            .merge(ws::routes())
            .merge(ops::routes(with_metrics))
            .merge(assets::routes())
            .merge(openapi::routes()),
    )
}

/// The OpenAPI description of every route (`/metrics` included, though it is served on its
/// own listener when `METRICS_ADDR` is set).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut description = routes(true).into_openapi();
    openapi::add_caching_headers(&mut description);
    description
}

/// Gives every request an id: the one the client or the edge gave, if acceptable (see
/// [`forecastin_shared::request_id`]), else a new one. The request's span carries it into
/// every log line of the request, and the response returns it.
async fn identify(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = request_id::given(header(REQUEST_ID), header(TRACEPARENT))
        .unwrap_or_else(|| crate::token::random_hex()[..32].to_owned());
    // Taken ids are letters, digits and `-_.:`, new ones hex: always a valid header value.
    let Ok(id) = HeaderValue::try_from(id) else {
        request.headers_mut().remove(REQUEST_ID);
        return next.run(request).await;
    };
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// `/metrics` on its own, for a listener operators and Prometheus reach but the public does
/// not (`METRICS_ADDR`).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::from(ops::metrics_routes()).with_state(state)
}

/// Counts requests and times them per route template and known method (not per URL or per
/// made-up method, to bound the number of series). The warmer's own requests are not traffic.
async fn record_metrics(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if warming() {
        return next.run(request).await;
    }
    state
        .registry
        .request_counter()
        .fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter(&state.registry.inflight);
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = method_label(request.method()).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    ::metrics::counter!(metrics::HTTP_REQUESTS, &labels).increment(1);
    ::metrics::histogram!(metrics::HTTP_DURATION, &labels[..2])
        .record(started.elapsed().as_secs_f64());
    response
}

/// Scores every public page served (see [`crate::hot`]), with the tags that purge it. A page
/// a purge has claimed for a new render is served once that render ends (see [`crate::warm`]).
async fn track_heat(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let page = (request.method() == axum::http::Method::GET && !warming())
        .then(|| request.uri())
        .filter(|uri| is_canonical_page(uri))
        .map(ToString::to_string);
    if let Some(page) = &page {
        state.warmer.wait_until_rendered(page).await;
    }
    let response = next.run(request).await;
    let served = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
    if let Some(page) = page.filter(|_| served) {
        if let Some(tags) = response
            .headers()
            .get(forecastin_shared::headers::CACHE_TAG)
        {
            state.warmer.hot.record(&page, tags);
        }
    }
    response
}

/// A public API page asked as the edge asks it: only the parameters its route reads, each
/// once and in canonical form and order (anything else would make copies of one page in the
/// ranking).
fn is_canonical_page(uri: &axum::http::Uri) -> bool {
    let path = uri.path();
    let Some(route) = forecastin_shared::routes::public_route(path) else {
        return false;
    };
    let query = uri.query().unwrap_or_default();
    let canonical = canonical_query(route.params, url::form_urlencoded::parse(query.as_bytes()))
        .is_ok_and(|pairs| query_string(&pairs) == query);
    path.starts_with("/api/v1/") && canonical
}

/// The `method` label: the standard methods by name, anything else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("other", |known| known.as_str())
}

/// One request in flight, counted until it is dropped: when it completes, and also when the
/// client goes away and the server drops the request's future half-way.
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pages_as_the_edge_asks_them_are_scored() {
        for (uri, canonical) in [
            ("/api/v1/entities/FR", true),
            ("/api/v1/entities/FR/children?cursor=xy&limit=50", true),
            ("/api/v1/entities/FR/children?limit=50&cursor=xy", false),
            ("/api/v1/entities/FR/children?limit=050", false),
            ("/api/v1/search?q=fr", true),
            ("/api/v1/entities/FR?pad=xxxx", false),
            ("/api/v1/search?q=fr&q=de", false),
            ("/admin/v1/flags", false),
            ("/static/app.css", false),
        ] {
            let uri: axum::http::Uri = uri.parse().unwrap();
            assert_eq!(is_canonical_page(&uri), canonical, "{uri}");
        }
    }

    #[test]
    fn unknown_methods_share_one_label() {
        for (method, label) in [
            ("GET", "GET"),
            ("PATCH", "PATCH"),
            ("BREW", "other"),
            ("get", "other"),
        ] {
            let method = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_label(&method), label);
        }
    }
}
