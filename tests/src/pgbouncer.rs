//! PgBouncer, Debian's, in front of the machine's PostgreSQL, private to one test: a config
//! in a temporary directory, one process on a free port, killed on drop. Session pooling, or
//! transaction pooling (the origin with `DB_TRANSACTION_POOLER`), with the deployed keepalives.

use std::process::{Child, Command, Stdio};

use crate::free_port;

pub struct PgBouncer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer in session pooling in front of the server at `127.0.0.1:server_port`.
    pub fn start(server_port: u16) -> PgBouncer {
        Self::start_pooling(server_port, "session", 8)
    }

    /// Starts PgBouncer in front of the server at `127.0.0.1:server_port`, pooling `mode`
    /// (`session` or `transaction`) over at most `servers` server connections.
    pub fn start_pooling(server_port: u16, mode: &str, servers: u32) -> PgBouncer {
        let dir = tempfile::Builder::new()
            .prefix("forecastin-pgbouncer-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            path("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
                 admin_users = postgres\npool_mode = {mode}\ndefault_pool_size = {servers}\n\
                 max_client_conn = 500\nserver_reset_query_always = 1\n\
                 tcp_keepalive = 1\ntcp_keepidle = 30\ntcp_keepintvl = 10\ntcp_keepcnt = 5\n\
                 ignore_startup_parameters = extra_float_digits, options\n",
                users = path("users.txt"),
            ),
        )
        .unwrap();
        // PgBouncer refuses to run as root.
        let mut command = if crate::replica::running_as_root() {
            Command::new("chown")
                .args(["-R", "postgres:", &dir.path().display().to_string()])
                .status()
                .unwrap();
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", "pgbouncer"]);
            command
        } else {
            Command::new("pgbouncer")
        };
        let child = command
            .arg(path("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer runs (./scripts/test installs it)");
        let pgbouncer = PgBouncer { port, dir, child };
        let started = std::time::Instant::now();
        while pgbouncer.admin("SHOW VERSION").is_empty() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "pgbouncer did not start; see {}",
                pgbouncer.dir.path().display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        pgbouncer
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs a command on PgBouncer's admin console; its rows, `|`-separated.
    pub fn admin(&self, command: &str) -> String {
        Command::new("psql")
            .args([&self.url("pgbouncer"), "-XAtq", "-c", command])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// Runs a command on the admin console; its rows, by column name.
    pub fn admin_rows(&self, command: &str) -> Vec<std::collections::HashMap<String, String>> {
        let output = Command::new("psql")
            .args([&self.url("pgbouncer"), "-XAq", "-c", command])
            .output()
            .expect("psql runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
        lines
            .filter(|line| line.contains('|'))
            .map(|line| {
                header
                    .iter()
                    .zip(line.split('|'))
                    .map(|(name, value)| (name.to_string(), value.to_owned()))
                    .collect()
            })
            .collect()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Killing `runuser` would leave PgBouncer running: ask PgBouncer itself to stop.
        self.admin("SHUTDOWN");
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
