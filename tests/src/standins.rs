//! Local stand-ins for the two SaaS APIs the project cannot reach from here, and the only
//! stand-ins it has: Cloudflare's zone purge API and Fastly's purge API, implementing their
//! documented request/response contracts (authentication, body shape, per-request limits,
//! response envelope), with scripted faults, recording every request they get.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::{json, Value};

/// A scripted misbehaviour, used once, in order, before normal service.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// 429 with `Retry-After` (seconds).
    TooManyRequests {
        retry_after: u64,
    },
    ServerError,
    /// Answers nothing for this long (longer than the client's timeout).
    Hang(Duration),
}

/// One purge the stand-in accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub at: Instant,
    /// `files`, `tags`, `prefixes`, `hosts`, `purge_everything` (Cloudflare) or
    /// `surrogate_keys`, `url`, `all` (Fastly).
    pub kind: String,
    pub items: Vec<String>,
    /// Fastly's `Fastly-Soft-Purge: 1` (mark stale instead of removing).
    pub soft: bool,
}

#[derive(Default)]
pub struct Record {
    pub faults: Mutex<VecDeque<Fault>>,
    pub accepted: Mutex<Vec<Accepted>>,
    /// Every request, faults and refusals included.
    pub requests: Mutex<u64>,
    /// Items a request may not name: it is refused as a bad request (see [`StandIn::refuse`]).
    pub refused: Mutex<Vec<String>>,
}

pub struct StandIn {
    pub url: String,
    pub record: Arc<Record>,
}

impl StandIn {
    /// From now on, refuses (400, as for any invalid purge) every request that names `item`:
    /// the whole request, as the real APIs do.
    pub fn refuse(&self, item: &str) {
        self.record.refused.lock().unwrap().push(item.to_owned());
    }

    pub fn script(&self, faults: &[Fault]) {
        self.record
            .faults
            .lock()
            .unwrap()
            .extend(faults.iter().copied());
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.record.accepted.lock().unwrap().clone()
    }

    pub fn requests(&self) -> u64 {
        *self.record.requests.lock().unwrap()
    }
}

/// Serves `app` on `port` (0: any free port).
async fn serve(app: Router, port: u16) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Applies the next scripted fault, if any.
async fn fault(record: &Record) -> Option<Response> {
    *record.requests.lock().unwrap() += 1;
    let next = record.faults.lock().unwrap().pop_front();
    match next? {
        Fault::TooManyRequests { retry_after } => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after.to_string())],
                Json(envelope_error(
                    971,
                    "Please wait and consider throttling your request speed",
                )),
            )
                .into_response(),
        ),
        Fault::ServerError => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(envelope_error(10000, "internal error")),
            )
                .into_response(),
        ),
        Fault::Hang(duration) => {
            tokio::time::sleep(duration).await;
            Some(StatusCode::GATEWAY_TIMEOUT.into_response())
        }
    }
}

fn envelope_error(code: u32, message: &str) -> Value {
    json!({ "success": false, "errors": [{ "code": code, "message": message }], "messages": [], "result": null })
}

