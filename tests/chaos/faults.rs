//! The faults a chaos run injects, chosen from a seed, and how each is injected.

use std::fmt;
use std::time::Duration;

use fastrand::Rng;

use crate::checker::P5_SLACK;
use crate::clock::mono_ns;
use crate::harness::Cluster;
use crate::node::{RENEW_EVERY, RETRY_EVERY, TTL};
use crate::proxy::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL a current leader; a replacement node joins its group.
    Kill,
    /// SIGSTOP a current leader for longer than the ttl, then SIGCONT.
    Stop,
    /// Cut one leader's store connections (its proxy closes them and refuses new ones).
    Cut,
    /// One leader's store gets slow: its proxy holds every chunk each way.
    Slow,
    /// The node in the network namespace loses its link to the store (`netns.rs`): packets
    /// vanish, nothing is reset.
    Partition,
    /// The store is unreachable for every node (every proxy cuts): the network's part of a
    /// server restart, and the whole of one as the nodes of a shared server see it.
    DbOutage,
    /// SQLite: another process holds the database's write lock, so every write waits for it.
    DbLock,
    /// A private server crashes (SIGKILL) and is started again: Redis comes back empty (it has
    /// no persistence), PostgreSQL recovers from its WAL.
    Restart,
    /// A private server (PostgreSQL) is stopped cleanly, ending every session, and started
    /// again.
    CleanRestart,
    /// etcd: the member that leads raft is killed with SIGKILL and started again on its data.
    LeaderKill,
    /// etcd: a follower member is killed with SIGKILL and started again on its data.
    FollowerKill,
    /// etcd: one member is cut off from the other two (its peer connections closed and
    /// refused both ways); the nodes still reach it.
    MemberCut,
}

impl Kind {
    /// Whether the fault ends when the store comes back for everyone (takeover is measured
    /// from its end), rather than hitting one node (measured from its start).
    pub fn is_store_wide(self) -> bool {
        matches!(
            self,
            Kind::DbOutage
                | Kind::DbLock
                | Kind::Restart
                | Kind::CleanRestart
                | Kind::LeaderKill
                | Kind::FollowerKill
                | Kind::MemberCut
        )
    }

    /// How long the fault lasts, drawn from `rng`: from the soak's ranges, or from the bounded
    /// run's shorter ones, which keep each fault's meaning (a freeze outlasts the ttl, a cut or
    /// a partition is sometimes shorter than it, an outage longer) and take less of CI's time.
    fn length(self, pace: Pace, rng: &mut Rng) -> Duration {
        let soak = pace == Pace::Soak;
        let ms = match self {
            Kind::Kill => 0,
            Kind::Stop => {
                let over_ttl = if soak { 500..=1500 } else { 300..=800 };
                (TTL + Duration::from_millis(rng.u64(over_ttl))).as_millis() as u64
            }
            // Sometimes shorter than the ttl (the node may keep its leases), mostly longer.
            Kind::Cut | Kind::Partition | Kind::MemberCut if soak => rng.u64(1000..=3500),
            Kind::Cut | Kind::Partition | Kind::MemberCut => rng.u64(1200..=2800),
            Kind::Slow if soak => rng.u64(3000..=4500),
            Kind::Slow => rng.u64(2500..=3200),
            Kind::DbOutage | Kind::DbLock if soak => rng.u64(2500..=3500),
            Kind::DbOutage | Kind::DbLock => rng.u64(2200..=2800),
            // The time the server is down; starting it again takes its own.
            Kind::Restart | Kind::CleanRestart if soak => rng.u64(200..=1500),
            Kind::Restart | Kind::CleanRestart => rng.u64(200..=1000),
            // How long the killed member stays down before it starts again.
            Kind::LeaderKill | Kind::FollowerKill if soak => rng.u64(500..=2500),
            Kind::LeaderKill | Kind::FollowerKill => rng.u64(500..=1500),
        };
        Duration::from_millis(ms)
    }
}

/// How long faults last: a soak draws from wide ranges, CI's bounded run from short ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Bounded,
    Soak,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Kind::Kill => "sigkill",
            Kind::Stop => "sigstop",
            Kind::Cut => "cut",
            Kind::Slow => "slow",
            Kind::Partition => "partition",
            Kind::DbOutage => "db-outage",
            Kind::DbLock => "db-lock",
            Kind::Restart => "restart",
            Kind::CleanRestart => "clean-restart",
            Kind::LeaderKill => "leader-kill",
            Kind::FollowerKill => "follower-kill",
            Kind::MemberCut => "member-cut",
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
    /// The store forgot its rows (leases, records, history): a restart without persistence.
    pub forgets: bool,
    /// For a node fault: how late the store may free the node's leases (see
    /// [`Backend::expiry_lag`](crate::backend::Backend::expiry_lag)), for the P5 bound.
    pub expiry_lag: Duration,
}

