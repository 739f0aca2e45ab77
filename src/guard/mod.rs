//! Leadership: which replicas may run a guarded job, decided through leases in a shared
//! [`LeaseStore`](crate::store::LeaseStore).
//!
//! A job's [`Leadership`](crate::Leadership) names its mode:
//!
//! | mode | lease keys | who runs |
//! |---|---|---|
//! | `none` | — | every replica; the store is never touched |
//! | `cluster` | `{job}@{group}` | one replica per group |
//! | `global` | `{job}` | one replica across all groups |
//! | `partitioned` | `{job}#{p}`, p in 0..partitions | every live replica, for its fair share of the partitions |
//!
//! One [`elector`] task per host holds every lease of every guarded job: it renews them all in
//! one statement per renew period, tries for the missing ones in one statement per retry period,
//! and publishes to each job's supervisor what that job holds now. The supervisor starts a run
//! only while the job holds its lease (for a partitioned job: at least one partition), hands the
//! leases to the run in its [`JobContext`](crate::JobContext), and the run's token is cancelled
//! the moment one of them is lost. The run also reads the leases' local deadline itself
//! (`run_leases.rs`), so a process woken from a freeze stops its run before the elector's next
//! turn. The elector's module docs state the safety argument.
//!
//! A guarded job follows its keys' **cluster schedule** (see
//! [`store::schedule`](crate::store::schedule)): the elector also reads the schedule record of
//! every key it holds (at once when it wins one, then every retry period, and at once when an
//! operator's command is announced), and the supervisor times the job's runs from it. One
//! ledger task per host commits each run's start to its key's record before the run begins,
//! and records its end, batching the starts and ends of every job that fall due together.

pub mod elector;
mod job_leases;
mod lease;
pub(crate) mod ledger;
pub(crate) mod notice;
pub(crate) mod partitions;
mod records;
mod run_leases;
mod standalone;

pub(crate) use job_leases::GuardedJob;
pub(crate) use lease::GuardState;
pub use lease::{HeldLease, LeadershipEvent, LostReason};
pub(crate) use notice::{GuardNotice, JobLine, RecordsRead, StartAnswer};
pub(crate) use run_leases::RunLeases;
pub use standalone::{InvalidTiming, LeaderElector, LeaderState};

use crate::identity::NodeIdentity;
use crate::settings::LeaderMode;

/// The lease keys of a job in `mode`, as [the table above](self) gives them.
pub(crate) fn lease_keys(
    job: &str,
    mode: LeaderMode,
    partitions: u32,
    node: &NodeIdentity,
) -> Vec<String> {
    match mode {
        LeaderMode::None => Vec::new(),
        LeaderMode::Cluster => vec![format!("{job}@{}", node.group())],
        LeaderMode::Global => vec![job.to_owned()],
        LeaderMode::Partitioned => (0..partitions).map(|p| format!("{job}#{p}")).collect(),
    }
}

/// The membership scope in which replicas running a partitioned job announce themselves.
pub(crate) fn membership_scope(job: &str) -> String {
    format!("{job}#members")
}

/// The holder name this process uses in the store: the node id and a random suffix, unique per
/// process, so that a restarted process never takes its predecessor's lease for its own.
pub(crate) fn holder_name(node: &NodeIdentity) -> String {
    format!("{}/{:08x}", node.node_id(), fastrand::u32(..))
}
