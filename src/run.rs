//! One run of a job: its attempts, their timeout and grace, panic isolation and retries.
//!
//! The supervisor decides *when* a run starts; this module decides how it ends. Runs are not
//! tasks: the supervisor polls them itself, in its shard's task ([`InFlight`]), and each
//! attempt is polled through [`CatchUnwind`], so a panic becomes an outcome instead of
//! unwinding, and an attempt that will not stop is dropped, which is how a run is abandoned. A
//! tick therefore costs no task spawn: ticking thousands of jobs stays cheap.
//!
//! Tokens: the run's token descends from the host's token, so shutdown reaches it. Without
//! retries the run's single attempt uses the run's token; with retries each attempt gets a child
//! of it, so a timeout cancels only that attempt and a retry starts with a fresh token.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::control::JobShared;
use crate::job::{ErasedJob, JobContext, JobError, RunToken};
use crate::run_slots::Slot;
use crate::schedule::{Schedule, after};
use crate::status::RunOutcome;

/// Everything needed to drive one run.
pub(crate) struct Run {
    /// The context of the run, holding its token; retries copy it with a new attempt number
    /// and a child token.
    pub(crate) ctx: JobContext,
    /// When the run started.
    pub(crate) started: Instant,
    /// The next tick after this run's, which retries must not reach (none in fixed-delay mode).
    pub(crate) next_tick: Option<Instant>,
    /// The host's slot this run holds while in flight, when the host limits runs in flight;
    /// freed when the run ends (or is dropped), with the run.
    #[allow(dead_code, reason = "held, never read: dropping it frees the slot")]
    pub(crate) slot: Option<Slot>,
}

/// A run just started: either it already ended, or it is under way and must be polled on.
pub(crate) enum Started {
    Ended(RunReport),
    Running(RunFuture),
}

/// How a run went, for the supervisor's counters.
#[derive(Debug)]
pub(crate) struct RunReport {
    /// The run's id, from its context.
    pub(crate) run_id: u64,
    pub(crate) outcome: RunOutcome,
    pub(crate) attempts: u32,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    /// Whether the run cancelled its own token (a timeout, or lost leadership), which the
    /// supervisor must then not hand to the next run.
    pub(crate) cancelled_own_token: bool,
    /// Whether its last attempt ignored its cancelled token past `cancel_grace` and was dropped
    /// (always so for [`RunOutcome::Dropped`]; a [`RunOutcome::TimedOut`] run may be either).
    pub(crate) abandoned: bool,
}

impl Run {
    /// Starts the run of `job`, which has `schedule`, and polls it once with `cx`.
    ///
    /// Most runs end in that first poll, and for those nothing more is made: no timer, no
    /// cancellation wait, no boxed state for the attempt. Only a run that is still under way
    /// (or whose job retries) becomes a future to poll on, [`Run::drive`], which carries on
    /// with the attempt already begun.
    pub(crate) fn start(
        self,
        job: &Arc<dyn ErasedJob>,
        schedule: &Schedule,
        cx: &mut Context<'_>,
    ) -> Started {
        if schedule.retries > 0 {
            // Each attempt needs its own token: the general path makes it.
            let attempts = Attempts::Retrying(job.clone());
            return Started::Running(self.drive(attempts, schedule.clone()));
        }
        let mut execution = begin_attempt(job, self.ctx.clone());
        let deadline = schedule
            .timeout
            .map(|timeout| after(Instant::now(), timeout));
        match Pin::new(&mut execution).poll(cx) {
            Poll::Ready(result) => Started::Ended(RunReport {
                run_id: self.ctx.run_id,
                outcome: judged(outcome_of(result), deadline),
                attempts: 1,
                started: self.started,
                ended: Instant::now(),
                cancelled_own_token: false,
                abandoned: false,
            }),
            Poll::Pending => {
                // Polled once more at once, so that its timer is set now, whatever wakes next.
                let attempts = Attempts::Single(execution, deadline);
                let mut running = self.drive(attempts, schedule.clone());
                match running.as_mut().poll(cx) {
                    Poll::Ready(report) => Started::Ended(report),
                    Poll::Pending => Started::Running(running),
                }
            }
        }
    }

