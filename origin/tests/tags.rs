//! The cache-tag scheme checked against the data: after each kind of write, every page whose
//! content changed carries a tag the write purges (else a CDN would keep serving it), and the
//! pages a write cannot change are left cached where the scheme says so.
//!
//! The origin runs without L1, so each read renders from the database: a page a purge missed
//! would still show its new content here, and be caught.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{json, Value};

/// A page as a CDN would hold it: its status and body, and the tags it was served with.
#[derive(PartialEq)]
struct Page {
    status: StatusCode,
    body: Vec<u8>,
    tags: Vec<String>,
}

/// Searches an analyst of the demo data would type.
const QUERIES: [&str; 6] = ["fr", "par", "west", "eur", "nor", "ile"];

/// The pages about the entities down Europe's branch (regions, Europe's sub-regions, their
/// countries, and France's whole subtree): each one's page, breadcrumb, first page of
/// children and of descendants, and the searches.
async fn pages_of_interest(app: &TestApp) -> Vec<String> {
    let mut entities = vec!["world".to_owned()];
    let mut queue = vec!["world".to_owned()];
    while let Some(parent) = queue.pop() {
        for child in app
            .all_pages(&format!("/api/v1/entities/{parent}/children?limit=500"))
            .await
        {
            let expand = ["world", "m49-150", "m49-155", "m49-154"].contains(&parent.as_str())
                || child.starts_with("FR");
            if expand {
                queue.push(child.clone());
            }
            entities.push(child);
        }
    }
    let mut uris: Vec<String> = entities
        .iter()
        .flat_map(|id| {
            ["", "/ancestors", "/children", "/descendants"]
                .map(|suffix| format!("/api/v1/entities/{id}{suffix}"))
        })
        .collect();
    uris.extend(QUERIES.map(|q| format!("/api/v1/search?q={q}")));
    uris
}

async fn snapshot(app: &TestApp, uris: &[String]) -> BTreeMap<String, Page> {
    let mut pages = BTreeMap::new();
    for uri in uris {
        let response = app.get(uri).await;
        let tags = response
            .headers
            .get("cache-tag")
            .map(|v| v.to_str().unwrap().split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        pages.insert(
            uri.clone(),
            Page {
                status: response.status,
                body: response.body,
                tags,
            },
        );
    }
    pages
}

/// What one write did to the pages: those it changed, and those it purged.
struct Effect {
    changed: BTreeSet<String>,
    purged: BTreeSet<String>,
}

/// Makes the write, and checks that every page it changed carries a tag it purges.
async fn write(
    app: &TestApp,
    uris: &[String],
    (method, uri, body): (Method, &str, Option<Value>),
) -> Effect {
    let before = snapshot(app, uris).await;
    let written = app.admin(method, uri, body).await;
    assert!(written.status.is_success(), "{uri}: {}", written.status);
    let purge_id = written.header("forecastin-purge-id").to_owned();
    let record = app
        .admin(Method::GET, &format!("/admin/v1/purge/{purge_id}"), None)
        .await
        .json();
    let purged_tags: BTreeSet<String> = record["request"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let after = snapshot(app, uris).await;
    let mut effect = Effect {
        changed: BTreeSet::new(),
        purged: BTreeSet::new(),
    };
    for (page_uri, old) in &before {
        let new = &after[page_uri];
        let purged = old.tags.iter().any(|tag| purged_tags.contains(tag));
        if (old.status, &old.body) != (new.status, &new.body) {
            assert!(
                purged,
                "{uri} changed {page_uri} (tags {:?}) but purged only {purged_tags:?}",
                old.tags
            );
            effect.changed.insert(page_uri.clone());
        }
        if purged {
            effect.purged.insert(page_uri.clone());
        }
    }
    eprintln!(
        "{uri}: {} of {} pages changed, {} purged",
        effect.changed.len(),
        before.len(),
        effect.purged.len()
    );
    effect
}

async fn every_page_a_write_changes_carries_a_tag_it_purges(app: TestApp) {
    let uris = pages_of_interest(&app).await;
    assert!(uris.len() > 100, "only {} pages", uris.len());
    let below_france =
        |uri: &str, suffix: &str| uri.starts_with("/api/v1/entities/FR-") && uri.ends_with(suffix);

    // A rename shows in the breadcrumbs below, in nothing else below.
    let renamed = write(
        &app,
        &uris,
        (
            Method::PATCH,
            "/admin/v1/entities/m49-155",
            Some(json!({"name": "Westeuropa"})),
        ),
    )
    .await;
    assert!(renamed.purged.contains("/api/v1/entities/FR-75/ancestors"));
    assert!(!renamed.purged.contains("/api/v1/entities/FR-75"));
    assert!(!renamed.purged.contains("/api/v1/entities/FR-IDF/children"));

    // A move to a parent at the same depth changes the paths below, not the depths.
    let moved = write(
        &app,
        &uris,
        (
            Method::PATCH,
            "/admin/v1/entities/FR",
            Some(json!({"parent_id": "m49-154"})),
        ),
    )
    .await;
    assert!(moved.purged.contains("/api/v1/entities/FR-75/ancestors"));
    let kept: Vec<&String> = moved
        .purged
        .iter()
        .filter(|uri| below_france(uri, "FR-75") || below_france(uri, "/children"))
        .collect();
    assert!(kept.is_empty(), "a same-depth move purged {kept:?}");
    assert!(
        !moved.purged.contains("/api/v1/search?q=par"),
        "a same-depth move purged searches that cannot show the moved node"
    );

    // A move to another depth changes every depth below, and the moved node's own lists.
    let deeper = write(
        &app,
        &uris,
        (
            Method::PATCH,
            "/admin/v1/entities/FR-IDF",
            Some(json!({"parent_id": "m49-155"})),
        ),
    )
    .await;
    assert!(deeper.changed.contains("/api/v1/entities/FR-IDF/children"));
    assert!(deeper.changed.contains("/api/v1/entities/FR-75"));

    let created = write(
        &app,
        &uris,
        (
            Method::POST,
            "/admin/v1/entities",
            Some(
                json!({"id": "FR-75.t1", "parent_id": "FR-75", "kind": "topic",
                        "name": "Tramways de Paris", "attributes": {}}),
            ),
        ),
    )
    .await;
    assert!(created.changed.contains("/api/v1/entities/FR-75/children"));

    let deleted = write(
        &app,
        &uris,
        (
            Method::DELETE,
            "/admin/v1/entities/FR-IDF?cascade=true",
            None,
        ),
    )
    .await;
    assert!(deleted.changed.contains("/api/v1/entities/FR-75"));
}

#[tokio::test]
async fn on_sqlite() {
    every_page_a_write_changes_carries_a_tag_it_purges(
        TestApp::sqlite_with(&["--l1-capacity", "0"]).await,
    )
    .await;
}

#[tokio::test]
async fn on_postgres() {
    every_page_a_write_changes_carries_a_tag_it_purges(
        TestApp::postgres_with(&["--l1-capacity", "0"]).await,
    )
    .await;
}
