//! The per-job loop: it waits for each tick, starts runs, enforces skip-if-running and the
//! overlap limit, obeys operator commands, and keeps the job's status.
//!
//! One supervisor runs per job, driven by the job's [shard](crate::shard), whose timer queue
//! times its ticks. It owns everything about the job's timing; the arithmetic is in
//! [`crate::schedule`], how a run ends is in [`crate::run`]. The loop waits on four things at
//! once: an operator's command (shutdown is one), a run ending, a message from the guard (a
//! leadership change, the keys' schedule records, the answer to a start), and the next tick.
//! Nothing in it blocks, so a job that hangs or panics never stops the ticking of its own or
//! any other job.
//!
//! A guarded job follows its keys' cluster schedule instead of a grid of its own
//! ([`cluster`]): its ticks come from the schedule records the elector reads, and a run starts
//! only once the store committed its start.
//!
//! The loop is the hot path of a host with thousands of jobs, so it is written to touch little
//! memory per tick: it polls its sources in place and keeps no future of its own (a `select!`
//! would keep one per source in every job's future), a run that finishes at once is
//! polled in the same turn that starts it (no task is spawned), the status is written under one
//! per-job lock once per turn, and watchers are woken once per turn, only if any watch.
//! `benches/supervisor.rs` measures it against a raw tokio interval loop.

use std::any::Any;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::DropGuard;

use crate::control::{Command, JobShared, Triggered};
use crate::guard::{GuardNotice, GuardState, RunLeases};
use crate::job::{ErasedJob, JobContext, RunToken};
use crate::run_slots::{Slot, WaitingTick, poll_slot};

mod leadership;
mod slots;

use crate::metrics;
use crate::run::{CatchUnwind, InFlight, Run, RunReport, Started, panic_message};
use crate::schedule::{Schedule, ScheduleMode, after};
use crate::shard::JobTimer;
use crate::status::{JobCounters, JobReport, JobState, LiveStatus, RunOutcome};
pub(crate) use leadership::StateChanges;
use leadership::{GuardChange, poll_change};
use slots::NoFreeSlot;

mod cron;

pub(crate) use cluster::ClusterTiming;

mod cluster;
mod guarded;

/// How many events a job's loop takes in a row before it yields to the runtime once. Each event
/// moves the job on (a tick sets the next one later; a command, a run's end, a guard's notice is
/// taken), so a loop that takes this many without waiting is one that a bug keeps busy: a
/// trigger that could not start, and a start the stopped ledger could not take, each left a
/// tick due at once, and held a worker thread for good, its shard beyond abort (tests in
/// `tests/host_limit.rs` and `cluster::tests`). A burst of real events loses nothing by waiting
/// a turn of the runtime.
const EVENTS_BEFORE_YIELD: u8 = 64;

/// A guarded job's line from the elector: what it holds now, each change, the records of its
/// keys and the answers to its starts; and its cluster schedule.
pub(crate) struct Guard {
    pub(crate) state: watch::Receiver<GuardState>,
    /// Completes when `state` changes (see [`leadership::StateChanges`]).
    pub(crate) state_changes: StateChanges,
    pub(crate) events: mpsc::UnboundedReceiver<GuardNotice>,
    /// A notice taken off `events` while draining leadership changes, to be handled next.
    pub(crate) held_back: Option<GuardNotice>,
    pub(crate) cluster: ClusterTiming,
    /// Cancels the elector's `abandoned` token for this job if the supervisor is dropped
    /// without stopping (a panic in loopjob, caught by its shard), so that the elector lets go
    /// of the job's leases (its invariant 7). Disarmed as the supervisor stops.
    pub(crate) abandoned: Option<DropGuard>,
}

