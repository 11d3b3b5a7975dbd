//! A deliberately misbehaving origin for the edge to sit in front of: it echoes headers that
//! must never reach it, sends contradictory or absurd cache headers, fails mid-body, and
//! counts the requests it gets. Under `/rfc/` it answers the scenarios of the RFC 9111
//! conformance tests (`tests/tests/conformance.rs`). Started in-process on a loopback port.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    /// Every request: its path and query, and the headers it came with.
    pub seen: Mutex<Vec<(String, HeaderMap)>>,
}

pub struct Fixture {
    pub url: String,
    pub counts: Arc<Counts>,
}

impl Fixture {
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
    }

    /// The requests that reached `path` (with its query, if any), with their headers.
    pub fn seen(&self, path: &str) -> Vec<HeaderMap> {
        self.counts
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(seen, _)| seen == path)
            .map(|(_, headers)| headers.clone())
            .collect()
    }
}

/// A response with these headers, each a raw value (obs-text allowed).
fn raw(
    status: StatusCode,
    headers: &[(&'static str, &'static [u8])],
    body: &'static str,
) -> Response {
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_bytes(value).unwrap());
    }
    response
}

/// The RFC 9111 scenarios.
fn conformance_routes() -> Router<()> {
    let versions = Arc::new(AtomicU64::new(0));
    Router::new()
        .route(
            "/rfc/age",
            get(|| async {
                raw(
                    StatusCode::OK,
                    &[("cache-control", b"max-age=60"), ("age", b"50")],
                    "aged",
                )
            }),
        )
        .route(
            "/rfc/status/{code}",
            get(|Path(code): Path<u16>| async move {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
                let body = if code == 204 || code == 304 {
                    ""
                } else {
                    "status"
                };
                raw(status, &[("cache-control", b"max-age=60")], body)
            }),
        )
        .route(
            "/rfc/obs-text",
            get(|| async {
                raw(
                    StatusCode::OK,
                    &[("cache-control", b"max-age=60"), ("x-obs", b"caf\xe9 \xff")],
                    "obs",
                )
            }),
        )
        .route(
            "/rfc/revalidate",
            get(|headers: HeaderMap| async move {
                if headers.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                    // Carries fields the stored response lacks, one with obs-text.
                    return raw(
                        StatusCode::NOT_MODIFIED,
                        &[
                            ("etag", b"\"v1\""),
                            ("cache-control", b"no-cache"),
                            ("x-refreshed", b"yes \xe9"),
                        ],
                        "",
                    );
                }
                raw(
                    StatusCode::OK,
                    &[("etag", b"\"v1\""), ("cache-control", b"no-cache")],
                    "validated body",
                )
            }),
        )
        .route(
            "/rfc/hop",
            get(|| async {
                raw(
                    StatusCode::OK,
                    &[
                        ("cache-control", b"max-age=60"),
                        ("connection", b"x-secret"),
                        ("x-secret", b"1"),
                        ("keep-alive", b"timeout=5"),
                    ],
                    "hop",
                )
            }),
        )
        .route(
            "/rfc/cdn",
            get(|| async {
                raw(
                    StatusCode::OK,
                    &[
                        ("cdn-cache-control", b"max-age=600"),
                        ("cache-control", b"no-store"),
                    ],
                    "cdn",
                )
            }),
        )
        .route(
            "/rfc/cdn-invalid",
            get(|| async {
                raw(
                    StatusCode::OK,
                    &[
                        ("cdn-cache-control", b"Max-Age=600"),
                        ("cache-control", b"no-store"),
                    ],
                    "cdn",
                )
            }),
        )
        .route(
            "/rfc/vary-star",
            get(|| async {
                raw(
                    StatusCode::OK,
                    &[
                        ("cache-control", b"max-age=60"),
                        ("vary", b"accept"),
                        ("vary", b"*"),
                    ],
                    "star",
                )
            }),
        )
        .route(
            "/rfc/unsafe",
            get({
                let versions = versions.clone();
                move || async move {
                    let version = versions.load(Ordering::SeqCst);
                    (
                        [("cache-control", "max-age=600")],
                        format!("version {version}"),
                    )
                }
            })
            .post(move || async move {
                versions.fetch_add(1, Ordering::SeqCst);
                "changed"
            }),
        )
        // As the independent conformance suite's origin does: a 200 the first time, a 304
        // to every later request, conditional or not, with fields that update the stored ones.
        .route(
            "/rfc/last-modified",
            get(first_then_not_modified(
                &[
                    ("cache-control", b"max-age=2"),
                    ("last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT"),
                    ("test-header", b"A"),
                ],
                &[
                    ("last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT"),
                    ("test-header", b"B"),
                ],
            )),
        )
        .route(
            "/rfc/must-revalidate",
            get(first_then_not_modified(
                &[
                    ("cache-control", b"max-age=2, must-revalidate"),
                    ("etag", b"\"m1\""),
                ],
                &[
                    ("etag", b"\"m1\""),
                    ("cache-control", b"max-age=2, must-revalidate"),
                ],
            )),
        )
        .route(
            "/rfc/age-lines",
            get(|| async {
                let headers: &[(&str, &[u8])] = &[
                    ("cache-control", b"max-age=60"),
                    ("age", b"3600"),
                    ("age", b"0"),
                ];
                raw(StatusCode::OK, headers, "old")
            }),
        )
        .route(
            "/rfc/age-members",
            get(|| async {
                let headers: &[(&str, &[u8])] =
                    &[("cache-control", b"max-age=60"), ("age", b"3600, 0")];
                raw(StatusCode::OK, headers, "old")
            }),
        )
}

