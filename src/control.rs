//! What a job's supervisor, its runs and the [`HostHandle`](crate::HostHandle) share: the job's
//! name, its status, and the operator's commands; and what every job of the host shares
//! ([`HostShared`]: the node, the resources, the host's token and limits), kept once per host.
//!
//! One allocation per job, so that a tick touches as little memory as it can (with ten thousand
//! jobs, every separate allocation a tick reads is a likely cache miss), and no channel either
//! way: a host may run ten thousand jobs, and a bounded channel preallocates its queue. Commands
//! are rare, so they wait in a mutex-guarded queue that allocates nothing until used, beside the
//! supervisor's waker, which the supervisor sets once; it learns of them through an atomic flag,
//! a plain load on the turns without a command. The status is written under a mutex; watchers
//! are woken at most once per turn of the supervisor's loop, and only when someone is watching
//! that job, through one `Notify` for the whole host (a `Notify` a job was 32 bytes of every
//! job for what few jobs are ever watched).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::clock::WallClock;
use crate::identity::NodeIdentity;
use crate::job::Resources;
use crate::run_slots::RunSlots;
use crate::status::{JobState, JobStatus, LiveStatus};

/// An operator's request to a job, with the channel its answer goes back on.
#[derive(Debug)]
pub(crate) enum Command {
    Trigger(oneshot::Sender<Triggered>),
    Pause(oneshot::Sender<()>),
    Resume(oneshot::Sender<()>),
    CancelRuns(oneshot::Sender<usize>),
    /// The host is shutting down (its token is cancelled already).
    Shutdown,
}

/// The answer to a manual trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// A run started; its run id.
    Started(u64),
    /// No run started: the job already has as many runs in flight as it allows.
    AlreadyRunning,
    /// No run started: the job is guarded and this node does not hold its lease.
    NotLeader,
    /// No run started: the host already has as many runs in flight as its
    /// `max_parallel_runs` allows.
    HostBusy,
    /// The job is guarded: the trigger was written to its schedule records, and whichever node
    /// leads runs it once, as soon as a run may start.
    Requested,
}

/// What every job of one host shares, kept once for all of them.
pub(crate) struct HostShared {
    pub(crate) node: Arc<NodeIdentity>,
    pub(crate) resources: Resources,
    /// The host's token, cancelled when it shuts down: the parent of the runs' tokens.
    pub(crate) token: CancellationToken,
    /// How long a stopping job waits for its runs and its hooks.
    pub(crate) shutdown_grace: Duration,
    /// The host's wall clock, which cron occurrences and a job's first tick are read on.
    pub(crate) clock: Arc<dyn WallClock>,
    /// The host's slots for runs in flight, when it limits them (`max_parallel_runs`).
    pub(crate) slots: Option<RunSlots>,
    /// Woken when the status of a job that someone waits on changed (see
    /// [`JobShared::wait_for`]). One for the host rather than one a job: a job that nobody
    /// waits on never wakes it, and a waiter woken by another job's change looks again and
    /// waits on.
    pub(crate) status_changed: Notify,
}

impl std::fmt::Debug for HostShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostShared")
            .field("node", &self.node)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// What a job's supervisor, its runs and the handle share.
///
/// `repr(C)` keeps the fields in the order written: what every tick reads (the command flag,
/// the status lock, the runs token) comes first, so that a tick touches as few cache lines as
/// it can. With 10,000 jobs none of it is in cache when a tick comes.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct JobShared {
    /// Set when a command is queued, before the supervisor's waker is woken.
    command_queued: AtomicBool,
    /// How many [`JobShared::wait_for`] calls are waiting on this job.
    watchers: AtomicU32,
    pub(crate) name: Arc<str>,
    /// The status as the supervisor keeps it, without the name: [`JobShared::snapshot`] copies
    /// `name` in, so a job keeps one copy of its name rather than two.
    status: Mutex<LiveStatus>,
    /// The token the job's runs hold until one of them is cancelled (see
    /// [`RunToken`](crate::job::RunToken)): a child of the host's token, made the first time
    /// it is asked for. Most runs never ask, and a child token is an allocation and a lock on
    /// the host's token: a host of 100,000 such jobs makes none.
    runs_token: OnceLock<CancellationToken>,
    /// The job's `loopjob.job` span, which its runs' attempts are polled in: made the first time
    /// a subscriber wants it, and kept for the job's life (see [`JobShared::span`]).
    span: OnceLock<Box<tracing::Span>>,
    pub(crate) host: Arc<HostShared>,
    commands: Mutex<Commands>,
}