/// One job's loop and everything it owns.
pub(crate) struct Supervisor {
    pub(crate) job: Arc<dyn ErasedJob>,
    /// The job's name, schedule, status and commands, shared with its runs and the handle.
    pub(crate) shared: Arc<JobShared>,
    /// The job's schedule, read on every tick; runs get it from here too.
    pub(crate) schedule: Schedule,
    /// For a guarded job: its leadership, from the elector. Boxed: most jobs are not guarded,
    /// and every job's loop keeps this field for its whole life.
    pub(crate) guard: Option<Box<Guard>>,
}

/// The loop's changing state, apart from what the status already holds.
///
/// Every job keeps this in its future for its whole life, so it holds nothing that the shared
/// status holds: a turn's changes to the counters and the last run are kept on the stack, in
/// its [`Turn`], until [`Supervisor::publish`] writes them.
struct Ticking {
    /// The next tick on the schedule (before jitter), if one is due.
    next_tick: Option<Instant>,
    /// When the next tick actually fires (after jitter).
    fire_at: Option<Instant>,
    paused: bool,
    /// Events the loop took since it last waited (see [`EVENTS_BEFORE_YIELD`]).
    events_in_a_row: u8,
    last_run_id: u64,
    /// The token of the runs in flight (their parent, if they overlap); replaced after an
    /// operator cancels them.
    runs_token: RunToken,
    runs: InFlight,
    /// An unguarded cron job's place in its schedule, by the wall clock (see [`cron`]).
    #[cfg(feature = "cron")]
    cron: Option<Box<cron::CronTicking>>,
    /// The task calling the leadership hooks of the last changes, which the next ones wait for.
    hooks: Option<tokio::task::JoinHandle<()>>,
    /// A tick that found none of the host's slots free, waiting for one.
    waiting: Option<Box<WaitingTick>>,
    /// The job's tick timer, which fires at `fire_at` unless the job is paused.
    timer: JobTimer,
    /// The job's own waker, which runs are started with and commands wake: one that is still
    /// under way wakes the job, which polls it in `runs.poll_next_report`. Set, and given to
    /// the job's commands, the first time the loop polls for an event.
    waker: Waker,
}

/// One turn of the loop: the loop's state, and what the turn changed of the job's counters and
/// last run, which [`Supervisor::publish`] writes to the shared status at the end of the turn
/// under one lock (one lock per turn instead of one per change).
///
/// A turn is made after each wake-up and dropped before the next, so its changes live on the
/// stack, not in the job's future: 160 bytes a job fewer for the job's whole life. The handlers
/// take a turn; it derefs to the loop's state.
struct Turn<'a> {
    ticking: &'a mut Ticking,
    changes: StatusChanges,
}

/// What one turn changed of the status: counts to add, and the last run.
#[derive(Default)]
struct StatusChanges {
    /// Added to the status's counters.
    counters: JobCounters,
    last_started: Option<Instant>,
    last_ended: Option<Instant>,
    outcome: Option<RunOutcome>,
    /// Whether any of the above changed.
    dirty: bool,
}

/// The report of a job whose loop panicked (a bug in loopjob, which its shard contains to
/// that job), made from the job's record: the panic is logged at once, the job is stopped on
/// this host (its commands refused), and the runs it had in flight, dropped with the loop, are
/// counted as dropped. A guarded job's leases are let go by the elector (its invariant 7).
pub(crate) fn failed(record: &JobShared, panic: Box<dyn Any + Send>) -> JobReport {
    let message = panic_message(panic);
    // README's Observability table says what this means for the job and its leases.
    tracing::error!(job = %record.name, panic = %message, "supervisor failed");
    record.close();
    let status = {
        let mut status = record.status();
        let dropped = u64::from(std::mem::take(&mut status.in_flight));
        status.state = JobState::Stopped;
        status.next_tick = None;
        status.counters.failures += dropped;
        status.counters.dropped += dropped;
        status.snapshot(&record.name)
    };
    record.status_changed();
    JobReport {
        name: record.name.to_string(),
        in_flight_at_shutdown: 0,
        dropped_at_shutdown: 0,
        status,
    }
}

