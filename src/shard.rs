//! Shards: each is one task that drives the supervisors of several jobs, with one timer.
//!
//! A task per job costs, on every tick, a tokio timer firing, a task being scheduled, and the
//! first touch of that task's memory; at 10,000 jobs ticking every 100 ms that made loopjob
//! twice as costly in CPU as the same number of bare `tokio::time::interval` loops. A shard
//! polls its jobs' supervisors as one task and keeps their next ticks in one queue
//! ([`Shared`]) with a single tokio timer set to the earliest: jobs that tick together are
//! served in one wake-up. It is a small executor of its own: a bit per job says which to poll,
//! set by the queue when the job's tick comes and by the job's waker when anything else wakes
//! it, so a tick costs no waker call and no atomic operation beyond that bit.
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
//! just that job's task with a tokio timer of its own: the queue and the bits would only add
//! to each tick's cost and to the job's memory.

use std::any::Any;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Either;
use futures_util::task::AtomicWaker;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::run::CatchUnwind;
use crate::status::JobReport;
use crate::supervisor::{self, Supervisor};

/// The most shards a host makes; beyond that many jobs, shards hold several jobs each.
pub(crate) const MAX_SHARDS: usize = 256;

/// How many jobs a shard holds at most, until a host has more than [`MAX_SHARDS`] times that.
///
/// The more jobs that tick together in one shard, the fewer wake-ups serve them, and a shard's
/// task, timer and queue cost about 1.5 KB whatever it holds: at 1,000 jobs, shards of 32
/// took × 0.86 the CPU of bare loops and +0.8 KiB per job, shards of 16 × 1.0 and +1.0 KiB,
/// shards of 64 × 0.8 and +0.7 KiB. 32 is the middle: a run that blocks the thread delays at
/// most 31 other jobs.
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
/// A job's loop that panics (a bug in loopjob: a job's own code is caught where it runs) ends
/// that job alone, reported by [`supervisor::failed`]; the shard's other jobs go on.
///
/// The jobs' futures are made here, before the shard is spawned, so that they are allocated
/// where the host is built rather than spread over the worker threads' allocators.
pub(crate) fn run(mut supervisors: Vec<Supervisor>) -> impl Future<Output = Vec<JobReport>> + Send {
    if supervisors.len() == 1 {
        if let Some(alone) = supervisors.pop() {
            let record = alone.record();
            let running = CatchUnwind(Box::pin(alone.run(JobTimer::alone())));
            // `map`, not an `async` block, which would keep the job's future twice.
            let report = running.map(move |ran| {
                vec![ran.unwrap_or_else(|panic| supervisor::failed(&record, panic))]
            });
            return Either::Left(report);
        }
    }
    let shared = Arc::new(Shared::new(supervisors.len()));
    let records: Vec<_> = supervisors.iter().map(Supervisor::record).collect();
    let (jobs, wakers) = supervisors
        .into_iter()
        .enumerate()
        .map(|(position, supervisor)| {
            let job = Box::pin(supervisor.run(JobTimer::new(shared.clone(), position)));
            let waker = Waker::from(Arc::new(JobWaker {
                shard: shared.clone(),
                position,
            }));
            (Some(job), waker)
        })
        .unzip();
    let failed = move |position: usize, panic| supervisor::failed(&records[position], panic);
    Either::Right(drive(jobs, wakers, shared, failed))
}

