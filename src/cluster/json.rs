//! The JSON schema of the cluster as tools show it (features `admin` or `cli`): what
//! `GET /api/cluster` and `GET /api/jobs/{name}/runs` answer on the admin endpoint, and what the
//! `loopjob` command prints with `--json`. Fields are only ever added, never renamed or removed.
//!
//! Times are Unix milliseconds (`*_ms`). `now_ms` is the wall clock of whoever answered (the
//! host, or the machine running `loopjob`); every other time comes from the store's clock, and
//! `remaining_ms` and `read_at_ms` let a reader measure against the store's clock, not its own.
//!
//! `GET /api/cluster`, `loopjob status --json`:
//!
//! ```json
//! { "store": "postgres", "now_ms": 1767225600000,
//!   "jobs": [ { "name": "report", "next_due_ms": 1767225605000, "paused": false,
//!               "triggered": false, "last_run": { "key": "report@default", "...": "..." },
//!               "keys": [ { "key": "report@default", "read_at_ms": 1767225600012,
//!                           "next_due_ms": 1767225605000, "paused": null, "trigger": null,
//!                           "last_run": { "...": "..." } } ] } ],
//!   "leases": [ { "key": "report@default", "job": "report", "holder": "web-1/0a1b2c3d",
//!                 "epoch": 7, "expires_ms": 1767225614000, "held": true,
//!                 "remaining_ms": 14000 } ],
//!   "members": [ { "job": "sync", "member": "web-2/5e6f7a8b", "expires_ms": 1767225612000 } ] }
//! ```
//!
//! A run (`last_run`, and each of `runs` in [`RunsPage`]):
//!
//! ```json
//! { "key": "report@default", "holder": "web-1/0a1b2c3d", "epoch": 7,
//!   "started_ms": 1767225595000, "ended_ms": 1767225595120, "duration_ms": 120,
//!   "outcome": "succeeded", "attempts": 1, "error": null, "triggered": false }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{ClusterStatus, job_of_key};
use crate::status::ClusterView;
use crate::store::{LeaseStatus, Member, OperatorMark, RunRecord, RunResult, ScheduleRecord};

/// `GET /api/cluster` and `loopjob status --json`: the cluster as the store knows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterPage {
    /// The store's backend: `memory`, `sqlite`, `postgres`, `mysql` or `redis`.
    pub store: &'static str,
    /// The answerer's wall clock when the answer was made.
    pub now_ms: u64,
    /// Every guarded job with schedule records, by name.
    pub jobs: Vec<ClusterJob>,
    /// Every lease, held or not, by key.
    pub leases: Vec<StoreLease>,
    /// The live members of the partitioned jobs, by job then member: the only jobs whose nodes
    /// announce themselves in the store.
    pub members: Vec<ClusterMember>,
}

/// A guarded job's cluster schedule, over all its keys.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterJob {
    /// The job's name.
    pub name: String,
    /// When its next run is due: the earliest of its keys.
    pub next_due_ms: Option<i64>,
    /// Whether an operator paused it (every key is paused).
    pub paused: bool,
    /// Whether an operator's trigger waits for a run (on any key).
    pub triggered: bool,
    /// Its newest run, on whichever node it ran.
    pub last_run: Option<Run>,
    /// Each of its keys' records: one for a `global` job, one per group for a `cluster` job,
    /// one per partition for a `partitioned` job.
    pub keys: Vec<KeyRecord>,
}

/// One lease key's schedule record.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    /// The lease key.
    pub key: String,
    /// The store's clock when the record was read.
    pub read_at_ms: i64,
    /// When the key's next run is due; `null` until its first holder plans it.
    pub next_due_ms: Option<i64>,
    /// Who paused the key and when; `null` unless paused.
    pub paused: Option<Mark>,
    /// Who asked for a run and when; `null` unless a trigger waits.
    pub trigger: Option<Mark>,
    /// The key's newest run.
    pub last_run: Option<Run>,
}

/// Who gave an operator command, and when by the store's clock.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    /// A node id, a user's or a tool's name.
    pub by: String,
    /// When the store recorded it.
    pub at_ms: i64,
}

/// One lease as the store lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StoreLease {
    /// The lease key.
    pub key: String,
    /// The job it belongs to (see [`job_of_key`]).
    pub job: String,
    /// Its last holder: a node id and a per-process suffix.
    pub holder: String,
    /// Its fencing epoch.
    pub epoch: u64,
    /// When it expires (or expired) by the store's clock.
    pub expires_ms: i64,
    /// Whether it was held (unexpired) when read.
    pub held: bool,
    /// The time left before it expires, by the store's clock; 0 once expired or released.
    pub remaining_ms: u64,
}

/// A live member of a partitioned job.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterMember {
    /// The partitioned job.
    pub job: String,
    /// The member: a node id and a per-process suffix, as its leases' holder shows it.
    pub member: String,
    /// When its membership expires unless renewed, by the store's clock.
    pub expires_ms: i64,
}

