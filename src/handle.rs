//! [`HostHandle`]: watch and steer a running host's jobs from anywhere (an admin endpoint, a
//! test, a signal handler).

use std::fmt;
use std::sync::Arc;

use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock::WallClock;
use crate::cluster::OperatorCommand;
use crate::control::{Command, JobShared, Triggered};
use crate::identity::NodeIdentity;
use crate::status::{ClusterView, JobStatus};
use crate::store::{LeaseStore, RunRecord, ScheduleRecord, StoreError};

/// A cheap, cloneable handle to a host's jobs: status snapshots, control, and shutdown.
///
/// ```
/// use std::time::Duration;
/// use loopjob::{Host, Schedule, Triggered};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Its first tick is an hour away: every run below is one the operator asked for.
/// let hourly = Schedule::every(Duration::from_secs(3600)).initial_delay(Duration::from_secs(3600));
/// let host = Host::builder()
///     .job_fn("report", hourly, |_ctx| async { Ok(()) })
///     .build()?;
/// let handle = host.handle();
/// let running = tokio::spawn(host.run_until(std::future::pending()));
///
/// assert!(matches!(handle.trigger("report").await?, Triggered::Started(1)));
/// handle.pause("report").await?;
/// handle.shutdown();
/// let report = running.await?;
/// assert_eq!(report.job("report").unwrap().status.counters.runs, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HostHandle {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Vec<JobControl>,
    token: CancellationToken,
    node: Arc<NodeIdentity>,
    /// The host's wall clock, for the next occurrences of cron jobs.
    #[cfg_attr(not(any(feature = "cron", feature = "admin")), allow(dead_code))]
    clock: Arc<dyn WallClock>,
}

/// The handle's line to one job's supervisor. Every job keeps one for the host's life: what
/// only some jobs have is boxed, and the name is the one in `shared`.
pub(crate) struct JobControl {
    pub(crate) shared: Arc<JobShared>,
    /// The job's cron schedule, if it runs on one.
    #[cfg(feature = "cron")]
    pub(crate) cron: Option<Box<crate::CronSchedule>>,
    /// For a guarded job: its keys' records in the store.
    pub(crate) cluster: Option<Box<ClusterLine>>,
}

/// The handle's line to a guarded job's schedule records: operator commands are written there,
/// for whichever node leads.
pub(crate) struct ClusterLine {
    pub(crate) keys: Vec<String>,
    pub(crate) store: Arc<dyn LeaseStore>,
    /// Wakes this host's elector to read the records at once, so that it obeys at once if it
    /// leads.
    pub(crate) read_now: Arc<Notify>,
}

/// Why a control call on a [`HostHandle`] did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No job has this name.
    #[error("no job is named `{name}`; the jobs are: {known}")]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The host has shut down, or has not started running yet.
    #[error("job `{name}` is not running: the host has shut down or has not started")]
    NotRunning {
        /// The job's name.
        name: String,
    },
    /// The job is guarded, and its schedule records could not be read or written.
    #[error("job `{name}`: the lease store failed: {message}")]
    Store {
        /// The job's name.
        name: String,
        /// What the store said.
        message: String,
    },
    /// The call needs a guarded job's cluster schedule, and the job is not guarded.
    #[error(
        "job `{name}` is not guarded (leader = none): it has no cluster schedule; its status \
         and pause are per process"
    )]
    NotGuarded {
        /// The job's name.
        name: String,
    },
}

