//! Redis: a private `redis-server` this run starts on a free port of its own, persistence off,
//! its directory a temporary one; the nodes reach it through their proxies. Its store-wide
//! fault is a real restart: `kill -9` and start again on the same port, empty (without
//! persistence it forgets every lease, record and run: epochs go on from the server's clock).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use fastrand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Backend, free_port, fresh_dir};
use crate::clock::mono_ns;
use crate::faults::Kind;

pub struct Redis {
    port: u16,
    dir: PathBuf,
    server: Mutex<Option<Child>>,
}

impl Redis {
    /// Starts a private server named after `name` (its directory).
    pub async fn start(name: &str) -> Redis {
        let port = free_port();
        let dir = fresh_dir(&format!("{name}-redis"));
        let redis = Redis {
            port,
            dir,
            server: Mutex::new(None),
        };
        redis.launch().await;
        redis
    }

    /// Starts the server and waits until it answers.
    async fn launch(&self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian's redis-server package)");
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        for _ in 0..200 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the private redis-server on port {} did not answer",
            self.port
        );
    }

    async fn ping(&self) -> bool {
        let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut answer = [0u8; 5];
        conn.write_all(b"PING\r\n").await.is_ok()
            && conn.read_exact(&mut answer).await.is_ok()
            && &answer == b"+PONG"
    }

    fn kill(&self) {
        if let Some(mut child) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[async_trait]
impl Backend for Redis {
    fn label(&self) -> &'static str {
        "redis"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
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
            Kind::Restart,
        ]
    }

    /// `kill -9` of the server, and a new one on the same port after `length`.
    async fn store_fault(&self, kind: Kind, length: Duration, _rng: &mut Rng) -> (u64, u64) {
        assert_eq!(kind, Kind::Restart, "Redis's own fault is its restart");
        let start = mono_ns();
        self.kill();
        tokio::time::sleep(length).await;
        self.launch().await;
        (start, mono_ns())
    }

    fn forgets_on(&self, kind: Kind) -> bool {
        kind == Kind::Restart
    }

    async fn clean_up(&self, _prefix: &str) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
