//! A deliberately misbehaving origin for the edge to sit in front of: it echoes headers that
//! must never reach it, sends contradictory or absurd cache headers, fails mid-body, and
//! counts the requests it gets. Started in-process on a loopback port.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
}

pub struct Fixture {
    pub url: String,
    pub counts: Arc<Counts>,
}

impl Fixture {
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
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
    let app = Router::new()
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
                next.run(request).await
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture { url, counts }
}
