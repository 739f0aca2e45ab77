//! One guarded job as the elector sees it: the keys it wants, the leases it holds, and what it
//! tells its supervisor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lease::{GuardState, HeldLease, LeadershipEvent, LostReason};
use super::notice::JobLine;
use super::partitions::{fair_share, preferred};
use crate::settings::{LeaderMode, Leadership};

/// A guarded job as the host hands it to the elector.
pub(crate) struct GuardedJob {
    pub(crate) name: Arc<str>,
    pub(crate) leadership: Leadership,
    pub(crate) keys: Vec<String>,
    /// The membership scope, for a partitioned job.
    pub(crate) scope: Option<String>,
    pub(crate) state: watch::Sender<GuardState>,
    pub(crate) events: JobLine,
    /// For a job on the cluster schedule: its `initial_delay`, with which the first holder of
    /// a key ever plans the key's first run. `None` for a standalone elector, which reads no
    /// schedule record.
    pub(crate) initial_delay: Option<Duration>,
    /// Cancelled if the job's supervisor was dropped before it stopped (a bug in loopjob, which
    /// its shard contained): the elector then lets go of the job's leases (invariant 7).
    pub(crate) abandoned: CancellationToken,
}

/// The keys a job is missing (see [`JobLeases::missing_keys`]).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct MissingKeys {
    /// To take as soon as they are free.
    pub(crate) at_once: Vec<String>,
    /// To take once they have been free for half a retry period.
    pub(crate) when_settled: Vec<String>,
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
    /// The keys this job should try for now: those to take as soon as they are free, and
    /// those to take only once they have been free for half a retry period.
    ///
    /// A cluster or global job asks for its key while it does not hold it. A partitioned job,
    /// once it knows the members, asks for every partition it does not hold: free ones are
    /// taken at once, so the partitions of a member that died are owned again as soon as they
    /// expire; the fair share is kept by handing back the surplus after each membership
    /// heartbeat. It leaves alone, for two retry periods, the partitions it just handed over,
    /// so that the member they were released for gets them.
    ///
    /// A member that already holds its fair share is patient with the partitions another
    /// member prefers: it takes them only once they have been free for half a retry period.
    /// Without that, two members at their share could pass a handed-over partition between
    /// them (one takes it, finds itself over its share, hands it back, the other takes it)
    /// while the member short of its share, polling no faster than they do, never finds it
    /// free. The cost falls on a dead member's partitions: until a heartbeat shows the member
    /// gone (which makes the others short of their share), a member at its share takes them up
    /// to half a retry period later than `lease_ttl + retry_every` after the death.
    pub(crate) fn missing_keys(&mut self, now: Instant) -> MissingKeys {
        let mut missing = MissingKeys::default();
        match self.job.leadership.mode {
            LeaderMode::None => {}
            LeaderMode::Cluster | LeaderMode::Global => missing.at_once.extend(
                self.job
                    .keys
                    .iter()
                    .filter(|key| !self.held.contains_key(*key))
                    .cloned(),
            ),
            LeaderMode::Partitioned => {
                let Some((index, count)) = self.worker else {
                    return missing;
                };
                let partitions = self.job.leadership.partitions;
                let has_share = self.held.len() as u32 >= fair_share(partitions, count);
                self.handed_over.retain(|_, until| *until > now);
                for partition in (0..partitions).filter(|p| !self.handed_over.contains_key(p)) {
                    let key = format!("{}#{partition}", self.job.name);
                    if self.held.contains_key(&key) {
                        continue;
                    }
                    if has_share && !preferred(partition, index, count) {
                        missing.when_settled.push(key);
                    } else {
                        missing.at_once.push(key);
                    }
                }
            }
        }
        missing
    }

    /// Whether the job may have keys to try for (see [`JobLeases::missing_keys`]).
    pub(crate) fn wants_more(&self) -> bool {
        if self.job.abandoned.is_cancelled() {
            return false;
        }
        match self.job.leadership.mode {
            LeaderMode::None => false,
            LeaderMode::Cluster | LeaderMode::Global => self.held.is_empty(),
            LeaderMode::Partitioned => {
                self.worker.is_some() && (self.held.len() as u32) < self.job.leadership.partitions
            }
        }
    }

    /// Records leases won in one answer of the store: one log line for them all, an event
    /// for each, and one new state for the supervisor.
    pub(crate) fn won(&mut self, leases: Vec<HeldLease>) {
        if leases.is_empty() {
            return;
        }
        tracing::info!(job = %self.job.name, count = leases.len(), keys = %KeyList(&leases), "leases acquired");
        for lease in leases {
            self.held.insert(lease.key().to_owned(), lease.clone());
            self.job.events.leadership(LeadershipEvent::Acquired(lease));
        }
        self.publish();
    }

    /// Marks the leases held under `keys` lost for `reason` (invariant 3): cancels each and
    /// the job's state token, sends an event for each, logs one line for them all (a warning,
    /// unless this node released them), and publishes one new state. Returns the leases lost;
    /// keys not held are passed over.
    pub(crate) fn lose<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k str>,
        reason: LostReason,
    ) -> Vec<HeldLease> {
        let lost: Vec<HeldLease> = keys
            .into_iter()
            .filter_map(|key| self.held.remove(key))
            .collect();
        if lost.is_empty() {
            return lost;
        }
        for lease in &lost {
            lease.mark_lost();
        }
        self.lost.cancel();
        self.lost = CancellationToken::new();
        let (job, count, keys) = (&self.job.name, lost.len(), KeyList(&lost));
        match reason {
            LostReason::Released => {
                tracing::info!(job = %job, count, keys = %keys, %reason, "leases released")
            }
            _ => tracing::warn!(job = %job, count, keys = %keys, %reason, "leases lost"),
        }
        for lease in &lost {
            self.job.events.leadership(LeadershipEvent::Lost {
                lease: lease.clone(),
                reason: reason.clone(),
            });
        }
        self.publish();
        lost
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

/// Leases as one log line names them: the first few keys with their epochs, and how many more.
struct KeyList<'a>(&'a [HeldLease]);

