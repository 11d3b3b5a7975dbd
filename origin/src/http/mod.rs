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
mod responses;
mod ws;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use forecastin_shared::{
    headers::{REQUEST_ID, TRACEPARENT},
    params::{canonical_query, query_string},
    request_id,
};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tower_http::{
    catch_panic::CatchPanicLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use self::caching::Caching;
use crate::{
    background::Lifetime, cache::warm::warming, cluster::Cluster, config::ClusterConfig,
    error::ApiError, flags::Flags, hierarchy::Hierarchy, ops::metrics, ops::readiness::Readiness,
    ops::telemetry, purge::PurgeLog,
};

pub struct AppState {
    /// The entity store, and the log of the purges its writes made.
    pub hierarchy: Hierarchy,
    pub purges: PurgeLog,
    /// The response tiers between a request and the database.
    pub cache: Caching,
    /// This instance among the others.
    pub cluster: Cluster,
    pub flags: Flags,
    pub access: Access,
    pub streams: Streams,
    pub ops: Ops,
    /// Whether the instance departs (its websocket streams close with 1001), and its
    /// background loops.
    pub lifetime: Lifetime,
}

/// Who may call what.
pub struct Access {
    /// The bearer token of the admin API.
    pub admin_token: String,
    /// The edge's credentials (`EDGE_AUTH`); empty: the public routes answer anyone.
    pub edge_auth: Vec<String>,
}

/// The websocket clients of `GET /ws`, and their limits.
pub struct Streams {
    /// Messages queued for one client before it is dropped.
    pub client_queue: usize,
    /// Clients served at once, and the most allowed.
    pub clients: AtomicUsize,
    pub max_clients: usize,
    /// Clients per address, and the most one address may hold.
    pub per_address: parking_lot::Mutex<HashMap<IpAddr, usize>>,
    pub max_per_address: usize,
    /// The page origins that may open the stream (empty: any).
    pub allowed_origins: Vec<String>,
}

impl Streams {
    pub fn new(config: &ClusterConfig) -> Self {
        Self {
            client_queue: config.ws_client_queue.max(1),
            clients: AtomicUsize::default(),
            max_clients: config.ws_max_clients,
            per_address: Default::default(),
            max_per_address: config.ws_max_per_address,
            allowed_origins: config.ws_allowed_origins.clone(),
        }
    }
}

/// What operators and probes read: readiness and the metrics.
pub struct Ops {
    /// The last background check of the primary database (`/readyz`).
    pub readiness: Arc<Readiness>,
    pub metrics: PrometheusHandle,
}

/// The public routes, answered to the edge only when `EDGE_AUTH` is set, with the private
/// ones beside them unless they have a listener of their own (`admin_apart`, see
/// [`admin_router`]). The public reads but the event stream give up after `timeout`; the
/// admin API does not, as a write cut after its commit would answer 503 for a change made.
pub fn router(state: Arc<AppState>, admin_apart: bool, timeout: Duration) -> Router {
    let public = time_limited(Router::from(public_routes()), timeout)
        .merge(Router::from(ws::routes()))
        .layer(middleware::from_fn_with_state(state.clone(), edge_only));
    if admin_apart {
        served(public, state)
    } else {
        served(public.merge(Router::from(private_routes())), state)
    }
}

/// The admin API, metrics and probes, for a listener that operators, Prometheus and the
/// kubelet reach but the public load balancer does not (`ADMIN_ADDR`).
pub fn admin_router(state: Arc<AppState>) -> Router {
    served(Router::from(private_routes()), state)
}

/// `routes` answered 503 after `timeout`: the handler's future is dropped with what it holds
/// (a pooled database connection, say), where the edge would have given up on it anyway.
fn time_limited<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    timeout: Duration,
) -> Router<S> {
    routes.layer(TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        timeout,
    ))
}

/// `routes` with a handler's panic answered 500 with the error's JSON and logged: without
/// it the connection drops, which the edge reads as the origin failing.
fn panic_safe<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes.layer(CatchPanicLayer::custom(
        |panic: Box<dyn std::any::Any + Send + 'static>| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(not a string)");
            tracing::error!(message, "a handler panicked");
            ApiError::Internal.into_response()
        },
    ))
}

