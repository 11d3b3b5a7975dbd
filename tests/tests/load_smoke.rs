//! The analyst load test's smoke run, in the test command: Locust (`load/locustfile.py`) for
//! about 30 seconds against the edge in workerd in front of the origin on PostgreSQL + Redis,
//! judged by `load/slo-smoke.yaml` (no errors, edge hit ratio at least 99 % on the read mix,
//! no stale read after a completed purge).

use forecastin_e2e::{
    free_port, load::run_locust, Backend, Edge, Origin, ADMIN_TOKEN, PURGE_SECRET,
};

#[tokio::test]
async fn the_analyst_mix_meets_the_smoke_slos() {
    let namespace = format!("smoke-{}-{}", std::process::id(), free_port());
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let origin = Origin::start_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_NAMESPACE", &namespace),
            ("PURGE_SECRET", PURGE_SECRET),
            ("EDGE_PURGE_URL", &purge_url),
            // As deployed: purges, not TTLs, keep the edge fresh.
            ("CACHE_S_MAXAGE", "3600"),
        ],
    )
    .await;
    let edge = Edge::start_on(edge_port, &origin.url).await;
    let run = run_locust(&[
        "--host",
        &edge.url,
        "--origin-url",
        &origin.url,
        "--admin-token",
        ADMIN_TOKEN,
        "-u",
        "20",
        "-r",
        "20",
        "-t",
        "90s",
        // Locust's clock runs through the warm-up (some 1,800 misses through the edge: 10 s
        // on 2026-11-28, 35 s and more on 2026-11-30), so the run leaves room for it. The run
        // sees a small working set: the 500 most popular entities, warmed first.
        "--catalogue-size",
        "500",
        "--edits-per-minute",
        "6",
        "--think-min",
        "0.02",
        "--think-max",
        "0.2",
        "--slo-file",
        "load/slo-smoke.yaml",
    ])
    .await;
    let report = &run.report;
    let failed = run.failed_slos();
    assert!(
        run.succeeded && failed.is_empty(),
        "SLOs violated: {failed:?}"
    );
    assert!(
        report["overall"]["count"].as_u64().unwrap() > 1_000,
        "{report}"
    );
    assert!(
        report["purges"]["count"].as_u64().unwrap() >= 1,
        "no edit ran, so no purge was checked: {report}"
    );
}
