//! Shards: each is one task that drives the supervisors of several jobs, with one timer.
//!
//! A task per job costs, on every tick, a tokio timer firing, a task being scheduled, and the
//! first touch of that task's memory; at 10,000 jobs ticking every 100 ms that made loopjob
//! twice as costly in CPU as the same number of bare `tokio::time::interval` loops. A shard
//! polls its jobs' supervisors as one task, through a [`FuturesUnordered`] (which polls only
//! the ones that were woken), and keeps their next ticks in one queue ([`Timers`]) with a single
//! tokio timer set to the earliest: jobs that tick together are served in one wake-up.
//!
//! The price is that a shard's jobs share a task. Runs are polled inside their shard, so a run
//! that blocks the thread (synchronous work without `spawn_blocking`, which is a mistake under
//! tokio in any case) delays the other jobs of its shard until it yields. Shards hold up to
//! [`JOBS_PER_SHARD`] jobs, more once a host has more jobs than that many times
//! [`MAX_SHARDS`]. Small hosts share shards too. A task of its own for each job would not
//! confine a blocking run either (on a multi-threaded runtime the run holds a worker thread and
//! what is queued on it, on a current-thread runtime every task), and it cost: 100 jobs in
//! tasks of their own took × 1.44 the CPU of 100 bare interval loops, in shards of 32 about
//! × 1.0 (docs/BENCHMARKS.md, "Seventh pass"). A shard of one job (a host of one job) is
//! just that job's task with a tokio timer of its own: the queue and the `FuturesUnordered`
//! would only add to each tick's cost and to the job's memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::Either;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::status::JobReport;
use crate::supervisor::Supervisor;

/// The most shards a host makes; beyond that many jobs, shards hold several jobs each.
pub(crate) const MAX_SHARDS: usize = 256;

/// How many jobs a shard holds at most, until a host has more than [`MAX_SHARDS`] times that.
///
/// The more jobs that tick together in one shard, the fewer wake-ups serve them, and a shard's
/// task, timer, queue and `FuturesUnordered` cost about 1.5 KB whatever it holds: at 1,000
/// jobs, shards of 32 took × 0.86 the CPU of bare loops and +0.8 KiB per job, shards of 16
/// × 1.0 and +1.0 KiB, shards of 64 × 0.8 and +0.7 KiB. 32 is the middle: a run that blocks the
/// thread delays at most 31 other jobs.
const JOBS_PER_SHARD: usize = 32;

/// How many jobs each shard holds when a host has `jobs` jobs: spread evenly over as few
/// shards as hold [`JOBS_PER_SHARD`] each, and at most [`MAX_SHARDS`] shards.
pub(crate) fn jobs_per_shard(jobs: usize) -> usize {
    let shards = jobs.div_ceil(JOBS_PER_SHARD).clamp(1, MAX_SHARDS);
    jobs.div_ceil(shards)
}

/// Runs `supervisors` (one shard's jobs) until each has stopped; their reports come back in the
/// order the supervisors were given.
///
/// The jobs' futures are made here, before the shard is spawned, so that they are allocated
/// where the host is built rather than spread over the worker threads' allocators.
pub(crate) fn run(mut supervisors: Vec<Supervisor>) -> impl Future<Output = Vec<JobReport>> + Send {
    if supervisors.len() == 1 {
        if let Some(alone) = supervisors.pop() {
            // `map`, not an `async` block, which would keep the job's future twice.
            let running = alone.run(JobTimer::alone()).map(|report| vec![report]);
            return Either::Left(running);
        }
    }
    let timers = Arc::new(Timers::new(supervisors.len()));
    let running: FuturesUnordered<_> = supervisors
        .into_iter()
        .enumerate()
        .map(|(position, supervisor)| {
            let timer = JobTimer::new(timers.clone(), position);
            supervisor.run(timer).map(move |report| (position, report))
        })
        .collect();
    Either::Right(drive(running, timers))
}