impl Fault {
    /// How long after its end the next fault waits: until every takeover P5 expects of this
    /// one is due (with its slack), and at least a second and a half for the cluster to
    /// settle, plus up to half a second drawn from `rng`.
    pub fn settle(&self, rng: &mut Rng) -> Duration {
        let length = Duration::from_nanos(self.end - self.start);
        let takeover_after_end = if self.forgets {
            // Each holder learns of the loss at its next renewal; see the checker's P5 bound.
            length + RENEW_EVERY + 3 * RETRY_EVERY
        } else if self.kind.is_store_wide() {
            length + RETRY_EVERY
        } else {
            (TTL + RETRY_EVERY + self.added_latency + self.expiry_lag).saturating_sub(
                match self.kind {
                    Kind::Slow => Duration::ZERO, // the slowed holder may give its lease up late
                    _ => length,
                },
            )
        };
        // On SQLite a frozen node may hold the write lock: a freeze then ends like a store-wide
        // fault.
        let takeover_after_end = match self.kind {
            Kind::Stop => takeover_after_end.max(length + RETRY_EVERY),
            _ => takeover_after_end,
        };
        (takeover_after_end + P5_SLACK).max(Duration::from_millis(1500))
            + Duration::from_millis(rng.u64(0..=500))
    }
}

/// One-way delay of the slow database: a store call (pool check + statement) then takes about
/// four of these, ≈ renew_every.
pub const SLOW_ONE_WAY: Duration = Duration::from_millis(150);

/// The node a node-level fault hits: the holder of a randomly chosen held key, with that key
/// (for a partition, the node in the network namespace). `None` if there is none.
pub fn target(cluster: &Cluster, kind: Kind, rng: &mut Rng) -> Option<(String, String)> {
    if kind == Kind::Partition {
        // The node in the namespace, leader or not, with a key it holds if any.
        let node = cluster.in_netns()?;
        let key = cluster
            .seen()
            .held_by(&node)
            .first()
            .map_or_else(|| "global".to_owned(), |(key, _)| key.clone());
        return Some((node, key));
    }
    let live = cluster.live();
    let owners: Vec<(String, String)> = cluster
        .seen()
        .owners
        .iter()
        .map(|(k, (n, _))| (n.clone(), k.clone()))
        .filter(|(n, _)| live.contains(n))
        .collect();
    (!owners.is_empty()).then(|| owners[rng.usize(..owners.len())].clone())
}

/// Injects a fault of `kind`, on `node` for a node-level one (see [`target`]).
pub async fn inject(
    cluster: &mut Cluster,
    kind: Kind,
    node: Option<String>,
    pace: Pace,
    rng: &mut Rng,
) -> Fault {
    let length = kind.length(pace, rng);
    let forgets = cluster.backend.forgets_on(kind);
    if kind.is_store_wide() {
        let held_all: Vec<(String, u64)> = cluster
            .seen()
            .owners
            .iter()
            .map(|(k, (_, e))| (k.clone(), *e))
            .collect();
        let (start, end) = match kind {
            Kind::DbOutage => {
                let start = mono_ns();
                set_all(cluster, Mode::Cut);
                tokio::time::sleep(length).await;
                let end = mono_ns();
                set_all(cluster, Mode::Forward);
                (start, end)
            }
            _ => cluster.backend.store_fault(kind, length, rng).await,
        };
        return Fault {
            kind,
            node: None,
            start,
            end,
            held: held_all,
            added_latency: Duration::ZERO,
            forgets,
            expiry_lag: Duration::ZERO,
        };
    }
    let node = node.expect("a node-level fault has a target");
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
            let start = cluster.signal(&node, libc::SIGSTOP);
            tokio::time::sleep(length).await;
            let end = cluster.signal(&node, libc::SIGCONT);
            (start, end)
        }
        Kind::Cut | Kind::Slow => {
            let mode = if kind == Kind::Cut {
                Mode::Cut
            } else {
                added_latency = SLOW_ONE_WAY * 4;
                Mode::Delay(SLOW_ONE_WAY)
            };
            let proxies = &cluster.nodes[&node].proxies;
            assert!(!proxies.is_empty(), "nodes of a proxied store have proxies");
            let start = mono_ns();
            proxies.iter().for_each(|proxy| proxy.set(mode));
            tokio::time::sleep(length).await;
            let end = mono_ns();
            proxies.iter().for_each(|proxy| proxy.set(Mode::Forward));
            (start, end)
        }
        Kind::Partition => {
            let netns = cluster
                .netns
                .as_ref()
                .expect("a partition needs the namespace");
            let start = mono_ns();
            netns.partition(true);
            tokio::time::sleep(length).await;
            let end = mono_ns();
            netns.partition(false);
            (start, end)
        }
        _ => unreachable!("store-wide, handled above"),
    };
    Fault {
        kind,
        node: Some(node),
        start,
        end,
        held,
        added_latency,
        forgets,
        expiry_lag: cluster.backend.expiry_lag(),
    }
}

fn set_all(cluster: &Cluster, mode: Mode) {
    for proxy in cluster.nodes.values().flat_map(|node| &node.proxies) {
        proxy.set(mode);
    }
}
