//! The analyst load test (`load/locustfile.py`) run by Locust from the project's venv, for the
//! smoke runs in the test command.

use crate::repo_root;

/// What a run left: whether Locust exited well, and its JSON report.
pub struct LoadRun {
    pub succeeded: bool,
    pub report: serde_json::Value,
}

impl LoadRun {
    /// The names of the SLOs the run violated.
    pub fn failed_slos(&self) -> Vec<&str> {
        self.report["slos"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|slo| slo["ok"] != true)
            .filter_map(|slo| slo["name"].as_str())
            .collect()
    }
}

/// Runs Locust headless with `args` (host, users, run time, SLO file …) and reads its report.
pub async fn run_locust(args: &[&str]) -> LoadRun {
    let root = repo_root();
    let locust = root.join(".tools/venv/bin/locust");
    assert!(
        locust.exists(),
        "{} is missing: ./scripts/test installs it",
        locust.display()
    );
    let report = tempfile::NamedTempFile::new().unwrap();
    let status = tokio::process::Command::new(&locust)
        .current_dir(&root)
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
