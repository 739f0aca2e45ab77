//! PostgreSQL: a private server this run creates (`initdb`) and starts (`pg_ctl`) on a free
//! port, its data in a temporary directory on tmpfs where there is one; the nodes reach it
//! through their proxies. Its own store-wide faults are real restarts: a crash (`kill -9` of
//! the postmaster and every backend, then crash recovery from the WAL at the next start) and a
//! clean stop (`pg_ctl stop -m fast`, which ends every session with an error). Committed rows
//! survive both: epochs, records and history must come through (P2, P6–P8).
//!
//! The server runs as the `postgres` user when the test runs as root (PostgreSQL refuses root),
//! with Debian's binaries (`/usr/lib/postgresql/<version>/bin`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use fastrand::Rng;
use tokio::process::Command;

use super::{Backend, free_port, fresh_dir, running_as_root};
use crate::clock::mono_ns;
use crate::faults::Kind;

pub struct Postgres {
    port: u16,
    /// The run's directory: `data/` and the server's log.
    dir: PathBuf,
    /// Where `initdb`, `pg_ctl` and `postgres` are.
    bin: PathBuf,
}

impl Postgres {
    /// Creates and starts a private server named after `name`.
    pub async fn start(name: &str) -> Postgres {
        let bin = server_binaries().expect(
            "PostgreSQL's server binaries (/usr/lib/postgresql/<version>/bin/initdb): \
             install Debian's postgresql package",
        );
        let port = free_port();
        let dir = fresh_dir(&format!("{name}-postgres"));
        let postgres = Postgres { port, dir, bin };
        if running_as_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&postgres.dir)
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown the PostgreSQL directory to postgres"
            );
        }
        let data = postgres.data();
        postgres
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "--no-instructions",
                ],
            )
            .await;
        postgres.launch().await;
        postgres
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of the server's programs (as `postgres` when this is root) and waits for it.
    async fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections: on TCP only, since a Unix
    /// socket's lock file would outlive a crash and refuse the next start; its dynamic shared
    /// memory in its data directory, not in `/dev/shm`, where a crash would leave it.
    async fn launch(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
             -c dynamic_shared_memory_type=mmap",
            self.port
        );
        let log = self.dir.join("server.log").display().to_string();
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )
        .await;
    }

    /// `kill -9` of the postmaster and of every process it started, as a crash of the machine
    /// would leave them; waits until they are gone, and removes the lock file that would keep
    /// the next start waiting while a dead postmaster's pid is not yet reaped.
    fn crash(&self) {
        let lock_file = self.dir.join("data/postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(&lock_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        else {
            return;
        };
        let children = std::process::Command::new("pgrep")
            .args(["-P", &postmaster.to_string()])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        let pids: Vec<i32> = std::iter::once(postmaster)
            .chain(children.lines().filter_map(|line| line.trim().parse().ok()))
            .collect();
        for &pid in &pids {
            // SAFETY: kill(2) with a pid this run's server wrote; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in &pids {
            // Gone once signal 0 finds no such process (a zombie is reaped by its parent).
            while unsafe { libc::kill(pid, 0) } == 0
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|stat| stat.contains(") Z "))
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = std::fs::remove_file(lock_file);
    }
}

/// Debian's server binaries, the newest version installed.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.crash();
    }
}

#[async_trait]
impl Backend for Postgres {
    fn label(&self) -> &'static str {
        "postgres"
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn proxied(&self) -> bool {
        true
    }

    fn kinds(&self) -> &'static [Kind] {
        &[
            Kind::Kill,
            Kind::Stop,
            Kind::Cut,
            Kind::Slow,
            Kind::Partition,
            Kind::DbOutage,
            Kind::Restart,
            Kind::CleanRestart,
        ]
    }

    /// A crash or a clean stop, and a start again after `length`.
    async fn store_fault(&self, kind: Kind, length: Duration, _rng: &mut Rng) -> (u64, u64) {
        let start = mono_ns();
        match kind {
            Kind::Restart => self.crash(),
            Kind::CleanRestart => {
                let data = self.data();
                self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
                    .await;
            }
            _ => unreachable!("PostgreSQL's own faults are its restarts, not {kind}"),
        }
        tokio::time::sleep(length).await;
        self.launch().await;
        (start, mono_ns())
    }

    async fn clean_up(&self, _prefix: &str) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
