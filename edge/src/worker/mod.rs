//! The Worker: a thin workers-rs adapter that carries out the decisions of [`crate::core`]
//! with the Cache API ([`serve`]), `fetch` to the origin ([`origin`]), `ctx.waitUntil` and
//! the [`index`] Durable Object ([`purge`]). It works on the runtime's own request and
//! response objects through [`runtime`], whose conversions cannot panic: a panic would
//! restart the WASM instance and fail every request in flight in the isolate.

mod ahead;
mod collapse;
mod fill;
mod index;
mod job;
mod origin;
mod purge;
mod refresh;
mod runtime;
mod schedule;
mod serve;

use std::time::Duration;

use forecastin_shared::{
    headers::{CACHE_STATUS, REQUEST_ID},
    signing::Legacy,
};
use http::{HeaderMap, HeaderValue, Method};
use url::Url;
use worker::{
    event,
    js_sys::{Date, Math},
    web_sys, Context, Env, Result,
};

use index::Index;

use crate::core::{
    cache::{
        error, invalid_parameter, invalidated_by_unsafe, json, Answer, Body, CacheableRequest,
    },
    fields::strip_hop_by_hop,
    request::{classify, origin_headers, request_id, BypassReason, RequestKind},
    status::{add_server_timing, for_client, logged, CacheStatus},
    target::Target,
};

/// Configuration from the Worker's vars and secrets (see `wrangler.toml`).
pub struct Settings {
    origin: Url,
    timeout: Duration,
    /// The current purge secret, then the previous one while a rotation is under way. Empty:
    /// no edge-direct purging.
    purge_secrets: Vec<String>,
    /// The index of stored entries that edge-direct purges by tag and prefix read
    /// (`PURGE_INDEX_SHARDS`); none where purges go through the CDN's API.
    index: Option<Index>,
    /// Whether purges signed in the first format are taken (`PURGE_LEGACY_SIGNATURES =
    /// "accept"`), for the one rotation that moves origins to the current one.
    purge_legacy: Legacy,
    session_cookies: Vec<String>,
    /// The credential sent with every request to the origin (the secret `EDGE_AUTH`), which
    /// an origin configured with it requires on its public routes.
    edge_auth: Option<String>,
    /// The request log keeps one hit in this many (see [`crate::core::status::logged`]).
    hit_log_one_in: u32,
}

impl Settings {
    fn from_env(env: &Env) -> std::result::Result<Self, String> {
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
                .filter(|secret| !secret.is_empty())
                .collect(),
            edge_auth: env
                .secret("EDGE_AUTH")
                .ok()
                .map(|secret| secret.to_string())
                .filter(|secret| !secret.is_empty()),
            index: Index::configured(var("PURGE_INDEX_SHARDS"), var("PURGE_INDEX_TIMEOUT_MS"))?,
            purge_legacy: match var("PURGE_LEGACY_SIGNATURES").as_deref() {
                Some("accept") => Legacy::Accepted,
                _ => Legacy::Refused,
            },
            hit_log_one_in: var("HIT_LOG_ONE_IN").map_or(DEFAULT_HIT_LOG_ONE_IN, |n| {
                n.trim().parse().unwrap_or_else(|_| {
                    // A logging knob is not worth failing every request over.
                    worker::console_error!(
                        "HIT_LOG_ONE_IN: `{n}` is not a whole number; one hit in {DEFAULT_HIT_LOG_ONE_IN} is logged"
                    );
                    DEFAULT_HIT_LOG_ONE_IN
                })
            }),
            session_cookies: var("SESSION_COOKIES")
                .unwrap_or_else(|| "session,__Host-session,sid".to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        })
    }
}

/// One hit in a hundred is logged unless `HIT_LOG_ONE_IN` says otherwise.
const DEFAULT_HIT_LOG_ONE_IN: u32 = 100;

