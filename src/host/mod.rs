//! The host: it collects jobs and shared resources, validates everything before anything starts,
//! runs one supervisor per job, and shuts them all down gracefully.
//!
//! ```no_run
//! use std::time::Duration;
//! use loopjob::{Host, Schedule};
//!
//! # async fn demo() -> Result<(), loopjob::BuildError> {
//! let host = Host::builder()
//!     .job_fn("heartbeat", Schedule::every(Duration::from_secs(5)), |ctx| async move {
//!         tracing::info!(run = ctx.run_id(), "still here");
//!         Ok(())
//!     })
//!     .build()?;
//! let report = host.run().await; // until Ctrl-C or SIGTERM
//! assert_eq!(report.dropped(), 0);
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::clock::{SystemClock, WallClock};
use crate::control::{Command, HostShared, JobShared};
use crate::handle::{HostHandle, JobControl};
use crate::identity::NodeIdentity;
use crate::job::{Erased, ErasedJob, FnJob, JobContext, JobError, LoopJob, Resources};
use crate::run::panic_message;
use crate::run_slots::RunSlots;
use crate::schedule::Schedule;
use crate::settings::{LeaderMode, Leadership, Settings, SettingsWarning};
use crate::shard;
use crate::status::{JobReport, ShutdownReport};
use crate::store::LeaseStore;
use crate::supervisor::{Supervisor, initial_status};

pub use error::{BuildError, BuildProblem};
use guarded::{GuardTasks, Guarding};

mod error;
mod guarded;

/// How long the admin endpoint's requests in progress may take once the jobs have stopped.
#[cfg(feature = "admin")]
const ADMIN_STOP_GRACE: Duration = Duration::from_secs(1);

/// How long shutdown waits for in-flight runs unless told otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Builds a [`Host`]: jobs, shared resources and host-wide settings.
///
/// Nothing runs until [`Host::run`]; [`HostBuilder::build`] validates every job first and reports
/// all problems at once.
#[must_use = "a builder does nothing until `build` is called"]
pub struct HostBuilder {
    registrations: Vec<Registration>,
    resources: Resources,
    node: Option<NodeIdentity>,
    store: Option<Arc<dyn LeaseStore>>,
    leadership_overrides: Vec<(String, Leadership)>,
    shutdown_grace: Duration,
    max_parallel_runs: Option<usize>,
    settings: Option<Settings>,
    discover_at: Option<&'static Location<'static>>,
    wall_clock: Arc<dyn WallClock>,
    #[cfg(feature = "admin")]
    admin: Option<crate::admin::AdminOptions>,
}

/// One job as it was registered on the builder.
pub(crate) struct Registration {
    pub(crate) name: Arc<str>,
    /// The settings section it reads, `[jobs.<section>]`.
    pub(crate) section: Arc<str>,
    pub(crate) schedule: Schedule,
    pub(crate) leadership: Leadership,
    pub(crate) job: Arc<dyn ErasedJob>,
    pub(crate) registered_at: &'static Location<'static>,
}

impl HostBuilder {
    fn new() -> Self {
        HostBuilder {
            registrations: Vec::new(),
            resources: Resources::default(),
            node: None,
            store: None,
            leadership_overrides: Vec::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_parallel_runs: None,
            settings: None,
            discover_at: None,
            wall_clock: Arc::new(SystemClock),
            #[cfg(feature = "admin")]
            admin: None,
        }
    }

    /// Adds a job, which runs on its own [`LoopJob::schedule`].
    #[track_caller]
    pub fn job<J: LoopJob>(mut self, job: J) -> Self {
        let registration = Registration {
            name: job.name().into(),
            section: job.section().into(),
            schedule: job.schedule(),
            leadership: job.leadership(),
            job: Arc::new(Erased(job)),
            registered_at: Location::caller(),
        };
        self.registrations.push(registration);
        self
    }

