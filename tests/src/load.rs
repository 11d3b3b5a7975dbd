//! The analyst load test (`load/locustfile.py`) run by Locust from the project's venv, for the
//! smoke runs in the test command.

use crate::{free_port, repo_root, tool, Backend, Edge, Origin, PURGE_SECRET};

/// The stack a load run drives: an origin on PostgreSQL and Redis (a namespace of its own)
/// that purges the edge in workerd in front of it, where purges, not TTLs, keep the edge fresh
/// (as deployed); `env` on top.
pub async fn stack(env: &[(&str, &str)]) -> (Origin, Edge) {
    let namespace = format!("load-{}-{}", std::process::id(), free_port());
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let mut all = vec![
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", namespace.as_str()),
        ("PURGE_SECRET", PURGE_SECRET),
        ("EDGE_PURGE_URL", purge_url.as_str()),
        ("CACHE_S_MAXAGE", "3600"),
    ];
    all.extend_from_slice(env);
    let origin = Origin::start_with(Backend::Postgres, &all).await;
    let edge = Edge::start_on(edge_port, &origin.url).await;
    (origin, edge)
}

/// The smoke runs' mix: 60 s measured after the warm-up (some 1,800 misses through the edge:
/// 10 s on 2026-11-28, 35 s and more on 2026-11-30), by a master and two worker processes; a
/// small working set (the 500 most popular entities, warmed first), short think times, an
/// edit every 10 s.
pub const SMOKE_MIX: [&str; 12] = [
    "--measure",
    "60s",
    "--processes",
    "2",
    "--catalogue-size",
    "500",
    "--edits-per-minute",
    "6",
    "--think-min",
    "0.02",
    "--think-max",
    "0.2",
];

/// What a run left: whether Locust exited well, and its JSON report.
pub struct LoadRun {
    pub succeeded: bool,
    pub report: serde_json::Value,
}

impl LoadRun {
    /// What a failed run's message needs for its cause to be found when it recurs: the SLOs it
    /// missed with their values, the requests that failed and why, the seconds whose reads
    /// were slow or mostly misses, and what the origin and the edge logged as warnings or
    /// errors.
    pub fn diagnosis(&self, origin: &Origin, edge: &Edge) -> String {
        let report = &self.report;
        let missed: Vec<&serde_json::Value> = self.missed_slos().collect();
        let timeline = &report["timeline"];
        let column = |name: &str| timeline[name].as_array().cloned().unwrap_or_default();
        let (seconds, hits, misses, p95) = (
            column("seconds"),
            column("edge_hits"),
            column("edge_misses"),
            column("read_p95_ms"),
        );
        let troubled: Vec<String> = (0..seconds.len())
            .filter(|&n| {
                let number = |column: &[serde_json::Value]| {
                    column.get(n).and_then(|v| v.as_f64()).unwrap_or(0.0)
                };
                let (hit, miss) = (number(&hits), number(&misses));
                miss > hit || number(&p95) > 500.0
            })
            .map(|n| {
                let at = |column: &[serde_json::Value]| column.get(n).cloned().unwrap_or_default();
                format!(
                    "t={} hits={} misses={} p95_ms={}",
                    seconds[n],
                    at(&hits),
                    at(&misses),
                    at(&p95)
                )
            })
            .collect();
        let warnings = |log: String| -> String {
            let lines: Vec<&str> = log
                .lines()
                .filter(|line| {
                    ["WARN", "ERROR", "warn", "error", "panic"]
                        .iter()
                        .any(|w| line.contains(w))
                })
                .collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "SLOs missed: {missed:#?}\nfailed requests: {failures:#}\nslow or missing seconds: \
             {troubled:#?}\noverall: {overall}\nedge: {edge_counts}\norigin: {origin_counts}\n\
             purges: {purges}\norigin warnings (last 40):\n{origin_log}\nedge warnings (last \
             40):\n{edge_log}",
            failures = report["failures"],
            overall = report["overall"],
            edge_counts = report["edge"],
            origin_counts = report["origin"],
            purges = report["purges"],
            origin_log = warnings(origin.log()),
            edge_log = warnings(edge.log()),
        )
    }

    /// The names of the SLOs the run violated.
    pub fn failed_slos(&self) -> Vec<&str> {
        self.missed_slos()
            .filter_map(|slo| slo["name"].as_str())
            .collect()
    }

    /// The verdicts of the SLOs the run violated.
    fn missed_slos(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.report["slos"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|slo| slo["ok"] != true)
    }
}

/// Runs Locust headless with `args` (host, users, run time, SLO file …) and reads its report.
pub async fn run_locust(args: &[&str]) -> LoadRun {
    let report = tempfile::NamedTempFile::new().unwrap();
    let status = tokio::process::Command::new(tool("venv/bin/locust"))
        .current_dir(repo_root())
        .args(["-f", "load/locustfile.py", "--headless", "--only-summary"])
        .args(args)
        .arg("--report")
        .arg(report.path())
        .status()
        .await
        .expect("locust runs");
    let report =
        serde_json::from_slice(&std::fs::read(report.path()).unwrap()).expect("a JSON report");
    LoadRun {
        succeeded: status.success(),
        report,
    }
}