thread_local! {
    /// The settings, read once per isolate: vars and secrets change only with a new deploy,
    /// which starts new isolates.
    static SETTINGS: std::cell::OnceCell<std::rc::Rc<Settings>> = const { std::cell::OnceCell::new() };
}

/// This isolate's settings.
fn settings(env: &Env) -> std::result::Result<std::rc::Rc<Settings>, String> {
    if let Some(settings) = SETTINGS.with(|cell| cell.get().cloned()) {
        return Ok(settings);
    }
    let settings = std::rc::Rc::new(Settings::from_env(env)?);
    SETTINGS.with(|cell| cell.set(settings.clone()).ok());
    Ok(settings)
}

/// The runtime's clock (`Date.now()`, which moves only between I/O), read without making a
/// `Date` object as workers-rs's `Date::now` does.
fn now_ms() -> u64 {
    Date::now() as u64
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    let started = now_ms();
    let headers = runtime::header_map(&req.headers());
    let id = request_id(&headers, new_request_id);
    let (method, url) = (req.method(), req.url());
    // For the log line's `request.cf`, read only if the request is logged (see `log_request`):
    // a second handle on the object, not the request's `clone()`.
    let client = Clone::clone(&req);
    // What the cache did, for the log; the origin's answers passed through are always logged.
    let mut cache = None;
    let arrived = Arrived {
        req,
        headers,
        method: &method,
        url: &url,
        id: &id,
        started,
    };
    let response = match handle(arrived, &env, &ctx).await {
        Ok(Handled::Raw(response)) => Ok(response),
        Ok(Handled::Answer(mut answer, bodies)) => {
            cache = answer.cache.take();
            respond(answer, bodies, &id, started).await
        }
        Err(err) => Err(err),
    };
    let response = match response {
        Ok(response) => Ok(response),
        Err(err) => {
            worker::console_error!("edge error ({id}): {err}");
            // The edge's own answer now, whatever the cache had decided: always logged.
            cache = None;
            let answer = error(
                502,
                "edge_error",
                "the edge could not produce a response".into(),
            );
            respond(answer, Bodies::default(), &id, started).await
        }
    };
    match &response {
        Ok(response) => {
            let hits_one_in = settings(&env).map_or(1, |settings| settings.hit_log_one_in);
            let request = Logged {
                id: &id,
                method: &method,
                url: &url,
                client: &client,
                cache: cache.as_deref(),
            };
            log_request(request, response, started, hits_one_in);
        }
        Err(err) => worker::console_error!("edge error ({id}), no answer built: {err}"),
    }
    response
}

/// A new request id: 32 hex digits. Ids only tell requests apart in the logs, so the
/// runtime's `Math.random` is enough.
fn new_request_id() -> String {
    let word = || (Math::random() * 4_294_967_296.0) as u32;
    format!("{:08x}{:08x}{:08x}{:08x}", word(), word(), word(), word())
}

/// What the request log says of a request besides its answer.
struct Logged<'a> {
    id: &'a str,
    method: &'a str,
    url: &'a str,
    /// The runtime's request, whose `cf` says where it entered Cloudflare.
    client: &'a web_sys::Request,
    /// What the cache did, when it answered.
    cache: Option<&'a CacheStatus>,
}

/// Where a request entered Cloudflare, from `request.cf`; empty where the runtime says
/// nothing (or something else than text).
#[derive(Default, serde::Deserialize, serde::Serialize)]
struct Place {
    /// The data centre (an IATA airport code).
    colo: Option<String>,
    /// The client's country (ISO 3166-1 alpha-2).
    country: Option<String>,
}

