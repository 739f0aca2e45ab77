//! The lease stores a chaos run can use. Everything that differs between them lives behind
//! [`Backend`], one file each: where the store is, which faults apply and how the store-wide
//! ones are made, and what a passing run cleans up. A new store is one more file and one more
//! test in `main.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use fastrand::Rng;

use crate::faults::Kind;

#[cfg(feature = "etcd")]
mod etcd;
mod mysql;
mod postgres;
mod redis;
mod sqlite;

#[cfg(feature = "etcd")]
pub use etcd::Etcd;
pub use mysql::MySql;
pub use postgres::Postgres;
pub use redis::Redis;
pub use sqlite::Sqlite;

/// One lease store under test.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Its name in test names, reports (`target/tmp/chaos-<label>.txt`) and table names.
    fn label(&self) -> &'static str;

    /// The store URL the harness uses (never through a proxy).
    fn url(&self) -> String;

    /// Whether each node reaches the store through a TCP proxy of its own, so that one node can
    /// be cut off or slowed ([`Kind::Cut`], [`Kind::Slow`]) and every node at once
    /// ([`Kind::DbOutage`]).
    fn proxied(&self) -> bool;

    /// The faults a run on this store injects, each at least once.
    fn kinds(&self) -> &'static [Kind];

    /// Makes a store-wide fault of this backend's own ([`Kind::DbLock`], [`Kind::Restart`],
    /// [`Kind::CleanRestart`], etcd's member faults) last about `length`, drawing from `rng`
    /// what it draws; returns its start and end (monotonic ns).
    async fn store_fault(&self, kind: Kind, length: Duration, rng: &mut Rng) -> (u64, u64);

    /// Whether `kind` makes the store forget its rows (a restart without persistence): leases,
    /// schedule records and history start again, so P6 and P8 do not reach across it.
    fn forgets_on(&self, _kind: Kind) -> bool {
        false
    }

    /// How much later than its holder's last renewal plus the ttl the store may free a lease
    /// whose holder stopped renewing: the extra time P5 allows a node fault's takeover here.
    fn expiry_lag(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether the store keeps time by a clock of its own (a server's), so that the nodes'
    /// clocks may be skewed (`skew.rs`). SQLite's time is each node process's wall clock.
    fn own_clock(&self) -> bool {
        true
    }

    /// Removes what a passing run left (`prefix` starts every table or key of the run).
    async fn clean_up(&self, prefix: &str);
}

/// Whether the test runs as root (as in CI), where servers that refuse root run otherwise.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no failure mode and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// A free TCP port on 127.0.0.1 for a private server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Where a run keeps a store's files: memory-backed `/dev/shm` where there is one (the suite
/// tests servers and locking, not the disk, which other work on the host keeps busy), else the
/// test's temporary directory.
pub fn scratch() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR"))
    }
}

/// Removes what earlier runs left in [`scratch`] and whose process is gone: a run that failed
/// keeps its server's directory for inspection, a crashed one keeps everything, and a node
/// killed under libfaketime leaves its shared memory. Entries are named after the pid of the
/// test process (`chaos-<pid>-postgres`, `loopjob-chaos-<pid>.db`) or of the node
/// (`faketime_shm_<pid>`); a live process's are left alone.
pub fn sweep_scratch() {
    let Ok(entries) = std::fs::read_dir(scratch()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = [
            "chaos-",
            "loopjob-chaos-",
            "faketime_shm_",
            "sem.faketime_sem_",
        ]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
        })
        .filter(|digits| !digits.is_empty()) else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// A new, empty directory `<scratch>/<name>` for a private server's data and logs.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}