    /// The run's future once it is under way: its attempts, retries with backoff, and the final
    /// outcome.
    ///
    /// Never panics, whatever the job does. Dropping the future abandons the attempt in flight.
    /// When the run's leadership is lost (the elector reported it, or the leases' local deadline
    /// passed), its token is cancelled at once: the attempt gets its `cancel_grace`, and no retry
    /// follows. The leases are checked before the attempt at every poll, so that an attempt
    /// woken after a freeze past the deadline finds its token already cancelled.
    ///
    /// Not inlined into [`Run::start`], whose runs mostly end in their first poll: the futures
    /// made here would deepen the stack of every run.
    #[inline(never)]
    fn drive(self, attempts: Attempts, schedule: Schedule) -> RunFuture {
        let leases = self.ctx.leases.clone();
        let token = leases.as_ref().map(|_| self.ctx.token().clone());
        let mut attempts: RunFuture = Box::pin(self.attempts(attempts, schedule));
        let (Some(leases), Some(token)) = (leases, token) else {
            return attempts;
        };
        Box::pin(async move {
            tokio::select! {
                biased;
                _ = leases.lost() => {
                    token.cancel();
                    RunReport { cancelled_own_token: true, ..attempts.await }
                }
                report = &mut attempts => report,
            }
        })
    }

    /// The run's attempts.
    ///
    /// Not an `async fn`: one keeps its arguments twice in its state (as arguments, and as the
    /// locals they are moved into), which every run still under way after its first poll would
    /// carry in its box.
    fn attempts(
        self,
        attempts: Attempts,
        schedule: Schedule,
    ) -> impl Future<Output = RunReport> + Send + 'static {
        let Run {
            ctx,
            started,
            next_tick,
            slot,
        } = self;
        async move {
            // Held until the run ends: dropping it frees the host's slot.
            let _slot = slot;
            let run_id = ctx.run_id;
            let report = |ended: Ended, attempts| RunReport {
                run_id,
                outcome: ended.outcome,
                attempts,
                started,
                ended: Instant::now(),
                cancelled_own_token: ended.timed_out,
                abandoned: ended.abandoned,
            };
            let job = match attempts {
                Attempts::Single(execution, deadline) => {
                    // The single attempt took the run's context and token as they are.
                    let token = ctx.token().clone();
                    let ended = finish_attempt(execution, &token, deadline, &schedule).await;
                    return report(ended, 1);
                }
                Attempts::Retrying(job) => job,
            };
            let mut number = 1;
            loop {
                let attempt_ctx = JobContext {
                    attempt: number,
                    token: RunToken::child_of(ctx.token()),
                    ..ctx.clone()
                };
                let token = attempt_ctx.token().clone();
                let deadline = schedule
                    .timeout
                    .map(|timeout| after(Instant::now(), timeout));
                let execution = begin_attempt(&job, attempt_ctx);
                let ended = finish_attempt(execution, &token, deadline, &schedule).await;
                // The attempt's own token is cancelled, not the run's: the next run may keep it.
                let ended = Ended {
                    timed_out: false,
                    ..ended
                };
                let outcome = &ended.outcome;
                let retryable = matches!(
                    outcome,
                    RunOutcome::Failed(_) | RunOutcome::Panicked(_) | RunOutcome::TimedOut
                );
                let retry_at = if retryable && !ctx.is_cancelled() {
                    schedule.retry_at(number, Instant::now(), next_tick)
                } else {
                    None
                };
                let Some(retry_at) = retry_at else {
                    return report(ended, number);
                };
                tracing::warn!(
                    job = %ctx.job_name(),
                    run_id = ctx.run_id(),
                    attempt = number,
                    outcome = outcome.label(),
                    retry_in = ?retry_at.saturating_duration_since(Instant::now()),
                    "run failed; retrying"
                );
                tokio::select! {
                    _ = sleep_until(retry_at) => number += 1,
                    _ = ctx.cancelled() => return report(ended, number),
                }
            }
        }
    }
}

