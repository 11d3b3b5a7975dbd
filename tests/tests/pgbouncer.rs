//! The origin through PgBouncer (Debian's, session pooling): reads, writes, the purge outbox
//! and readiness all work, and every server connection is the pooler's.

use forecastin_e2e::{
    admin_json, get_json, pgbouncer::PgBouncer, postgres_server, psql, rename, Origin,
};

/// A database on the machine's server, dropped at the end even if the test fails.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

#[tokio::test]
async fn the_origin_reads_writes_and_purges_through_pgbouncer() {
    let server_port: u16 = postgres_server()
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .expect("TEST_POSTGRES_URL names a port");
    let bouncer = PgBouncer::start(server_port);
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