impl HostHandle {
    pub(crate) fn new(
        jobs: Vec<JobControl>,
        token: CancellationToken,
        node: Arc<NodeIdentity>,
        clock: Arc<dyn WallClock>,
    ) -> Self {
        HostHandle {
            inner: Arc::new(Inner {
                jobs,
                token,
                node,
                clock,
            }),
        }
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// The host's wall clock now.
    #[cfg(feature = "admin")]
    pub(crate) fn wall_now(&self) -> std::time::SystemTime {
        self.inner.clock.now()
    }

    /// The identity of the node this host runs on.
    pub fn node(&self) -> &NodeIdentity {
        &self.inner.node
    }

    /// The names of all jobs, in registration order.
    pub fn job_names(&self) -> Vec<String> {
        self.inner
            .jobs
            .iter()
            .map(|job| job.shared.name.to_string())
            .collect()
    }

    /// A snapshot of every job, in registration order.
    pub fn statuses(&self) -> Vec<JobStatus> {
        self.inner
            .jobs
            .iter()
            .map(|job| job.shared.snapshot())
            .collect()
    }

    /// A snapshot of the job named `name`.
    pub fn status(&self, name: &str) -> Option<JobStatus> {
        self.find(name).ok().map(|job| job.shared.snapshot())
    }

    /// The next `count` occurrences of a cron job, in the job's time zone: from the one it waits
    /// for (after the host's wall clock now; later, if the clock was stepped back). Empty for an
    /// interval job, whose next tick is in [`JobStatus::next_tick`].
    ///
    /// ```
    /// use loopjob::{Host, Schedule};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let nightly = Schedule::cron("30 2 * * *").timezone("Europe/Berlin");
    /// let host = Host::builder().job_fn("nightly", nightly, |_ctx| async { Ok(()) }).build()?;
    /// let next = host.handle().next_runs("nightly", 3)?;
    /// assert_eq!(next.len(), 3);
    /// assert!(next.iter().all(|run| run.time_zone().iana_name() == Some("Europe/Berlin")));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cron")]
    pub fn next_runs(&self, name: &str, count: usize) -> Result<Vec<jiff::Zoned>, ControlError> {
        let job = self.find(name)?;
        let Some(cron) = &job.cron else {
            return Ok(Vec::new());
        };
        let now = jiff::Timestamp::try_from(self.inner.clock.now())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        // The occurrence the job waits for, by its status: after a step of the clock backwards
        // that is later than the next one after now (no occurrence runs twice). Occurrences are
        // whole seconds apart, so half a second below it finds it, and not the one before.
        let waited_for = job.shared.status().next_tick.and_then(|tick| {
            let ahead = tick.checked_duration_since(tokio::time::Instant::now())?;
            now.checked_add(ahead)
                .ok()?
                .checked_sub(std::time::Duration::from_millis(500))
                .ok()
        });
        let after = waited_for.map_or(now, |waited_for| waited_for.max(now));
        Ok(cron.next_runs(after, count))
    }

    /// Waits until `predicate` holds for the job's status, and returns that status.
    ///
    /// Cancel-safe. Fails with [`ControlError::NotRunning`] if the job stops without the
    /// predicate holding.
    ///
    /// ```no_run
    /// # async fn demo(handle: loopjob::HostHandle) -> Result<(), loopjob::ControlError> {
    /// let status = handle.wait_for("report", |s| s.counters.runs >= 3).await?;
    /// assert!(status.counters.runs >= 3);
    /// # Ok(()) }
    /// ```
    pub async fn wait_for(
        &self,
        name: &str,
        predicate: impl FnMut(&JobStatus) -> bool,
    ) -> Result<JobStatus, ControlError> {
        let job = self.find(name)?;
        job.shared
            .wait_for(predicate)
            .await
            .ok_or_else(|| ControlError::NotRunning {
                name: name.to_owned(),
            })
    }

    /// Starts a run now, outside the schedule (unless as many runs as the job allows are
    /// already in flight, or the host's `max_parallel_runs` are: see [`Triggered`]). Works
    /// while the job is paused or disabled.
    ///
    /// For a guarded job the trigger is written to its keys' schedule records, from any node,
    /// and answered [`Triggered::Requested`]: whichever node leads runs it once, as soon as a
    /// run may start (within a retry period; at once on this node or where the store notifies).
    pub async fn trigger(&self, name: &str) -> Result<Triggered, ControlError> {
        if let Some(cluster) = &self.find(name)?.cluster {
            self.command(name, cluster, OperatorCommand::Trigger)
                .await?;
            return Ok(Triggered::Requested);
        }
        self.ask(name, Command::Trigger).await
    }

    /// Stops the job's ticks until [`HostHandle::resume`]; runs in flight go on.
    ///
    /// For an unguarded job this pauses this process's copy only, and returns once it has
    /// paused; a restart forgets it. For a guarded job the pause is written to its keys'
    /// schedule records: it holds cluster-wide, whichever node leads (it obeys within a retry
    /// period; at once on this node or where the store notifies), and survives restarts of
    /// every node.
    pub async fn pause(&self, name: &str) -> Result<(), ControlError> {
        if let Some(cluster) = &self.find(name)?.cluster {
            return self.command(name, cluster, OperatorCommand::Pause).await;
        }
        self.ask(name, Command::Pause).await
    }

    /// Resumes a paused job (cluster-wide for a guarded job, like [`HostHandle::pause`]). Ticks
    /// that fell due while it was paused are not run.
    pub async fn resume(&self, name: &str) -> Result<(), ControlError> {
        if let Some(cluster) = &self.find(name)?.cluster {
            return self.command(name, cluster, OperatorCommand::Resume).await;
        }
        self.ask(name, Command::Resume).await
    }

    /// A guarded job's cluster schedule, read from the store now (from any node, leader or
    /// not): next due time, last run wherever it ran, operator marks.
    pub async fn schedule(&self, name: &str) -> Result<ClusterView, ControlError> {
        let cluster = self.cluster(name)?;
        let records: Vec<ScheduleRecord> = cluster
            .store
            .schedules(&cluster.keys)
            .await
            .map_err(|error| store_error(name, error))?;
        Ok(ClusterView::from_records(records))
    }

    /// A guarded job's newest `limit` runs, across all its keys and every node, newest first.
    pub async fn history(&self, name: &str, limit: u32) -> Result<Vec<RunRecord>, ControlError> {
        let cluster = self.cluster(name)?;
        let mut runs = Vec::new();
        for key in &cluster.keys {
            let key_runs = cluster
                .store
                .history(key, limit)
                .await
                .map_err(|error| store_error(name, error))?;
            runs.extend(key_runs);
        }
        runs.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.seq.cmp(&a.seq)));
        runs.truncate(limit as usize);
        Ok(runs)
    }

    fn cluster(&self, name: &str) -> Result<&ClusterLine, ControlError> {
        self.find(name)?
            .cluster
            .as_deref()
            .ok_or_else(|| ControlError::NotGuarded {
                name: name.to_owned(),
            })
    }

    /// Writes an operator's command to each key of a guarded job, then wakes this host's
    /// elector to read the records, so that it obeys at once if it leads.
    async fn command(
        &self,
        name: &str,
        cluster: &ClusterLine,
        command: OperatorCommand,
    ) -> Result<(), ControlError> {
        let by = self.inner.node.node_id();
        for key in &cluster.keys {
            command
                .write(cluster.store.as_ref(), key, by)
                .await
                .map_err(|error| store_error(name, error))?;
        }
        cluster.read_now.notify_one();
        Ok(())
    }

    /// Cancels the token of every run of the job in flight and returns how many there were. The
    /// runs get their `cancel_grace` to stop and are then dropped; the schedule goes on.
    pub async fn cancel_runs(&self, name: &str) -> Result<usize, ControlError> {
        self.ask(name, Command::CancelRuns).await
    }

    /// Asks the host to shut down, as a signal would.
    pub fn shutdown(&self) {
        self.inner.token.cancel();
    }

    /// Queues a command for every job, without waiting for answers.
    pub(crate) fn tell_every_job(&self, command: impl Fn() -> Command) {
        for job in &self.inner.jobs {
            let _ = job.shared.send(command());
        }
    }

    /// Sends a command to a job's supervisor and waits for its answer.
    async fn ask<T>(
        &self,
        name: &str,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ControlError> {
        let job = self.find(name)?;
        let not_running = || ControlError::NotRunning {
            name: name.to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        job.shared.send(command(reply)).map_err(|_| not_running())?;
        answer.await.map_err(|_| not_running())
    }

    fn find(&self, name: &str) -> Result<&JobControl, ControlError> {
        self.inner
            .jobs
            .iter()
            .find(|job| &*job.shared.name == name)
            .ok_or_else(|| ControlError::UnknownJob {
                name: name.to_owned(),
                known: self.job_names().join(", "),
            })
    }
}

fn store_error(name: &str, error: StoreError) -> ControlError {
    ControlError::Store {
        name: name.to_owned(),
        message: error.to_string(),
    }
}

impl fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostHandle")
            .field("jobs", &self.job_names())
            .field("node", &self.inner.node)
            .finish()
    }
}