/// The commands waiting for a job's supervisor, and whom to wake when one comes.
#[derive(Debug)]
struct Commands {
    /// `None` once the supervisor has stopped: commands are refused from then on. A `Vec`
    /// rather than a `VecDeque`, 8 bytes smaller: it rarely holds more than one command.
    queue: Option<Vec<Command>>,
    /// Woken by every command sent: the supervisor's waker, set before it first looks for a
    /// command ([`JobShared::listen`]). Woken by reference, never taken, so the supervisor
    /// sets it once, not on every poll.
    supervisor: Option<Waker>,
}

impl JobShared {
    pub(crate) fn new(name: Arc<str>, host: Arc<HostShared>, status: LiveStatus) -> Self {
        JobShared {
            runs_token: OnceLock::new(),
            span: OnceLock::new(),
            host,
            name,
            status: Mutex::new(status),
            watchers: AtomicU32::new(0),
            commands: Mutex::new(Commands {
                queue: Some(Vec::new()),
                supervisor: None,
            }),
            command_queued: AtomicBool::new(false),
        }
    }

    /// The token the job's runs hold until one of them is cancelled.
    pub(crate) fn runs_token(&self) -> &CancellationToken {
        self.runs_token
            .get_or_init(|| self.host.token.child_token())
    }

    /// The job's span, `loopjob.job` at `info` with the field `job`, which every attempt of its
    /// runs is polled in, so that the job's own events carry its name; `None` while no
    /// subscriber wants it.
    ///
    /// One span for the job's life rather than one per run: through a formatting subscriber,
    /// making a span and writing its fields costs more than the job's own event (about 8,000
    /// instructions, docs/BENCHMARKS.md), and entering a span that exists costs little. A run's
    /// own span, with its `run_id`, is at `debug` ([`crate::run`]).
    pub(crate) fn span(&self) -> Option<&tracing::Span> {
        if let Some(span) = self.span.get() {
            return Some(span);
        }
        // Not cached while disabled: a subscriber installed after the job's first run still
        // gets the span, and the disabled macro costs a level check.
        let span = tracing::info_span!("loopjob.job", job = %self.name);
        if span.is_disabled() {
            return None;
        }
        // Two first runs at once may both make one; the first kept is the job's.
        Some(self.span.get_or_init(|| Box::new(span)))
    }

    /// A copy of the status, with the job's name, for the handle.
    pub(crate) fn snapshot(&self) -> JobStatus {
        self.status().snapshot(&self.name)
    }

    /// The status, to read or change. A change is seen by watchers after
    /// [`JobShared::status_changed`].
    pub(crate) fn status(&self) -> MutexGuard<'_, LiveStatus> {
        lock(&self.status)
    }

    /// Wakes everyone waiting for a change of the status.
    pub(crate) fn status_changed(&self) {
        if self.watchers.load(Ordering::SeqCst) > 0 {
            self.host.status_changed.notify_waiters();
        }
    }

    /// Waits until `predicate` holds for the status, and returns that status; `None` if the job
    /// stopped without it holding. Cancel-safe.
    pub(crate) async fn wait_for(
        &self,
        mut predicate: impl FnMut(&JobStatus) -> bool,
    ) -> Option<JobStatus> {
        // Counted in before the first look: a change the supervisor makes after this sees the
        // count and wakes us; one made before is seen by the look.
        let _watching = Watching::new(&self.watchers);
        loop {
            // Made before looking, so that a wake between the look and the wait is not lost.
            let changed = self.host.status_changed.notified();
            let status = self.snapshot();
            if predicate(&status) {
                return Some(status);
            }
            if status.state == JobState::Stopped {
                return None;
            }
            changed.await;
        }
    }

    /// Queues a command; gives it back if the supervisor has stopped.
    pub(crate) fn send(&self, command: Command) -> Result<(), Command> {
        let mut commands = lock(&self.commands);
        let Some(queue) = commands.queue.as_mut() else {
            return Err(command);
        };
        queue.push(command);
        self.command_queued.store(true, Ordering::SeqCst);
        if let Some(supervisor) = &commands.supervisor {
            supervisor.wake_by_ref();
        }
        Ok(())
    }

    /// Sets the waker that every command sent from now on wakes: the supervisor's, before it
    /// first calls [`JobShared::poll_command`], and again should its waker change.
    ///
    /// Set under the queue's lock, which senders hold while they set the flag and wake: a
    /// command sent before it is seen by the supervisor's next look at the flag, one sent after
    /// wakes it.
    pub(crate) fn listen(&self, supervisor: &Waker) {
        lock(&self.commands).supervisor = Some(supervisor.clone());
    }

    /// The next queued command, if one is. A command sent later wakes the waker given to
    /// [`JobShared::listen`].
    ///
    /// One atomic load on the turns without a command: an `AtomicWaker` registered on every
    /// poll (a sender's wake takes it out) cost two atomic writes to the job's shared line and
    /// about 60 instructions a poll, two polls a run.
    #[inline] // Called on every turn of every job's loop; commands are rare.
    pub(crate) fn poll_command(&self) -> Poll<Command> {
        if !self.command_queued.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        self.take_command()
    }

    /// The next queued command, once the flag said there is one.
    #[cold]
    fn take_command(&self) -> Poll<Command> {
        let mut commands = lock(&self.commands);
        let first = commands.queue.as_mut().filter(|queue| !queue.is_empty());
        match first.map(|queue| queue.remove(0)) {
            Some(command) => {
                let more = commands
                    .queue
                    .as_ref()
                    .is_some_and(|queue| !queue.is_empty());
                self.command_queued.store(more, Ordering::SeqCst);
                Poll::Ready(command)
            }
            None => {
                self.command_queued.store(false, Ordering::SeqCst);
                Poll::Pending
            }
        }
    }

    /// Refuses every later command; those still queued are dropped, so their senders learn the
    /// job is not running.
    pub(crate) fn close(&self) {
        let mut commands = lock(&self.commands);
        commands.queue = None;
        commands.supervisor = None;
    }
}