/// One JSON line per request for Workers Logs, under the id the origin logs it by too; one
/// hit in `hits_one_in` (see [`logged`]).
fn log_request(request: Logged<'_>, response: &web_sys::Response, started: u64, hits_one_in: u32) {
    if !logged(request.cache, hits_one_in, Math::random()) {
        return;
    }
    let cache_status = response.headers().get(CACHE_STATUS).ok().flatten();
    #[derive(serde::Serialize)]
    struct RequestLine<'a> {
        request_id: &'a str,
        method: &'a str,
        url: &'a str,
        status: u16,
        cache_status: Option<String>,
        duration_ms: u64,
        #[serde(flatten)]
        place: Place,
    }
    let line = RequestLine {
        request_id: request.id,
        method: request.method,
        url: request.url,
        status: response.status(),
        cache_status,
        duration_ms: now_ms().saturating_sub(started),
        place: worker::js_sys::Reflect::get(request.client, &"cf".into())
            .ok()
            .and_then(|cf| serde_wasm_bindgen::from_value(cf).ok())
            .unwrap_or_default(),
    };
    if let Ok(line) = serde_json::to_string(&line) {
        worker::console_log!("{line}");
    }
}

/// A stored response as storage gave it: its body unread, so a hit streams it through.
pub struct StoredResponse {
    pub response: web_sys::Response,
    /// Its headers as stored (bookkeeping included), to change only what differs.
    pub headers: HeaderMap,
}

/// The bodies an [`Answer`] may refer to.
#[derive(Default)]
pub struct Bodies {
    pub stored: Option<StoredResponse>,
    pub origin: Vec<u8>,
}

/// How a request was handled: an answer to build, or a runtime response passed through.
pub enum Handled {
    Answer(Answer, Bodies),
    Raw(web_sys::Response),
}

impl From<Answer> for Handled {
    fn from(answer: Answer) -> Self {
        Handled::Answer(answer, Bodies::default())
    }
}

/// Builds the runtime response for an answer, timed. An answer from storage keeps every
/// stored field it does not rewrite (the stored headers patched where they differ) and streams
/// a whole stored body through; anything else is built from bytes.
async fn respond(
    answer: Answer,
    bodies: Bodies,
    id: &str,
    started: u64,
) -> Result<web_sys::Response> {
    let mut headers = answer.headers;
    add_server_timing(&mut headers, now_ms().saturating_sub(started));
    identify(&mut headers, id);
    let slice = |bytes: &[u8]| match answer.slice {
        Some((start, end)) => bytes.get(start..end).unwrap_or_default().to_vec(),
        None => bytes.to_vec(),
    };
    match (&answer.body, bodies.stored) {
        (Body::Stored, Some(stored)) => {
            let patched = runtime::patched(&stored.response.headers(), &stored.headers, &headers)?;
            if answer.without_body {
                return runtime::with_bytes(answer.status, &patched, None);
            }
            if answer.slice.is_none() {
                return runtime::with_stream(answer.status, &patched, stored.response.body());
            }
            let bytes = slice(&runtime::bytes(&stored.response).await?);
            runtime::with_bytes(answer.status, &patched, Some(&bytes))
        }
        _ if answer.without_body => runtime::response(answer.status, &headers, None),
        (Body::Origin, _) => {
            runtime::response(answer.status, &headers, Some(&slice(&bodies.origin)))
        }
        (Body::Edge(bytes), _) => runtime::response(answer.status, &headers, Some(bytes)),
        // A stored answer without its stored response cannot happen; answer with no body.
        (Body::Stored, None) => runtime::response(answer.status, &headers, None),
    }
}

/// Puts the request's id in `headers` (sent to the origin, or returned to the client).
fn identify(headers: &mut HeaderMap, id: &str) {
    // A taken id is a token and a new one hex, so this always holds.
    if let Ok(id) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID, id);
    }
}

/// A request as it arrived, with what the entry read of it already.
struct Arrived<'a> {
    req: web_sys::Request,
    headers: HeaderMap,
    method: &'a str,
    url: &'a str,
    id: &'a str,
    started: u64,
}

