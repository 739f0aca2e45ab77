//! What a job is doing and has done: the snapshot [`HostHandle`](crate::HostHandle) shows, and
//! the report a host returns when it shuts down.

use tokio::time::Instant;

use crate::guard::HeldLease;
use crate::store::{RunRecord, ScheduleRecord};

/// A snapshot of one job: its state, its next tick, its last run and its counters.
///
/// (`repr(C)` keeps what every tick writes in the first cache lines.)
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct JobStatus {
    /// What the job is doing now.
    pub state: JobState,
    /// Runs in flight now.
    pub in_flight: usize,
    /// When the next tick is due, if one is scheduled (none while paused, disabled, stopped, or
    /// while a fixed-delay run is in flight).
    pub next_tick: Option<Instant>,
    /// When the last run started.
    pub last_started: Option<Instant>,
    /// When the last run ended.
    pub last_ended: Option<Instant>,
    /// How the last run ended.
    pub last_outcome: Option<RunOutcome>,
    /// The job's counters since the host started.
    pub counters: JobCounters,
    /// The job's name.
    pub name: String,
    /// For a guarded job, once the elector has reported on it: what it holds. Boxed: every job
    /// keeps a status, and most are not guarded.
    pub leadership: Option<Box<LeadershipStatus>>,
    /// For a guarded job, while this node holds a key of it: the cluster's view, from the
    /// key's schedule record as last read (every retry period). On any node,
    /// [`HostHandle::schedule`](crate::HostHandle::schedule) reads it from the store. Boxed,
    /// like `leadership`.
    pub cluster: Option<Box<ClusterView>>,
}

/// A job's status as its shared record keeps it, which a [`JobStatus`] is a snapshot of.
///
/// It leaves out the name, which the record keeps once and the snapshot copies in, and counts
/// the runs in flight in a `u32` beside the state (a job allows at most `u32::MAX`): every job
/// keeps one for its life, and its memory is most of what a host of many jobs touches as it
/// starts (docs/BENCHMARKS.md, "Eleventh pass"). The fields mean what [`JobStatus`]'s do.
#[derive(Debug)]
#[repr(C)] // As `JobStatus`: what every tick writes first.
pub(crate) struct LiveStatus {
    pub(crate) state: JobState,
    pub(crate) in_flight: u32,
    pub(crate) next_tick: Option<Instant>,
    pub(crate) last_started: Option<Instant>,
    pub(crate) last_ended: Option<Instant>,
    pub(crate) last_outcome: Option<RunOutcome>,
    pub(crate) counters: JobCounters,
    pub(crate) leadership: Option<Box<LeadershipStatus>>,
    pub(crate) cluster: Option<Box<ClusterView>>,
}

impl LiveStatus {
    /// The status of a job that has not started, in `state`.
    pub(crate) fn new(state: JobState) -> Self {
        LiveStatus {
            state,
            in_flight: 0,
            next_tick: None,
            last_started: None,
            last_ended: None,
            last_outcome: None,
            counters: JobCounters::default(),
            leadership: None,
            cluster: None,
        }
    }

    /// A snapshot of it, for the job named `name`.
    pub(crate) fn snapshot(&self, name: &str) -> JobStatus {
        // Destructured, so that a field added to both cannot be forgotten here.
        let LiveStatus {
            state,
            in_flight,
            next_tick,
            last_started,
            last_ended,
            last_outcome,
            counters,
            leadership,
            cluster,
        } = self;
        JobStatus {
            state: *state,
            in_flight: *in_flight as usize,
            next_tick: *next_tick,
            last_started: *last_started,
            last_ended: *last_ended,
            last_outcome: last_outcome.clone(),
            counters: *counters,
            name: name.to_owned(),
            leadership: leadership.clone(),
            cluster: cluster.clone(),
        }
    }
}