/// Cloudflare: `POST /client/v4/zones/{zone_id}/purge_cache`, `Authorization: Bearer`, a body
/// with exactly one of `files`, `tags`, `prefixes`, `hosts` (1 to 100 items) or
/// `purge_everything: true`; answers the `{success, errors, messages, result}` envelope.
pub async fn cloudflare(zone_id: &'static str, token: &'static str, port: u16) -> StandIn {
    let record = Arc::new(Record::default());
    let app = Router::new()
        .route(
            "/client/v4/zones/{zone}/purge_cache",
            post(
                move |State(record): State<Arc<Record>>, Path(zone): Path<String>, headers: HeaderMap, body: Json<Value>| async move {
                    if let Some(response) = fault(&record).await {
                        return response;
                    }
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {token}")) {
                        return (StatusCode::FORBIDDEN, Json(envelope_error(10000, "Authentication error"))).into_response();
                    }
                    if zone != zone_id {
                        return (StatusCode::NOT_FOUND, Json(envelope_error(7003, "Could not route to zone"))).into_response();
                    }
                    let Some(object) = body.0.as_object() else {
                        return (StatusCode::BAD_REQUEST, Json(envelope_error(1012, "Request must be an object"))).into_response();
                    };
                    if object.len() != 1 {
                        return (StatusCode::BAD_REQUEST, Json(envelope_error(1012, "Only one purge type per request"))).into_response();
                    }
                    let (kind, value) = object.iter().next().unwrap();
                    let items: Vec<String> = match (kind.as_str(), value) {
                        ("purge_everything", Value::Bool(true)) => Vec::new(),
                        ("files" | "tags" | "prefixes" | "hosts", Value::Array(items)) if (1..=100).contains(&items.len()) => {
                            items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
                        }
                        _ => {
                            return (StatusCode::BAD_REQUEST, Json(envelope_error(1012, "Invalid purge request: 1 to 100 items of one type"))).into_response()
                        }
                    };
                    if let Some(bad) = items.iter().find(|i| record.refused.lock().unwrap().contains(i)) {
                        return (StatusCode::BAD_REQUEST, Json(envelope_error(1012, &format!("Invalid purge item {bad}")))).into_response();
                    }
                    record.accepted.lock().unwrap().push(Accepted { at: Instant::now(), kind: kind.clone(), items, soft: false });
                    Json(json!({ "success": true, "errors": [], "messages": [], "result": { "id": zone_id } })).into_response()
                },
            ),
        )
        .with_state(record.clone());
    StandIn {
        url: format!("{}/client/v4", serve(app, port).await),
        record,
    }
}

/// Fastly: `POST /service/{id}/purge` with `Surrogate-Key` (space-separated keys),
/// `POST /service/{id}/purge_all`, `POST /purge/{host}/{path}`; authenticated by `Fastly-Key`.
pub async fn fastly(service_id: &'static str, key: &'static str) -> StandIn {
    let record = Arc::new(Record::default());
    async fn accept(
        record: &Record,
        headers: &HeaderMap,
        key: &str,
        kind: &str,
        items: Vec<String>,
    ) -> Response {
        if let Some(response) = fault(record).await {
            return response;
        }
        if headers.get("fastly-key").and_then(|v| v.to_str().ok()) != Some(key) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "msg": "Provided credentials are missing or invalid" })),
            )
                .into_response();
        }
        let soft = headers.get("fastly-soft-purge").is_some_and(|v| v == "1");
        record.accepted.lock().unwrap().push(Accepted {
            at: Instant::now(),
            kind: kind.to_owned(),
            items,
            soft,
        });
        Json(json!({ "status": "ok", "id": "fastly-purge" })).into_response()
    }
    let app = Router::new()
        .route(
            "/service/{service}/purge",
            post(
                move |State(record): State<Arc<Record>>,
                      Path(service): Path<String>,
                      headers: HeaderMap| async move {
                    let keys: Vec<String> = headers
                        .get("surrogate-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .split(' ')
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if service != service_id || keys.is_empty() || keys.len() > 256 {
                        return (
                            StatusCode::BAD_REQUEST,
                            Json(json!({ "msg": "Bad request" })),
                        )
                            .into_response();
                    }
                    accept(&record, &headers, key, "surrogate_keys", keys).await
                },
            ),
        )
        .route(
            "/service/{service}/purge_all",
            post(
                move |State(record): State<Arc<Record>>, headers: HeaderMap| async move {
                    accept(&record, &headers, key, "all", Vec::new()).await
                },
            ),
        )
        .route(
            "/purge/{*url}",
            post(
                move |State(record): State<Arc<Record>>,
                      Path(url): Path<String>,
                      headers: HeaderMap| async move {
                    accept(&record, &headers, key, "url", vec![url]).await
                },
            ),
        )
        .with_state(record.clone());
    StandIn {
        url: serve(app, 0).await,
        record,
    }
}