/// Polls the shard's jobs as they are woken, wakes those whose ticks are due, and keeps the
/// shard's one tokio timer on the earliest tick, until every job has stopped.
///
/// `jobs[i]` is the future of the job at place `i` (`None` once it stopped), polled with
/// `wakers[i]`. A job whose poll panics is dropped, and `failed(i, panic)` is its report.
async fn drive<F, R>(
    mut jobs: Vec<Option<Pin<Box<F>>>>,
    wakers: Vec<Waker>,
    shared: Arc<Shared>,
    mut failed: impl FnMut(usize, Box<dyn Any + Send>) -> R,
) -> Vec<R>
where
    F: Future<Output = R>,
{
    let mut running = jobs.len();
    // Empty until the jobs stop: a report is 280 bytes, and a shard lives as long as its jobs.
    let mut reports = Vec::new();
    let mut sleep = pin!(sleep_until(Instant::now()));
    let mut armed_at = None;
    // The jobs' wakers may outlive the shard (a job's record keeps one for its commands): the
    // task's waker they reach through `shared` is let go when the shard ends or is aborted.
    let _forget_task = ForgetTask(&shared);
    poll_fn(|cx| {
        shared.task.register(cx.waker());
        let mut served_early = false;
        loop {
            shared.wake_due(Instant::now());
            // Each job woken is polled once: one that wakes itself as it is polled has the
            // shard's task woken, and waits for its next poll, after other tasks had theirs.
            for (word, ready) in shared.ready.iter().enumerate() {
                let mut woken = ready.swap(0, Ordering::Acquire);
                while woken != 0 {
                    let position = word * 64 + woken.trailing_zeros() as usize;
                    woken &= woken - 1;
                    let Some(job) = &mut jobs[position] else {
                        continue;
                    };
                    let mut job_cx = Context::from_waker(&wakers[position]);
                    let polled = catch_unwind(AssertUnwindSafe(|| job.as_mut().poll(&mut job_cx)));
                    let report = match polled {
                        Ok(Poll::Pending) => continue,
                        Ok(Poll::Ready(report)) => report,
                        Err(panic) => failed(position, panic),
                    };
                    jobs[position] = None;
                    reports.push((position, report));
                    running -= 1;
                }
            }
            if running == 0 {
                return Poll::Ready(());
            }
            // The jobs just polled may have set earlier ticks: the timer follows the earliest.
            let earliest = shared.earliest();
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

/// Lets go of the shard's task's waker when dropped.
struct ForgetTask<'a>(&'a Shared);

impl Drop for ForgetTask<'_> {
    fn drop(&mut self) {
        drop(self.0.task.take());
    }
}

/// What a shard shares with its jobs: their next ticks, which of them are to be polled, the
/// shard's task, and its clock.
///
/// The shard is a small executor of its own rather than a `FuturesUnordered`: a job whose tick
/// came is marked to be polled with one bit, where waking and polling it through a
/// `FuturesUnordered` cost about seven atomic operations and had tokio poll the shard's task
/// once more, for nothing, on every tick (docs/BENCHMARKS.md, "Thirteenth pass").
struct Shared {
    deadlines: Mutex<Deadlines>,
    /// Which jobs are to be polled, a bit for each, by place: set when a job's tick comes, or
    /// when something else wakes it (a command, a run's progress, its guard).
    ready: Vec<AtomicU64>,
    /// The shard's task, which a job woken from outside the shard's poll wakes.
    task: AtomicWaker,
    /// When the shard last read the clock, in nanoseconds after `epoch`: the jobs it then polls
    /// compare their deadlines with this instant instead of each reading the clock again. It is
    /// never later than the real time, so a deadline is never found passed too early. An atomic
    /// rather than a field under the lock: a job whose tick came reads it without locking.
    clock: AtomicU64,
    epoch: Instant,
}

/// A job's waker in its shard: it marks the job to be polled and wakes the shard's task.
struct JobWaker {
    shard: Arc<Shared>,
    /// The job's place in the shard.
    position: usize,
}

impl Wake for JobWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Already marked: whoever marked it woke the task, or the shard is about to poll it.
        if self.shard.mark(self.position) {
            self.shard.task.wake();
        }
    }
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

impl Shared {
    /// A shard of `jobs` jobs, each marked to be polled (their first poll starts them).
    fn new(jobs: usize) -> Self {
        let mut ready: Vec<AtomicU64> = (0..jobs / 64).map(|_| AtomicU64::new(u64::MAX)).collect();
        if jobs % 64 != 0 {
            ready.push(AtomicU64::new((1 << (jobs % 64)) - 1));
        }
        Shared {
            deadlines: Mutex::new(Deadlines::default()),
            ready,
            task: AtomicWaker::new(),
            clock: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Sets the shard's clock to `now` and marks the jobs whose deadlines are at or before it
    /// to be polled.
    fn wake_due(&self, now: Instant) {
        let since_epoch = now.saturating_duration_since(self.epoch).as_nanos();
        self.clock.store(since_epoch as u64, Ordering::Relaxed);
        let mut deadlines = self.lock();
        while let Some(due) = deadlines.pop_due(now) {
            // The shard's own poll is under way: its task need not be woken.
            self.mark(due);
        }
    }

    /// Marks the job at `position` to be polled; returns whether it was not marked yet.
    fn mark(&self, position: usize) -> bool {
        let bit = 1 << (position % 64);
        self.ready[position / 64].fetch_or(bit, Ordering::Release) & bit == 0
    }

    /// The shard's clock: when it last woke its jobs.
    fn now(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.clock.load(Ordering::Relaxed))
    }

    fn earliest(&self) -> Option<Instant> {
        self.lock().peek()
    }

    fn lock(&self) -> MutexGuard<'_, Deadlines> {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A job's tick timer: like tokio's `Sleep`, but kept in its shard's queue ([`Shared`]), or,
/// for a job alone in its shard, a tokio timer of its own.
///
/// It keeps no deadline of its own: the job's loop gives it on every poll, from the next tick
/// it keeps anyway (one copy fewer of it in every job's future).
pub(crate) struct JobTimer(TimerClock);

enum TimerClock {
    /// A shard's queue, and the deadline that has an entry in it. A deadline that was moved
    /// leaves its old entry in the queue; when that entry comes due it has the job polled for
    /// nothing, which costs one poll and is rarer than a move.
    Shard {
        shard: Arc<Shared>,
        /// The job's place in the shard, which its entries name: the shard polls the job at
        /// that place when one comes due, so the timer keeps no waker.
        position: usize,
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
    fn new(shard: Arc<Shared>, position: usize) -> Self {
        JobTimer(TimerClock::Shard {
            shard,
            position,
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
                shard,
                position,
                registered,
            } => {
                let now = shard.now();
                if now >= at {
                    *registered = None;
                    Some(now)
                } else {
                    if *registered != Some(at) {
                        shard.lock().push(at, *position);
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

    /// A waker that counts its wakes.
    struct Counting(AtomicU64);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ready_bits(shard: &Shared) -> Vec<u64> {
        shard
            .ready
            .iter()
            .map(|word| word.load(Ordering::SeqCst))
            .collect()
    }

    #[test]
    fn a_shard_polls_every_job_first_then_those_whose_tick_came_or_that_were_woken() {
        let shard = Arc::new(Shared::new(70));
        assert_eq!(
            ready_bits(&shard),
            [u64::MAX, 0b11_1111],
            "all 70 jobs, first"
        );
        for word in &shard.ready {
            word.store(0, Ordering::SeqCst);
        }
        let task = Arc::new(Counting(AtomicU64::new(0)));
        shard.task.register(&Waker::from(task.clone()));

        // Ticks that came are marked by the shard itself, in its own poll: no wake.
        let t0 = Instant::now();
        shard.lock().push(t0, 65);
        shard.lock().push(t0 + Duration::from_secs(1), 2);
        shard.wake_due(t0);
        assert_eq!(ready_bits(&shard), [0, 0b10]);
        assert_eq!(task.0.load(Ordering::SeqCst), 0);

        // A job woken from outside wakes the shard's task, once until the shard polls.
        let job = |position| {
            Waker::from(Arc::new(JobWaker {
                shard: shard.clone(),
                position,
            }))
        };
        job(3).wake_by_ref();
        job(3).wake_by_ref();
        job(65).wake();
        assert_eq!(ready_bits(&shard), [0b1000, 0b10]);
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shard_dropped_before_its_jobs_stopped_lets_go_of_its_task() {
        let shard = Arc::new(Shared::new(2));
        let jobs = (0..2)
            .map(|_| Some(Box::pin(std::future::pending::<JobReport>())))
            .collect();
        let wakers: Vec<Waker> = (0..2)
            .map(|position| {
                Waker::from(Arc::new(JobWaker {
                    shard: shard.clone(),
                    position,
                }))
            })
            .collect();
        let task = Arc::new(Counting(AtomicU64::new(0)));
        let task_waker = Waker::from(task.clone());
        let failed = |_, panic| std::panic::resume_unwind(panic);
        let mut running = Box::pin(drive(jobs, wakers.clone(), shard.clone(), failed));
        let mut cx = Context::from_waker(&task_waker);
        assert!(running.as_mut().poll(&mut cx).is_pending());
        wakers[0].wake_by_ref();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "a job's wake wakes the shard"
        );

        assert!(running.as_mut().poll(&mut cx).is_pending());
        drop(running);
        wakers[1].wake_by_ref();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "the shard's task is let go"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_whose_poll_panics_ends_alone_and_its_shard_goes_on() {
        async fn job(position: usize) -> String {
            for _ in 0..3 {
                tokio::task::yield_now().await;
                assert_ne!(position, 1, "a bug in job 1");
            }
            format!("job {position} stopped")
        }
        let shard = Arc::new(Shared::new(3));
        let jobs = (0..3).map(|position| Some(Box::pin(job(position))));
        let wakers = (0..3).map(|position| {
            Waker::from(Arc::new(JobWaker {
                shard: shard.clone(),
                position,
            }))
        });
        let failed = |position, panic| {
            let message = crate::run::panic_message(panic);
            format!(
                "job {position} failed: {}",
                message.lines().next().unwrap_or("")
            )
        };
        let reports = drive(jobs.collect(), wakers.collect(), shard, failed).await;

        assert_eq!(
            reports,
            [
                "job 0 stopped",
                "job 1 failed: assertion `left != right` failed: a bug in job 1",
                "job 2 stopped"
            ]
        );
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
