//! A test harness: the real application on a fresh database, SQLite (a temporary file) or
//! PostgreSQL (a new database on the server named by `TEST_POSTGRES_URL`, dropped afterwards),
//! seeded with the real demo data, driven through its router.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc,
};

use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use clap::Parser;
use forecastin_e2e::Backend;
use forecastin_origin::{config::Config, http::AppState};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::{postgres::PgConnection, AssertSqlSafe, Connection, Executor};
use tower::ServiceExt;

pub const ADMIN_TOKEN: &str = "test-admin-token-of-at-least-32-bytes";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
}

pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Something to clean up when the app is dropped.
enum Scratch {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { server: String, database: String },
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Scratch::Postgres { server, database } = self {
            let (server, database) = (server.clone(), database.clone());
            // Drop runs outside async: use a runtime of our own on a plain thread.
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&server).await {
                        let _ = conn
                            .execute(AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                            )))
                            .await;
                    }
                })
            })
            .join()
            .ok();
        }
    }
}

pub struct TestApp {
    pub router: Router,
    pub state: Arc<AppState>,
    _scratch: Scratch,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// The `error.field` of an error body.
    pub fn error_field(&self) -> Value {
        self.json()["error"]["field"].clone()
    }
}

impl TestApp {
    /// An application on `backend` (see `forecastin_e2e::on_both_backends!`).
    pub async fn on(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub async fn sqlite() -> Self {
        Self::sqlite_with(&[]).await
    }

    pub async fn sqlite_with(extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
        Self::start(&url, Scratch::Sqlite(dir), extra_args).await
    }

    pub async fn postgres() -> Self {
        Self::postgres_with(&[]).await
    }

    pub async fn postgres_with(extra_args: &[&str]) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let server = postgres_server_url();
        let database = format!(
            "forecastin_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn = PgConnection::connect(&server)
            .await
            .expect("PostgreSQL must be running (see TEST_POSTGRES_URL)");
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .await
            .unwrap();
        let (base, _) = server.rsplit_once('/').unwrap();
        let url = format!("{base}/{database}");
        Self::start(&url, Scratch::Postgres { server, database }, extra_args).await
    }

    async fn start(url: &str, scratch: Scratch, extra_args: &[&str]) -> Self {
        let mut args = vec![
            "origin",
            "--database-url",
            url,
            "--admin-token",
            ADMIN_TOKEN,
            "--max-connections",
            "4",
        ];
        args.extend_from_slice(extra_args);
        let Args { config } = Args::try_parse_from(args).unwrap();
        let (router, state) = forecastin_origin::build(&config).await.unwrap();
        TestApp {
            router,
            state,
            _scratch: scratch,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// An admin request with the right token and a JSON body.
    pub async fn admin(&self, method: Method, uri: &str, body: Option<Value>) -> TestResponse {
        self.admin_with(method, uri, body, &[]).await
    }

    /// As [`TestApp::admin`] with more headers. A change to an entity without an `If-Match`
    /// of its own gets the entity's current ETag, as a careful admin client sends it.
    pub async fn admin_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let changes_entity = (method == Method::PATCH || method == Method::DELETE)
            && uri.starts_with("/admin/v1/entities/");
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"));
        if changes_entity
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("if-match"))
        {
            let id = uri["/admin/v1/entities/".len()..]
                .split('?')
                .next()
                .unwrap_or_default();
            request = request.header(header::IF_MATCH, self.etag(id).await);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// The entity's current ETag (`*` when it does not exist), read from the public API.
    pub async fn etag(&self, id: &str) -> String {
        let response = self.get(&format!("/api/v1/entities/{id}")).await;
        match response.headers.get(header::ETAG) {
            Some(etag) if response.status == StatusCode::OK => etag.to_str().unwrap().to_owned(),
            _ => "*".to_owned(),
        }
    }

    /// A digest of the whole table: equal before and after means a request changed nothing.
    pub async fn fingerprint(&self) -> (i64, i64, i64, i64, String) {
        sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(version), 0) AS BIGINT), \
             CAST(COALESCE(SUM(LENGTH(path)), 0) AS BIGINT), \
             CAST(COALESCE(SUM(LENGTH(name) + LENGTH(attributes) + LENGTH(kind)), 0) AS BIGINT), \
             COALESCE(MAX(updated_at), '') FROM entities",
        )
        .fetch_one(self.state.hierarchy.db.primary.sqlx())
        .await
        .unwrap()
    }

    /// Item ids of a page or list body.
    pub fn ids(body: &Value) -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Follows `next_cursor` from `first_uri` (which must already have a query string) and
    /// returns every item id in order.
    pub async fn all_pages(&self, first_uri: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut uri = first_uri.to_owned();
        loop {
            let page = self.get(&uri).await;
            assert_eq!(page.status, StatusCode::OK, "{uri}");
            let body = page.json();
            ids.extend(Self::ids(&body));
            match body["next_cursor"].as_str() {
                Some(cursor) => uri = format!("{first_uri}&cursor={cursor}"),
                None => return ids,
            }
        }
    }
}