/// A run under way, as the supervisor keeps it.
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = RunReport> + Send>>;

/// The attempts a run future makes.
enum Attempts {
    /// The single attempt of a job without retries, which [`Run::start`] began, and its
    /// timeout's deadline (counted from that first poll).
    Single(Execution, Option<Instant>),
    /// As many as the job's schedule allows; each calls the job anew.
    Retrying(Arc<dyn ErasedJob>),
}

/// An attempt's execution: the job's future, with panics caught, polled and dropped in the
/// attempt's span if it has one.
///
/// Not tracing's `Instrumented`: without a subscriber there is no span, and entering and
/// leaving an empty one on every poll and on drop cost about a hundred instructions a run.
struct Execution {
    /// `None` once the attempt has finished (it is dropped then, in its span), or while the
    /// execution is dropped.
    attempt: Option<CatchUnwind<Result<(), JobError>>>,
    span: AttemptSpan,
}

impl Future for Execution {
    type Output = Result<Result<(), JobError>, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Execution { attempt, span } = &mut *self;
        let _entered = span.enter();
        let Some(running) = attempt else {
            return Poll::Pending;
        };
        let result = std::task::ready!(Pin::new(running).poll(cx));
        // Dropped while its span is entered: the execution's own drop then need not enter it.
        *attempt = None;
        Poll::Ready(result)
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        // An abandoned attempt is dropped in its span too: what it logs as it goes carries it.
        if self.attempt.is_some() {
            let _entered = self.span.enter();
            self.attempt.take();
        }
    }
}

/// Begins an attempt: calls the job, which makes its future (polled by the caller) in the
/// attempt's span.
fn begin_attempt(job: &Arc<dyn ErasedJob>, ctx: JobContext) -> Execution {
    let span = AttemptSpan::of(&ctx);
    Execution {
        attempt: Some(CatchUnwind(job.clone().execute(ctx))),
        span,
    }
}

/// The span an attempt is polled in: the run's `loopjob.run` (`debug`, with `run_id` and
/// `attempt`), a child of the job's `loopjob.job` (`info`, with `job`). At `info` that is the
/// job's span alone, made once for the job's life ([`JobShared::span`]).
enum AttemptSpan {
    /// No subscriber is installed, or none wants the job's span.
    None,
    /// The job's span, entered where the job's record keeps it. Not a clone of it: a clone and
    /// its drop are two lookups in a subscriber's registry, about 500 instructions a run.
    Job(Arc<JobShared>),
    /// The run's own span.
    Run(tracing::Span),
}

impl AttemptSpan {
    fn of(ctx: &JobContext) -> AttemptSpan {
        // No subscriber at all: no span. A disabled span would still write its life to the
        // `log` crate (sqlx turns on `tracing`'s `log` feature), a few hundred instructions a
        // run.
        if !tracing::dispatcher::has_been_set() {
            return AttemptSpan::None;
        }
        let job_span = ctx.job.span();
        let run_span = tracing::debug_span!(
            parent: job_span.and_then(tracing::Span::id),
            "loopjob.run",
            run_id = ctx.run_id(),
            attempt = ctx.attempt(),
        );
        match job_span {
            Some(_) if run_span.is_disabled() => AttemptSpan::Job(ctx.job.clone()),
            None if run_span.is_disabled() => AttemptSpan::None,
            _ => AttemptSpan::Run(run_span),
        }
    }

    fn enter(&self) -> Option<tracing::span::Entered<'_>> {
        match self {
            AttemptSpan::None => None,
            AttemptSpan::Job(job) => job.span().map(tracing::Span::enter),
            AttemptSpan::Run(span) => Some(span.enter()),
        }
    }
}

/// How an attempt ended.
struct Ended {
    outcome: RunOutcome,
    /// Whether its timeout cancelled its token.
    timed_out: bool,
    /// Whether it ignored its cancelled token past `cancel_grace` and was dropped.
    abandoned: bool,
}

