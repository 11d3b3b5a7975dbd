//! The public read API on the real ISO 3166 data, with its caching contract.

mod common;

use axum::{body::Body, http::Request, http::StatusCode};
use common::TestApp;

forecastin_e2e::on_both_backends!(
    setup = common::TestApp::on;
    ancestors_of_france_are_the_real_hierarchy_with_the_caching_contract,
    a_conditional_get_with_the_current_etag_gets_304,
    children_pages_cover_every_child_once_in_name_order,
    descendants_go_level_by_level_and_respect_max_depth,
    search_finds_by_substring_and_treats_sql_as_data,
    search_pages_are_every_match_in_order_whichever_index_finds_them,
    search_stays_exact_when_writes_crowd_one_place_in_name_order,
    search_is_exact_where_every_trigram_is_common_and_the_matches_far,
    search_finds_what_an_older_release_wrote_once_a_write_comes,
    a_second_read_is_served_from_l1,
);

async fn ancestors_of_france_are_the_real_hierarchy_with_the_caching_contract(app: TestApp) {
    let response = app.get("/api/v1/entities/FR/ancestors").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        TestApp::ids(&response.json()),
        ["world", "m49-150", "m49-155"]
    );
    assert_eq!(response.json()["items"][1]["name"], "Europe");
    let cache_control = response.header("cache-control");
    for directive in [
        "public",
        "s-maxage=60",
        "stale-while-revalidate=30",
        "stale-if-error=",
    ] {
        assert!(cache_control.contains(directive), "{cache_control}");
    }
    assert!(response.header("etag").starts_with('"'));
    assert_eq!(
        response.header("cache-tag"),
        "e:FR,s:world,s:m49-150,s:m49-155"
    );
    assert_eq!(
        response.header("surrogate-key"),
        "e:FR s:world s:m49-150 s:m49-155"
    );

    let paris = app.get("/api/v1/entities/FR-75").await.json();
    assert_eq!(paris["name"], "Paris");
    assert_eq!(paris["parent_id"], "FR-IDF");
    assert_eq!(paris["depth"], 5);
    assert_eq!(paris["attributes"]["type"], "Metropolitan department");
}

async fn a_conditional_get_with_the_current_etag_gets_304(app: TestApp) {
    let first = app.get("/api/v1/entities/DE").await;
    let etag = first.header("etag").to_owned();
    let request = Request::get("/api/v1/entities/DE")
        .header("if-none-match", &etag)
        .body(Body::empty())
        .unwrap();
    let second = app.send(request).await;
    assert_eq!(second.status, StatusCode::NOT_MODIFIED);
    assert!(second.body.is_empty());
    assert!(
        !second.headers.contains_key("content-type"),
        "a cache would merge it into the stored JSON response"
    );
    assert_eq!(second.header("etag"), etag);
    assert!(second.header("cache-control").contains("s-maxage"));

    let other = Request::get("/api/v1/entities/DE")
        .header("if-none-match", "\"something-else\"")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(other).await.status, StatusCode::OK);
}

async fn children_pages_cover_every_child_once_in_name_order(app: TestApp) {
    let ids = app.all_pages("/api/v1/entities/FR/children?limit=4").await;
    let expected: Vec<String> =
        sqlx::query_scalar("SELECT id FROM entities WHERE parent_id = 'FR' ORDER BY name, id")
            .fetch_all(app.state.hierarchy.db.primary.sqlx())
            .await
            .unwrap();
    assert!(
        expected.len() > 4,
        "France has regions and overseas territories"
    );
    assert_eq!(ids, expected);
    let first = app.get("/api/v1/entities/FR/children?limit=4").await;
    assert!(first.header("cache-tag").starts_with("c:FR,"));
}

