//! The origin through PgBouncer (Debian's): in session pooling, and in transaction pooling as
//! deployed, where four origins of 16 connections each share 10 server connections. Reads,
//! writes, the purge outbox and readiness all work, and every server connection is the
//! pooler's.

use std::time::Duration;

use forecastin_e2e::{
    admin_json, admin_purge, get_json, pgbouncer::PgBouncer, postgres_server, psql, rename,
    wait_settled, Origin,
};
use futures_util::future::join_all;
use serde_json::json;

/// A database on the machine's server, dropped at the end even if the test fails.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

fn server_port() -> u16 {
    postgres_server()
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .expect("TEST_POSTGRES_URL names a port")
}

#[tokio::test]
async fn the_origin_reads_writes_and_purges_through_pgbouncer() {
    let bouncer = PgBouncer::start(server_port());
    let scratch = Scratch(format!("forecastin_test_pgbouncer_{}", std::process::id()));
    psql(&format!("CREATE DATABASE {}", scratch.0));
    let origin = Origin::start(&[
        ("DATABASE_URL", bouncer.url(&scratch.0).as_str()),
        ("L1_CAPACITY", "0"),
    ])
    .await;

    let entity = |id: &str| format!("{}/api/v1/entities/{id}", origin.url);
    assert_eq!(get_json(&entity("FR")).await["name"], "France");
    let crumbs = get_json(&format!("{}/ancestors", entity("FR-75"))).await;
    assert_eq!(crumbs["items"].as_array().unwrap().len(), 5);
    let purge_id = rename(&origin.url, "FR", "France (pooled)").await;
    assert_eq!(get_json(&entity("FR")).await["name"], "France (pooled)");
    let purge = admin_json(&origin, &format!("/admin/v1/purge/{purge_id}")).await;
    assert_eq!(purge["id"], purge_id.as_str(), "{purge}");
    assert_eq!(
        get_json(&format!("{}/readyz", origin.url)).await["status"],
        "ready"
    );

    // The pooler carried it: its pool for the database has server connections and its
    // statistics count the transactions.
    let pools = bouncer.admin("SHOW POOLS");
    assert!(pools.contains(&scratch.0), "SHOW POOLS: {pools}");
    let stats = bouncer.admin("SHOW STATS");
    let transactions: u64 = stats
        .lines()
        .find(|line| line.starts_with(&format!("{}|", scratch.0)))
        .and_then(|line| line.split('|').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no statistics for {} in {stats}", scratch.0));
    assert!(
        transactions >= 10,
        "{transactions} transactions through PgBouncer"
    );
    drop(origin);
}

/// GETs `url`; its status, 0 if it did not answer within a minute (a request that waits for
/// pooled connections, retried, can take a while on a busy machine: slow is not wrong here).
async fn status_of(url: String) -> u16 {
    forecastin_e2e::client()
        .get(&url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test]
async fn four_origins_share_ten_server_connections_in_transaction_pooling() {
    const SERVERS: u32 = 10;
    let bouncer = PgBouncer::start_pooling(server_port(), "transaction", SERVERS);
    let scratch = Scratch(format!("forecastin_test_txpool_{}", std::process::id()));
    psql(&format!("CREATE DATABASE {}", scratch.0));
    let url = bouncer.url(&scratch.0);
    let first = Origin::start(&[
        ("DATABASE_URL", url.as_str()),
        ("DB_TRANSACTION_POOLER", "true"),
        ("DB_MAX_CONNECTIONS", "16"),
        ("L1_CAPACITY", "0"),
    ])
    .await;
    let mut origins = vec![first];
    for _ in 0..3 {
        let sibling = origins[0].start_sibling(&[]).await;
        origins.push(sibling);
    }

    // Reads from all four at once, far more than the server connections (100 an origin,
    // 16 connections each), with writes, admin purges and readiness probes among them.
    let paths = [
        "/api/v1/entities/FR",
        "/api/v1/entities/FR-75/ancestors",
        "/api/v1/entities/world/children?limit=20",
        "/api/v1/entities/DE/children",
        "/api/v1/search?q=fra",
        "/api/v1/search?q=ber",
        "/readyz",
    ];
    let started = std::time::Instant::now();
    let reads = (0..400).map(|n| {
        let origin = &origins[n % origins.len()];
        status_of(format!("{}{}", origin.url, paths[n % paths.len()]))
    });
    let writes = (0..24).map(|n| {
        let base = origins[n % origins.len()].url.clone();
        async move {
            if n % 3 == 0 {
                admin_purge(&base, json!({ "tags": [format!("e:FR-{n}")] })).await
            } else {
                let id = ["SE", "NO", "DK", "FI"][n % 4];
                rename(&base, id, &format!("Pooled {n}")).await
            }
        }
    });
    let (statuses, purges) = tokio::join!(join_all(reads), join_all(writes));
    eprintln!(
        "400 reads and 24 writes in {:?}; SHOW POOLS: {:?}",
        started.elapsed(),
        bouncer.admin_rows("SHOW POOLS")
    );
    let failed: Vec<_> = statuses
        .iter()
        .enumerate()
        .filter(|(_, status)| **status != 200)
        .map(|(n, status)| (paths[n % paths.len()], *status))
        .collect();
    if !failed.is_empty() {
        for (n, origin) in origins.iter().enumerate() {
            let log = origin.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("origin {n} log, newest first:\n{}", tail.join("\n"));
        }
        panic!("{} reads failed: {failed:?}", failed.len());
    }
    for purge in &purges {
        let status = wait_settled(&origins[0], purge, Duration::from_secs(10)).await;
        for delivery in status["deliveries"].as_array().unwrap() {
            assert_eq!(delivery["status"], "delivered", "{status}");
        }
    }
    let mut names = Vec::new();
    for origin in &origins {
        let name = get_json(&format!("{}/api/v1/entities/FI", origin.url)).await["name"].clone();
        names.push(name.as_str().unwrap_or_default().to_owned());
    }
    assert!(names[0].starts_with("Pooled "), "{names:?}");
    assert!(names.iter().all(|name| *name == names[0]), "{names:?}");

    // PgBouncer held the line: never more server connections than its pool, every client
    // connection of the origins its own.
    let pool = bouncer
        .admin_rows("SHOW POOLS")
        .into_iter()
        .find(|row| row["database"] == scratch.0)
        .unwrap_or_else(|| panic!("no pool for {}", scratch.0));
    let count = |column: &str| pool[column].parse::<u32>().unwrap();
    let servers: u32 = ["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]
        .iter()
        .map(|column| count(column))
        .sum();
    eprintln!("SHOW POOLS: {pool:?}");
    assert!(servers <= SERVERS, "{servers} server connections: {pool:?}");
    assert!(
        count("cl_active") + count("cl_waiting") > SERVERS,
        "the origins' connections are PgBouncer's clients: {pool:?}"
    );
    drop(origins);
}
