//! A lease as its holder sees it while it holds it: [`HeldLease`], and the events of winning
//! and losing one.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A lease this node holds: its key, its fencing epoch, and the local deadline until which the
/// node may act on it.
///
/// Cheap to clone; every clone sees renewals and loss. Hand [`HeldLease::epoch`] to downstream
/// systems as a fencing token: a write carrying an epoch lower than one already seen comes from
/// a stale leader and can be rejected.
#[derive(Clone)]
pub struct HeldLease {
    inner: Arc<Inner>,
}

struct Inner {
    key: String,
    epoch: u64,
    partition: Option<u32>,
    /// Sent instant of the last answered acquire or renew, plus ttl, minus the safety margin.
    deadline: Mutex<Instant>,
    /// Cancelled when the lease is lost or released.
    lost: CancellationToken,
}

impl HeldLease {
    pub(crate) fn new(key: String, epoch: u64, partition: Option<u32>, deadline: Instant) -> Self {
        HeldLease {
            inner: Arc::new(Inner {
                key,
                epoch,
                partition,
                deadline: Mutex::new(deadline),
                lost: CancellationToken::new(),
            }),
        }
    }

    /// The lease key, such as `report@eu-west`, `report` or `report#3`.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The fencing epoch: strictly greater than every epoch issued for this key before.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The partition number, for a partition lease of a partitioned job.
    pub fn partition(&self) -> Option<u32> {
        self.inner.partition
    }

    /// The instant until which this node may act on the lease: the monotonic instant at which
    /// the last answered acquire or renew was sent, plus the ttl, minus a safety margin. The
    /// store cannot give the lease to anyone else before then.
    pub fn deadline(&self) -> Instant {
        *self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A wall-clock estimate of [`HeldLease::deadline`]: the system time now, plus the time
    /// left until the deadline (minus the time since, once it has passed).
    ///
    /// For logs, status pages and systems that keep wall-clock times; the store expires the
    /// lease no earlier than this. Decisions in this process should use
    /// [`HeldLease::is_held`], which reads the monotonic clock: the system clock can be set
    /// back or forward at any time.
    pub fn expires_at(&self) -> SystemTime {
        let deadline = self.deadline();
        let now = Instant::now();
        let wall = SystemTime::now();
        if deadline >= now {
            wall.checked_add(deadline - now).unwrap_or(wall)
        } else {
            wall.checked_sub(now - deadline).unwrap_or(wall)
        }
    }

    /// Whether the lease is still held: not lost, and its deadline not passed. Checks the clock
    /// itself, so it is right even before the elector has noticed an expiry.
    pub fn is_held(&self) -> bool {
        !self.inner.lost.is_cancelled() && Instant::now() < self.deadline()
    }

    /// Completes when the lease is lost or released. Cancel-safe.
    pub async fn lost(&self) {
        self.inner.lost.cancelled().await
    }

    pub(crate) fn extend_to(&self, deadline: Instant) {
        let mut current = self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *current = (*current).max(deadline);
    }

    pub(crate) fn mark_lost(&self) {
        self.inner.lost.cancel();
    }
}

impl fmt::Debug for HeldLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldLease")
            .field("key", &self.key())
            .field("epoch", &self.epoch())
            .field("deadline", &self.deadline())
            .field(
                "expires_at",
                &humantime::format_rfc3339_millis(self.expires_at()),
            )
            .field("held", &self.is_held())
            .finish()
    }
}

impl PartialEq for HeldLease {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && self.epoch() == other.epoch()
    }
}

/// Why a lease was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The local deadline passed before a renewal was answered (the store was slow or
    /// unreachable, or this process was paused).
    DeadlinePassed,
    /// The store refused the renewal: the lease expired there or another holder took it.
    RenewRefused,
    /// This node released it: a partition handed to a new member, or shutdown.
    Released,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::DeadlinePassed => "the local deadline passed before a renewal was answered",
            LostReason::RenewRefused => "the store refused the renewal",
            LostReason::Released => "released by this node",
        })
    }
}

/// A change in what a job holds.
///
/// The lease in each event gives its key, its fencing epoch, its monotonic deadline
/// ([`HeldLease::deadline`]) and a wall-clock estimate of it ([`HeldLease::expires_at`]).
#[derive(Debug, Clone, PartialEq)]
pub enum LeadershipEvent {
    /// A lease was won.
    Acquired(HeldLease),
    /// A lease was lost.
    Lost {
        /// The lease that was held.
        lease: HeldLease,
        /// Why it was lost.
        reason: LostReason,
    },
}

/// What one guarded job holds now, as the elector publishes it to the job's supervisor.
#[derive(Debug, Clone)]
pub(crate) struct GuardState {
    /// The leases held, by key.
    pub(crate) leases: Vec<HeldLease>,
    /// Cancelled the moment any lease in `leases` is lost; runs started under this state stop.
    /// A new token comes with the next state after a loss.
    pub(crate) lost: CancellationToken,
    /// For partitioned jobs: this node's place among the live members, and their number.
    pub(crate) worker: Option<(u32, u32)>,
}

impl GuardState {
    pub(crate) fn empty() -> Self {
        GuardState {
            leases: Vec::new(),
            lost: CancellationToken::new(),
            worker: None,
        }
    }

    /// The leases still held at this instant.
    pub(crate) fn held(&self) -> Vec<HeldLease> {
        self.leases
            .iter()
            .filter(|lease| lease.is_held())
            .cloned()
            .collect()
    }
}
