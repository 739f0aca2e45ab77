//! The JSON the admin endpoint answers with: these types are its documented schema.
//!
//! Times are Unix milliseconds (`*_ms`) by the host's wall clock; `now_ms` is that clock when
//! the answer was made, so a page computes "in 3 s" or "2 min ago" without trusting its own
//! clock.
//!
//! `GET /api/jobs`:
//!
//! ```json
//! { "node": "web-1", "group": "default", "now_ms": 1767225600000,
//!   "jobs": [ { "name": "report", "state": "idle", "in_flight": 0,
//!               "next_tick_ms": 1767225605000,
//!               "last_run": { "started_ms": 1767225595000, "ended_ms": 1767225595120,
//!                             "duration_ms": 120, "outcome": "succeeded", "message": null },
//!               "counters": { "runs": 12, "succeeded": 12, "failures": 0, "...": 0 },
//!               "leadership": { "leader": true, "epoch": 7, "leases": [ ... ],
//!                               "acquired": 1, "lost": 0 },
//!               "cluster": { "next_due_ms": 1767225605000, "paused": false, "triggered": false,
//!                            "last_run": { ... }, "error": null },
//!               "recent_runs": [ { "key": "report@default", "holder": "web-1", "epoch": 7,
//!                                  "started_ms": 1767225595000, "outcome": "succeeded", ... } ] } ] }
//! ```
//!
//! Errors are `{ "error": "what went wrong and what to do" }` with the status code.

use std::time::SystemTime;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::json::unix_ms;
pub use crate::cluster::json::{Run, RunsPage};
use crate::status::{ClusterView, JobCounters, JobState, JobStatus, LeadershipStatus, RunOutcome};
use crate::{ControlError, Triggered};

/// `GET /api/jobs`: this node's jobs.
#[derive(Debug, Clone, Serialize)]
pub struct JobsPage {
    /// This node's id.
    pub node: String,
    /// This node's group.
    pub group: String,
    /// The host's wall clock when the answer was made, in Unix milliseconds.
    pub now_ms: u64,
    /// Every job, in registration order.
    pub jobs: Vec<JobView>,
}

/// One job as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// The job's name.
    pub name: String,
    /// `starting`, `idle`, `running`, `paused`, `disabled` or `stopped`.
    pub state: &'static str,
    /// Runs in flight now.
    pub in_flight: usize,
    /// When the next tick is due, if one is scheduled.
    pub next_tick_ms: Option<u64>,
    /// The last run, if there was one.
    pub last_run: Option<LastRun>,
    /// Counters since the host started.
    pub counters: Counters,
    /// For a guarded job, once the elector has reported: what this node holds.
    pub leadership: Option<Leadership>,
    /// For a guarded job: its cluster schedule, read from the store for this answer.
    pub cluster: Option<ClusterSchedule>,
    /// For a guarded job: its newest runs on any node, newest first (at most
    /// [`RECENT_RUNS`]); empty for a job that is not guarded.
    pub recent_runs: Vec<Run>,
}

/// How many of a guarded job's newest runs `GET /api/jobs` shows.
pub const RECENT_RUNS: u32 = 20;

/// A guarded job's cluster schedule, from its keys' records in the store (times are the
/// store's clock).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSchedule {
    /// When its next run is due, cluster-wide.
    pub next_due_ms: Option<i64>,
    /// Whether an operator paused it, cluster-wide.
    pub paused: bool,
    /// Whether an operator's trigger waits for a run.
    pub triggered: bool,
    /// Its newest run, on whichever node it ran.
    pub last_run: Option<Run>,
    /// Why the store could not be read (then the other fields are empty).
    pub error: Option<String>,
}

impl ClusterSchedule {
    pub(crate) fn new(view: ClusterView) -> Self {
        ClusterSchedule {
            next_due_ms: view.next_due_ms,
            paused: view.paused,
            triggered: view.triggered,
            last_run: view.last_run.map(Run::from),
            error: None,
        }
    }

    pub(crate) fn unreadable(error: String) -> Self {
        ClusterSchedule {
            next_due_ms: None,
            paused: false,
            triggered: false,
            last_run: None,
            error: Some(error),
        }
    }
}

/// The last run of a job.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// When it started.
    pub started_ms: Option<u64>,
    /// When it ended; `null` while it is in flight.
    pub ended_ms: Option<u64>,
    /// How long it took, once it ended.
    pub duration_ms: Option<u64>,
    /// `succeeded`, `failed`, `panicked`, `timed_out`, `overran` or `dropped`; `null` while
    /// the first run is in flight.
    pub outcome: Option<&'static str>,
    /// The error or panic message of a failed run.
    pub message: Option<String>,
}

/// A job's counters since the host started (see [`JobCounters`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counters {
    /// Runs started.
    pub runs: u64,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed in any way.
    pub failures: u64,
    /// Runs that panicked.
    pub panics: u64,
    /// Runs that exceeded their timeout.
    pub timeouts: u64,
    /// Runs dropped after their cancel grace.
    pub dropped: u64,
    /// Retries started.
    pub retries: u64,
    /// Ticks skipped because a run was in flight.
    pub skipped: u64,
    /// Ticks of a guarded job that passed because this node held no lease.
    pub not_leader: u64,
    /// Ticks missed during a stall.
    pub missed: u64,
}