/// A guarded job as the cluster sees it, from its keys' schedule records: when it is due next,
/// its last run wherever it ran, and whether an operator paused it. Times are the store's, in
/// milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterView {
    /// When the job's next run is due: the earliest of its keys.
    pub next_due_ms: Option<i64>,
    /// The newest run of any of its keys, on whichever node it ran.
    pub last_run: Option<RunRecord>,
    /// Whether an operator paused it (every key is paused).
    pub paused: bool,
    /// Whether an operator's trigger waits for a run (on any key).
    pub triggered: bool,
    /// The records, sorted by key.
    pub records: Vec<ScheduleRecord>,
}

impl ClusterView {
    /// The view of a job whose keys have these records.
    pub fn from_records(mut records: Vec<ScheduleRecord>) -> Self {
        records.sort_by(|a, b| a.key.cmp(&b.key));
        ClusterView {
            next_due_ms: records.iter().filter_map(|r| r.next_due_ms).min(),
            last_run: records
                .iter()
                .filter_map(|r| r.last_run.as_ref())
                .max_by_key(|run| run.started_ms)
                .cloned(),
            paused: !records.is_empty() && records.iter().all(|r| r.paused.is_some()),
            triggered: records.iter().any(|r| r.trigger.is_some()),
            records,
        }
    }
}

/// What a guarded job holds on this node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadershipStatus {
    /// The leases held now, with their epochs and local deadlines.
    pub leases: Vec<HeldLease>,
    /// For a partitioned job: this node's index among the live members, and their number.
    pub worker: Option<(u32, u32)>,
    /// Leases won since the host started.
    pub acquired: u64,
    /// Leases lost or released since the host started.
    pub lost: u64,
}

/// Counters of one job since its host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)] // In this order: `runs` and `succeeded`, which most turns change, first.
pub struct JobCounters {
    /// Runs started (by a tick or a trigger); retries are part of their run.
    pub runs: u64,
    /// Runs that ended with `Ok`.
    pub succeeded: u64,
    /// Runs that ended in any other way: an error, a panic, a timeout or being dropped.
    pub failures: u64,
    /// Runs that panicked (also counted in `failures`).
    pub panics: u64,
    /// Runs that exceeded their timeout (also counted in `failures`): those whose token the
    /// timeout cancelled ([`RunOutcome::TimedOut`]) and those that finished only after it
    /// ([`RunOutcome::Overran`]).
    pub timeouts: u64,
    /// Of `timeouts`, runs that kept the thread past their timeout and finished after it
    /// ([`RunOutcome::Overran`]): synchronous work that never yielded, so no token could reach
    /// it.
    pub overran: u64,
    /// Runs dropped because they did not stop within `cancel_grace` after their token was
    /// cancelled, whatever cancelled it: their timeout (such a run's outcome is
    /// [`RunOutcome::TimedOut`], and it is counted in `timeouts` too), shutdown, an operator or
    /// lost leadership ([`RunOutcome::Dropped`]). Also counted in `failures`.
    pub dropped: u64,
    /// Retries started after failed attempts.
    pub retries: u64,
    /// Ticks that found a run in flight and were skipped.
    pub skipped: u64,
    /// Ticks of a guarded job that passed without a run because this node held no lease. A
    /// guarded job follows its keys' cluster schedule, and ticks only while it holds a key: it
    /// stays 0 for guarded jobs.
    pub not_leader: u64,
    /// Runs of a guarded job that did not start because the store did not commit their start
    /// (the store was unreachable, the key was paused, or the lease was lost meanwhile).
    pub not_started: u64,
    /// Ticks that passed during a stall and were never run (see
    /// [`MissedTicks`](crate::MissedTicks)), and cron occurrences that the wall clock jumped
    /// over without a run of their own (see [`CatchUp`](crate::CatchUp)).
    pub missed: u64,
}