async fn handle(arrived: Arrived<'_>, env: &Env, ctx: &Context) -> Result<Handled> {
    let Arrived {
        req,
        headers,
        method,
        url,
        id,
        started,
    } = arrived;
    let settings = match settings(env) {
        Ok(settings) => settings,
        Err(message) => {
            worker::console_error!("misconfigured: {message}");
            return Ok(error(500, "edge_misconfigured", message).into());
        }
    };
    let url = match Url::parse(url) {
        Ok(url) => url,
        Err(err) => return Ok(error(400, "invalid_url", err.to_string()).into()),
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Ok(error(400, "invalid_method", "the method is not a token".into()).into());
    };
    let target = match Target::parse(&url) {
        Ok(target) => target,
        Err(invalid) => return Ok(invalid_parameter(invalid).into()),
    };
    let kind = classify(&method, &target.path, &headers, &settings.session_cookies);
    let to_origin = |kind| {
        let mut forwarded = origin_headers(&headers, kind);
        identify(&mut forwarded, id);
        forwarded
    };
    match kind {
        RequestKind::Purge => Ok(purge::handle(req, &headers, env, &settings, &url)
            .await?
            .into()),
        RequestKind::Health => Ok(json(200, br#"{"status":"ok"}"#.to_vec()).into()),
        RequestKind::NotFound => Ok(error(
            404,
            "not_found",
            format!("{} is not served here", target.path),
        )
        .into()),
        RequestKind::Bypass(reason) => {
            let mut origin_url = target.origin_url(&settings.origin);
            origin_url.set_query(url.query());
            let forwarding = Forwarding {
                url,
                origin_url,
                method,
                headers: to_origin(kind),
                reason,
            };
            forward(req, &settings, forwarding, started).await
        }
        RequestKind::Cacheable { credentialed } => {
            let request = CacheableRequest {
                forwarded: to_origin(kind),
                headers,
                head: method == Method::HEAD,
                credentialed,
                path: target.path.clone(),
            };
            let key = target.cache_key(&url);
            serve::serve(request, key, target, env, ctx, &settings).await
        }
    }
}

/// A request passed to the origin as it is.
struct Forwarding {
    /// As the client addressed it.
    url: Url,
    origin_url: Url,
    method: Method,
    headers: HeaderMap,
    reason: BypassReason,
}

/// Forwards a request the cache does not handle, streams the answer back, and invalidates
/// what an unsafe method changed (RFC 9111 §4.4).
async fn forward(
    req: web_sys::Request,
    settings: &Settings,
    forwarding: Forwarding,
    started: u64,
) -> Result<Handled> {
    let Forwarding {
        url,
        origin_url,
        method,
        headers: forwarded,
        reason,
    } = forwarding;
    let to = origin::Address {
        url: &origin_url,
        credential: settings.edge_auth.as_deref(),
    };
    let response = match origin::forward(&req, to, &forwarded, settings.timeout).await {
        Ok(response) => response,
        Err(failure) => return Ok(crate::core::cache::failure_answer(&failure).into()),
    };
    let status = response.status();
    if status == 101 {
        // A WebSocket handshake: only the runtime's own object carries the socket.
        return Ok(Handled::Raw(response));
    }
    let mut headers = runtime::header_map(&response.headers());
    strip_hop_by_hop(&mut headers);
    if let Some(id) = forwarded.get(REQUEST_ID) {
        headers.insert(REQUEST_ID, id.clone());
    }
    let stale = invalidated_by_unsafe(&method, &url, status, &headers);
    for key in stale {
        if let Err(err) = runtime::cache_delete(&key).await {
            worker::console_warn!("invalidating {key} after {method} failed: {err}");
        }
    }
    for_client(&mut headers, &CacheStatus::forward(reason.into()), None);
    add_server_timing(&mut headers, now_ms().saturating_sub(started));
    match runtime::streamed(status, &headers, response.body()) {
        Ok(response) => Ok(Handled::Raw(response)),
        Err(err) => Ok(error(
            502,
            "origin_bad_response",
            format!("the origin's response cannot be passed on: {err}"),
        )
        .into()),
    }
}