    /// Adds a job made of a name, a schedule and a closure that returns each run's future.
    ///
    /// The closure may own state and change it (it is `FnMut`); each run's future must own what
    /// it uses, so clone a shared value (an `Arc`, a pool) in the closure, before `async move`:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use loopjob::{Host, Schedule};
    ///
    /// struct Db;
    /// impl Db {
    ///     async fn purge(&self, batch: u64) -> std::io::Result<()> { Ok(()) }
    /// }
    ///
    /// let db = Arc::new(Db);
    /// let mut batch = 0;
    /// let builder = Host::builder().job_fn(
    ///     "purge_cache",
    ///     Schedule::every(Duration::from_secs(60)),
    ///     move |ctx| {
    ///         let db = db.clone(); // one clone per run, moved into its future
    ///         batch += 1; // state the closure owns
    ///         async move {
    ///             tracing::info!(run = ctx.run_id(), batch, "purging");
    ///             db.purge(batch).await?;
    ///             Ok(())
    ///         }
    ///     },
    /// );
    /// # let _ = builder;
    /// ```
    ///
    /// The closure is called under a lock held only while it returns its future, so its state
    /// needs no lock of its own and overlapping runs still overlap.
    #[track_caller]
    pub fn job_fn<F, Fut>(mut self, name: impl Into<String>, schedule: Schedule, run: F) -> Self
    where
        F: FnMut(JobContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let name: Arc<str> = name.into().into();
        let registration = Registration {
            section: name.clone(),
            name,
            schedule,
            leadership: Leadership::default(),
            job: Arc::new(FnJob::new(run)),
            registered_at: Location::caller(),
        };
        self.registrations.push(registration);
        self
    }