async fn descendants_go_level_by_level_and_respect_max_depth(app: TestApp) {
    let countries = app
        .get("/api/v1/entities/m49-155/descendants?max_depth=1")
        .await
        .json();
    assert_eq!(
        TestApp::ids(&countries),
        ["AT", "BE", "CH", "DE", "FR", "LI", "LU", "MC", "NL"]
    );

    let all = app
        .all_pages("/api/v1/entities/FR/descendants?limit=7")
        .await;
    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM entities WHERE path > '/world/m49-150/m49-155/FR/' \
         AND path < '/world/m49-150/m49-155/FR0' ORDER BY depth, path",
    )
    .fetch_all(app.state.hierarchy.db.primary.sqlx())
    .await
    .unwrap();
    assert!(expected.len() > 100);
    assert_eq!(all, expected);

    let two_levels = app
        .all_pages("/api/v1/entities/m49-150/descendants?limit=50&max_depth=2")
        .await;
    assert!(two_levels.contains(&"FR".to_owned()));
    assert!(!two_levels.iter().any(|id| id.starts_with("FR-")));
}

async fn search_finds_by_substring_and_treats_sql_as_data(app: TestApp) {
    let paris = app.get("/api/v1/search?q=PARIS").await.json();
    assert!(TestApp::ids(&paris).contains(&"FR-75".to_owned()));

    let before = app.fingerprint().await;
    for hostile in [
        "%27%3B%20DROP%20TABLE%20entities%3B%20--",
        "%25",
        "_",
        "%5C",
        "x%27%20OR%20%271%27%3D%271",
    ] {
        let response = app.get(&format!("/api/v1/search?q={hostile}")).await;
        assert_eq!(response.status, StatusCode::OK, "{hostile}");
        assert_eq!(
            TestApp::ids(&response.json()),
            Vec::<String>::new(),
            "{hostile}"
        );
    }
    assert_eq!(app.fingerprint().await, before);

    // One or two characters match names that start with them (bounded by an index), not
    // names that contain them.
    let fr = app.get("/api/v1/search?q=Fr&limit=100").await.json();
    let names: Vec<&str> = fr["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"France"), "{names:?}");
    assert!(
        names.iter().all(|n| n.to_lowercase().starts_with("fr")),
        "{names:?}"
    );
    let africa = app.get("/api/v1/search?q=fri&limit=100").await.json();
    assert!(
        TestApp::ids(&africa).contains(&"ZA".to_owned()),
        "three characters match inside names (South Africa): {africa}"
    );

    let pages = app.all_pages("/api/v1/search?q=saint&limit=10").await;
    assert!(pages.len() > 10, "several pages of places named Saint…");
    let unique: std::collections::HashSet<_> = pages.iter().collect();
    assert_eq!(unique.len(), pages.len());
}

/// Whichever way a search finds its rows (a prefix range, or a trigram index in rank order),
/// its pages are every match in `(search_name, id)` order, as a scan of the table finds them.
async fn search_pages_are_every_match_in_order_whichever_index_finds_them(app: TestApp) {
    let every_match = |q: &'static str| {
        let pattern = forecastin_origin::hierarchy::search_pattern(q);
        let pool = app.state.hierarchy.db.primary.sqlx().clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM entities WHERE search_name LIKE $1 ESCAPE '\\' \
                 ORDER BY search_name, id",
            )
            .bind(pattern)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    // Common, rare, none, quotes and FTS5 syntax.
    for q in [
        "fr", "î", "ain", "saint", "paris", "île", "zzq", "a\"b", "or*", "de-",
    ] {
        let expected = every_match(q).await;
        for limit in [3, 100] {
            let encoded: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
            let pages = app
                .all_pages(&format!("/api/v1/search?q={encoded}&limit={limit}"))
                .await;
            assert_eq!(pages, expected, "q={q} limit={limit}");
        }
    }
    // A substring that 2,100 names share, loaded in bulk (without ranks), then
    // numbered as the origin does at start.
    let walkways: Vec<(String, String)> = (0..2_100)
        .map(|n| {
            let name = if n % 2 == 0 {
                format!("Walkway {n:04}")
            } else {
                format!("Old walkway {n:04}")
            };
            (format!("walk-{n}"), name)
        })
        .collect();
    load_in_bulk(&app, &walkways).await;
    let expected = every_match("walkway").await;
    assert_eq!(expected.len(), 2_100);
    let pages = app.all_pages("/api/v1/search?q=walkway&limit=100").await;
    assert_eq!(pages, expected);

    // A rename reaches the trigram index (on SQLite, through its triggers): the new name is
    // found, the old one no longer.
    let renamed = app
        .admin(
            axum::http::Method::PATCH,
            "/admin/v1/entities/FR-75",
            Some(serde_json::json!({ "name": "Zyzzyva" })),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let found = app.get("/api/v1/search?q=zyzzy").await.json();
    assert_eq!(TestApp::ids(&found), ["FR-75"]);
    let paris = app.all_pages("/api/v1/search?q=paris&limit=100").await;
    assert!(!paris.contains(&"FR-75".to_owned()), "{paris:?}");
    assert_eq!(paris, every_match("paris").await);
}

/// Names created one after another at one place in name order use up the gap between two
/// ranks (about 32 fit): windows of neighbours are renumbered, and renames and deletes move
/// and drop ranks, and (on PostgreSQL) chunks of postings split. Search still finds every
/// match in order, and ranks follow name order.
async fn search_stays_exact_when_writes_crowd_one_place_in_name_order(app: TestApp) {
    let create = |id: String, name: String| {
        let app = &app;
        async move {
            let created = app
                .admin(
                    axum::http::Method::POST,
                    "/admin/v1/entities",
                    Some(serde_json::json!({
                        "id": id, "parent_id": "FR-75", "kind": "topic", "name": name
                    })),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{id}");
        }
    };
    let pool = app.state.hierarchy.db.primary.sqlx().clone();
    let ranks_now = || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<i64>)>("SELECT id, name_rank FROM entities")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let before: std::collections::HashMap<String, Option<i64>> =
        ranks_now().await.into_iter().collect();
    // Ascending, each right after the one before; then descending, each right before.
    const CROWD: usize = 130; // twice over, past the 256 ranks of a chunk
    for n in 0..CROWD {
        create(format!("up-{n}"), format!("Paris crowd {n:03}")).await;
    }
    for n in (0..CROWD).rev() {
        create(format!("down-{n}"), format!("Paris crowd {n:03}b")).await;
    }
    for n in (0..CROWD).step_by(4) {
        let renamed = app
            .admin(
                axum::http::Method::PATCH,
                &format!("/admin/v1/entities/up-{n}"),
                Some(serde_json::json!({ "name": format!("Paris crowd {:03}c", CROWD - n) })),
            )
            .await;
        assert_eq!(renamed.status, StatusCode::OK);
    }
    for n in (1..CROWD).step_by(5) {
        let deleted = app
            .admin(
                axum::http::Method::DELETE,
                &format!("/admin/v1/entities/down-{n}"),
                None,
            )
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    }
    // A subtree at once (on PostgreSQL its postings leave per statement).
    let deleted = app
        .admin(
            axum::http::Method::DELETE,
            "/admin/v1/entities/JP?cascade=true",
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let renumbered = ranks_now()
        .await
        .into_iter()
        .filter(|(id, rank)| before.get(id).is_some_and(|old| old != rank))
        .count();
    assert!(renumbered > 0, "the crowding renumbered neighbours");
    if app.state.hierarchy.db.backend == forecastin_origin::db::Backend::Postgres {
        // The postings hold exactly each ranked name's trigrams, in chunks that do not overlap.
        let differing: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM ((\
               SELECT trigram, unnest(ranks) FROM search_postings \
               EXCEPT SELECT search_trigrams(search_name), name_rank FROM entities\
             ) UNION ALL (\
               SELECT search_trigrams(search_name), name_rank FROM entities \
               EXCEPT SELECT trigram, unnest(ranks) FROM search_postings)) differing",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(differing, 0);
        let misplaced: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT chunk, ranks, \
               LEAD(chunk) OVER (PARTITION BY trigram ORDER BY chunk) AS next \
               FROM search_postings) c \
             WHERE ranks[1] < chunk OR ranks[cardinality(ranks)] >= next \
             OR ranks <> ARRAY(SELECT r FROM unnest(ranks) r ORDER BY r)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(misplaced, 0);
        assert!(chunks_of(&app, "cro").await > 1, "a chunk split");
    }
    let by_name: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT id, name_rank FROM entities ORDER BY search_name, id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let ranks: Vec<i64> = by_name.iter().map(|(_, rank)| rank.unwrap()).collect();
    assert!(
        ranks.windows(2).all(|pair| pair[0] < pair[1]),
        "ranks follow names"
    );
    for q in ["paris crowd", "crowd 01", "d 104b", "rowd 0"] {
        let expected: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM entities WHERE search_name LIKE $1 ESCAPE '\\' \
             ORDER BY search_name, id",
        )
        .bind(forecastin_origin::hierarchy::search_pattern(q))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(!expected.is_empty(), "{q}");
        let encoded: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let pages = app
            .all_pages(&format!("/api/v1/search?q={encoded}&limit=7"))
            .await;
        assert_eq!(pages, expected, "q={q}");
    }
}

