//! A real PostgreSQL primary with a streaming replica, private to one test.
//!
//! `initdb` makes a primary on a free port; `pg_basebackup -R` seeds a standby from it, which
//! then replays the primary's WAL over streaming replication on another port. Both servers run
//! as the `postgres` user (the server refuses root) under a temporary directory and are
//! stopped and deleted on drop. A private pair, rather than a replica of the machine's server,
//! leaves the machine's configuration alone and lets a test pause or stop its replica freely.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::{free_port, query};

pub struct StreamingPair {
    pub primary_url: String,
    pub replica_url: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// The PostgreSQL server programs (`initdb`, `pg_ctl`, `pg_basebackup`), or why there are none.
pub fn server_binaries() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| versions.flatten().map(|v| v.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    if let Ok(bindir) = Command::new("pg_config").arg("--bindir").output() {
        candidates.push(PathBuf::from(
            String::from_utf8_lossy(&bindir.stdout).trim(),
        ));
    }
    candidates
        .into_iter()
        .rev()
        .find(|bin| {
            ["initdb", "pg_ctl", "pg_basebackup"]
                .iter()
                .all(|p| bin.join(p).exists())
        })
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) on this machine".into()
        })
}

pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Set by the test command: a test that would skip for want of something on the machine
/// fails instead, so that `./scripts/test` never passes on what it did not run.
pub const NO_SKIPS: &str = "FORECASTIN_NO_SKIPS";

impl StreamingPair {
    /// The pair, or `None` (the reason printed) on a machine without PostgreSQL's server
    /// programs, where the test skips; under the test command ([`NO_SKIPS`]) that panics.
    pub fn start_or_skip() -> Option<StreamingPair> {
        match server_binaries() {
            Ok(_) => Some(StreamingPair::start()),
            Err(reason) if std::env::var_os(NO_SKIPS).is_some() => {
                panic!("{reason}, and {NO_SKIPS} forbids skipping")
            }
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                None
            }
        }
    }

    /// Starts the primary and its replica and waits until the replica streams.
    pub fn start() -> StreamingPair {
        let bin = server_binaries().expect("PostgreSQL server binaries");
        let dir = tempfile::Builder::new()
            .prefix("forecastin-replica-")
            .tempdir()
            .unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let (primary_port, replica_port) = (free_port(), free_port());
        let pair = StreamingPair {
            primary_url: format!("postgres://postgres@127.0.0.1:{primary_port}/postgres"),
            replica_url: format!("postgres://postgres@127.0.0.1:{replica_port}/postgres"),
            bin,
            dir,
        };
        let primary = pair.path("primary");
        pair.run(
            "initdb",
            &["-D", &primary, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        std::fs::write(
            pair.dir.path().join("primary/postgresql.auto.conf"),
            format!(
                "port = {primary_port}\nlisten_addresses = '127.0.0.1'\n\
                 unix_socket_directories = '{socket}'\nwal_level = replica\n\
                 max_wal_senders = 4\nshared_buffers = 16MB\nfsync = off\n",
                socket = pair.dir.path().display()
            ),
        )
        .unwrap();
        let hba = pair.dir.path().join("primary/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("host replication all 127.0.0.1/32 trust\n");
        std::fs::write(&hba, rules).unwrap();
        pair.ctl("primary", "start");

        let replica = pair.path("replica");
        let port = primary_port.to_string();
        pair.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &replica,
                "-R",
                "-X",
                "stream",
            ],
        );
        // The copied settings are the primary's: only the port differs.
        let auto_conf = pair.dir.path().join("replica/postgresql.auto.conf");
        let settings = std::fs::read_to_string(&auto_conf).unwrap().replace(
            &format!("port = {primary_port}"),
            &format!("port = {replica_port}"),
        );
        std::fs::write(&auto_conf, settings).unwrap();
        pair.start_replica();
        pair
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A server program, to be run as the `postgres` user.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .server_command(program)
            .args(args)
            .output()
            .expect("the PostgreSQL program runs");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn ctl(&self, cluster: &str, action: &str) {
        let data = self.path(cluster);
        let log = self.dir.path().join(format!("{cluster}.log"));
        let log = log.display().to_string();
        match action {
            "start" => self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "start"]),
            _ => self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", action]),
        }
    }

    /// Starts (again) the replica and waits until it streams from the primary.
    pub fn start_replica(&self) {
        self.ctl("replica", "start");
        let started = std::time::Instant::now();
        // Until it accepts connections the query fails: keep asking.
        let streaming = || query(&self.replica_url, "SELECT status FROM pg_stat_wal_receiver");
        while streaming().as_deref() != Ok("streaming") {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the replica does not stream; see {}",
                self.dir.path().join("replica.log").display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn stop_replica(&self) {
        self.ctl("replica", "stop");
    }

    /// Stops replaying WAL (it is still received): the replica falls behind.
    pub fn pause_replay(&self) {
        self.replica_sql("SELECT pg_wal_replay_pause()");
    }

    pub fn resume_replay(&self) {
        self.replica_sql("SELECT pg_wal_replay_resume()");
    }

    /// Runs `sql` on the primary; its output, trimmed.
    pub fn primary_sql(&self, sql: &str) -> String {
        query(&self.primary_url, sql).unwrap_or_else(|err| panic!("{sql} on the primary: {err}"))
    }

    pub fn replica_sql(&self, sql: &str) -> String {
        query(&self.replica_url, sql).unwrap_or_else(|err| panic!("{sql} on the replica: {err}"))
    }
}

impl Drop for StreamingPair {
    fn drop(&mut self) {
        for cluster in ["replica", "primary"] {
            if self
                .dir
                .path()
                .join(cluster)
                .join("postmaster.pid")
                .exists()
            {
                let _ = self
                    .server_command("pg_ctl")
                    .args(["-D", &self.path(cluster), "-m", "immediate", "-w", "stop"])
                    .output();
            }
        }
    }
}