/// Counts a watcher in for as long as it lives.
struct Watching<'a>(&'a AtomicU32);

impl<'a> Watching<'a> {
    fn new(watchers: &'a AtomicU32) -> Self {
        watchers.fetch_add(1, Ordering::SeqCst);
        Watching(watchers)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex whose data stays valid whatever a panicking holder did (every write is a
/// plain field update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};
    use std::time::Duration;

    use super::*;
    use crate::clock::SystemClock;
    use crate::schedule::Schedule;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn job() -> JobShared {
        let host = Arc::new(HostShared {
            node: Arc::new(NodeIdentity::new("node", "group")),
            resources: Resources::default(),
            token: CancellationToken::new(),
            shutdown_grace: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
            slots: None,
            status_changed: Notify::new(),
        });
        let schedule = Schedule::every(Duration::from_secs(1));
        let status = crate::supervisor::initial_status(&schedule);
        JobShared::new("job".into(), host, status)
    }

    /// Every command wakes the supervisor's waker, which is set once and never taken out: also
    /// after a wake for a command it had already taken, and for one sent before it listened.
    #[test]
    fn every_command_wakes_the_supervisor_which_listens_once() {
        let job = job();
        let wakes = Arc::new(Wakes::default());
        let woken = || wakes.0.load(Ordering::SeqCst);

        // Sent before the supervisor listens: nobody to wake, and its first look finds it.
        job.send(Command::Shutdown).unwrap();
        job.listen(&Waker::from(wakes.clone()));
        assert!(matches!(job.poll_command(), Poll::Ready(Command::Shutdown)));
        assert!(job.poll_command().is_pending());
        assert_eq!(woken(), 0);

        for sent in 1..=3 {
            job.send(Command::Shutdown).unwrap();
            assert_eq!(woken(), sent, "command {sent} woke the supervisor");
            assert!(matches!(job.poll_command(), Poll::Ready(Command::Shutdown)));
            assert!(job.poll_command().is_pending());
        }

        // Closed: refused, and the waker is let go.
        job.close();
        assert!(job.send(Command::Shutdown).is_err());
        assert_eq!(woken(), 3);
        assert!(lock(&job.commands).supervisor.is_none());
    }

    /// Commands queued together are taken in the order they were sent, one a look.
    #[test]
    fn queued_commands_are_taken_in_the_order_sent() {
        let job = job();
        let (first, _) = oneshot::channel();
        let (second, _) = oneshot::channel();
        job.send(Command::Pause(first)).unwrap();
        job.send(Command::Resume(second)).unwrap();
        job.send(Command::Shutdown).unwrap();
        assert!(matches!(job.poll_command(), Poll::Ready(Command::Pause(_))));
        assert!(matches!(
            job.poll_command(),
            Poll::Ready(Command::Resume(_))
        ));
        assert!(matches!(job.poll_command(), Poll::Ready(Command::Shutdown)));
        assert!(job.poll_command().is_pending());
    }
}