    /// Adds a shared resource (a pool, a client) that runs look up by type with
    /// [`JobContext::resource`].
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(value);
        self
    }

    /// Sets the leadership of the job named `job`, registered on this builder before or after
    /// this call, replacing what its code gives: how a closure job gets one. Settings still
    /// override it. A name that no registered job has is a [`BuildProblem::UnknownJob`], with
    /// the closest name; a discovered job takes its leadership from its attribute and settings
    /// ([`BuildProblem::DiscoveredJob`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use loopjob::{Host, LeaderMode, Leadership, Schedule};
    ///
    /// let builder = Host::builder()
    ///     .job_fn("nightly_report", Schedule::every(Duration::from_secs(86_400)), |_ctx| async { Ok(()) })
    ///     .leadership("nightly_report", Leadership::new(LeaderMode::Global));
    /// # let _ = builder;
    /// ```
    pub fn leadership(mut self, job: &str, leadership: Leadership) -> Self {
        self.leadership_overrides.push((job.to_owned(), leadership));
        self
    }

    /// Sets the lease store that guarded jobs elect their leaders through. Required when any
    /// job's leader mode is not `none`; jobs with `leader = none` never touch it.
    pub fn store(mut self, store: Arc<dyn LeaseStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a resource that is already shared (an `Arc` you keep a clone of), looked up by
    /// type like [`HostBuilder::resource`].
    pub fn resource_shared<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.resources.insert_shared(value);
        self
    }

    /// Sets this node's identity. Default: [`NodeIdentity::from_env`].
    pub fn node(mut self, node: NodeIdentity) -> Self {
        self.node = Some(node);
        self
    }

    /// Sets the wall clock that cron jobs read (interval jobs never read one). Default: the
    /// system's ([`SystemClock`]); a test gives a [`TestClock`](crate::TestClock) to step it.
    pub fn wall_clock(mut self, clock: impl WallClock) -> Self {
        self.wall_clock = Arc::new(clock);
        self
    }

    /// Sets how long shutdown waits for in-flight runs before dropping them. Default: 30s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets the most runs in flight at once over every job of the host, beside each job's own
    /// overlap limit (`skip_if_running`, `max_overlap`). Default: no limit. Settings:
    /// `max_parallel_runs` in `[loopjob]`.
    ///
    /// A tick that finds every slot taken waits for one, and its run starts the moment one
    /// frees; if the job's next tick comes first, the waiting tick is skipped and counted in
    /// [`JobCounters::skipped`](crate::JobCounters::skipped) (a fixed-delay job, which has no
    /// next tick meanwhile, waits as long as it takes). A trigger that finds every slot taken
    /// answers [`Triggered::HostBusy`](crate::Triggered::HostBusy). Zero is a build error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use loopjob::{Host, Schedule};
    ///
    /// let host = Host::builder()
    ///     .max_parallel_runs(2) // at most two of these three run at once
    ///     .job_fn("a", Schedule::every(Duration::from_secs(10)), |_ctx| async { Ok(()) })
    ///     .job_fn("b", Schedule::every(Duration::from_secs(10)), |_ctx| async { Ok(()) })
    ///     .job_fn("c", Schedule::every(Duration::from_secs(10)), |_ctx| async { Ok(()) })
    ///     .build();
    /// assert!(host.is_ok());
    /// ```
    pub fn max_parallel_runs(mut self, limit: usize) -> Self {
        self.max_parallel_runs = Some(limit);
        self
    }

    /// Applies settings: the `[loopjob]` section, and each job's `[jobs.<name>]` section over
    /// the values from its code (the environment over the files). Everything is checked in
    /// [`HostBuilder::build`], with the other problems; see [`Settings`].
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Adds every job that `#[derive(LoopJob)]` marked `discover` in this program (except those
    /// registered explicitly), each built at [`HostBuilder::build`] from its settings section
    /// and this builder's resources, whenever they are added.
    #[track_caller]
    pub fn discover(mut self) -> Self {
        self.discover_at = Some(Location::caller());
        self
    }

    /// Serves the admin endpoint (feature `admin`) while the host runs: probes, metrics, the
    /// JSON API and the dashboard. See [`admin`](crate::admin). Options given here win over a
    /// `[loopjob.admin]` settings section.
    ///
    /// ```
    /// use loopjob::Host;
    /// use loopjob::admin::AdminOptions;
    ///
    /// # fn main() -> Result<(), loopjob::BuildError> {
    /// let host = Host::builder()
    ///     .admin(AdminOptions::bind("127.0.0.1:0".parse().unwrap()).token("s3cret"))
    ///     .build()?; // binds here
    /// assert!(host.admin_address().unwrap().ip().is_loopback());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "admin")]
    pub fn admin(mut self, options: crate::admin::AdminOptions) -> Self {
        self.admin = Some(options);
        self
    }

    /// Validates every job and builds the host; every problem found is in the error.
    pub fn build(mut self) -> Result<Host, BuildError> {
        let mut problems = Vec::new();
        for (job, leadership) in std::mem::take(&mut self.leadership_overrides) {
            match self.registrations.iter_mut().find(|r| *r.name == job) {
                Some(registration) => registration.leadership = leadership,
                None => problems.push(self.unknown_job(job, "leadership")),
            }
        }
        let configured = crate::settings::configure(
            self.settings.take(),
            self.discover_at,
            crate::settings::Builder {
                registrations: &mut self.registrations,
                resources: &self.resources,
                node: &mut self.node,
                shutdown_grace: &mut self.shutdown_grace,
                max_parallel_runs: &mut self.max_parallel_runs,
                store: &mut self.store,
                #[cfg(feature = "admin")]
                admin: &mut self.admin,
            },
        );
        let settings_warnings = match configured {
            Ok(warnings) => warnings,
            Err(found) => {
                problems.extend(found.into_iter().map(BuildProblem::Settings));
                Vec::new()
            }
        };
        problems.extend(self.problems());
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        // Bound last, once nothing else can fail the build.
        #[cfg(feature = "admin")]
        let admin = match self.admin.take().map(crate::admin::AdminServer::bind) {
            None => None,
            Some(Ok(server)) => Some(server),
            Some(Err((address, error))) => {
                let reason = error.to_string();
                return Err(BuildError {
                    problems: vec![BuildProblem::AdminBind { address, reason }],
                });
            }
        };

        let token = CancellationToken::new();
        let node = Arc::new(self.node.unwrap_or_else(NodeIdentity::from_env));
        let host = Arc::new(HostShared {
            node: node.clone(),
            resources: self.resources,
            token: token.clone(),
            shutdown_grace: self.shutdown_grace,
            clock: self.wall_clock.clone(),
            slots: self.max_parallel_runs.map(RunSlots::new),
            status_changed: tokio::sync::Notify::new(),
        });
        let mut controls = Vec::with_capacity(self.registrations.len());
        #[cfg(feature = "admin")]
        let admin_store = self.store.clone();
        // Checked by `problems`: a guarded job has a store.
        let mut guarding = self.store.map(|store| Guarding::new(store, &node));
        // `collect` keeps the supervisors in the registrations' memory (a supervisor is the
        // smaller): a host allocates no second vector of its jobs, whose pages it would keep.
        let supervisors: Vec<Supervisor> = self
            .registrations
            .into_iter()
            .map(|registration| {
                let (guard, cluster) = match &mut guarding {
                    Some(guarding) if registration.leadership.mode != LeaderMode::None => {
                        let (guard, cluster) = guarding.add(&registration, &node);
                        (Some(guard), Some(cluster))
                    }
                    _ => (None, None),
                };
                let status = initial_status(&registration.schedule);
                let shared = Arc::new(JobShared::new(registration.name, host.clone(), status));
                controls.push(JobControl {
                    shared: shared.clone(),
                    #[cfg(feature = "cron")]
                    cron: registration.schedule.cron_schedule().cloned().map(Box::new),
                    cluster: cluster.map(Box::new),
                });
                Supervisor {
                    job: registration.job,
                    shared,
                    schedule: registration.schedule,
                    guard: guard.map(Box::new),
                }
            })
            .collect();
        let guard_tasks = guarding.and_then(Guarding::into_tasks);
        // The readiness probe asks the store when the host has guarded jobs.
        #[cfg(feature = "admin")]
        let admin = admin.map(|server| (server, admin_store.filter(|_| guard_tasks.is_some())));
        Ok(Host {
            #[cfg(feature = "admin")]
            admin,
            supervisors,
            guard_tasks,
            handle: HostHandle::new(controls, token, node, self.wall_clock),
            settings_warnings,
        })
    }

    /// A per-job setting given for `job`, which is not registered: the closest registered
    /// name (or discovered one, with [`HostBuilder::discover`]) is suggested.
    fn unknown_job(&self, job: String, setting: &'static str) -> BuildProblem {
        let discovered = self
            .discover_at
            .map(|_| crate::__private::Discovered::all());
        let discovered = discovered.iter().flatten().map(|d| d.name());
        if discovered.clone().any(|name| name == job) {
            return BuildProblem::DiscoveredJob { job, setting };
        }
        let known = self
            .registrations
            .iter()
            .map(|registration| &*registration.name)
            .chain(discovered);
        let suggestion = crate::settings::did_you_mean(&job, known).map(str::to_owned);
        BuildProblem::UnknownJob {
            job,
            setting,
            suggestion,
        }
    }

    /// Every reason the registered jobs cannot run, in registration order.
    fn problems(&self) -> Vec<BuildProblem> {
        let mut problems = Vec::new();
        if let Some(problem) = crate::limits::at_most(
            "shutdown_grace",
            self.shutdown_grace,
            crate::limits::MAX_GRACE,
            "MAX_GRACE",
        ) {
            problems.push(BuildProblem::InvalidHostSetting { problem });
        }
        if self.max_parallel_runs == Some(0) {
            problems.push(BuildProblem::NoRunSlots);
        }
        let mut first_of_name = std::collections::HashMap::with_capacity(self.registrations.len());
        for (index, registration) in self.registrations.iter().enumerate() {
            if registration.name.trim().is_empty() {
                problems.push(BuildProblem::EmptyName {
                    registered_at: registration.registered_at,
                });
            }
            let (first_index, first) = *first_of_name
                .entry(&*registration.name)
                .or_insert((index, registration.registered_at));
            if first_index != index {
                problems.push(BuildProblem::DuplicateName {
                    name: registration.name.to_string(),
                    first,
                    second: registration.registered_at,
                });
            }
            // Most jobs keep the default leadership, which is valid (its unit test says so):
            // a host of 100,000 such jobs does not check it 100,000 times.
            let leadership_checked = if registration.leadership == Leadership::default() {
                Ok(())
            } else {
                registration.leadership.validate()
            };
            if let Err(leadership_problems) = leadership_checked {
                problems.extend(leadership_problems.into_iter().map(|problem| {
                    BuildProblem::InvalidLeadership {
                        job: registration.name.to_string(),
                        problem,
                        registered_at: registration.registered_at,
                    }
                }));
            }
            if registration.leadership.mode != LeaderMode::None && self.store.is_none() {
                problems.push(BuildProblem::MissingStore {
                    job: registration.name.to_string(),
                    mode: registration.leadership.mode,
                });
            }
            if let Err(schedule_problems) = registration.schedule.validate() {
                problems.extend(schedule_problems.into_iter().map(|problem| {
                    BuildProblem::InvalidSchedule {
                        job: registration.name.to_string(),
                        problem,
                        registered_at: registration.registered_at,
                    }
                }));
            }
        }
        problems
    }
}