/// What a guarded job holds on this node.
#[derive(Debug, Clone, Serialize)]
pub struct Leadership {
    /// Whether this node holds at least one of the job's leases.
    pub leader: bool,
    /// The highest epoch among the held leases.
    pub epoch: Option<u64>,
    /// The held leases.
    pub leases: Vec<Lease>,
    /// For a partitioned job: this node's index among the live members.
    pub worker_index: Option<u32>,
    /// For a partitioned job: the number of live members.
    pub workers: Option<u32>,
    /// Leases won since the host started.
    pub acquired: u64,
    /// Leases lost or released since the host started.
    pub lost: u64,
}

/// One held lease.
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    /// The lease's key in the store.
    pub key: String,
    /// Its fencing epoch.
    pub epoch: u64,
    /// Its partition, for a partitioned job.
    pub partition: Option<u32>,
    /// When it expires unless renewed.
    pub expires_ms: u64,
}

/// `POST /api/jobs/{name}/{action}`: what the action did.
#[derive(Debug, Clone, Serialize)]
pub struct ActionDone {
    /// The job's name.
    pub job: String,
    /// `trigger`, `pause`, `resume` or `cancel`.
    pub action: &'static str,
    /// For `trigger`: `started`, `already_running`, `not_leader` or `host_busy`; for a guarded
    /// job, `requested` (written to its cluster schedule: whichever node leads runs it once).
    pub result: Option<&'static str>,
    /// For a trigger that started a run: its run id.
    pub run_id: Option<u64>,
    /// For `cancel`: how many runs in flight were cancelled.
    pub cancelled: Option<usize>,
    /// The job's state on this node right after the action. A guarded job's pause, resume
    /// and trigger are written to its cluster schedule; the leading node obeys within a retry
    /// period (at once when it is this node or the store notifies), so this may still show the
    /// state before.
    pub state: Option<&'static str>,
}

/// A probe's answer (`/healthz`, `/readyz`).
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Why it is unavailable.
    pub reason: Option<String>,
}

/// An error answer: a status code and `{ "error": "..." }`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn forbidden(message: &str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        let status = match error {
            ControlError::UnknownJob { .. } => StatusCode::NOT_FOUND,
            ControlError::NotGuarded { .. } => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Turns the host's monotonic instants into wall-clock milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Times {
    wall: SystemTime,
    instant: Instant,
}

impl Times {
    pub(crate) fn new(wall: SystemTime) -> Self {
        Times {
            wall,
            instant: Instant::now(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        unix_ms(self.wall)
    }

    fn at(&self, instant: Instant) -> u64 {
        let wall = if instant >= self.instant {
            self.wall.checked_add(instant - self.instant)
        } else {
            self.wall.checked_sub(self.instant - instant)
        };
        wall.map_or(0, unix_ms)
    }
}

/// The name of a state in the JSON.
pub(crate) fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Starting => "starting",
        JobState::Idle => "idle",
        JobState::Running => "running",
        JobState::Paused => "paused",
        JobState::Disabled => "disabled",
        JobState::Stopped => "stopped",
    }
}

/// The name of a trigger's answer in the JSON.
pub(crate) fn triggered_name(triggered: Triggered) -> (&'static str, Option<u64>) {
    match triggered {
        Triggered::Started(run_id) => ("started", Some(run_id)),
        Triggered::AlreadyRunning => ("already_running", None),
        Triggered::NotLeader => ("not_leader", None),
        Triggered::HostBusy => ("host_busy", None),
        Triggered::Requested => ("requested", None),
    }
}

impl JobView {
    pub(crate) fn new(status: JobStatus, times: &Times) -> Self {
        let last_run = status.last_started.map(|started| {
            let ended = status.last_ended.filter(|ended| *ended >= started);
            LastRun {
                started_ms: Some(times.at(started)),
                ended_ms: ended.map(|ended| times.at(ended)),
                duration_ms: ended
                    .map(|ended| u64::try_from((ended - started).as_millis()).unwrap_or(u64::MAX)),
                outcome: status.last_outcome.as_ref().map(RunOutcome::label),
                message: match &status.last_outcome {
                    Some(RunOutcome::Failed(message) | RunOutcome::Panicked(message)) => {
                        Some(message.clone())
                    }
                    _ => None,
                },
            }
        });
        JobView {
            name: status.name,
            state: state_name(status.state),
            in_flight: status.in_flight,
            next_tick_ms: status.next_tick.map(|tick| times.at(tick)),
            last_run,
            counters: Counters::from(status.counters),
            leadership: status
                .leadership
                .map(|leadership| Leadership::new(*leadership, times)),
            cluster: None,
            recent_runs: Vec::new(),
        }
    }
}

impl From<JobCounters> for Counters {
    fn from(c: JobCounters) -> Self {
        Counters {
            runs: c.runs,
            succeeded: c.succeeded,
            failures: c.failures,
            panics: c.panics,
            timeouts: c.timeouts,
            dropped: c.dropped,
            retries: c.retries,
            skipped: c.skipped,
            not_leader: c.not_leader,
            missed: c.missed,
        }
    }
}

impl Leadership {
    fn new(status: LeadershipStatus, times: &Times) -> Self {
        let leases: Vec<Lease> = status
            .leases
            .iter()
            .filter(|lease| lease.is_held())
            .map(|lease| Lease {
                key: lease.key().to_owned(),
                epoch: lease.epoch(),
                partition: lease.partition(),
                expires_ms: times.at(lease.deadline()),
            })
            .collect();
        Leadership {
            leader: !leases.is_empty(),
            epoch: leases.iter().map(|lease| lease.epoch).max(),
            leases,
            worker_index: status.worker.map(|(index, _)| index),
            workers: status.worker.map(|(_, count)| count),
            acquired: status.acquired,
            lost: status.lost,
        }
    }
}