impl std::fmt::Display for KeyList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 3;
        for (index, lease) in self.0.iter().take(SHOWN).enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{} (epoch {})", lease.key(), lease.epoch())?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partitioned job of 6 partitions, member `index` of `count`, holding `held`.
    fn partitioned(held: &[u32], (index, count): (u32, u32)) -> JobLeases {
        let now = Instant::now();
        JobLeases {
            job: GuardedJob {
                name: "part".into(),
                leadership: Leadership::new(LeaderMode::Partitioned).partitions(6),
                keys: Vec::new(),
                scope: None,
                state: watch::channel(GuardState::empty()).0,
                events: JobLine::Standalone(tokio::sync::mpsc::unbounded_channel().0),
                initial_delay: None,
                abandoned: CancellationToken::new(),
            },
            held: held
                .iter()
                .map(|&p| {
                    let key = format!("part#{p}");
                    (key.clone(), HeldLease::new(key, 1, Some(p), now))
                })
                .collect(),
            lost: CancellationToken::new(),
            worker: Some((index, count)),
            handed_over: BTreeMap::new(),
            next_acquire: now,
            next_heartbeat: now,
        }
    }

    fn keys(partitions: &[u32]) -> Vec<String> {
        partitions.iter().map(|p| format!("part#{p}")).collect()
    }

    #[test]
    fn short_of_its_share_a_member_takes_any_free_partition_at_once() {
        // Member 1 of 3 targets 2 partitions and holds 1.
        let missing = partitioned(&[1], (1, 3)).missing_keys(Instant::now());
        assert_eq!(missing.at_once, keys(&[0, 2, 3, 4, 5]));
        assert!(missing.when_settled.is_empty());
    }

    #[test]
    fn with_its_share_a_member_waits_before_taking_partitions_others_prefer() {
        // Member 1 of 3 holds its 2: it still takes its own preferred partition 4 at once (its
        // holder died, say), and leaves 0, 2, 5 to the members that prefer them for a while.
        let missing = partitioned(&[1, 3], (1, 3)).missing_keys(Instant::now());
        assert_eq!(missing.at_once, keys(&[4]));
        assert_eq!(missing.when_settled, keys(&[0, 2, 5]));
    }

    #[test]
    fn handed_over_partitions_are_left_alone() {
        let now = Instant::now();
        let mut job = partitioned(&[], (0, 2));
        job.handed_over
            .insert(2, now + std::time::Duration::from_secs(1));
        assert_eq!(job.missing_keys(now).at_once, keys(&[0, 1, 3, 4, 5]));
    }
}