impl JobCounters {
    /// Adds `more` to each counter (a supervisor's counts of one turn).
    pub(crate) fn add(&mut self, more: &JobCounters) {
        // Destructured, so that a counter added to the struct cannot be forgotten here.
        let JobCounters {
            runs,
            succeeded,
            failures,
            panics,
            timeouts,
            overran,
            dropped,
            retries,
            skipped,
            not_leader,
            not_started,
            missed,
        } = *more;
        // A counter is read and written only when it changed: a turn changes one or two
        // (`runs` and `succeeded` come first), so a run touches the first of the counters'
        // cache lines, not all of them.
        let add = |total: &mut u64, more: u64| {
            if more != 0 {
                *total += more;
            }
        };
        add(&mut self.runs, runs);
        add(&mut self.succeeded, succeeded);
        add(&mut self.failures, failures);
        add(&mut self.panics, panics);
        add(&mut self.timeouts, timeouts);
        add(&mut self.overran, overran);
        add(&mut self.dropped, dropped);
        add(&mut self.retries, retries);
        add(&mut self.skipped, skipped);
        add(&mut self.not_leader, not_leader);
        add(&mut self.not_started, not_started);
        add(&mut self.missed, missed);
    }
}

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for `on_started` or for its first tick.
    Starting,
    /// Waiting for the next tick, no run in flight.
    Idle,
    /// At least one run in flight.
    Running,
    /// Paused by an operator: no ticks until resumed. For a guarded job: every key this node
    /// holds is paused in the store (cluster-wide); a follower shows its own state.
    Paused,
    /// Disabled in its schedule: never ticks.
    Disabled,
    /// The supervisor has stopped (host shut down).
    Stopped,
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run returned `Ok`.
    Succeeded,
    /// The run returned an error; the text is the error and its sources.
    Failed(String),
    /// The run panicked; the text is the panic message.
    Panicked(String),
    /// The run exceeded its timeout and was cancelled (and dropped if it did not stop within
    /// `cancel_grace`, which [`JobCounters::dropped`] counts).
    TimedOut,
    /// The run returned `Ok`, but only after its timeout had passed: it kept the thread
    /// (blocking work without `spawn_blocking`, or a loop that never yields) so its token could
    /// not be cancelled in time. Counted as a failure and a timeout, not a success.
    Overran,
    /// The run was cancelled (shutdown, operator, lost leadership) and did not stop within
    /// `cancel_grace`, so it was dropped.
    Dropped,
}

impl RunOutcome {
    /// Whether the run counts as a success.
    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Succeeded)
    }

    /// A short label for logs and metrics: `succeeded`, `failed`, `panicked`, `timed_out`,
    /// `overran` or `dropped`.
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed(_) => "failed",
            RunOutcome::Panicked(_) => "panicked",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Overran => "overran",
            RunOutcome::Dropped => "dropped",
        }
    }
}

/// What [`Host::run`](crate::Host::run) returns: how each job's shutdown went.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    /// One entry per job, in registration order.
    pub jobs: Vec<JobReport>,
}

impl ShutdownReport {
    /// The entry of the job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobReport> {
        self.jobs.iter().find(|job| job.name == name)
    }

    /// Runs dropped at shutdown, over all jobs.
    pub fn dropped(&self) -> usize {
        self.jobs.iter().map(|job| job.dropped_at_shutdown).sum()
    }
}

/// How one job's shutdown went.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// The job's name.
    pub name: String,
    /// Runs in flight when shutdown began.
    pub in_flight_at_shutdown: usize,
    /// Of those, runs that did not end within the grace and were dropped.
    pub dropped_at_shutdown: usize,
    /// The job's final status, with its counters over the host's life.
    pub status: JobStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_counters_adds_each_one() {
        let mut status = JobCounters {
            runs: 10,
            succeeded: 9,
            failures: 1,
            ..JobCounters::default()
        };
        let turn = JobCounters {
            runs: 1,
            succeeded: 1,
            failures: 2,
            panics: 3,
            timeouts: 4,
            overran: 5,
            dropped: 6,
            retries: 7,
            skipped: 8,
            not_leader: 9,
            not_started: 10,
            missed: 11,
        };
        status.add(&turn);
        assert_eq!(
            status,
            JobCounters {
                runs: 11,
                succeeded: 10,
                failures: 3,
                ..turn
            }
        );
    }
}