/// `loopjob members --json`: the live members of the partitioned jobs.
#[derive(Debug, Clone, Serialize)]
pub struct MembersPage {
    /// The members, by job then member.
    pub members: Vec<ClusterMember>,
}

/// `loopjob pause | resume | trigger JOB --json`: the command given and the job after it.
#[derive(Debug, Clone, Serialize)]
pub struct CommandDone {
    /// `pause`, `resume` or `trigger`.
    pub action: &'static str,
    /// The job's cluster schedule right after the command was written.
    pub job: ClusterJob,
}

/// One run from a guarded job's history in the store.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The lease key it ran under.
    pub key: String,
    /// The node (holder) that ran it.
    pub holder: String,
    /// The lease epoch it ran under.
    pub epoch: u64,
    /// When it started.
    pub started_ms: i64,
    /// When it ended; `null` while it runs, or if its holder never said.
    pub ended_ms: Option<i64>,
    /// How long it took, once it ended.
    pub duration_ms: Option<i64>,
    /// `succeeded`, `failed`, `panicked`, `timed_out` or `cancelled`; `null` while it runs.
    pub outcome: Option<&'static str>,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: Option<String>,
    /// Whether an operator's trigger started it.
    pub triggered: bool,
}

/// `GET /api/jobs/{name}/runs` and `loopjob history JOB --json`: a guarded job's newest runs,
/// newest first.
#[derive(Debug, Clone, Serialize)]
pub struct RunsPage {
    /// The job's name.
    pub job: String,
    /// Its runs, newest first.
    pub runs: Vec<Run>,
}

impl ClusterPage {
    /// The page of `status`, read from a store whose backend is `store`, at wall time `now`.
    pub fn new(store: &'static str, status: ClusterStatus, now: SystemTime) -> Self {
        ClusterPage {
            store,
            now_ms: unix_ms(now),
            jobs: status
                .jobs
                .into_iter()
                .map(|(name, view)| ClusterJob::new(name, view))
                .collect(),
            leases: status.leases.into_iter().map(StoreLease::from).collect(),
            members: ClusterMember::by_job(status.members),
        }
    }
}

impl MembersPage {
    /// The members of each partitioned job, by job name (as
    /// [`ClusterControl::members`](super::ClusterControl::members) answers).
    pub fn new(members: BTreeMap<String, Vec<Member>>) -> Self {
        MembersPage {
            members: ClusterMember::by_job(members),
        }
    }
}

impl ClusterMember {
    fn by_job(members: BTreeMap<String, Vec<Member>>) -> Vec<ClusterMember> {
        members
            .into_iter()
            .flat_map(|(job, members)| {
                members.into_iter().map(move |member| ClusterMember {
                    job: job.clone(),
                    member: member.member,
                    expires_ms: member.expires_at_ms,
                })
            })
            .collect()
    }
}

impl ClusterJob {
    /// The job `name` with the cluster view `view`.
    pub fn new(name: String, view: ClusterView) -> Self {
        ClusterJob {
            name,
            next_due_ms: view.next_due_ms,
            paused: view.paused,
            triggered: view.triggered,
            last_run: view.last_run.map(Run::from),
            keys: view.records.into_iter().map(KeyRecord::from).collect(),
        }
    }
}

impl From<ScheduleRecord> for KeyRecord {
    fn from(record: ScheduleRecord) -> Self {
        KeyRecord {
            key: record.key,
            read_at_ms: record.read_at_ms,
            next_due_ms: record.next_due_ms,
            paused: record.paused.map(Mark::from),
            trigger: record.trigger.map(Mark::from),
            last_run: record.last_run.map(Run::from),
        }
    }
}

impl From<OperatorMark> for Mark {
    fn from(mark: OperatorMark) -> Self {
        Mark {
            by: mark.by,
            at_ms: mark.at_ms,
        }
    }
}

impl From<LeaseStatus> for StoreLease {
    fn from(status: LeaseStatus) -> Self {
        let held = status.is_held();
        let lease = status.lease;
        StoreLease {
            job: job_of_key(&lease.key).to_owned(),
            key: lease.key,
            holder: lease.holder,
            epoch: lease.epoch,
            expires_ms: lease.expires_at_ms,
            held,
            remaining_ms: u64::try_from(status.remaining.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl From<RunRecord> for Run {
    fn from(run: RunRecord) -> Self {
        Run {
            duration_ms: run
                .ended_ms
                .map(|ended| ended.saturating_sub(run.started_ms)),
            outcome: run.outcome.map(RunResult::as_str),
            key: run.key,
            holder: run.holder,
            epoch: run.epoch,
            started_ms: run.started_ms,
            ended_ms: run.ended_ms,
            attempts: run.attempts,
            error: run.error,
            triggered: run.triggered,
        }
    }
}

/// `time` in Unix milliseconds (0 before 1970).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