/// Carries an attempt to its end: polls the job, cancels its token at `deadline` (its timeout,
/// counted from its first poll), and drops it if it has not stopped `cancel_grace` after its
/// token was cancelled.
async fn finish_attempt(
    mut execution: Execution,
    token: &CancellationToken,
    deadline: Option<Instant>,
    schedule: &Schedule,
) -> Ended {
    let timed_out = tokio::select! {
        // The job first: a run that finishes at once never registers a timer or a waiter.
        biased;
        result = &mut execution => {
            return Ended {
                outcome: judged(outcome_of(result), deadline),
                timed_out: false,
                abandoned: false,
            };
        }
        _ = sleep_until_or_never(deadline) => true,
        // Lazy: `cancelled()` would register with the token as soon as it is made.
        _ = async { token.cancelled().await } => false,
    };
    token.cancel();

    // The attempt was asked to stop: give it its grace, then drop it.
    let grace_end = after(Instant::now(), schedule.cancel_grace);
    let finished = tokio::select! {
        result = &mut execution => Some(outcome_of(result)),
        _ = sleep_until(grace_end) => None,
    };
    let abandoned = finished.is_none();
    let outcome = match (timed_out, finished) {
        (true, _) => RunOutcome::TimedOut,
        (false, Some(outcome)) => outcome,
        (false, None) => RunOutcome::Dropped,
    };
    // `execution` is dropped on return, which abandons an attempt that did not stop.
    Ended {
        outcome,
        timed_out,
        abandoned,
    }
}

/// The outcome of an attempt that ended by itself, judged against its timeout's `deadline`: a
/// success that came after it is [`RunOutcome::Overran`], since the attempt kept the thread
/// (or never yielded) past its timeout, where its token could not reach it.
fn judged(outcome: RunOutcome, deadline: Option<Instant>) -> RunOutcome {
    match outcome {
        RunOutcome::Succeeded if deadline.is_some_and(|deadline| Instant::now() > deadline) => {
            RunOutcome::Overran
        }
        outcome => outcome,
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub(crate) async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn outcome_of(result: Result<Result<(), JobError>, Box<dyn Any + Send>>) -> RunOutcome {
    match result {
        Ok(Ok(())) => RunOutcome::Succeeded,
        Ok(Err(error)) => RunOutcome::Failed(error.to_string()),
        Err(panic) => RunOutcome::Panicked(panic_message(panic)),
    }
}

/// Polls a boxed future (a run, or a job's hook) and turns a panic inside it into an `Err`
/// with the panic's payload.
///
/// After a panic the inner future is never polled again: the output is ready.
pub(crate) struct CatchUnwind<T>(pub(crate) Pin<Box<dyn Future<Output = T> + Send>>);

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let run = &mut self.get_mut().0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "a panic with a non-text payload".to_owned(),
        },
    }
}

/// The runs of one job in flight, polled by the job's supervisor.
///
/// Runs are not spawned: a tick costs no task, and a run that finishes at once (the common case)
/// finishes in the same poll that started it. Every wake polls every run in flight, which stays
/// cheap because a job allows only a few at once (`max_overlap`). Dropping the set abandons the
/// runs in it.
#[derive(Default)]
pub(crate) struct InFlight {
    runs: Vec<RunFuture>,
}

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Adds a run that is under way.
    pub(crate) fn push(&mut self, run: RunFuture) {
        self.runs.push(run);
    }

    /// The report of the next run to end, if one has; pending while none has (forever while
    /// there is none). A run that has not ended stays in the set.
    pub(crate) fn poll_next_report(&mut self, cx: &mut Context<'_>) -> Poll<RunReport> {
        for index in 0..self.runs.len() {
            if let Poll::Ready(report) = self.runs[index].as_mut().poll(cx) {
                drop(self.runs.swap_remove(index));
                return Poll::Ready(report);
            }
        }
        Poll::Pending
    }

    /// Completes with the report of the next run to end (see [`InFlight::poll_next_report`]).
    /// Cancel-safe.
    pub(crate) fn next_report(&mut self) -> impl Future<Output = RunReport> + '_ {
        std::future::poll_fn(|cx| self.poll_next_report(cx))
    }
}
