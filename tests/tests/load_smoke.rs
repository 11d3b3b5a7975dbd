//! The analyst load test's smoke run, in the test command: Locust (`load/locustfile.py`) for
//! about 30 seconds against the edge in workerd in front of the origin on PostgreSQL + Redis,
//! judged by `load/slo-smoke.yaml` (no errors, edge hit ratio at least 99 % on the read mix,
//! no stale read after a completed purge).

use forecastin_e2e::{free_port, repo_root, Backend, Edge, Origin, ADMIN_TOKEN, PURGE_SECRET};

#[tokio::test]
async fn the_analyst_mix_meets_the_smoke_slos() {
    let root = repo_root();
    let locust = root.join(".tools/venv/bin/locust");
    assert!(
        locust.exists(),
        "{} is missing: ./scripts/test installs it",
        locust.display()
    );
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
    let report = tempfile::NamedTempFile::new().unwrap();

    let status = tokio::process::Command::new(&locust)
        .current_dir(&root)
        .args(["-f", "load/locustfile.py", "--headless", "--only-summary"])
        .args(["--host", &edge.url, "--origin-url", &origin.url])
        .args([
            "--admin-token",
            ADMIN_TOKEN,
            "-u",
            "20",
            "-r",
            "20",
            "-t",
            "90s",
        ])
        // Locust's clock runs through the warm-up (some 1,800 misses through the edge: 10 s
        // on 2026-11-28, 35 s and more on 2026-11-30), so the run leaves room for it. The run
        // sees a small working set: the 500 most popular entities, warmed first.
        .args(["--catalogue-size", "500", "--edits-per-minute", "6"])
        .args(["--think-min", "0.02", "--think-max", "0.2"])
        .args(["--slo-file", "load/slo-smoke.yaml"])
        .arg("--report")
        .arg(report.path())
        .status()
        .await
        .expect("locust runs");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path()).unwrap()).expect("a JSON report");
    let failed: Vec<&str> = report["slos"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|slo| slo["ok"] != true)
        .map(|slo| slo["name"].as_str().unwrap())
        .collect();
    assert!(
        status.success() && failed.is_empty(),
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
