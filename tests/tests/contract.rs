//! The API against its own OpenAPI description, by Schemathesis (`--checks all`, 60 examples
//! an operation, the stateful phase included) with `tests/contract/schemathesis.toml`, whose
//! allowances are the rules a schema cannot state: straight at the origin, every check
//! passes; through the edge in workerd, nothing is answered with a 5xx. `/ws` is a WebSocket,
//! which Schemathesis does not speak.

use forecastin_e2e::{repo_root, tool, Edge, Origin, ADMIN_TOKEN};

/// Runs Schemathesis on the description at `base` with `checks`; its exit status and output.
async fn schemathesis(base: &str, checks: &str) -> (bool, String) {
    let output = tokio::process::Command::new(tool("contract-venv/bin/st"))
        .current_dir(repo_root())
        .args([
            "--no-color",
            "--config-file",
            "tests/contract/schemathesis.toml",
        ])
        .args(["run", &format!("{base}/api/v1/openapi.json"), "--url", base])
        // One worker: Hypothesis describes strategies with Python's `ast`, whose recursion
        // check two threads can trip ("AST constructor recursion depth mismatch").
        .args(["--checks", checks, "--max-examples", "60", "--workers", "1"])
        .args(["--exclude-path", "/ws"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .output()
        .await
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), text)
}

#[tokio::test]
async fn the_origin_meets_its_description_and_the_edge_answers_no_5xx() {
    let origin = Origin::start(&[]).await;
    let (passed, report) = schemathesis(&origin.url, "all").await;
    assert!(passed, "straight at the origin:\n{report}");
    assert!(report.contains(" passed"), "{report}");

    let edge = Edge::start(&origin.url).await;
    let (passed, report) = schemathesis(&edge.url, "not_a_server_error").await;
    assert!(passed, "through the edge:\n{report}");
    edge.assert_no_panic();
}
