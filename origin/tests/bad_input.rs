//! Every kind of bad input gets its status and a JSON error naming the problem, and changes
//! nothing in the database.

mod common;

use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
};
use common::{TestApp, ADMIN_TOKEN};
use serde_json::json;

forecastin_e2e::on_both_backends!(
    setup = common::TestApp::on;
    malformed_reads_get_400_or_404_naming_the_parameter,
    admin_writes_need_the_right_token,
    bodies_of_the_wrong_type_size_or_shape_are_refused,
    semantically_invalid_writes_get_422_or_409,
);

async fn malformed_reads_get_400_or_404_naming_the_parameter(app: TestApp) {
    let unknown = app.get("/api/v1/entities/ZZ-999").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"]["code"], "not_found");
    assert_eq!(
        app.get("/api/v1/entities/ZZ-999/ancestors").await.status,
        StatusCode::NOT_FOUND
    );

    for (uri, field) in [
        ("/api/v1/entities/bad%20id", "id"),
        ("/api/v1/entities/%C3%A9t%C3%A9/children", "id"),
        ("/api/v1/entities/FR/children?limit=0", "limit"),
        ("/api/v1/entities/FR/children?limit=501", "limit"),
        ("/api/v1/entities/FR/children?limit=ten", "limit"),
        ("/api/v1/entities/FR/children?cursor=%%%", "cursor"),
        (
            "/api/v1/entities/FR/children?cursor=bm90LWEtY3Vyc29y",
            "cursor",
        ),
        ("/api/v1/entities/FR/descendants?cursor=garbage!", "cursor"),
        ("/api/v1/entities/FR/descendants?max_depth=0", "max_depth"),
        ("/api/v1/entities/FR/descendants?max_depth=33", "max_depth"),
        ("/api/v1/search", "q"),
        ("/api/v1/search?q=%20%20", "q"),
        ("/api/v1/search?q=paris&limit=101", "limit"),
        ("/api/v1/search?q=par%00is", "q"),
        ("/api/v1/search?q=par%0Ais", "q"),
        ("/api/v1/search?q=paris&q=lyon", "q"),
        ("/api/v1/entities/FR/children?limit=%2B5", "limit"),
    ] {
        let response = app.get(uri).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(response.error_field(), field, "{uri}");
        assert_eq!(response.header("cache-control"), "no-store", "{uri}");
    }
    // Cursors: longer than any issued, or decoding to control characters.
    let long = format!(
        "/api/v1/entities/world/descendants?limit=100&cursor={}",
        "IQ".repeat(forecastin_shared::params::MAX_CURSOR_CHARS / 2 + 1)
    );
    let control = format!(
        "/api/v1/entities/FR/children?cursor={}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            "Par\u{0}is\u{1f}FR-75"
        )
    );
    for (uri, field) in [(long.as_str(), "cursor"), (control.as_str(), "cursor")] {
        let response = app.get(uri).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(response.error_field(), field, "{uri}");
        assert_eq!(response.header("cache-control"), "no-store", "{uri}");
    }

    // A padded number is the same page as the plain one, keyed once.
    let padded = app
        .get("/api/v1/entities/FR/children?limit=0000000000000000000002")
        .await;
    let plain = app.get("/api/v1/entities/FR/children?limit=2").await;
    assert_eq!(padded.status, StatusCode::OK);
    assert_eq!(padded.json(), plain.json());
    assert_eq!(padded.header("etag"), plain.header("etag"));

    // A cursor from one entity's descendants does not page another's.
    let de = app
        .get("/api/v1/entities/DE/descendants?limit=1")
        .await
        .json();
    let cursor = de["next_cursor"].as_str().unwrap();
    let foreign = app
        .get(&format!(
            "/api/v1/entities/FR/descendants?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST);
    assert_eq!(foreign.error_field(), "cursor");

    let nowhere = app.get("/api/v2/nothing").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.json()["error"]["code"], "not_found");
}

async fn admin_writes_need_the_right_token(app: TestApp) {
    let before = app.fingerprint().await;
    let body = json!({"id": "X1", "parent_id": "FR", "kind": "actor", "name": "X"}).to_string();
    let without = Request::post("/admin/v1/entities")
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    let response = app.send(without).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.json()["error"]["code"], "unauthorized");

    for token in ["Bearer wrong", "Bearer ", &format!("Bearer {ADMIN_TOKEN}x")] {
        let wrong = Request::post("/admin/v1/entities")
            .header("content-type", "application/json")
            .header("authorization", token)
            .body(Body::from(body.clone()))
            .unwrap();
        let response = app.send(wrong).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{token}");
        assert_eq!(response.json()["error"]["code"], "forbidden");
    }
    let basic = Request::delete("/admin/v1/entities/FR-75")
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(basic).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.fingerprint().await, before);
}

