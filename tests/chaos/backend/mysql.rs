//! MariaDB: a private server this run creates (`mariadb-install-db`) and starts (`mariadbd`) on
//! a free port, its data in a temporary directory on tmpfs where there is one; the nodes reach
//! it through their proxies. Its own store-wide faults are real restarts: a crash (`kill -9`,
//! then InnoDB's crash recovery at the next start) and a clean stop (SIGTERM, which ends every
//! session). Committed rows survive both: epochs, records and history must come through.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use fastrand::Rng;
use tokio::process::{Child, Command};

use super::{Backend, free_port, fresh_dir, running_as_root};
use crate::clock::mono_ns;
use crate::faults::Kind;

pub struct MySql {
    port: u16,
    /// The run's directory: `data/`, the server's log, socket and pid file.
    dir: PathBuf,
    server: Mutex<Option<Child>>,
}

impl MySql {
    /// Creates and starts a private server named after `name`.
    pub async fn start(name: &str) -> MySql {
        let port = free_port();
        let dir = fresh_dir(&format!("{name}-mariadb"));
        let output = std::process::Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-name-resolve",
            ])
            .args(user())
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db (Debian's mariadb-server package)");
        assert!(
            output.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mysql = MySql {
            port,
            dir,
            server: Mutex::new(None),
        };
        mysql.launch().await;
        mysql
    }

    /// Starts the server and waits until it answers.
    async fn launch(&self) {
        let path = |file: &str| self.dir.join(file).display().to_string();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .arg(format!("--socket={}", path("mariadb.sock")))
            .arg(format!("--pid-file={}", path("mariadb.pid")))
            .arg(format!("--log-error={}", path("server.log")))
            .args(user())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd (Debian's mariadb-server package)");
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        for _ in 0..1000 {
            if sqlx::MySqlPool::connect(&self.url()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the private mariadbd on port {} did not answer; its log is {}",
            self.port,
            path("server.log")
        );
    }

    /// Stops the server with `signal` and waits until it has exited.
    async fn stop(&self, signal: libc::c_int) {
        let child = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = child {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                unsafe { libc::kill(pid as i32, signal) };
            }
            let _ = child.wait().await;
        }
    }
}

/// `mariadbd` refuses to run as root unless told to.
fn user() -> Option<&'static str> {
    running_as_root().then_some("--user=root")
}

impl Drop for MySql {
    fn drop(&mut self) {
        if let Some(child) = self
            .server
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = child.start_kill();
        }
    }
}

#[async_trait]
impl Backend for MySql {
    fn label(&self) -> &'static str {
        "mysql"
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
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
            Kind::Restart => self.stop(libc::SIGKILL).await,
            Kind::CleanRestart => self.stop(libc::SIGTERM).await,
            _ => unreachable!("MariaDB's own faults are its restarts, not {kind}"),
        }
        tokio::time::sleep(length).await;
        self.launch().await;
        (start, mono_ns())
    }

    async fn clean_up(&self, _prefix: &str) {
        self.stop(libc::SIGKILL).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