impl Supervisor {
    /// The job's record, which outlives the job's loop.
    pub(crate) fn record(&self) -> Arc<JobShared> {
        self.shared.clone()
    }

    /// Runs the job until the host shuts down, then waits for its runs (up to the shutdown
    /// grace) and reports. Its ticks are timed by `timer`, in the job's shard.
    ///
    /// Not an `async fn`: one of those keeps its arguments twice in its state (as arguments,
    /// and as the locals they are moved into), which costs every job 224 bytes.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run(mut self, timer: JobTimer) -> impl Future<Output = JobReport> + Send {
        // Made out here, for the same reason: the block keeps what it captures for its whole
        // life, besides the locals it moves that into.
        let mut ticking = Ticking::idle(timer);
        async move {
            // Start and stop run once: boxed, their state does not weigh on the loop's future,
            // which every job keeps for its whole life.
            if !Box::pin(self.started()).await {
                return Box::pin(self.stop(ticking, 0)).await;
            }
            {
                let mut turn = Turn::new(&mut ticking);
                // A guarded job's first tick comes from its keys' records.
                if self.schedule.enabled && self.guard.is_none() && !self.start_cron(&mut turn) {
                    let first = self
                        .schedule
                        .first_tick(Instant::now(), self.shared.host.clock.now());
                    self.set_next_tick(&mut turn, Some(first));
                }
                self.publish(&mut turn);
            }

            loop {
                let event = poll_fn(|cx| self.poll_event(&mut ticking, cx)).await;
                let mut turn = Turn::new(&mut ticking);
                let started = match event {
                    Event::Command(next) => {
                        if matches!(next, Command::Shutdown) {
                            break;
                        }
                        self.obey(next, &mut turn)
                    }
                    Event::RunEnded(report) => {
                        self.finished(report, &mut turn);
                        None
                    }
                    Event::Guard(GuardChange::Notice(notice)) => {
                        self.guard_notice(notice, &mut turn)
                    }
                    Event::Guard(GuardChange::State) => {
                        self.guard_state_changed(&mut turn);
                        None
                    }
                    Event::SlotFreed(slot) => self.slot_freed(slot, &mut turn),
                    Event::Tick(now) => self.tick(&mut turn, now),
                };
                if let Some(run) = started {
                    // Polled at once: a run that ends straight away is done in this turn.
                    let mut cx = Context::from_waker(&turn.waker);
                    match run.start(&self.job, &self.schedule, &mut cx) {
                        Started::Ended(report) => self.finished(report, &mut turn),
                        Started::Running(run) => turn.runs.push(run),
                    }
                    if self.guard.is_some() {
                        self.follow_cluster(&mut turn);
                    }
                }
                self.publish(&mut turn);
            }

            let in_flight = ticking.runs.len();
            Box::pin(self.stop(ticking, in_flight)).await
        }
    }

    /// The loop's next event. Each source is polled in place, in this order (an operator's
    /// command first: shutdown is one): nothing is made per turn, and the loop's future keeps
    /// no futures of its own. After [`EVENTS_BEFORE_YIELD`] events in a row without waiting,
    /// it yields once instead, so that a loop that never waits (a bug) still lets the runtime
    /// run other tasks, and can be aborted.
    ///
    /// A method rather than the loop's own closure, and the timer and the waker in `ticking`:
    /// the closure would keep a reference to each field it reads, in every job's future for its
    /// whole life.
    fn poll_event(&mut self, ticking: &mut Ticking, cx: &mut Context<'_>) -> Poll<Event> {
        if ticking.events_in_a_row >= EVENTS_BEFORE_YIELD {
            ticking.events_in_a_row = 0;
            tracing::debug!(job = %self.shared.name, "the job's loop yields after {EVENTS_BEFORE_YIELD} events in a row");
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // Counted as taken; the last source sets it back if none was ready.
        ticking.events_in_a_row += 1;
        // The job's waker, the same every time under a shard or in a task of its own: the first
        // time, and should it change, commands wake the new one from then on.
        if !cx.waker().will_wake(&ticking.waker) {
            ticking.waker = cx.waker().clone();
            self.shared.listen(&ticking.waker);
        }
        if let Poll::Ready(next) = self.shared.poll_command() {
            return Poll::Ready(Event::Command(next));
        }
        if let Poll::Ready(report) = ticking.runs.poll_next_report(cx) {
            return Poll::Ready(Event::RunEnded(report));
        }
        if let Poll::Ready(change) = poll_change(&mut self.guard, cx) {
            return Poll::Ready(Event::Guard(change));
        }
        if let Poll::Ready(slot) = poll_slot(&mut ticking.waiting, cx) {
            return Poll::Ready(Event::SlotFreed(slot));
        }
        let deadline = ticking.fire_at.filter(|_| !ticking.paused);
        let tick = ticking.timer.poll_elapsed(deadline, cx);
        if tick.is_pending() {
            ticking.events_in_a_row = 0;
        }
        tick.map(Event::Tick)
    }

    /// A tick fired (its timer found it passed at `now`): schedule the next tick, and return the
    /// run to start unless too many are in flight (or, for a guarded job, this node holds no
    /// lease).
    fn tick(&mut self, turn: &mut Turn<'_>, now: Instant) -> Option<Run> {
        if self.guard.is_some() {
            self.cluster_tick(turn, now);
            return None;
        }
        #[cfg(feature = "cron")]
        if turn.cron.is_some() {
            return self.cron_tick(turn, now);
        }
        let scheduled = turn.next_tick?;
        if turn.waiting.take().is_some() {
            self.skipped(turn, "no free slot before the next tick");
        }
        let next_on_grid = match self.schedule.mode {
            ScheduleMode::FixedRate => {
                let next = self.schedule.next_fixed_rate_tick(scheduled, now);
                if next.missed > 0 {
                    turn.count(|c| c.missed += next.missed);
                    metrics::ticks_missed(&self.shared.name, next.missed);
                    tracing::warn!(job = %self.shared.name, missed = next.missed, "ticks missed during a stall");
                }
                Some(next.at)
            }
            ScheduleMode::FixedDelay => None,
        };
        let mut run = None;
        if !self.may_start(turn) {
            self.skipped(turn, "run in flight");
        } else if let Some(leadership) = self.leadership() {
            match (self.free_slot(), &self.shared.host.slots) {
                (Ok(slot), _) => {
                    run = Some(self.new_run(turn, scheduled, now, next_on_grid, leadership, slot))
                }
                (Err(NoFreeSlot), Some(slots)) => {
                    tracing::debug!(job = %self.shared.name, "tick waits for a free slot (max_parallel_runs)");
                    turn.waiting = Some(slots.wait(scheduled, next_on_grid));
                }
                (Err(NoFreeSlot), None) => {}
            }
        } else {
            turn.count(|c| c.not_leader += 1);
            tracing::trace!(job = %self.shared.name, "tick passed: this node does not hold the lease");
        }
        let next = match self.schedule.mode {
            ScheduleMode::FixedRate => next_on_grid,
            // A fixed-delay run schedules the next tick when it ends; a tick waiting for a slot
            // waits as long as it takes.
            ScheduleMode::FixedDelay if run.is_some() || turn.waiting.is_some() => None,
            ScheduleMode::FixedDelay => Some(self.schedule.next_fixed_delay_tick(now)),
        };
        self.set_next_tick(turn, next);
        run
    }

    /// How many runs may be in flight at once.
    fn overlap_limit(&self) -> usize {
        match (self.schedule.mode, self.schedule.skip_if_running) {
            (ScheduleMode::FixedDelay, _) | (_, true) => 1,
            (ScheduleMode::FixedRate, false) => self.schedule.max_overlap as usize,
        }
    }

    /// Whether one more run may start now.
    fn may_start(&self, ticking: &Ticking) -> bool {
        ticking.runs.len() < self.overlap_limit()
    }

    /// What the next run may hold: `Some` with no leases for an unguarded job, `Some` with the
    /// leases held now for a guarded one, `None` when a guarded job holds nothing.
    fn leadership(&self) -> Option<RunLeadership> {
        let Some(guard) = &self.guard else {
            return Some(RunLeadership::default());
        };
        let state = guard.state.borrow();
        let leases = state.held();
        if leases.is_empty() {
            return None;
        }
        Some(RunLeadership {
            leases: Some(Arc::new(RunLeases::new(leases.into(), state.lost.clone()))),
            worker: state.worker,
        })
    }

    /// A new run for the tick `scheduled`, started at `now`.
    fn new_run(
        &mut self,
        turn: &mut Turn<'_>,
        scheduled: Instant,
        now: Instant,
        next_tick: Option<Instant>,
        leadership: RunLeadership,
        slot: Option<Slot>,
    ) -> Run {
        turn.last_run_id += 1;
        let run_id = turn.last_run_id;
        // A job that runs one at a time hands its runs the same token until one is cancelled;
        // overlapping runs each get their own, so that cancelling one leaves the others be.
        let token = if self.overlap_limit() == 1 {
            turn.runs_token.clone()
        } else {
            RunToken::child_of(turn.runs_token.get(&self.shared))
        };
        turn.started_at(now);
        tracing::debug!(job = %self.shared.name, run_id, "run started");
        Run {
            ctx: JobContext {
                job: self.shared.clone(),
                run_id,
                scheduled_at: scheduled,
                attempt: 1,
                token,
                leases: leadership.leases,
                worker: leadership.worker,
            },
            started: now,
            next_tick,
            slot,
        }
    }

    /// A run ended: record its outcome and, in fixed-delay mode, schedule the next tick.
    fn finished(&mut self, report: RunReport, turn: &mut Turn<'_>) {
        if report.cancelled_own_token && self.overlap_limit() == 1 {
            // The shared token was cancelled for that run only: the next run needs a fresh one.
            turn.runs_token = RunToken::child_of(&self.shared.host.token);
        }
        if let Some(guard) = &mut self.guard {
            guard.cluster.ended(&report, &self.schedule);
        }
        let outcome = report.outcome;
        // Worked out only where it is read: a log line that is enabled, or the metrics.
        let elapsed = || report.ended.saturating_duration_since(report.started);
        metrics::run_finished(&self.shared.name, &outcome, elapsed);
        match &outcome {
            RunOutcome::Succeeded => {
                tracing::debug!(job = %self.shared.name, run_id = report.run_id, elapsed = ?elapsed(), "run succeeded")
            }
            RunOutcome::Failed(error) => {
                tracing::warn!(job = %self.shared.name, run_id = report.run_id, %error, "run failed")
            }
            RunOutcome::Panicked(message) => {
                tracing::error!(job = %self.shared.name, run_id = report.run_id, panic = %message, "run panicked")
            }
            RunOutcome::TimedOut if report.abandoned => {
                tracing::warn!(job = %self.shared.name, run_id = report.run_id, timeout = ?self.schedule.timeout, grace = ?self.schedule.cancel_grace, "run timed out, ignored cancellation and was dropped")
            }
            RunOutcome::TimedOut => {
                tracing::warn!(job = %self.shared.name, run_id = report.run_id, timeout = ?self.schedule.timeout, "run timed out")
            }
            RunOutcome::Overran => {
                tracing::warn!(job = %self.shared.name, run_id = report.run_id, timeout = ?self.schedule.timeout, elapsed = ?elapsed(), "run kept the thread past its timeout; counted as a timeout, not a success")
            }
            RunOutcome::Dropped => {
                tracing::warn!(job = %self.shared.name, run_id = report.run_id, grace = ?self.schedule.cancel_grace, "run ignored cancellation and was dropped")
            }
        }
        turn.count(|counters| {
            counters.retries += u64::from(report.attempts.saturating_sub(1));
            match &outcome {
                RunOutcome::Succeeded => counters.succeeded += 1,
                RunOutcome::Failed(_) => counters.failures += 1,
                RunOutcome::Panicked(_) => {
                    counters.failures += 1;
                    counters.panics += 1;
                }
                RunOutcome::TimedOut => {
                    counters.failures += 1;
                    counters.timeouts += 1;
                    counters.dropped += u64::from(report.abandoned);
                }
                RunOutcome::Overran => {
                    counters.failures += 1;
                    counters.timeouts += 1;
                    counters.overran += 1;
                }
                RunOutcome::Dropped => {
                    counters.failures += 1;
                    counters.dropped += 1;
                }
            }
        });
        turn.ended(report.ended, outcome);
        if self.guard.is_some() {
            self.follow_cluster(turn);
            return;
        }
        if self.schedule.mode == ScheduleMode::FixedDelay
            && self.schedule.enabled
            && turn.runs.is_empty()
        {
            let next = self.schedule.next_fixed_delay_tick(report.ended);
            self.set_next_tick(turn, Some(next));
        }
    }

    /// Carries out an operator's command; returns the run a trigger starts.
    fn obey(&mut self, command: Command, turn: &mut Turn<'_>) -> Option<Run> {
        match command {
            Command::Trigger(reply) => {
                let leadership = self.leadership();
                let (answer, run) = if !self.may_start(turn) {
                    (Triggered::AlreadyRunning, None)
                } else if leadership.is_none() {
                    (Triggered::NotLeader, None)
                } else if let (Some(leadership), Ok(slot)) = (leadership, self.free_slot()) {
                    let now = Instant::now();
                    let next = turn
                        .next_tick
                        .filter(|_| self.schedule.mode == ScheduleMode::FixedRate);
                    let run = self.new_run(turn, now, now, next, leadership, slot);
                    if self.schedule.mode == ScheduleMode::FixedDelay {
                        self.set_next_tick(turn, None);
                    }
                    tracing::info!(job = %self.shared.name, run_id = run.ctx.run_id(), "run triggered by operator");
                    (Triggered::Started(run.ctx.run_id()), Some(run))
                } else {
                    (Triggered::HostBusy, None)
                };
                let _ = reply.send(answer);
                return run;
            }
            Command::Pause(reply) => {
                turn.paused = true;
                if turn.waiting.take().is_some() {
                    self.skipped(turn, "paused while waiting for a free slot");
                }
                tracing::info!(job = %self.shared.name, "paused");
                let _ = reply.send(());
            }
            Command::Resume(reply) => {
                if turn.paused {
                    turn.paused = false;
                    self.resume_ticks(turn);
                    tracing::info!(job = %self.shared.name, "resumed");
                }
                let _ = reply.send(());
            }
            Command::CancelRuns(reply) => {
                let cancelled = turn.runs.len();
                turn.runs_token.get(&self.shared).cancel();
                turn.runs_token = RunToken::child_of(&self.shared.host.token);
                tracing::info!(job = %self.shared.name, cancelled, "runs cancelled by operator");
                let _ = reply.send(cancelled);
            }
            // Handled by the loop, which stops.
            Command::Shutdown => {}
        }
        None
    }

    /// After a pause, ticks that fell due while paused are not run: a fixed-rate job moves to the
    /// next tick of its grid, a fixed-delay job runs when its delay has passed (now, at the
    /// earliest).
    fn resume_ticks(&mut self, turn: &mut Turn<'_>) {
        #[cfg(feature = "cron")]
        if turn.cron.is_some() {
            return self.resume_cron(turn);
        }
        let Some(next) = turn.next_tick else {
            return;
        };
        let now = Instant::now();
        if next >= now {
            return;
        }
        let resumed = match self.schedule.mode {
            ScheduleMode::FixedRate => self.schedule.next_fixed_rate_tick(next, now).at,
            ScheduleMode::FixedDelay => now,
        };
        self.set_next_tick(turn, Some(resumed));
    }

    fn set_next_tick(&self, turn: &mut Turn<'_>, next: Option<Instant>) {
        turn.next_tick = next;
        turn.fire_at = match self.schedule.jitter.is_zero() {
            true => next,
            false => next.map(|tick| self.schedule.jittered(tick, fastrand::f64())),
        };
    }

    /// Copies what this turn changed to the shared status, under one lock, and wakes
    /// watchers if anything did.
    fn publish(&self, turn: &mut Turn<'_>) {
        let cluster_paused = self
            .guard
            .as_ref()
            .is_some_and(|guard| guard.cluster.all_paused());
        let state = if turn.paused || cluster_paused {
            JobState::Paused
        } else if !turn.runs.is_empty() {
            JobState::Running
        } else if !self.schedule.enabled {
            JobState::Disabled
        } else {
            JobState::Idle
        };
        if turn.write_status(&mut self.shared.status(), state) {
            self.shared.status_changed();
        }
    }

    /// Shutdown: the runs' tokens are already cancelled (they descend from the host's token);
    /// wait for them up to the shutdown grace, drop the rest, then call `on_stopped`.
    async fn stop(mut self, mut ticking: Ticking, in_flight: usize) -> JobReport {
        self.shared.close();
        let dropped_before = self.shared.status().counters.dropped;
        let mut turn = Turn::new(&mut ticking);
        let grace_end = after(Instant::now(), self.shared.host.shutdown_grace);
        while !turn.runs.is_empty() {
            tokio::select! {
                report = turn.runs.next_report() => self.finished(report, &mut turn),
                _ = sleep_until(grace_end) => break,
            }
        }
        let overdue = turn.runs.len() as u64;
        if overdue > 0 {
            tracing::warn!(job = %self.shared.name, overdue, grace = ?self.shared.host.shutdown_grace, "runs still in flight after the shutdown grace were dropped");
            turn.runs = InFlight::default();
            turn.count(|c| {
                c.failures += overdue;
                c.dropped += overdue;
            });
        }
        self.leadership_released(turn.hooks.take()).await;
        self.stopped().await;
        turn.next_tick = None;
        let status = {
            let mut status = self.shared.status();
            turn.write_status(&mut status, JobState::Stopped);
            status.snapshot(&self.shared.name)
        };
        self.shared.status_changed();
        JobReport {
            name: self.shared.name.to_string(),
            in_flight_at_shutdown: in_flight,
            dropped_at_shutdown: (status.counters.dropped - dropped_before) as usize,
            status,
        }
    }

    /// Calls `on_started`, polled in the job's own loop (no task: a host of 100,000 jobs would
    /// spawn 100,000 of them before the first tick), with a panic caught and logged. Returns
    /// `false` if the host shut down before it finished.
    async fn started(&self) -> bool {
        let hook = CatchUnwind(self.job.clone().on_started());
        tokio::select! {
            // The hook first: the common one (none) ends in its first poll, before the token
            // would register a waiter.
            biased;
            finished = hook => {
                self.log_hook_panic("on_started", finished);
                true
            }
            _ = self.shared.host.token.cancelled() => false,
        }
    }

    /// Calls `on_stopped` like `on_started`, bounded by the shutdown grace.
    async fn stopped(&self) {
        let hook = CatchUnwind(self.job.clone().on_stopped());
        match tokio::time::timeout(self.shared.host.shutdown_grace, hook).await {
            Ok(finished) => self.log_hook_panic("on_stopped", finished),
            Err(_) => {
                tracing::warn!(job = %self.shared.name, grace = ?self.shared.host.shutdown_grace, "on_stopped did not finish within the shutdown grace and was dropped")
            }
        }
    }

    fn log_hook_panic(&self, hook: &'static str, finished: Result<(), Box<dyn Any + Send>>) {
        if let Err(panic) = finished {
            let message = panic_message(panic);
            tracing::error!(job = %self.shared.name, hook, panic = %message, "lifecycle hook panicked");
        }
    }
}

