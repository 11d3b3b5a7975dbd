//! Admin writes: their effect on the tree, optimistic concurrency, and L1 invalidation by tag.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

forecastin_e2e::on_both_backends!(
    setup = common::TestApp::on;
    a_created_entity_is_served_and_purges_its_cached_404_and_parent_lists,
    a_rename_with_the_current_etag_updates_breadcrumbs_below_it,
    a_stale_if_match_gets_412_and_changes_nothing,
    changes_without_if_match_get_428_and_change_nothing,
    moving_a_subtree_rewrites_every_descendant_path,
    a_move_under_itself_or_a_descendant_is_refused,
    deleting_a_parent_needs_an_explicit_cascade,
    invalidation_keeps_unrelated_l1_entries,
    moving_a_subtree_of_ten_thousand_keeps_the_hierarchy_consistent,
    the_consistency_checker_finds_a_corrupted_path,
);

async fn a_created_entity_is_served_and_purges_its_cached_404_and_parent_lists(app: TestApp) {
    assert_eq!(
        app.get("/api/v1/entities/FR-75.a1").await.status,
        StatusCode::NOT_FOUND
    );
    let before = TestApp::ids(&app.get("/api/v1/entities/FR-75/children").await.json());
    assert!(before.is_empty());

    let created = app
        .admin(
            Method::POST,
            "/admin/v1/entities",
            Some(json!({
                "id": "FR-75.a1", "parent_id": "FR-75", "kind": "actor",
                "name": "Conseil de Paris", "attributes": {"founded": 1977}
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("location"), "/api/v1/entities/FR-75.a1");
    assert_eq!(created.json()["depth"], 6);
    assert_eq!(created.json()["version"], 1);

    let served = app.get("/api/v1/entities/FR-75.a1").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.json()["attributes"]["founded"], 1977);
    assert_eq!(served.header("etag"), created.header("etag"));
    let children = app.get("/api/v1/entities/FR-75/children").await.json();
    assert_eq!(TestApp::ids(&children), ["FR-75.a1"]);
    let found = app
        .get("/api/v1/search?q=conseil%20de%20paris")
        .await
        .json();
    assert_eq!(TestApp::ids(&found), ["FR-75.a1"]);
}

async fn a_rename_with_the_current_etag_updates_breadcrumbs_below_it(app: TestApp) {
    let crumbs = app.get("/api/v1/entities/FR-75/ancestors").await.json();
    assert_eq!(crumbs["items"][4]["name"], "Île-de-France");
    let etag = app
        .get("/api/v1/entities/FR-IDF")
        .await
        .header("etag")
        .to_owned();

    let renamed = app
        .admin_with(
            Method::PATCH,
            "/admin/v1/entities/FR-IDF",
            Some(json!({"name": "Paris Region"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.json()["version"], 2);
    assert_ne!(renamed.header("etag"), etag);

    let crumbs = app.get("/api/v1/entities/FR-75/ancestors").await.json();
    assert_eq!(crumbs["items"][4]["name"], "Paris Region");
    let siblings = app
        .get("/api/v1/entities/FR/children?limit=500")
        .await
        .json();
    assert!(siblings["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|item| item["name"] == "Paris Region"));
}

async fn a_stale_if_match_gets_412_and_changes_nothing(app: TestApp) {
    let stale = app
        .get("/api/v1/entities/BE")
        .await
        .header("etag")
        .to_owned();
    let first = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/BE",
            Some(json!({"name": "Belgique"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);

    let before = app.fingerprint().await;
    for (method, body) in [
        (Method::PATCH, Some(json!({"name": "België"}))),
        (Method::DELETE, None),
    ] {
        let refused = app
            .admin_with(
                method,
                "/admin/v1/entities/BE",
                body,
                &[("if-match", &stale)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(refused.json()["error"]["code"], "precondition_failed");
    }
    assert_eq!(app.fingerprint().await, before);
    assert_eq!(
        app.get("/api/v1/entities/BE").await.json()["name"],
        "Belgique"
    );
}

async fn moving_a_subtree_rewrites_every_descendant_path(app: TestApp) {
    let subtree_size = app
        .all_pages("/api/v1/entities/FR-IDF/descendants?limit=500")
        .await
        .len();
    assert_eq!(subtree_size, 8, "the eight departments of Île-de-France");
    // Read through L1 first, so the move must invalidate what was cached.
    app.get("/api/v1/entities/FR-75/ancestors").await;
    app.get("/api/v1/entities/FR-75").await;

    let moved = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/FR-IDF",
            Some(json!({"parent_id": "DE"})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_eq!(moved.json()["parent_id"], "DE");

    let crumbs = app.get("/api/v1/entities/FR-75/ancestors").await.json();
    assert_eq!(
        TestApp::ids(&crumbs),
        ["world", "m49-150", "m49-155", "DE", "FR-IDF"]
    );
    assert_eq!(app.get("/api/v1/entities/FR-75").await.json()["depth"], 5);
    let de_children = app
        .all_pages("/api/v1/entities/DE/children?limit=100")
        .await;
    assert!(de_children.contains(&"FR-IDF".to_owned()));
    let fr_descendants = app
        .all_pages("/api/v1/entities/FR/descendants?limit=500")
        .await;
    assert!(!fr_descendants
        .iter()
        .any(|id| id == "FR-IDF" || id == "FR-75"));
    let de_descendants = app
        .all_pages("/api/v1/entities/DE/descendants?limit=500")
        .await;
    assert!(de_descendants.contains(&"FR-75".to_owned()));
}

async fn a_move_under_itself_or_a_descendant_is_refused(app: TestApp) {
    let before = app.fingerprint().await;
    for target in ["FR", "FR-IDF", "FR-75"] {
        let refused = app
            .admin(
                Method::PATCH,
                "/admin/v1/entities/FR",
                Some(json!({"parent_id": target})),
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{target}");
        assert_eq!(refused.json()["error"]["code"], "conflict");
    }
    assert_eq!(app.fingerprint().await, before);
}

async fn deleting_a_parent_needs_an_explicit_cascade(app: TestApp) {
    let before = app.fingerprint().await;
    let refused = app
        .admin(Method::DELETE, "/admin/v1/entities/FR-IDF", None)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(app.fingerprint().await, before);
    app.get("/api/v1/entities/FR-75").await; // cached in L1

    let deleted = app
        .admin(
            Method::DELETE,
            "/admin/v1/entities/FR-IDF?cascade=true",
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.fingerprint().await.0, before.0 - 9);
    assert_eq!(
        app.get("/api/v1/entities/FR-75").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/entities/FR-IDF/children").await.status,
        StatusCode::NOT_FOUND
    );

    let region = app
        .admin(Method::DELETE, "/admin/v1/entities/FR-ARA", None)
        .await;
    assert_eq!(
        region.status,
        StatusCode::CONFLICT,
        "a region with departments"
    );
    let root = app
        .admin(
            Method::DELETE,
            "/admin/v1/entities/world?cascade=true",
            None,
        )
        .await;
    assert_eq!(root.status, StatusCode::CONFLICT);
}

async fn invalidation_keeps_unrelated_l1_entries(app: TestApp) {
    // Counted without preloading, which renders the hot pages a write dropped again.
    app.state
        .flags
        .set(forecastin_origin::flags::PREDICTIVE_PRELOAD, 0)
        .await
        .unwrap();
    let l1 = app.state.cache.l1.as_ref().unwrap();
    app.get("/api/v1/entities/JP").await;
    app.get("/api/v1/entities/FR/children").await;
    app.get("/api/v1/search?q=japan").await;
    let auvergne = app.get("/api/v1/search?q=auvergne").await.json();
    assert_eq!(TestApp::ids(&auvergne), ["FR-ARA"]);
    let cached = l1.len();
    let renamed = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/FR-ARA",
            Some(json!({"name": "AURA Region"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(
        l1.len(),
        cached - 2,
        "only FR's children page and the search matching the old name showed FR-ARA"
    );
    assert!(TestApp::ids(&app.get("/api/v1/search?q=auvergne").await.json()).is_empty());
    assert_eq!(
        TestApp::ids(&app.get("/api/v1/search?q=aura%20region").await.json()),
        ["FR-ARA"]
    );
    assert_eq!(app.get("/api/v1/entities/JP").await.status, StatusCode::OK);
}

/// 99 actors of 100 topics each under one new entity: a subtree of 10,000 nodes.
async fn grow_subtree(app: &TestApp, root: &str, parent: &str) {
    use forecastin_origin::hierarchy::write::{insert_rows, NewRow};
    use forecastin_shared::dto::EntityKind;
    let parent_row = app.state.hierarchy.entity(parent).await.unwrap().unwrap();
    let row = |id: String, parent_id: &str, parent_path: &str, depth: i64, kind| NewRow {
        path: format!("{parent_path}{id}/"),
        name: format!("Node {id}"),
        parent_id: Some(parent_id.to_owned()),
        id,
        kind,
        depth,
        attributes: "{}".to_owned(),
    };
    let top = row(
        root.to_owned(),
        parent,
        &parent_row.path,
        parent_row.depth + 1,
        EntityKind::Actor,
    );
    // Parents before children: the foreign key is checked row by row.
    let mut rows = vec![];
    let mut topics = vec![];
    for a in 0..99 {
        let actor = row(
            format!("{root}.a{a}"),
            root,
            &top.path,
            top.depth + 1,
            EntityKind::Actor,
        );
        for t in 0..100 {
            topics.push(row(
                format!("{root}.a{a}.t{t}"),
                &actor.id,
                &actor.path,
                actor.depth + 1,
                EntityKind::Topic,
            ));
        }
        rows.push(actor);
    }
    rows.insert(0, top);
    rows.extend(topics);
    let mut tx = app.state.hierarchy.db.begin_write().await.unwrap();
    assert_eq!(insert_rows(&mut tx, &rows, false).await.unwrap(), 10_000);
    tx.commit().await.unwrap();
}

async fn moving_a_subtree_of_ten_thousand_keeps_the_hierarchy_consistent(app: TestApp) {
    grow_subtree(&app, "big", "FR").await;
    let deep = "/api/v1/entities/big.a98.t99/ancestors";
    assert_eq!(app.get(deep).await.json()["items"][3]["id"], "FR");

    let moved = app
        .admin(
            Method::PATCH,
            "/admin/v1/entities/big",
            Some(json!({"parent_id": "DE"})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.json());

    let report = app
        .admin(Method::GET, "/admin/v1/hierarchy/consistency", None)
        .await;
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(report.json()["inconsistent"], 0, "{}", report.json());
    assert_eq!(report.json()["entities"], 5_405 + 10_000);
    let crumbs = app.get(deep).await.json();
    let ids = TestApp::ids(&crumbs);
    assert_eq!(ids[..4], ["world", "m49-150", "m49-155", "DE"], "{crumbs}");
    let below = app
        .all_pages("/api/v1/entities/big/descendants?limit=500&max_depth=2")
        .await;
    assert_eq!(below.len(), 9_999);
    assert!(app
        .all_pages("/api/v1/entities/FR/descendants?limit=500&max_depth=3")
        .await
        .iter()
        .all(|id| !id.starts_with("big")));
}

async fn the_consistency_checker_finds_a_corrupted_path(app: TestApp) {
    let clean = app.state.hierarchy.check_consistency().await.unwrap();
    assert_eq!((clean.entities, clean.inconsistent), (5_405, 0));
    sqlx::query("UPDATE entities SET path = '/world/FR-75/' WHERE id = 'FR-75'")
        .execute(app.state.hierarchy.db.primary.sqlx())
        .await
        .unwrap();
    let report = app.state.hierarchy.check_consistency().await.unwrap();
    assert_eq!(report.inconsistent, 1, "{report:?}");
    let finding = &report.examples[0];
    assert_eq!(finding.id, "FR-75");
    assert_eq!(finding.path, "/world/FR-75/");
    assert_eq!(
        finding.expected_path.as_deref(),
        Some("/world/m49-150/m49-155/FR/FR-IDF/FR-75/")
    );
}

/// RFC 6585 §3: a change to an existing entity must say which version it changes; creation
/// needs nothing; `*` overwrites whatever is there, explicitly.
async fn changes_without_if_match_get_428_and_change_nothing(app: TestApp) {
    let before = app.fingerprint().await;
    for (method, body) in [
        (Method::PATCH, Some(json!({"name": "Frankreich"}))),
        (Method::DELETE, None),
    ] {
        let mut request = axum::http::Request::builder()
            .method(method.clone())
            .uri("/admin/v1/entities/FR?cascade=true")
            .header("authorization", format!("Bearer {}", common::ADMIN_TOKEN))
            .header("content-type", "application/json");
        if method == Method::PATCH {
            request = request.uri("/admin/v1/entities/FR");
        }
        let body = body.map_or_else(String::new, |b| b.to_string());
        let response = app
            .send(request.body(axum::body::Body::from(body)).unwrap())
            .await;
        assert_eq!(
            response.status,
            StatusCode::PRECONDITION_REQUIRED,
            "{method}"
        );
        assert_eq!(response.json()["error"]["code"], "precondition_required");
    }
    assert_eq!(app.fingerprint().await, before);

    let created = app
        .admin(
            Method::POST,
            "/admin/v1/entities",
            Some(json!({"id": "FR-75.x", "parent_id": "FR-75", "kind": "actor", "name": "X"})),
        )
        .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "creation needs no If-Match"
    );
    let overwrite = app
        .admin_with(
            Method::PATCH,
            "/admin/v1/entities/FR-75.x",
            Some(json!({"name": "Y"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(overwrite.status, StatusCode::OK);
}
