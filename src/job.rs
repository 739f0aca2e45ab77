//! What a job is: the [`LoopJob`] trait, the [`JobContext`] each run receives, and
//! [`JobError`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::JobShared;
use crate::guard::{HeldLease, LeadershipEvent, LostReason, RunLeases};
use crate::identity::NodeIdentity;
use crate::schedule::Schedule;
use crate::settings::Leadership;

/// A unit of periodic work: something to run every interval under a supervisor.
///
/// Implement it for a type holding what the job needs (clients, pools, its options), then
/// register a value with [`HostBuilder::job`](crate::HostBuilder::job):
///
/// ```
/// use std::time::Duration;
/// use loopjob::{JobContext, JobError, LoopJob, Schedule};
///
/// struct CleanupTokens;
///
/// impl LoopJob for CleanupTokens {
///     fn name(&self) -> &str {
///         "cleanup_tokens"
///     }
///
///     fn schedule(&self) -> Schedule {
///         Schedule::every(Duration::from_secs(60))
///     }
///
///     async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
///         if ctx.is_cancelled() {
///             return Ok(());
///         }
///         // delete expired tokens …
///         Ok(())
///     }
/// }
/// ```
///
/// `execute` should watch [`JobContext::cancelled`] at its await points: the token is cancelled
/// on shutdown, on timeout and when leadership is lost, and a run that ignores it is dropped
/// after the schedule's `cancel_grace`.
///
/// The trait has no options type: a hand-written job takes its options however it likes (a
/// field set by its constructor). Options read and validated from the job's settings section
/// are the derive's business (`#[loopjob(options = MyOptions, discover)]`, see
/// [`derive@crate::LoopJob`]), which keeps that type out of every hand-written impl.
pub trait LoopJob: Send + Sync + 'static {
    /// The job's name: unique within a host, used in logs, status, settings and lease keys.
    fn name(&self) -> &str;

    /// The schedule the job runs on unless settings say otherwise.
    fn schedule(&self) -> Schedule;

    /// The settings section the job reads, `[jobs.<section>]`. Default: its name; the derive
    /// sets it with `#[loopjob(section = "…")]`, for a job registered explicitly or discovered.
    fn section(&self) -> &str {
        self.name()
    }

    /// Which replicas may run the job, unless settings say otherwise. Default: every replica
    /// ([`LeaderMode::None`](crate::LeaderMode::None)).
    fn leadership(&self) -> Leadership {
        Leadership::default()
    }

    /// One run of the job.
    ///
    /// It is polled in a task the job shares with up to 31 others (its host's shard), so it
    /// must not block the thread: synchronous I/O or heavy computation belongs in
    /// [`tokio::task::spawn_blocking`].
    fn execute(&self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Called once when the job's supervisor starts, before the first tick.
    ///
    /// Polled in the job's shard, like a run (so it must not block the thread either); a panic
    /// in it is caught and logged, and the job goes on.
    fn on_started(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Called once when the job's supervisor stops, after its last run ended or was dropped;
    /// dropped if it takes longer than the shutdown grace. Polled and guarded like
    /// [`LoopJob::on_started`].
    fn on_stopped(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Called when this node wins a lease of a guarded job. Runs beside the job's ticks, never
    /// delaying them.
    fn on_acquired(&self, lease: &HeldLease) -> impl Future<Output = ()> + Send {
        let _ = lease;
        async {}
    }

    /// Called when this node loses a lease of a guarded job; runs started under it have
    /// already been cancelled.
    fn on_lost(&self, lease: &HeldLease, reason: &LostReason) -> impl Future<Output = ()> + Send {
        let _ = (lease, reason);
        async {}
    }
}

/// The error a run returns: anything that converts into a
/// `Box<dyn Error + Send + Sync>` converts into it with `?`.
///
/// That is every error type, `anyhow::Error`, a `Box<dyn Error + Send + Sync>` itself, and a
/// `String` or `&str` message. Its `Display` shows the error and each of its causes, joined by
/// `: `.
///
/// ```
/// use std::error::Error;
/// use loopjob::JobError;
///
/// fn parse(text: &str) -> Result<u32, JobError> {
///     Ok(text.parse::<u32>()?)
/// }
/// fn boxed() -> Result<(), Box<dyn Error + Send + Sync>> {
///     Err("the queue is gone".into())
/// }
/// fn run() -> Result<(), JobError> {
///     boxed()?;
///     Ok(())
/// }
/// assert_eq!(parse("x").unwrap_err().to_string(), "invalid digit found in string");
/// assert_eq!(run().unwrap_err().to_string(), "the queue is gone");
/// assert_eq!(JobError::msg("queue is empty").to_string(), "queue is empty");
/// ```
pub struct JobError(Box<dyn StdError + Send + Sync + 'static>);

impl JobError {
    /// An error carrying only a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        JobError(message.to_string().into())
    }

    /// The underlying error, to inspect or downcast.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

/// One impl for every error type (through std's `From<E: Error> for Box<dyn Error>`), for
/// `anyhow::Error` (through anyhow's own conversion), and for boxed errors and messages.
impl<E> From<E> for JobError
where
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    fn from(error: E) -> Self {
        JobError(error.into())
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::report::write_chain(&*self.0, ": ", f)
    }
}

/// Everything one run of a job knows about itself.
///
/// A fresh context is handed to each attempt of each run. It is cheap to clone, and a clone
/// may go into a task the run spawns.
///
/// # A guarded run stops on waking
///
/// A run of a `cluster`, `global` or `partitioned` job may act only until its leases' local
/// deadline ([`JobContext::lease_deadline`]), which the elector extends at each renewal. A
/// process frozen past it (SIGSTOP, a suspended VM, a stalled host) may find, once resumed,
/// that another replica leads already. The context does not wait for the elector to say so:
/// [`JobContext::is_cancelled`] and [`JobContext::cancelled`] compare the clock with the
/// deadline themselves, and the run's token is cancelled before the run is polled again. So
/// the pattern for an irreversible step is: check [`JobContext::is_cancelled`], then write
/// with the [`JobContext::fencing_token`], which the receiving system compares with the
/// highest epoch it has seen (the check alone cannot exclude a freeze between it and the write).
#[derive(Debug, Clone)]
pub struct JobContext {
    /// What every run of the job shares, behind one per-job `Arc`: cloning it touches only this
    /// job's counter, never one that all jobs share (which would bounce between cores).
    pub(crate) job: Arc<JobShared>,
    pub(crate) run_id: u64,
    pub(crate) scheduled_at: Instant,
    pub(crate) attempt: u32,
    pub(crate) token: RunToken,
    /// The leases this run holds, and how it learns they are gone (none for an unguarded job).
    pub(crate) leases: Option<Arc<RunLeases>>,
    /// For a partitioned job: this node's index among the live members, and their number.
    pub(crate) worker: Option<(u32, u32)>,
}

/// Which cancellation token a run holds.
///
/// Runs of a job that runs one at a time share one token until a run is cancelled on its own
/// (a timeout, an operator, lost leadership); that first token lives in the job's shared record,
/// so handing it to a run costs nothing. Later generations, overlapping runs and retries get
/// tokens of their own, shared through an `Arc` because cloning a token takes a lock.
#[derive(Debug, Clone)]
pub(crate) enum RunToken {
    /// The job's first runs token, [`JobShared::runs_token`].
    Job,
    Own(Arc<CancellationToken>),
}

impl RunToken {
    /// The token itself; `job` is the record of the job the run belongs to.
    pub(crate) fn get<'a>(&'a self, job: &'a JobShared) -> &'a CancellationToken {
        match self {
            RunToken::Job => job.runs_token(),
            RunToken::Own(token) => token,
        }
    }

    /// A new token of its own, a child of `parent`.
    pub(crate) fn child_of(parent: &CancellationToken) -> Self {
        RunToken::Own(Arc::new(parent.child_token()))
    }
}

impl JobContext {
    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job.name
    }

    /// This run's number within the job: 1 for the first run, counting every tick that started a
    /// run and every manual trigger. Retries keep their run's id.
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// The instant the tick that started this run was due (before jitter).
    pub fn scheduled_at(&self) -> Instant {
        self.scheduled_at
    }

    /// The attempt number: 1 for the first, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's cancellation token: cancelled on shutdown, on timeout, when the operator
    /// cancels the run, and when leadership is lost.
    ///
    /// For a guarded job the token is cancelled when the elector reports a lease lost, and by
    /// the run's supervisor when it finds the leases' local deadline passed, which it checks
    /// before every poll of the run. Code in a task of its own (spawned with a clone of the
    /// token) may be polled before either after a freeze: give it a clone of the context and
    /// use [`JobContext::cancelled`] and [`JobContext::is_cancelled`], which read the deadline
    /// themselves.
    pub fn token(&self) -> &CancellationToken {
        self.token.get(&self.job)
    }

    /// Whether the run has been asked to stop: its token is cancelled, or (for a guarded job) a
    /// lease it holds was lost or the leases' local deadline has passed.
    ///
    /// Reads the clock itself, without waiting for the elector, so it is right at once after
    /// this process wakes from a freeze (SIGSTOP, a suspended VM) past its lease. Call it right
    /// before an irreversible step, and send the step the [`JobContext::fencing_token`]: the
    /// check narrows the window in which a stale leader acts, the fencing token closes it
    /// (a freeze can still fall between the check and the write).
    ///
    /// ```
    /// # use loopjob::{JobContext, JobError};
    /// # async fn charge(_batch: &[u64], _epoch: u64) -> Result<(), JobError> { Ok(()) }
    /// async fn execute(ctx: &JobContext) -> Result<(), JobError> {
    ///     let batch = vec![1, 2, 3]; // … work that can be abandoned
    ///     if ctx.is_cancelled() {
    ///         return Ok(()); // no longer the leader, or shutting down: write nothing
    ///     }
    ///     // The store that receives the write rejects an epoch lower than one it has seen.
    ///     charge(&batch, ctx.fencing_token().unwrap_or(0)).await
    /// }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.token().is_cancelled() || self.leases.as_ref().is_some_and(|l| !l.is_held())
    }

    /// Completes when the run is asked to stop: when its token is cancelled, or (for a guarded
    /// job) when a lease it holds is lost or the leases' local deadline passes. The deadline
    /// is compared with the clock at every poll, so after a freeze past it this completes at
    /// the first poll, whichever timer fires first; a renewal that moves the deadline is
    /// followed. Cancel-safe.
    pub async fn cancelled(&self) {
        match &self.leases {
            None => self.token().cancelled().await,
            Some(leases) => tokio::select! {
                biased;
                _ = leases.lost() => {}
                _ = self.token().cancelled() => {}
            },
        }
    }

    /// For a guarded job, the earliest local deadline of the leases this run holds, as renewed
    /// so far: the instant until which the run may act on them (see [`HeldLease::deadline`]).
    /// `None` for an unguarded job.
    ///
    /// Serves a step that must not start unless it can finish in time:
    /// `ctx.lease_deadline().is_none_or(|d| d > Instant::now() + step)`.
    pub fn lease_deadline(&self) -> Option<Instant> {
        self.leases.as_ref().map(|leases| leases.deadline())
    }

    /// The node this run executes on.
    pub fn node(&self) -> &NodeIdentity {
        &self.job.host.node
    }

    /// A shared resource registered on the builder with
    /// [`HostBuilder::resource`](crate::HostBuilder::resource), by type.
    ///
    /// ```
    /// # use loopjob::JobContext;
    /// # struct Pool;
    /// async fn body(ctx: &JobContext) {
    ///     let pool = ctx.resource::<Pool>().expect("Pool is registered on the builder");
    ///     # let _ = pool;
    /// }
    /// ```
    pub fn resource<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.job.host.resources.get::<T>()
    }

    /// The lease of a `cluster` or `global` job, held for this run; `None` for other jobs.
    ///
    /// Check [`JobContext::is_cancelled`] before an irreversible step, and pass
    /// [`JobContext::fencing_token`] to systems that can reject stale writers.
    pub fn lease(&self) -> Option<&HeldLease> {
        self.leases
            .as_deref()?
            .leases()
            .iter()
            .find(|lease| lease.partition().is_none())
    }

    /// The fencing token of this run's lease: its epoch, strictly greater than any epoch a
    /// previous holder of the key had.
    pub fn fencing_token(&self) -> Option<u64> {
        self.lease().map(HeldLease::epoch)
    }

    /// The partitions a `partitioned` job holds for this run, each with its epoch, by
    /// partition number.
    pub fn partitions(&self) -> &[HeldLease] {
        match (&self.leases, self.worker) {
            (Some(leases), Some(_)) => leases.leases(),
            _ => &[],
        }
    }

    /// For a `partitioned` job, this node's index among the live members (0-based, ordered by
    /// node id, so a node that restarts keeps its index); 0 for other jobs. With [`JobContext::worker_count`] it serves work that splits
    /// itself, such as `id % worker_count == worker_index`.
    pub fn worker_index(&self) -> u32 {
        self.worker.map_or(0, |(index, _)| index)
    }

    /// For a `partitioned` job, the number of live members; 1 for other jobs.
    pub fn worker_count(&self) -> u32 {
        self.worker.map_or(1, |(_, count)| count)
    }
}