/// Polls the shard's jobs as they are woken, wakes those whose ticks are due, and keeps the
/// shard's one tokio timer on the earliest tick, until every job has stopped.
async fn drive<F>(mut running: FuturesUnordered<F>, timers: Arc<Timers>) -> Vec<JobReport>
where
    F: Future<Output = (usize, JobReport)>,
{
    // Empty until the jobs stop: a report is 280 bytes, and a shard lives as long as its jobs.
    let mut reports = Vec::new();
    let mut sleep = pin!(sleep_until(Instant::now()));
    let mut armed_at = None;
    poll_fn(|cx| {
        let mut served_early = false;
        loop {
            timers.wake_due(Instant::now());
            loop {
                match running.poll_next_unpin(cx) {
                    Poll::Ready(Some(report)) => reports.push(report),
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            // The jobs just polled may have set earlier ticks: the timer follows the earliest.
            let earliest = timers.earliest();
            // A tick they set at or before the real time (the shard's clock was read before
            // they were polled) is served now, once a poll: a tokio timer rounds its deadline
            // up to the next millisecond. Later ones wait for the timer, which yields.
            if !served_early && earliest.is_some_and(|at| at <= Instant::now()) {
                served_early = true;
                continue;
            }
            if earliest != armed_at {
                if let Some(at) = earliest {
                    sleep.as_mut().reset(at);
                }
                armed_at = earliest;
            }
            if armed_at.is_none() || sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The earliest tick came while the jobs were polled: serve it now.
            armed_at = None;
        }
    })
    .await;
    reports.sort_unstable_by_key(|(position, _)| *position);
    reports.into_iter().map(|(_, report)| report).collect()
}

/// The next ticks of a shard's jobs, earliest first, the jobs' wakers, and the shard's clock.
struct Timers {
    inner: Mutex<TimersInner>,
    /// When the shard last read the clock, in nanoseconds after `epoch`: the jobs it then polls
    /// compare their deadlines with this instant instead of each reading the clock again. It is
    /// never later than the real time, so a deadline is never found passed too early. An atomic
    /// rather than a field under the lock: a job whose tick came reads it without locking.
    clock: AtomicU64,
    epoch: Instant,
}

struct TimersInner {
    deadlines: Deadlines,
    /// Each job's waker, by its place in the shard, set with its first deadline: woken by
    /// reference, so a deadline costs no clone of it (two atomic operations a tick).
    wakers: Vec<Option<Waker>>,
}

/// A shard's deadlines, each with the job's place in the shard, taken earliest first.
///
/// Two queues: a deadline no earlier than the latest one queued goes at the back of a sorted
/// `VecDeque`, and any other into a heap. A job's next tick is nearly always the latest
/// deadline of its shard (its jobs tick at the same interval), so most deadlines take the
/// deque, where a push and a pop are a step each; a heap's pop sifts through every level, about
/// 130 instructions a run at 25 jobs a shard (docs/BENCHMARKS.md). Mixed intervals still cost a
/// heap's `O(log n)`, never a move of the deque's entries.
#[derive(Default)]
struct Deadlines {
    in_order: VecDeque<(Instant, usize)>,
    out_of_order: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Deadlines {
    fn push(&mut self, at: Instant, job: usize) {
        if self.in_order.back().is_none_or(|&(latest, _)| latest <= at) {
            self.in_order.push_back((at, job));
        } else {
            self.out_of_order.push(Reverse((at, job)));
        }
    }

    /// The earliest deadline.
    fn peek(&self) -> Option<Instant> {
        let in_order = self.in_order.front().map(|&(at, _)| at);
        let out_of_order = self.out_of_order.peek().map(|Reverse((at, _))| *at);
        match (in_order, out_of_order) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the earliest deadline if it is at or before `now`; returns its job.
    fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let in_order = self.in_order.front().map(|&(at, _)| at);
        let out_of_order = self.out_of_order.peek().map(|Reverse((at, _))| *at);
        match (in_order, out_of_order) {
            (Some(at), other) if at <= now && other.is_none_or(|other| at <= other) => {
                self.in_order.pop_front().map(|(_, job)| job)
            }
            (_, Some(at)) if at <= now => self.out_of_order.pop().map(|Reverse((_, job))| job),
            _ => None,
        }
    }
}

impl Timers {
    fn new(jobs: usize) -> Self {
        Timers {
            inner: Mutex::new(TimersInner {
                deadlines: Deadlines::default(),
                wakers: vec![None; jobs],
            }),
            clock: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Sets the shard's clock to `now` and wakes the jobs whose deadlines are at or before it.
    fn wake_due(&self, now: Instant) {
        let since_epoch = now.saturating_duration_since(self.epoch).as_nanos();
        self.clock.store(since_epoch as u64, Ordering::Relaxed);
        let mut inner = self.lock();
        let TimersInner { deadlines, wakers } = &mut *inner;
        while let Some(due) = deadlines.pop_due(now) {
            // Waking a job only queues it in the shard's `FuturesUnordered`.
            if let Some(job) = &wakers[due] {
                job.wake_by_ref();
            }
        }
    }

    /// The shard's clock: when it last woke its jobs.
    fn now(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.clock.load(Ordering::Relaxed))
    }

    fn earliest(&self) -> Option<Instant> {
        self.lock().deadlines.peek()
    }

    fn lock(&self) -> MutexGuard<'_, TimersInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A job's tick timer: like tokio's `Sleep`, but kept in its shard's [`Timers`], or, for a job
/// alone in its shard, a tokio timer of its own.
///
/// It keeps no deadline of its own: the job's loop gives it on every poll, from the next tick
/// it keeps anyway (one copy fewer of it in every job's future).
pub(crate) struct JobTimer(TimerClock);

enum TimerClock {
    /// A shard's queue, and the deadline that has an entry in it. A deadline that was moved
    /// leaves its old entry in the queue; when that entry comes due it wakes the job for
    /// nothing, which costs one poll and is rarer than a move.
    Shard {
        timers: Arc<Timers>,
        /// The job's place in the shard.
        job: usize,
        registered: Option<Instant>,
    },
    /// The job's own timer, and when the last deadline was found passed: a deadline set in the
    /// same turn and later than that is set on the timer without reading the clock again.
    Alone {
        sleep: Pin<Box<Sleep>>,
        passed_at: Option<Instant>,
    },
}

impl JobTimer {
    fn new(timers: Arc<Timers>, job: usize) -> Self {
        JobTimer(TimerClock::Shard {
            timers,
            job,
            registered: None,
        })
    }

    fn alone() -> Self {
        JobTimer(TimerClock::Alone {
            sleep: Box::pin(sleep_until(Instant::now())),
            passed_at: None,
        })
    }

    /// Ready once `deadline` has passed, with the instant it was found passed; pending while
    /// there is none.
    #[inline] // Polled twice a run, from the job's loop only: about 30 instructions a run fewer.
    pub(crate) fn poll_elapsed(
        &mut self,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<Instant> {
        let Some(at) = deadline else {
            if let TimerClock::Alone { passed_at, .. } = &mut self.0 {
                *passed_at = None;
            }
            return Poll::Pending;
        };
        let passed = match &mut self.0 {
            TimerClock::Shard {
                timers,
                job,
                registered,
            } => {
                let now = timers.now();
                if now >= at {
                    *registered = None;
                    Some(now)
                } else {
                    if *registered != Some(at) {
                        let mut queue = timers.lock();
                        queue.deadlines.push(at, *job);
                        let waker = &mut queue.wakers[*job];
                        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            *waker = Some(cx.waker().clone());
                        }
                        *registered = Some(at);
                    }
                    None
                }
            }
            TimerClock::Alone { sleep, passed_at } => {
                let armed = sleep.deadline() == at;
                // The next tick, set in the turn whose tick passed at `passed_at`, is after it:
                // the timer is set without a look at the clock (one read of it fewer a run;
                // should the turn have outlasted the tick, the timer serves it within a
                // millisecond). Otherwise a deadline already passed is served now, without
                // asking the timer, which rounds deadlines up to the next millisecond.
                let ahead = !armed && passed_at.take().is_some_and(|then| at > then);
                let now = (!ahead).then(Instant::now);
                if !armed && now.is_none_or(|now| now < at) {
                    sleep.as_mut().reset(at);
                }
                let passed = match now {
                    Some(now) if now >= at => Some(now),
                    _ if sleep.as_mut().poll(cx).is_ready() => {
                        Some(now.unwrap_or_else(Instant::now).max(at))
                    }
                    _ => None,
                };
                *passed_at = passed;
                passed
            }
        };
        passed.map_or(Poll::Pending, Poll::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_due_earliest_first_however_they_were_pushed() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut deadlines = Deadlines::default();
        // In order (to the deque), then earlier ones (to the heap), ties and all.
        for (job, at) in [30, 40, 40, 10, 50, 20, 35, 60, 5].into_iter().enumerate() {
            deadlines.push(ms(at), job);
        }
        assert_eq!(deadlines.peek(), Some(ms(5)));
        assert_eq!(deadlines.pop_due(ms(4)), None, "nothing is due before 5 ms");
        let mut due = Vec::new();
        while let Some(job) = deadlines.pop_due(ms(40)) {
            due.push(job);
        }
        // 5, 10, 20, 30, 35, 40, 40 (in either order), and 50 and 60 wait.
        assert_eq!(due[..5], [8, 3, 5, 0, 6]);
        assert_eq!(due.len(), 7, "{due:?}");
        assert_eq!(deadlines.peek(), Some(ms(50)));
        deadlines.push(ms(45), 9);
        assert_eq!(deadlines.pop_due(ms(100)), Some(9));
        assert_eq!(deadlines.pop_due(ms(100)), Some(4));
        assert_eq!(deadlines.pop_due(ms(100)), Some(7));
        assert_eq!(deadlines.pop_due(ms(100)), None);
        assert_eq!(deadlines.peek(), None);
    }

    #[test]
    fn jobs_are_spread_evenly_over_shards_of_thirty_two_or_at_most_max_shards() {
        assert_eq!(jobs_per_shard(0), 0);
        assert_eq!(jobs_per_shard(1), 1);
        assert_eq!(jobs_per_shard(JOBS_PER_SHARD), JOBS_PER_SHARD);
        // 33 jobs: 17 and 16, not 32 and 1.
        assert_eq!(jobs_per_shard(JOBS_PER_SHARD + 1), 17);
        assert_eq!(jobs_per_shard(100), 25);
        assert_eq!(jobs_per_shard(JOBS_PER_SHARD * MAX_SHARDS), JOBS_PER_SHARD);
        assert_eq!(jobs_per_shard(10_000), 40);
        assert_eq!(jobs_per_shard(100_000), 391);
        for jobs in 1..=20_000 {
            let per_shard = jobs_per_shard(jobs);
            assert!(
                per_shard <= JOBS_PER_SHARD.max(jobs.div_ceil(MAX_SHARDS)),
                "{jobs} jobs"
            );
            assert!(jobs.div_ceil(per_shard) <= MAX_SHARDS, "{jobs} jobs");
        }
    }
}
