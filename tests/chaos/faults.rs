//! The faults a chaos run injects, chosen from a seed, and how each is injected.

use std::fmt;
use std::time::Duration;

use fastrand::Rng;
use sqlx::Connection;

use crate::clock::mono_ns;
use crate::harness::{Backend, Cluster};
use crate::node::{RENEW_EVERY, TTL};
use crate::proxy::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL a current leader; a replacement node joins its group.
    Kill,
    /// SIGSTOP a current leader for longer than the ttl, then SIGCONT.
    Stop,
    /// Cut one leader's database connections (its proxy closes them and refuses new ones).
    Cut,
    /// One leader's database gets slow: its proxy holds every chunk each way.
    Slow,
    /// The database is unreachable for every node (every proxy cuts): a server restart as the
    /// nodes see it. The shared PostgreSQL itself is not restarted (see docs/RELIABILITY.md).
    DbOutage,
    /// SQLite: another process holds the database's write lock, so every write waits for it.
    DbLock,
}

impl Kind {
    /// The kinds that apply to a backend.
    pub fn for_backend(backend: &Backend) -> &'static [Kind] {
        match backend {
            Backend::Postgres(_) => &[
                Kind::Kill,
                Kind::Stop,
                Kind::Cut,
                Kind::Slow,
                Kind::DbOutage,
            ],
            Backend::Sqlite(_) => &[Kind::Kill, Kind::Stop, Kind::DbLock],
        }
    }

    /// Whether the fault ends when the database comes back for everyone (takeover is measured
    /// from its end), rather than hitting one node (measured from its start).
    pub fn is_store_wide(self) -> bool {
        matches!(self, Kind::DbOutage | Kind::DbLock)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Kind::Kill => "sigkill",
            Kind::Stop => "sigstop",
            Kind::Cut => "cut",
            Kind::Slow => "slow",
            Kind::DbOutage => "db-outage",
            Kind::DbLock => "db-lock",
        };
        f.pad(name)
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// The node hit (none for store-wide faults).
    pub node: Option<String>,
    /// Monotonic ns: when it began and ended (SIGCONT for a stop; the kill for a kill).
    pub start: u64,
    pub end: u64,
    /// The leases the node held (all held leases, for a store-wide fault) when it began.
    pub held: Vec<(String, u64)>,
    /// Latency the fault adds to every store round trip (slow database), for the P5 bound.
    pub added_latency: Duration,
}

/// One-way delay of the slow database: a store call (pool check + statement) then takes about
/// four of these, ≈ renew_every.
pub const SLOW_ONE_WAY: Duration = Duration::from_millis(150);

/// Injects a fault of `kind`. Returns `None` if it did not apply (no node held a lease).
pub async fn inject(cluster: &mut Cluster, kind: Kind, rng: &mut Rng) -> Option<Fault> {
    let held_all: Vec<(String, u64)> = cluster
        .seen()
        .owners
        .iter()
        .map(|(k, (_, e))| (k.clone(), *e))
        .collect();
    if kind.is_store_wide() {
        let length = Duration::from_millis(rng.u64(3000..=4000));
        let (start, end) = match kind {
            Kind::DbOutage => {
                let start = mono_ns();
                set_all(cluster, Mode::Cut);
                tokio::time::sleep(length).await;
                let end = mono_ns();
                set_all(cluster, Mode::Forward);
                (start, end)
            }
            _ => hold_sqlite_lock(&cluster.backend, length).await,
        };
        return Some(Fault {
            kind,
            node: None,
            start,
            end,
            held: held_all,
            added_latency: Duration::ZERO,
        });
    }
    // A node-level fault hits the holder of a randomly chosen held key.
    let owners: Vec<(String, String)> = cluster
        .seen()
        .owners
        .iter()
        .map(|(k, (n, _))| (k.clone(), n.clone()))
        .filter(|(_, n)| cluster.live().contains(n))
        .collect();
    if owners.is_empty() {
        return None;
    }
    let (_, node) = owners[rng.usize(..owners.len())].clone();
    let held = cluster.seen().held_by(&node);
    let mut added_latency = Duration::ZERO;
    let (start, end) = match kind {
        Kind::Kill => {
            let group = cluster.nodes[&node].group.clone();
            let t = cluster.kill(&node).await;
            cluster.start_node(&group).await;
            (t, t)
        }
        Kind::Stop => {
            let pause = TTL + Duration::from_millis(rng.u64(500..=1500));
            let start = cluster.signal(&node, libc::SIGSTOP);
            tokio::time::sleep(pause).await;
            let end = cluster.signal(&node, libc::SIGCONT);
            (start, end)
        }
        Kind::Cut | Kind::Slow => {
            let (mode, length) = if kind == Kind::Cut {
                // Sometimes shorter than the ttl (the node may keep its leases), mostly longer.
                (Mode::Cut, Duration::from_millis(rng.u64(1000..=3500)))
            } else {
                added_latency = SLOW_ONE_WAY * 4;
                (
                    Mode::Delay(SLOW_ONE_WAY),
                    Duration::from_millis(rng.u64(3000..=5000)),
                )
            };
            let proxy = cluster.nodes[&node]
                .proxy
                .as_ref()
                .expect("postgres nodes have proxies");
            let start = mono_ns();
            proxy.set(mode);
            tokio::time::sleep(length).await;
            let end = mono_ns();
            cluster.nodes[&node]
                .proxy
                .as_ref()
                .expect("still there")
                .set(Mode::Forward);
            (start, end)
        }
        Kind::DbOutage | Kind::DbLock => unreachable!("store-wide, handled above"),
    };
    debug_assert!(RENEW_EVERY < TTL);
    Some(Fault {
        kind,
        node: Some(node),
        start,
        end,
        held,
        added_latency,
    })
}

fn set_all(cluster: &Cluster, mode: Mode) {
    for node in cluster.nodes.values() {
        if let Some(proxy) = &node.proxy {
            proxy.set(mode);
        }
    }
}

/// Takes the SQLite file's write lock from this process for `length`.
async fn hold_sqlite_lock(backend: &Backend, length: Duration) -> (u64, u64) {
    let url = backend.direct_url();
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&url)
        .await
        .expect("open the SQLite store file");
    sqlx::query("PRAGMA busy_timeout = 10000")
        .execute(&mut conn)
        .await
        .expect("set busy timeout");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .expect("take the write lock");
    let start = mono_ns();
    tokio::time::sleep(length).await;
    let end = mono_ns();
    sqlx::query("ROLLBACK")
        .execute(&mut conn)
        .await
        .expect("release the write lock");
    (start, end)
}