/// Shared values registered on the builder, looked up by type.
#[derive(Default, Clone)]
pub struct Resources {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Resources {
    /// Adds a value, replacing any earlier value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_shared(Arc::new(value));
    }

    /// Adds a value that is already shared, replacing any earlier value of the same type.
    pub fn insert_shared<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.by_type.insert(TypeId::of::<T>(), value);
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self.by_type.get(&TypeId::of::<T>())?.clone();
        value.downcast::<T>().ok()
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resources")
            .field("count", &self.by_type.len())
            .finish()
    }
}

/// A boxed run future, as the supervisor holds it.
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

/// The object-safe face of a job that the supervisor drives: `LoopJob` uses native async
/// functions, which cannot be called through `dyn`, so each registered job is wrapped in one
/// of these.
pub(crate) trait ErasedJob: Send + Sync + 'static {
    fn execute(self: Arc<Self>, ctx: JobContext) -> RunFuture;
    fn on_started(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
    fn on_stopped(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
    fn on_leadership(
        self: Arc<Self>,
        event: LeadershipEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let _ = event;
        Box::pin(async {})
    }
}

/// Wraps a [`LoopJob`] as an [`ErasedJob`].
pub(crate) struct Erased<J>(pub(crate) J);

impl<J: LoopJob> ErasedJob for Erased<J> {
    fn execute(self: Arc<Self>, ctx: JobContext) -> RunFuture {
        Box::pin(async move { self.0.execute(&ctx).await })
    }

    fn on_started(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { self.0.on_started().await })
    }

    fn on_stopped(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { self.0.on_stopped().await })
    }

    fn on_leadership(
        self: Arc<Self>,
        event: LeadershipEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            match &event {
                LeadershipEvent::Acquired(lease) => self.0.on_acquired(lease).await,
                LeadershipEvent::Lost { lease, reason } => self.0.on_lost(lease, reason).await,
            }
        })
    }
}

/// A job made of a name, a schedule and a closure; see
/// [`HostBuilder::job_fn`](crate::HostBuilder::job_fn).
///
/// The closure is `FnMut`, so that it may own and change state; it is called under a lock that
/// is held only while the closure builds its future, never while the future runs, so overlapping
/// runs still overlap. It is called at the run future's first poll, inside the run's panic
/// guard: a panic in the closure's own body is a panicked run like one in its future.
pub(crate) struct FnJob<F> {
    run: std::sync::Mutex<F>,
}

impl<F> FnJob<F> {
    pub(crate) fn new(run: F) -> Self {
        FnJob {
            run: std::sync::Mutex::new(run),
        }
    }
}

impl<F, Fut> ErasedJob for FnJob<F>
where
    F: FnMut(JobContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    fn execute(self: Arc<Self>, ctx: JobContext) -> RunFuture {
        Box::pin(async move {
            let run = {
                // A closure that panicked earlier left its state as it was; the job goes on.
                let mut closure = self
                    .run
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (*closure)(ctx)
            };
            run.await
        })
    }
}