/// Early names hold every trigram of `zzzq` (and of `zzq azzq`) but neither substring; only
/// late names, more than a page holds, contain `zzzq`. The trigram lists give the early names
/// as candidates, the check against each name drops them, and both searches come out exact.
async fn search_is_exact_where_every_trigram_is_common_and_the_matches_far(app: TestApp) {
    let topics: Vec<(String, String)> = (0..2_100)
        .flat_map(|n| {
            [
                (format!("early-{n:04}"), format!("Azzq azzz {n:04}")),
                (format!("late-{n:04}"), format!("Zzzq {n:04}")),
            ]
        })
        .collect();
    load_in_bulk(&app, &topics).await;
    let pool = app.state.hierarchy.db.primary.sqlx().clone();
    let late: Vec<String> = (0..2_100).map(|n| format!("late-{n:04}")).collect();
    assert_eq!(app.all_pages("/api/v1/search?q=zzzq&limit=100").await, late);
    let first = app.get("/api/v1/search?q=zzzq&limit=5").await.json();
    assert_eq!(TestApp::ids(&first), late[..5]);
    let none = app.get("/api/v1/search?q=zzq%20azzq").await.json();
    assert!(TestApp::ids(&none).is_empty());

    // A delete of thousands leaves its postings on PostgreSQL; results do not change.
    sqlx::query("DELETE FROM entities WHERE id LIKE 'early-%'")
        .execute(&pool)
        .await
        .unwrap();
    if app.state.hierarchy.db.backend == forecastin_origin::db::Backend::Postgres {
        assert!(
            chunks_of(&app, "azz").await > 0,
            "the postings of a delete of thousands stay"
        );
    }
    assert_eq!(app.all_pages("/api/v1/search?q=zzzq&limit=100").await, late);
    let early = app.get("/api/v1/search?q=azzq").await.json();
    assert!(TestApp::ids(&early).is_empty());
}