/// What woke the loop, one at a time.
enum Event {
    Command(Command),
    RunEnded(RunReport),
    Guard(GuardChange),
    SlotFreed(Slot),
    /// The tick timer fired; the instant it was found passed.
    Tick(Instant),
}

/// The leases a run starts with (and the token that tells it they were lost), and its place
/// among a partitioned job's members.
#[derive(Default)]
struct RunLeadership {
    leases: Option<Arc<RunLeases>>,
    worker: Option<(u32, u32)>,
}

impl Ticking {
    fn idle(timer: JobTimer) -> Self {
        Ticking {
            timer,
            waker: Waker::noop().clone(),
            next_tick: None,
            fire_at: None,
            paused: false,
            events_in_a_row: 0,
            last_run_id: 0,
            runs_token: RunToken::Job,
            runs: InFlight::default(),
            #[cfg(feature = "cron")]
            cron: None,
            hooks: None,
            waiting: None,
        }
    }
}

impl<'a> Turn<'a> {
    fn new(ticking: &'a mut Ticking) -> Self {
        Turn {
            ticking,
            changes: StatusChanges::default(),
        }
    }

    /// Adds to the counters (`change` is given zeroes to add to); the status shows it at the
    /// end of the turn.
    fn count(&mut self, change: impl FnOnce(&mut JobCounters)) {
        change(&mut self.changes.counters);
        self.mark_changed();
    }

