//! One guarded job as the elector sees it: the keys it wants, the leases it holds, and what it
//! tells its supervisor.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lease::{GuardState, HeldLease, LeadershipEvent};
use crate::settings::{LeaderMode, Leadership};

/// A guarded job as the host hands it to the elector.
pub(crate) struct GuardedJob {
    pub(crate) name: Arc<str>,
    pub(crate) leadership: Leadership,
    pub(crate) keys: Vec<String>,
    /// The membership scope, for a partitioned job.
    pub(crate) scope: Option<String>,
    pub(crate) state: watch::Sender<GuardState>,
    pub(crate) events: mpsc::UnboundedSender<LeadershipEvent>,
}

/// One guarded job's leases.
pub(crate) struct JobLeases {
    pub(crate) job: GuardedJob,
    pub(crate) held: BTreeMap<String, HeldLease>,
    /// The current state token (see [`GuardState::lost`]).
    pub(crate) lost: CancellationToken,
    /// For a partitioned job: this node's place among the members, once known.
    pub(crate) worker: Option<(u32, u32)>,
    /// For a partitioned job: partitions this node handed over to a new member, and until when
    /// it leaves them to that member rather than taking them back.
    pub(crate) handed_over: BTreeMap<u32, Instant>,
    pub(crate) next_acquire: Instant,
    pub(crate) next_heartbeat: Instant,
}

impl JobLeases {
    /// The keys this job should try for now.
    ///
    /// A cluster or global job asks for its key while it does not hold it. A partitioned job,
    /// once it knows the members, asks for every partition it does not hold: free ones are
    /// taken at once, so the partitions of a member that died are owned again as soon as they
    /// expire; the fair share is kept by handing back the surplus after each membership
    /// heartbeat. It leaves alone, for two retry periods, the partitions it just handed over,
    /// so that the member they were released for gets them.
    pub(crate) fn missing_keys(&mut self, now: Instant) -> Vec<String> {
        match self.job.leadership.mode {
            LeaderMode::None => Vec::new(),
            LeaderMode::Cluster | LeaderMode::Global => self
                .job
                .keys
                .iter()
                .filter(|key| !self.held.contains_key(*key))
                .cloned()
                .collect(),
            LeaderMode::Partitioned if self.worker.is_none() => Vec::new(),
            LeaderMode::Partitioned => {
                self.handed_over.retain(|_, until| *until > now);
                (0..self.job.leadership.partitions)
                    .filter(|p| !self.handed_over.contains_key(p))
                    .map(|p| format!("{}#{p}", self.job.name))
                    .filter(|key| !self.held.contains_key(key))
                    .collect()
            }
        }
    }

    /// Whether the job may have keys to try for (see [`JobLeases::missing_keys`]).
    pub(crate) fn wants_more(&self) -> bool {
        match self.job.leadership.mode {
            LeaderMode::None => false,
            LeaderMode::Cluster | LeaderMode::Global => self.held.is_empty(),
            LeaderMode::Partitioned => {
                self.worker.is_some() && (self.held.len() as u32) < self.job.leadership.partitions
            }
        }
    }

    pub(crate) fn publish(&self) {
        let state = GuardState {
            leases: self.held.values().cloned().collect(),
            lost: self.lost.clone(),
            worker: self.worker,
        };
        self.job.state.send_replace(state);
    }
}