async fn bodies_of_the_wrong_type_size_or_shape_are_refused(app: TestApp) {
    let before = app.fingerprint().await;
    let raw = |content_type: &str, body: Vec<u8>| {
        Request::post("/admin/v1/entities")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    };
    let valid = json!({"id": "X1", "parent_id": "FR", "kind": "actor", "name": "X"});

    let text = app
        .send(raw("text/plain", valid.to_string().into_bytes()))
        .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(text.json()["error"]["code"], "unsupported_media_type");

    let mut huge = valid.clone();
    huge["attributes"] = json!({"blob": "x".repeat(1024 * 1024)});
    let too_large = app
        .send(raw("application/json", huge.to_string().into_bytes()))
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.json()["error"]["code"], "payload_too_large");

    let broken = app
        .send(raw("application/json", b"{\"id\": ".to_vec()))
        .await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(broken.json()["error"]["code"], "invalid_body");

    for (body, field) in [
        (
            json!({"id": "X1", "parent_id": "FR", "kind": "actor"}),
            "name",
        ),
        (json!({"id": "X1", "parent_id": "FR", "name": "X"}), "kind"),
        (
            json!({"id": "X1", "parent_id": "FR", "kind": "planet", "name": "X"}),
            "kind",
        ),
        (
            json!({"id": 7, "parent_id": "FR", "kind": "actor", "name": "X"}),
            "id",
        ),
        (
            json!({"id": "X1", "parent_id": "FR", "kind": "actor", "name": "X", "colour": 1}),
            "colour",
        ),
    ] {
        let response = app
            .send(raw("application/json", body.to_string().into_bytes()))
            .await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(response.error_field(), field, "{body}");
    }

    let patch = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/FR",
            Some(json!({"nmae": "France"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(patch.error_field(), "nmae");
    let empty = app
        .admin(Method::PATCH, "/admin/v1/entities/FR", Some(json!({})))
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.fingerprint().await, before);
}

async fn semantically_invalid_writes_get_422_or_409(app: TestApp) {
    let before = app.fingerprint().await;
    for (body, status, field) in [
        (
            json!({"id": "bad id", "parent_id": "FR", "kind": "actor", "name": "X"}),
            422,
            Some("id"),
        ),
        (
            json!({"id": "X1", "parent_id": "NOPE", "kind": "actor", "name": "X"}),
            422,
            Some("parent_id"),
        ),
        (
            json!({"id": "X1", "parent_id": "FR", "kind": "actor", "name": "  "}),
            422,
            Some("name"),
        ),
        (
            json!({"id": "X1", "parent_id": "FR", "kind": "actor", "name": "a\u{0}b"}),
            422,
            Some("name"),
        ),
        (
            json!({"id": "X1", "parent_id": "FR", "kind": "world", "name": "X"}),
            422,
            Some("kind"),
        ),
        (
            json!({"id": "DE", "parent_id": "FR", "kind": "actor", "name": "X"}),
            409,
            None,
        ),
    ] {
        let response = app
            .admin(Method::POST, "/admin/v1/entities", Some(body.clone()))
            .await;
        assert_eq!(response.status.as_u16(), status, "{body}");
        if let Some(field) = field {
            assert_eq!(response.error_field(), field, "{body}");
        }
    }
    for (uri, body, status) in [
        ("/admin/v1/entities/NOPE", json!({"name": "X"}), 404),
        ("/admin/v1/entities/FR", json!({"parent_id": "NOPE"}), 422),
        ("/admin/v1/entities/world", json!({"parent_id": "FR"}), 409),
    ] {
        let response = app.admin(Method::PATCH, uri, Some(body)).await;
        assert_eq!(response.status.as_u16(), status, "{uri}");
    }
    let cascade = app
        .admin(
            Method::DELETE,
            "/admin/v1/entities/FR-75?cascade=maybe",
            None,
        )
        .await;
    assert_eq!(cascade.status, StatusCode::BAD_REQUEST);
    assert_eq!(cascade.error_field(), "cascade");
    assert_eq!(app.fingerprint().await, before);
}
