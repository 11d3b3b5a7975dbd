//! The Worker: a thin workers-rs adapter that carries out the decisions of [`crate::core`]
//! with the Cache API, `fetch` to the origin, `ctx.wait_until` and the [`index`] Durable
//! Object.

mod index;
mod origin;

use std::{cell::RefCell, collections::HashSet, time::Duration};

use forecastin_shared::dto::{ErrorBody, ErrorDetail, PurgeResult};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use url::Url;
use worker::{event, Cache, Context, Date, Env, Headers, Request, Response, Result};

use crate::core::{
    freshness::{self, Stored, Verdict},
    key::{cache_key, path_and_query},
    purge,
    request::{classify, origin_headers, BypassReason, RequestKind},
    status::{for_client, CacheStatus, Forward},
    stored::{headers_to_store, read_stored},
};
use origin::{Fetched, OriginError};

/// Configuration from the Worker's vars and secrets (see `wrangler.toml`).
struct Settings {
    origin: Url,
    timeout: Duration,
    /// The current purge secret, then the previous one while a rotation is under way.
    purge_secrets: Vec<String>,
    session_cookies: Vec<String>,
}

impl Settings {
    fn from_env(env: &Env) -> Result<Self> {
        let var = |name: &str| env.var(name).map(|v| v.to_string()).ok();
        let origin = var("ORIGIN_URL").ok_or("ORIGIN_URL is not set")?;
        Ok(Settings {
            origin: Url::parse(&origin).map_err(|e| format!("ORIGIN_URL: {e}"))?,
            timeout: Duration::from_millis(
                var("ORIGIN_TIMEOUT_MS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5_000),
            ),
            purge_secrets: ["PURGE_SECRET", "PURGE_SECRET_PREVIOUS"]
                .iter()
                .filter_map(|name| env.secret(name).ok().map(|s| s.to_string()))
                .collect(),
            session_cookies: var("SESSION_COOKIES")
                .unwrap_or_else(|| "session,__Host-session,sid".to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        })
    }
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

thread_local! {
    /// Keys being refreshed in the background by this isolate: one refresh per key at a time.
    static REFRESHING: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = now_ms();
    let settings = Settings::from_env(&env)?;
    let url = req.url()?;
    let headers: HeaderMap = req.headers().into();
    let method =
        http::Method::from_bytes(req.method().as_ref().as_bytes()).map_err(|e| e.to_string())?;
    let kind = classify(&method, url.path(), &headers, &settings.session_cookies);
    match kind {
        RequestKind::Purge => handle_purge(req, &env, &settings, &url).await,
        RequestKind::Health => Response::from_json(&serde_json::json!({ "status": "ok" })),
        RequestKind::Bypass(reason) => {
            let fwd = match reason {
                BypassReason::Method => Forward::Method,
                BypassReason::Range | BypassReason::Upgrade => Forward::Bypass,
            };
            match origin::forward(req, &settings, &url, origin_headers(&headers, kind)).await {
                Ok(response) => restyle(response, &CacheStatus::forward(fwd), started),
                Err(err) => error_response(&err),
            }
        }
        RequestKind::Cacheable { credentialed } => {
            let forwarded = origin_headers(&headers, kind);
            let request = Cacheable {
                key: cache_key(&url),
                origin_url: settings
                    .origin
                    .join(&path_and_query(&url))
                    .map_err(|e| e.to_string())?,
                path: url.path().to_owned(),
                head: method == http::Method::HEAD,
                headers,
                credentialed,
                forwarded,
                started,
            };
            serve_cacheable(request, &env, &ctx, &settings).await
        }
    }
}

/// A GET or HEAD the cache may answer.
#[derive(Clone)]
struct Cacheable {
    key: String,
    origin_url: Url,
    path: String,
    head: bool,
    headers: HeaderMap,
    credentialed: bool,
    /// The headers the origin gets.
    forwarded: HeaderMap,
    started: u64,
}

async fn serve_cacheable(
    req: Cacheable,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
) -> Result<Response> {
    let cache = Cache::default();
    let Some(mut entry) = cache.get(req.key.as_str(), true).await? else {
        return fetch_and_store(&req, env, settings, Forward::UriMiss).await;
    };
    let mut stored_headers: HeaderMap = entry.headers().into();
    let Some(meta) = read_stored(&mut stored_headers) else {
        return fetch_and_store(&req, env, settings, Forward::UriMiss).await;
    };
    if !meta.stored.matches_variant(&req.headers) {
        return fetch_and_store(&req, env, settings, Forward::VaryMiss).await;
    }
    let now = now_ms();
    let status = entry.status_code();
    let body = entry.bytes().await?;
    match meta.stored.verdict(now) {
        Verdict::Fresh { ttl } => serve(
            &req,
            status,
            stored_headers,
            body,
            CacheStatus::hit(ttl),
            Some(meta.stored.age(now)),
        ),
        Verdict::StaleWhileRevalidate { ttl } => {
            refresh_in_background(&req, env, ctx, settings, &stored_headers, &body, status);
            let cache_status = CacheStatus {
                detail: Some("stale-while-revalidate"),
                ..CacheStatus::hit(ttl)
            };
            serve(
                &req,
                status,
                stored_headers,
                body,
                cache_status,
                Some(meta.stored.age(now)),
            )
        }
        Verdict::Revalidate { ttl, on_error } => {
            let previous = Previous {
                status,
                headers: stored_headers,
                body,
            };
            match revalidate(&req, env, settings, &previous).await {
                Ok(response) => Ok(response),
                Err(err) if on_error => {
                    let cache_status = CacheStatus {
                        fwd: Some(Forward::Stale),
                        fwd_status: err.status(),
                        ttl: Some(ttl),
                        detail: Some("stale-if-error"),
                        ..CacheStatus::default()
                    };
                    serve(
                        &req,
                        previous.status,
                        previous.headers,
                        previous.body,
                        cache_status,
                        Some(meta.stored.age(now)),
                    )
                }
                Err(err) => err.into_response(&req),
            }
        }
    }
}

/// A stored response being revalidated.
struct Previous {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Why a revalidation could not produce a response from the origin.
enum Failure {
    /// The origin could not be reached or timed out.
    Origin(OriginError),
    /// The origin answered with a server error.
    ServerError(Fetched),
}

impl Failure {
    fn status(&self) -> Option<u16> {
        match self {
            Failure::Origin(_) => None,
            Failure::ServerError(fetched) => Some(fetched.status),
        }
    }

    fn into_response(self, req: &Cacheable) -> Result<Response> {
        match self {
            Failure::Origin(err) => error_response(&err),
            Failure::ServerError(fetched) => serve(
                req,
                fetched.status,
                fetched.headers,
                fetched.body,
                CacheStatus {
                    fwd_status: Some(fetched.status),
                    ..CacheStatus::forward(Forward::Stale)
                },
                None,
            ),
        }
    }
}

/// Asks the origin whether `previous` is still current, with its validators.
async fn revalidate(
    req: &Cacheable,
    env: &Env,
    settings: &Settings,
    previous: &Previous,
) -> std::result::Result<Response, Failure> {
    let fetch_started = now_ms();
    let fetched = origin::fetch_whole(
        &req.origin_url,
        &validators(&req.forwarded, &previous.headers),
        settings.timeout,
    )
    .await
    .map_err(Failure::Origin)?;
    if fetched.status >= 500 {
        return Err(Failure::ServerError(fetched));
    }
    let (status, headers, body) = if fetched.status == 304 {
        (
            previous.status,
            freshness::refreshed_headers(&previous.headers, &fetched.headers),
            previous.body.clone(),
        )
    } else {
        (fetched.status, fetched.headers, fetched.body)
    };
    let stored = store(req, env, status, &headers, &body, fetch_started).await;
    let cache_status = CacheStatus {
        fwd: Some(Forward::Stale),
        fwd_status: Some(fetched.status),
        ttl: stored.as_ref().map(|s| s.lifetime as i64),
        stored: stored.is_some(),
        ..CacheStatus::default()
    };
    serve(req, status, headers, body, cache_status, stored.map(|_| 0))
        .map_err(|e| Failure::Origin(OriginError::Network(e.to_string())))
}

/// The forwarded headers plus `If-None-Match` / `If-Modified-Since` from the stored response.
fn validators(forwarded: &HeaderMap, stored: &HeaderMap) -> HeaderMap {
    let mut headers = forwarded.clone();
    if let Some(etag) = stored.get(header::ETAG) {
        headers.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = stored.get(header::LAST_MODIFIED) {
        headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
    }
    headers
}

/// Serves from the origin: fetches, stores when allowed, answers the client.
async fn fetch_and_store(
    req: &Cacheable,
    env: &Env,
    settings: &Settings,
    fwd: Forward,
) -> Result<Response> {
    let fetch_started = now_ms();
    let fetched = match origin::fetch_whole(&req.origin_url, &req.forwarded, settings.timeout).await
    {
        Ok(fetched) => fetched,
        Err(err) => return error_response(&err),
    };
    let stored = store(
        req,
        env,
        fetched.status,
        &fetched.headers,
        &fetched.body,
        fetch_started,
    )
    .await;
    let cache_status = CacheStatus {
        fwd: Some(fwd),
        fwd_status: Some(fetched.status),
        stored: stored.is_some(),
        ..CacheStatus::default()
    };
    serve(
        req,
        fetched.status,
        fetched.headers,
        fetched.body,
        cache_status,
        stored.map(|_| 0),
    )
}

/// Stores a response if RFC 9111 allows and registers it with the index, which takes it
/// back out if a purge covering it ran while it was being fetched. Returns what was stored.
async fn store(
    req: &Cacheable,
    env: &Env,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    fetch_started: u64,
) -> Option<Stored> {
    let stored = freshness::plan(&req.headers, req.credentialed, status, headers, now_ms()).ok()?;
    let to_store = headers_to_store(headers, &stored, &req.path);
    let response = Response::from_bytes(body.to_vec())
        .ok()?
        .with_status(status)
        .with_headers(Headers::from(&to_store));
    if let Err(err) = Cache::default().put(req.key.as_str(), response).await {
        worker::console_warn!("cache put failed for {}: {err}", req.key);
        return None;
    }
    match index::register(env, &req.key, purge::tags_of(headers), fetch_started).await {
        Ok(true) => Some(stored),
        Ok(false) => {
            // A purge ran during the fetch: what was fetched may predate it.
            let _ = Cache::default().delete(req.key.as_str(), true).await;
            None
        }
        Err(err) => {
            // Unindexed, it could not be purged by tag or prefix: do not keep it.
            worker::console_warn!("index registration failed for {}: {err}", req.key);
            let _ = Cache::default().delete(req.key.as_str(), true).await;
            None
        }
    }
}

/// Refreshes a stale entry after answering from it; at most one refresh per key per isolate.
fn refresh_in_background(
    req: &Cacheable,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    stored_headers: &HeaderMap,
    body: &[u8],
    status: u16,
) {
    let claimed = REFRESHING.with(|keys| keys.borrow_mut().insert(req.key.clone()));
    if !claimed {
        return;
    }
    let req = req.clone();
    let previous = Previous {
        status,
        headers: stored_headers.clone(),
        body: body.to_vec(),
    };
    let (env, timeout) = (env.clone(), settings.timeout);
    ctx.wait_until(async move {
        let fetch_started = now_ms();
        if let Ok(fetched) = origin::fetch_whole(
            &req.origin_url,
            &validators(&req.forwarded, &previous.headers),
            timeout,
        )
        .await
        {
            if fetched.status < 500 {
                let (status, headers, body) = if fetched.status == 304 {
                    (
                        previous.status,
                        freshness::refreshed_headers(&previous.headers, &fetched.headers),
                        previous.body,
                    )
                } else {
                    (fetched.status, fetched.headers, fetched.body)
                };
                store(&req, &env, status, &headers, &body, fetch_started).await;
            }
        }
        REFRESHING.with(|keys| keys.borrow_mut().remove(&req.key));
    });
}

/// Builds the client's response: a 304 when its conditionals match, no body for HEAD.
fn serve(
    req: &Cacheable,
    status: u16,
    mut headers: HeaderMap,
    body: Vec<u8>,
    cache_status: CacheStatus,
    age: Option<u64>,
) -> Result<Response> {
    for_client(
        &mut headers,
        &cache_status,
        age,
        now_ms().saturating_sub(req.started),
    );
    let not_modified =
        (200..300).contains(&status) && freshness::not_modified_for(&req.headers, &headers);
    let status = if not_modified { 304 } else { status };
    let empty = not_modified || req.head || matches!(status, 204 | 304);
    let response = if empty {
        Response::empty()?
    } else {
        Response::from_bytes(body)?
    };
    Ok(response
        .with_status(status)
        .with_headers(Headers::from(&headers)))
}

/// Passes an origin response through with the client-facing header rewrite.
fn restyle(response: Response, cache_status: &CacheStatus, started: u64) -> Result<Response> {
    let status = response.status_code();
    let mut headers: HeaderMap = response.headers().into();
    for_client(
        &mut headers,
        cache_status,
        None,
        now_ms().saturating_sub(started),
    );
    let (_, body) = response.into_parts();
    Ok(Response::from_body(body)?
        .with_status(status)
        .with_headers(Headers::from(&headers)))
}

fn json_error(status: StatusCode, code: &str, message: String) -> Result<Response> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
            field: None,
        },
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(Response::from_json(&body)?
        .with_status(status.as_u16())
        .with_headers(Headers::from(&headers)))
}

fn error_response(err: &OriginError) -> Result<Response> {
    match err {
        OriginError::Timeout => json_error(
            StatusCode::GATEWAY_TIMEOUT,
            "origin_timeout",
            "the origin did not answer in time".into(),
        ),
        OriginError::Network(message) => json_error(
            StatusCode::BAD_GATEWAY,
            "origin_unreachable",
            format!("the origin could not be reached: {message}"),
        ),
    }
}

/// `POST /__edge/purge`: authenticate, validate, then remove every entry the purge covers.
async fn handle_purge(
    mut req: Request,
    env: &Env,
    settings: &Settings,
    url: &Url,
) -> Result<Response> {
    use forecastin_shared::headers::{PURGE_NONCE, PURGE_SIGNATURE, PURGE_TIMESTAMP};
    let body = req.bytes().await?;
    let timestamp = req.headers().get(PURGE_TIMESTAMP)?;
    let nonce = req.headers().get(PURGE_NONCE)?;
    let signature = req.headers().get(PURGE_SIGNATURE)?;
    let signed = purge::Signed {
        timestamp: timestamp.as_deref(),
        nonce: nonce.as_deref(),
        signature: signature.as_deref(),
    };
    let nonce = match purge::authenticate(
        &settings
            .purge_secrets
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        signed,
        &body,
        now_ms() / 1000,
    ) {
        Ok(nonce) => nonce,
        Err(purge::PurgeError::Unauthenticated(message)) => {
            return json_error(StatusCode::UNAUTHORIZED, "unauthenticated", message)
        }
        Err(purge::PurgeError::BadRequest(message)) => {
            return json_error(StatusCode::BAD_REQUEST, "invalid_purge", message)
        }
    };
    let request = match purge::parse(&body, url) {
        Ok(request) => request,
        Err(
            purge::PurgeError::BadRequest(message) | purge::PurgeError::Unauthenticated(message),
        ) => return json_error(StatusCode::BAD_REQUEST, "invalid_purge", message),
    };
    let Some(keys) = index::purge(env, nonce, request).await? else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "replayed",
            "this signed purge was already used".into(),
        );
    };
    let cache = Cache::default();
    let mut purged = 0;
    for key in &keys {
        if matches!(
            cache.delete(key.as_str(), true).await?,
            worker::CacheDeletionOutcome::Success
        ) {
            purged += 1;
        }
    }
    Response::from_json(&PurgeResult { purged })
}