/// A handler that answers 200 with `first` (and a body) once, then 304 with `then`.
fn first_then_not_modified(
    first: &'static [(&'static str, &'static [u8])],
    then: &'static [(&'static str, &'static [u8])],
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    let served = Arc::new(AtomicU64::new(0));
    move || {
        let response = if served.fetch_add(1, Ordering::SeqCst) == 0 {
            raw(StatusCode::OK, first, "first body")
        } else {
            raw(StatusCode::NOT_MODIFIED, then, "")
        };
        std::future::ready(response)
    }
}

fn cached(cache_control: &'static str, body: String) -> Response {
    (
        [
            ("cache-control", cache_control),
            ("content-type", "text/plain"),
        ],
        body,
    )
        .into_response()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

pub async fn start() -> Fixture {
    let counts = Arc::new(Counts::default());
    let app = conformance_routes()
        // Would be poisoned if the edge forwarded unkeyed headers.
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let seen = ["x-forwarded-host", "x-original-url", "x-custom", "cookie"]
                    .map(|name| format!("{name}={}", header(&headers, name)))
                    .join(" ");
                cached("public, max-age=60", seen)
            }),
        )
        .route(
            "/vary",
            get(|headers: HeaderMap| async move {
                let language = header(&headers, "accept-language");
                let mut response = cached("public, max-age=60", format!("language={language}"));
                response
                    .headers_mut()
                    .insert("vary", "Accept-Language".parse().unwrap());
                response
            }),
        )
        .route(
            "/no-store",
            get(|| async { cached("no-store, max-age=60", "secret".into()) }),
        )
        .route(
            "/private",
            get(|| async { cached("private, max-age=60", "mine".into()) }),
        )
        .route(
            "/set-cookie",
            get(|| async {
                let mut response = cached("public, max-age=60", "cookie".into());
                response
                    .headers_mut()
                    .insert("set-cookie", "id=1".parse().unwrap());
                response
            }),
        )
        // Storable by a shared cache only for requests without credentials.
        .route(
            "/not-public",
            get(|| async { cached("max-age=60", "shared".into()) }),
        )
        // Slower than the edge's origin timeout in these tests (2 s).
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(4)).await;
                cached("public, max-age=60", "late".into())
            }),
        )
        .route(
            "/malformed",
            get(|| async { cached("max-age=sixty, max-age=60, public", "m".into()) }),
        )
        .route(
            "/absurd",
            get(|| async { cached("public, max-age=999999999999999999999", "a".into()) }),
        )
        .route(
            "/error",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response() }),
        )
        .route(
            "/truncated",
            get(|| async {
                // Announces 1000 bytes, sends 10, then the stream fails.
                let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                    Ok("0123456789"),
                    Err(std::io::Error::other("origin died mid-body")),
                ];
                Response::builder()
                    .header("cache-control", "public, max-age=60")
                    .header("content-length", "1000")
                    .body(Body::from_stream(futures_util::stream::iter(chunks)))
                    .unwrap()
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            counts.clone(),
            |State(counts): State<Arc<Counts>>,
             request: axum::extract::Request,
             next: axum::middleware::Next| async move {
                counts.requests.fetch_add(1, Ordering::SeqCst);
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or_else(String::new, |p| p.as_str().to_owned());
                counts
                    .seen
                    .lock()
                    .unwrap()
                    .push((path, request.headers().clone()));
                next.run(request).await
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture { url, counts }
}

/// An origin that writes the given raw HTTP/1.1 responses, one per request in order (the last
/// one again after that), whatever is asked: framings that axum will not produce, such as a
/// `Transfer-Encoding: chunked` on a 304. Returns its URL.
pub async fn raw_origin(responses: &'static [&'static str]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answered = answered.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = vec![0u8; 64 * 1024];
                // One read a request: the edge sends small GETs without bodies.
                while let Ok(1..) = socket.read(&mut request).await {
                    let n = answered.fetch_add(1, Ordering::SeqCst) as usize;
                    let response = responses[n.min(responses.len() - 1)];
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}
