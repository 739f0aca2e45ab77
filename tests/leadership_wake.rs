//! A guarded run stops on waking, not on the elector's next turn: its context compares the clock
//! with the lease's local deadline itself. Under tokio's paused clock, so that every instant is
//! exact; a freeze of the process (SIGSTOP) is the clock jumping while no task runs.

#[path = "support/faulty_store.rs"]
mod faulty_store;

use std::sync::Arc;
use std::time::Duration;

use faulty_store::FaultyStore;
use loopjob::store::MemoryStore;
use loopjob::{
    Host, HostHandle, JobContext, JobError, LeaderMode, Leadership, LoopJob, NodeIdentity,
    Schedule, ShutdownReport,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(1);

/// What a run saw at one moment.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    at: Instant,
    /// `JobContext::is_cancelled`, and the raw token's own state.
    cancelled: bool,
    token_cancelled: bool,
    deadline: Option<Instant>,
    epoch: Option<u64>,
}

impl Seen {
    fn now(ctx: &JobContext) -> Seen {
        Seen {
            at: Instant::now(),
            cancelled: ctx.is_cancelled(),
            token_cancelled: ctx.token().is_cancelled(),
            deadline: ctx.lease_deadline(),
            epoch: ctx.fencing_token(),
        }
    }
}

/// What the job's one run does between its two reports.
#[derive(Clone, Copy)]
enum Step {
    /// Waits for the test's signal (no timer of its own), then reports.
    Signal,
    /// Awaits `ctx.cancelled()`, then reports.
    Cancelled,
    /// Works for `3 × TTL` unless cancelled, then reports.
    Long,
}

struct Guarded {
    step: Step,
    signal: Arc<Notify>,
    seen: mpsc::UnboundedSender<Seen>,
}

impl LoopJob for Guarded {
    fn name(&self) -> &str {
        "guarded"
    }
    fn schedule(&self) -> Schedule {
        Schedule::every(Duration::from_secs(3600)).cancel_grace(Duration::from_secs(60))
    }
    fn leadership(&self) -> Leadership {
        Leadership::new(LeaderMode::Global)
            .lease_ttl(TTL)
            .with_renew_every(RENEW)
    }
    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        let _ = self.seen.send(Seen::now(ctx));
        match self.step {
            Step::Signal => self.signal.notified().await,
            Step::Cancelled => ctx.cancelled().await,
            Step::Long => {
                tokio::select! {
                    biased;
                    _ = ctx.cancelled() => {}
                    _ = tokio::time::sleep(3 * TTL) => {}
                }
            }
        }
        let _ = self.seen.send(Seen::now(ctx));
        Ok(())
    }
}

struct Node {
    store: Arc<FaultyStore>,
    signal: Arc<Notify>,
    seen: mpsc::UnboundedReceiver<Seen>,
    handle: HostHandle,
    task: JoinHandle<ShutdownReport>,
}

impl Node {
    fn start(step: Step) -> Node {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()), true);
        let signal = Arc::new(Notify::new());
        let (send, seen) = mpsc::unbounded_channel();
        let host = Host::builder()
            .node(NodeIdentity::new("a", "default"))
            .store(store.clone())
            .job(Guarded {
                step,
                signal: signal.clone(),
                seen: send,
            })
            .build()
            .expect("valid host");
        let handle = host.handle();
        let task = tokio::spawn(host.run_until(std::future::pending()));
        Node {
            store,
            signal,
            seen,
            handle,
            task,
        }
    }

    async fn next(&mut self) -> Seen {
        self.seen.recv().await.expect("the run reports")
    }

    async fn stop(self) {
        self.handle.shutdown();
        self.task.await.expect("the host stops");
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_woken_after_a_freeze_past_its_lease_finds_itself_cancelled_before_the_elector_runs()
{
    let mut node = Node::start(Step::Signal);
    let started = node.next().await;
    assert!(!started.cancelled);
    let deadline = started.deadline.expect("a guarded run has a deadline");

    // The freeze: the run's wake-up is due, and the clock jumps past the lease's deadline
    // while no task runs. The run's task is polled before the runtime's timers fire, so
    // before the elector's task can notice anything.
    node.signal.notify_one();
    tokio::time::advance(2 * TTL).await;
    let woke = Instant::now();

    let after = node.next().await;
    assert!(after.at > deadline);
    assert_eq!(
        after.at, woke,
        "the run's step ended in the same instant it woke"
    );
    assert!(after.cancelled, "the context reads the deadline itself");
    assert!(
        after.token_cancelled,
        "the run's token was cancelled before the run was polled"
    );
    assert_eq!(
        after.epoch, started.epoch,
        "the fencing token stays the run's"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_renewals_hanging_a_run_is_cancelled_exactly_at_its_lease_deadline() {
    let mut node = Node::start(Step::Cancelled);
    node.store.hang_renewals(true);
    let started = node.next().await;
    let deadline = started.deadline.expect("a guarded run has a deadline");

    let stopped = node.next().await;
    assert_eq!(stopped.at, deadline);
    assert!(stopped.cancelled);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_check_flips_exactly_at_the_deadline_and_not_a_tick_before() {
    let mut node = Node::start(Step::Signal);
    node.store.hang_renewals(true);
    let started = node.next().await;
    let deadline = started.deadline.expect("a guarded run has a deadline");

    tokio::time::sleep_until(deadline - Duration::from_millis(1)).await;
    node.signal.notify_one();
    let before = node.next().await;
    assert!(!before.cancelled);
    assert_eq!(before.deadline, Some(deadline));
    node.stop().await;

    let mut node = Node::start(Step::Signal);
    node.store.hang_renewals(true);
    let deadline = node.next().await.deadline.expect("a deadline");
    tokio::time::sleep_until(deadline).await;
    node.signal.notify_one();
    let at = node.next().await;
    assert_eq!(at.at, deadline);
    assert!(at.cancelled);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn renewals_extend_the_deadline_and_the_run_goes_on() {
    let mut node = Node::start(Step::Long);
    let started = node.next().await;
    let first = started.deadline.expect("a guarded run has a deadline");

    let ended = node.next().await;
    assert_eq!(ended.at, started.at + 3 * TTL, "the run worked to its end");
    assert!(!ended.cancelled);
    assert!(ended.deadline.expect("a deadline") > first + 2 * TTL);
    node.stop().await;
}