/// During a rolling deploy the previous release writes without ranks: a create leaves none,
/// a rename keeps the old one (which a trigger then clears). The next write of this
/// release places them, and search finds them where they sort.
async fn search_finds_what_an_older_release_wrote_once_a_write_comes(app: TestApp) {
    let pool = app.state.hierarchy.db.primary.sqlx().clone();
    sqlx::query(
        "INSERT INTO entities (id, parent_id, kind, name, search_name, path, depth, attributes, \
         version, updated_at) VALUES ('old-1', 'world', 'topic', 'Qwzx older', 'qwzx older', \
         '/world/old-1/', 1, '{}', 1, '2026-12-07T00:00:00Z')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Several releases side by side run on PostgreSQL only.
    let rolling = app.state.hierarchy.db.backend == forecastin_origin::db::Backend::Postgres;
    if rolling {
        sqlx::query(
            "UPDATE entities SET name = 'Qwzx renamed', search_name = 'qwzx renamed' \
             WHERE id = 'FR-75'",
        )
        .execute(&pool)
        .await
        .unwrap();
    }
    let created = app
        .admin(
            axum::http::Method::POST,
            "/admin/v1/entities",
            Some(serde_json::json!({
                "id": "new-1", "parent_id": "world", "kind": "topic", "name": "Qwzx newer"
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let found = app.all_pages("/api/v1/search?q=qwzx&limit=2").await;
    let expected = if rolling {
        vec!["new-1", "old-1", "FR-75"]
    } else {
        vec!["new-1", "old-1"]
    };
    assert_eq!(found, expected);
    let ranks: Vec<Option<i64>> =
        sqlx::query_scalar("SELECT name_rank FROM entities ORDER BY search_name, id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let ranks: Vec<i64> = ranks.into_iter().map(Option::unwrap).collect();
    assert!(
        ranks.windows(2).all(|pair| pair[0] < pair[1]),
        "ranks follow names"
    );
}

/// Inserts topics under the root as a bulk load does (no search ranks), then numbers them as
/// the origin does at start.
async fn load_in_bulk(app: &TestApp, topics: &[(String, String)]) {
    let values: Vec<String> = topics
        .iter()
        .map(|(id, name)| {
            format!(
                "('{id}', 'world', 'topic', '{name}', '{}', '/world/{id}/', 1, '{{}}', 1, \
                 '2026-12-07T00:00:00Z')",
                name.to_lowercase()
            )
        })
        .collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO entities (id, parent_id, kind, name, search_name, path, depth, attributes, \
         version, updated_at) VALUES {}",
        values.join(", ")
    )))
    .execute(app.state.hierarchy.db.primary.sqlx())
    .await
    .unwrap();
    assert!(
        forecastin_origin::hierarchy::ranks::heal(&app.state.hierarchy.db)
            .await
            .unwrap()
    );
}

/// How many chunks of postings `trigram` has (PostgreSQL).
async fn chunks_of(app: &TestApp, trigram: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM search_postings WHERE trigram = $1")
        .bind(trigram)
        .fetch_one(app.state.hierarchy.db.primary.sqlx())
        .await
        .unwrap()
}

async fn a_second_read_is_served_from_l1(app: TestApp) {
    let l1 = app.state.cache.l1.as_ref().expect("L1 is on by default");
    let before = l1.len();
    let first = app.get("/api/v1/entities/JP/ancestors").await;
    assert_eq!(l1.len(), before + 1);
    // With the database gone, only L1 can answer.
    app.state.hierarchy.db.primary.sqlx().close().await;
    let second = app.get("/api/v1/entities/JP/ancestors").await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("etag"), first.header("etag"));
}

/// A body over `CACHE_MAX_BODY_BYTES` is served whole but kept in no tier; small ones are.
#[tokio::test]
async fn bodies_over_the_cap_are_served_but_not_cached() {
    let app = common::TestApp::sqlite_with(&["--max-body-bytes", "2000"]).await;
    let l1 = app.state.cache.l1.clone().expect("L1 is on");
    let big = app
        .get("/api/v1/entities/world/descendants?limit=200")
        .await;
    assert_eq!(big.status, axum::http::StatusCode::OK);
    assert!(big.body.len() > 2_000, "{} bytes", big.body.len());
    assert_eq!(l1.len(), 0, "not kept");
    let small = app.get("/api/v1/entities/FR").await;
    assert!(small.body.len() < 2_000);
    assert_eq!(l1.len(), 1, "kept");
}
