//! The analyst load test's smoke run, in the test command: Locust (`load/locustfile.py`,
//! distributed over two worker processes) for 60 seconds after its warm-up against the edge in
//! workerd in front of the origin on PostgreSQL + Redis, judged by `load/slo-smoke.yaml` (no errors, edge hit ratio at least 99 % on the read mix,
//! no stale read after a completed purge).

use forecastin_e2e::{
    load::{run_locust, stack, SMOKE_MIX},
    ADMIN_TOKEN,
};

#[tokio::test]
async fn the_analyst_mix_meets_the_smoke_slos() {
    let (origin, edge) = stack(&[]).await;
    let run = run_locust(
        &[
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
            "--slo-file",
            "load/slo-smoke.yaml",
        ]
        .into_iter()
        .chain(SMOKE_MIX)
        .collect::<Vec<_>>(),
    )
    .await;
    let report = &run.report;
    let failed = run.failed_slos();
    assert!(
        run.succeeded && failed.is_empty(),
        "SLOs violated: {failed:?}\n{}",
        run.diagnosis(&origin, &edge)
    );
    assert!(
        report["overall"]["count"].as_u64().unwrap() > 1_000,
        "{report}"
    );
    // The master makes no reads itself: the edge's counts are the workers' tallies.
    assert!(
        report["edge"]["hits"].as_u64().unwrap() > 1_000,
        "the workers' tallies did not reach the report: {report}"
    );
    assert!(
        report["purges"]["count"].as_u64().unwrap() >= 1,
        "no edit ran, so no purge was checked: {report}"
    );
}