/// `routes` with what every listener does around them: 404 and body limit, panics caught,
/// hot pages counted, claimed pages awaited, metrics, logs and request ids.
fn served(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    panic_safe(routes.fallback(|| async { ApiError::RouteNotFound }))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), warm_and_hot))
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
                    let span = tracing::info_span!(
                        "request",
                        id = id.unwrap_or_default(),
                        method = %request.method(),
                        uri = %request.uri(),
                    );
                    telemetry::adopt_parent(&span, request.headers());
                    span
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn(identify))
        .with_state(state)
}

/// What the public reach through the edge, each route with its OpenAPI description; the
/// event stream (`ws::routes`) apart, as it has no time limit.
fn public_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .merge(entities::routes())
        .merge(assets::routes())
        .merge(openapi::routes())
}

/// What admins and operators use: the admin API, metrics and probes.
fn private_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .merge(admin::routes())
        .merge(purges::routes())
        .merge(flags::routes())
        .merge(ops::routes())
}

/// The OpenAPI description of every route, whichever listener serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut description =
        openapi::described(public_routes().merge(ws::routes()).merge(private_routes()))
            .into_openapi();
    openapi::add_caching_headers(&mut description);
    description
}

/// With `EDGE_AUTH` set, a public route answers only requests carrying one of the edge's
/// credentials (compared in constant time), and this instance's own preloading.
async fn edge_only(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(forecastin_shared::headers::EDGE_AUTH)
        .map(HeaderValue::as_bytes);
    let from_edge = || {
        given.is_some_and(|given| {
            state
                .access
                .edge_auth
                .iter()
                .any(|secret| bool::from(given.ct_eq(secret.as_bytes())))
        })
    };
    if state.access.edge_auth.is_empty() || warming() || from_edge() {
        next.run(request).await
    } else {
        ApiError::NotThroughEdge.into_response()
    }
}

/// Gives every request an id: the one the client or the edge gave, if acceptable (see
/// [`forecastin_shared::request_id`]), else a new one. The request's span carries it into
/// every log line of the request, and the response returns it.
async fn identify(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = request_id::given(header(REQUEST_ID), header(TRACEPARENT))
        .unwrap_or_else(|| crate::id::random_hex()[..32].to_owned());
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
        .cluster
        .registry
        .request_counter()
        .fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter(&state.cluster.registry.inflight);
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

/// What the caches need around every page a reader asks for (a GET of a page the tiers hold;
/// the warmer's own requests aside): a page a purge has claimed for a new render is served
/// once that render ends ([`crate::cache::warm`]), and a page served is scored, with the tags
/// that purge it ([`crate::cache::hot`]).
async fn warm_and_hot(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let page = (request.method() == axum::http::Method::GET && !warming())
        .then(|| request.uri())
        .filter(|uri| is_canonical_page(uri))
        .map(ToString::to_string);
    if let Some(page) = &page {
        state.cache.warmer.wait_until_rendered(page).await;
    }
    let response = next.run(request).await;
    let served = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
    if let Some(page) = page.filter(|_| served) {
        if let Some(tags) = response
            .headers()
            .get(forecastin_shared::headers::CACHE_TAG)
        {
            state.cache.warmer.hot.record(&page, tags);
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
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    async fn answer(app: Router) -> (StatusCode, serde_json::Value) {
        let request = Request::builder().uri("/").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500_with_the_error() {
        let app = panic_safe(Router::new().fallback(|| async { panic!("a bug") as &'static str }));
        let (status, body) = answer(app).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal", "{body}");
    }

    #[tokio::test]
    async fn a_request_still_running_at_the_timeout_is_answered_503() {
        let never = || std::future::pending::<&'static str>();
        let app = time_limited(Router::new().fallback(never), Duration::from_millis(20));
        assert_eq!(answer(app).await.0, StatusCode::SERVICE_UNAVAILABLE);
        let quick = time_limited(
            Router::new().fallback(|| async { "ok" }),
            Duration::from_secs(60),
        );
        assert_eq!(answer(quick).await.0, StatusCode::OK);
    }

    #[test]
    fn only_pages_as_the_edge_asks_them_are_scored() {
        for (uri, canonical) in [
            ("/api/v1/entities/FR", true),
            ("/api/v1/entities/FR/children?cursor=xy&limit=51", true),
            ("/api/v1/entities/FR/children?limit=51&cursor=xy", false),
            ("/api/v1/entities/FR/children?limit=051", false),
            ("/api/v1/entities/FR/children?limit=50", false),
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