    /// A run started at `at`.
    fn started_at(&mut self, at: Instant) {
        self.changes.last_started = Some(at);
        self.count(|c| c.runs += 1);
    }

    /// A run ended at `at`, with `outcome`.
    fn ended(&mut self, at: Instant, outcome: RunOutcome) {
        self.changes.last_ended = Some(at);
        self.changes.outcome = Some(outcome);
        self.mark_changed();
    }

    /// The turn changed the job's status: its counts, its last run, or what the loop wrote
    /// into the status itself (its leadership or cluster view). Watchers are woken at the end
    /// of the turn.
    fn mark_changed(&mut self) {
        self.changes.dirty = true;
    }

    /// Writes the loop's view of the job and this turn's changes into `status`, which is in
    /// `state`; says whether anything changed.
    fn write_status(&mut self, status: &mut LiveStatus, state: JobState) -> bool {
        // At most `max_overlap`, a `u32`.
        let in_flight = u32::try_from(self.runs.len()).unwrap_or(u32::MAX);
        let changed = self.changes.dirty
            || status.state != state
            || status.next_tick != self.next_tick
            || status.in_flight != in_flight;
        if changed {
            status.state = state;
            status.next_tick = self.next_tick;
            status.in_flight = in_flight;
            let changes = std::mem::take(&mut self.changes);
            status.counters.add(&changes.counters);
            if let Some(at) = changes.last_started {
                status.last_started = Some(at);
            }
            if let Some(at) = changes.last_ended {
                status.last_ended = Some(at);
            }
            if let Some(outcome) = changes.outcome {
                status.last_outcome = Some(outcome);
            }
        }
        changed
    }
}

impl std::ops::Deref for Turn<'_> {
    type Target = Ticking;

    fn deref(&self) -> &Ticking {
        self.ticking
    }
}

impl std::ops::DerefMut for Turn<'_> {
    fn deref_mut(&mut self) -> &mut Ticking {
        self.ticking
    }
}

/// The status of a job that has not started yet, as its shared record keeps it.
pub(crate) fn initial_status(schedule: &Schedule) -> LiveStatus {
    LiveStatus::new(if schedule.enabled {
        JobState::Starting
    } else {
        JobState::Disabled
    })
}