/// A built set of jobs, ready to run.
///
/// Take a [`HostHandle`] with [`Host::handle`] before running to watch and control the jobs.
pub struct Host {
    supervisors: Vec<Supervisor>,
    /// The one elector and the one ledger of all guarded jobs, if there are any.
    guard_tasks: Option<GuardTasks>,
    handle: HostHandle,
    settings_warnings: Vec<SettingsWarning>,
    /// The admin endpoint, bound, and the store its readiness probe asks.
    #[cfg(feature = "admin")]
    admin: Option<(crate::admin::AdminServer, Option<Arc<dyn LeaseStore>>)>,
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }

    /// A handle to watch and control the jobs, and to shut the host down.
    pub fn handle(&self) -> HostHandle {
        self.handle.clone()
    }

    /// The address the admin endpoint listens on, if it has one (with the port picked when
    /// port 0 was asked for).
    #[cfg(feature = "admin")]
    pub fn admin_address(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|(server, _)| server.address())
    }

    /// What the settings had that is probably a mistake but did not stop the build, such as a
    /// section for a job that is not registered (each was also logged).
    pub fn settings_warnings(&self) -> &[SettingsWarning] {
        &self.settings_warnings
    }

    /// Runs every job until SIGINT (Ctrl-C) or SIGTERM, or until [`HostHandle::shutdown`], then
    /// shuts down gracefully.
    pub async fn run(self) -> ShutdownReport {
        self.run_until(shutdown_signal()).await
    }

    /// Runs every job until `signal` completes (or [`HostHandle::shutdown`] is called), then shuts
    /// down: ticking stops, in-flight runs are cancelled and waited for up to the shutdown grace,
    /// those still running are dropped, the ends of guarded runs are written to their keys'
    /// records, and then every lease is released.
    ///
    /// Note: dropping this future stops every job at once, like a crash: runs are dropped
    /// without their grace and leases are *not* released (they expire after their ttl). Let it
    /// complete for a graceful shutdown.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> ShutdownReport {
        let token = self.handle.token().clone();
        let jobs = self.supervisors.len();
        let jobs_per_shard = shard::jobs_per_shard(jobs);
        // Shard `i` holds the jobs `i * jobs_per_shard..`, in the handle's order. The
        // supervisors' vector is gone once they are in their shards: it is not kept for the
        // host's life.
        let shards: Vec<_> = {
            let mut supervisors = self.supervisors.into_iter();
            std::iter::from_fn(|| {
                let shard: Vec<_> = supervisors.by_ref().take(jobs_per_shard).collect();
                (!shard.is_empty()).then(|| AbortOnDropHandle::new(tokio::spawn(shard::run(shard))))
            })
            .collect()
        };
        let (elector, ledger) = match self.guard_tasks {
            Some(GuardTasks { elector, ledger }) => {
                let stop = elector.stop_token();
                let elector = AbortOnDropHandle::new(tokio::spawn(elector.run()));
                let ledger = AbortOnDropHandle::new(tokio::spawn(ledger.run(token.clone())));
                (Some((stop, elector)), Some(ledger))
            }
            None => (None, None),
        };
        // The admin endpoint answers through the whole shutdown (its probes say so) and stops
        // once the jobs have.
        #[cfg(feature = "admin")]
        let admin = self.admin.map(|(server, store)| {
            let stop = CancellationToken::new();
            let served = server.spawn(self.handle.clone(), store, stop.clone());
            (stop, AbortOnDropHandle::new(served))
        });
        tracing::info!(jobs, shards = shards.len(), node = %self.handle.node(), "host started");

        tokio::select! {
            _ = signal => tracing::info!("shutdown requested"),
            _ = token.cancelled() => tracing::info!("shutdown requested through the handle"),
        }
        // Cancelling the token reaches every run; the command stops every supervisor's loop.
        token.cancel();
        self.handle.tell_every_job(|| Command::Shutdown);

        let mut report = ShutdownReport::default();
        for (index, shard) in shards.into_iter().enumerate() {
            match shard.await {
                Ok(job_reports) => report.jobs.extend(job_reports),
                Err(error) => {
                    // A shard ends a job whose loop panicked alone (`shard::run`): this is a
                    // panic in the shard's own code, a bug in loopjob, which took all its jobs.
                    let message = if error.is_panic() {
                        panic_message(error.into_panic())
                    } else {
                        error.to_string()
                    };
                    let names = self.handle.job_names().into_iter();
                    for name in names.skip(index * jobs_per_shard).take(jobs_per_shard) {
                        tracing::error!(job = %name, panic = %message, "supervisor failed");
                        if let Some(status) = self.handle.status(&name) {
                            report.jobs.push(JobReport {
                                name,
                                in_flight_at_shutdown: status.in_flight,
                                dropped_at_shutdown: status.in_flight,
                                status,
                            });
                        }
                    }
                }
            }
        }
        // The ledger stops once the supervisors have, with their last run ends written while
        // the leases are still held; it sends no start once the token is cancelled.
        if let Some(ledger) = ledger {
            if let Err(error) = ledger.await {
                tracing::error!(%error, "the run ledger failed; the last runs' ends may be missing from their records");
            }
        }
        // Leases go last, once no run can still be acting on them.
        if let Some((stop, elector)) = elector {
            stop.cancel();
            if let Err(error) = elector.await {
                tracing::error!(%error, "the elector failed; leases will expire after their ttl");
            }
        }
        #[cfg(feature = "admin")]
        if let Some((stop, served)) = admin {
            stop.cancel();
            // Requests in progress get a moment; a client that keeps its connection open
            // does not hold the host.
            let _ = tokio::time::timeout(ADMIN_STOP_GRACE, served).await;
        }
        tracing::info!(dropped = report.dropped(), "host stopped");
        report
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("jobs", &self.supervisors.len())
            .finish_non_exhaustive()
    }
}

/// Completes on SIGINT or SIGTERM (on other platforms, Ctrl-C).
fn shutdown_signal() -> impl Future<Output = ()> {
    // The listeners are registered when `run` starts, before any job does, not when this
    // future is first polled: a signal that arrives while the jobs start is then a shutdown,
    // never the default action (the process dies).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listeners = signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        });
        async move {
            match listeners {
                Ok((mut interrupt, mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the host");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
