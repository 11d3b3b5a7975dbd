//! The OpenAPI description and the router agree: every documented operation is routed, no
//! other method is, every route is registered with its description, and the document is
//! served, cacheable, at `/api/v1/openapi.json`.

mod common;

use axum::{body::Body, http::Request, http::StatusCode};
use common::{TestApp, ADMIN_TOKEN};
use serde_json::Value;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// `template` with each `{parameter}` replaced by a value that exists in the seeded data.
/// (The requests below carry no body and no `If-Match`, so no write goes through.)
fn concrete(template: &str, static_file: &str) -> String {
    template
        .replace("{id}", "FR")
        .replace("{name}", "ff.cdn_integration")
        .replace("{file}", static_file)
}

/// The name of a file the page loads (`/static/…`).
async fn a_static_file(app: &TestApp) -> String {
    let page = String::from_utf8(app.get("/").await.body).unwrap();
    let (_, rest) = page.split_once("/static/").expect("the page loads a file");
    rest.split('"').next().unwrap().to_owned()
}

/// Whether the router had no route for the request: its fallback's 404, or a 405.
fn unrouted(status: StatusCode, body: &[u8]) -> bool {
    let no_route = serde_json::from_slice::<Value>(body)
        .is_ok_and(|body| body["error"]["message"] == "no route for this path");
    status == StatusCode::METHOD_NOT_ALLOWED || (status == StatusCode::NOT_FOUND && no_route)
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let app = TestApp::sqlite().await;
    let description = serde_json::to_value(forecastin_origin::http::openapi()).unwrap();
    let paths = description["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let file = a_static_file(&app).await;
    let mut operation_ids = std::collections::HashSet::new();
    let mut checked = 0;
    for (template, operations) in paths {
        let uri = concrete(template, &file);
        for method in METHODS {
            let request = Request::builder()
                .method(method)
                .uri(&uri)
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Body::empty())
                .unwrap();
            let response = app.send(request).await;
            let documented = operations.get(method.to_lowercase()).is_some();
            assert_eq!(
                unrouted(response.status, &response.body),
                !documented,
                "{method} {uri}: documented {documented}, answered {}",
                response.status
            );
            if let Some(operation) = operations.get(method.to_lowercase()) {
                let id = operation["operationId"].as_str().unwrap();
                assert!(operation_ids.insert(id), "two operations are `{id}`");
                let status = response.status.as_str();
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {uri} answered {status}, which `{id}` does not describe"
                );
                assert_eq!(
                    operation.get("security").is_some(),
                    template.starts_with("/admin/"),
                    "`{id}`: the admin routes, and they only, need the admin token"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 22, "{checked} operations");
}

#[test]
fn every_route_is_registered_with_its_description() {
    // `utoipa_axum::routes!` adds a handler to the router and its `#[utoipa::path]` to the
    // description together; these would add a route without one.
    let http = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    for entry in std::fs::read_dir(&http).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for undescribed in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            assert!(
                !source.contains(undescribed),
                "{} adds a route with `{undescribed}`: use `routes!` so that it is described",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn the_description_is_openapi_3_1_served_cacheable_with_the_shared_schemas() {
    let app = TestApp::sqlite().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), "application/json");
    assert!(response.header("cache-control").contains("s-maxage="));
    let etag = response.header("etag").to_owned();
    let description = response.json();
    assert!(description["openapi"].as_str().unwrap().starts_with("3.1"));
    for schema in [
        "Entity",
        "EntitySummary",
        "Ancestors",
        "NewEntity",
        "EntityPatch",
        "PurgeRequest",
        "PurgeStatus",
        "ErrorBody",
        "StreamMessage",
        "FeatureFlag",
    ] {
        assert!(
            description["components"]["schemas"].get(schema).is_some(),
            "{schema} is not described"
        );
    }
    assert_eq!(
        description["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    for read in [
        "/api/v1/entities/{id}",
        "/api/v1/entities/{id}/children",
        "/api/v1/search",
    ] {
        let headers = &description["paths"][read]["get"]["responses"]["200"]["headers"];
        for name in ["Cache-Control", "ETag", "Cache-Tag"] {
            assert!(headers.get(name).is_some(), "{read}: no {name}");
        }
    }
    let patch = &description["paths"]["/admin/v1/entities/{id}"]["patch"];
    assert!(patch["responses"]["200"]
        .get("headers")
        .is_some_and(|headers| headers.get("ETag").is_none()));
    assert_eq!(patch["security"][0]["admin_token"], serde_json::json!([]));
    assert!(patch["responses"].get("428").is_some());

    let again = app
        .send(
            Request::get("/api/v1/openapi.json")
                .header("if-none-match", &etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
}
