//! Timing, overlap, failure and shutdown semantics of the supervisor, under tokio's paused
//! clock: every assertion is an exact instant or count.

#[path = "support/recorder.rs"]
mod recorder;

use std::time::Duration;

use loopjob::{Host, JobState, MissedTicks, RunOutcome, Schedule, ScheduleMode, ShutdownReport};
use recorder::{Behaviour, Recorder, millis, secs};

/// Runs a host with the given jobs for `length` of paused time, then shuts it down.
async fn run_for(length: Duration, jobs: &[&Recorder]) -> ShutdownReport {
    let mut builder = Host::builder().shutdown_grace(secs(5));
    for job in jobs {
        builder = builder.job((*job).clone());
    }
    let host = builder.build().expect("valid jobs");
    host.run_until(tokio::time::sleep(length)).await
}

#[tokio::test(start_paused = true)]
async fn first_run_waits_the_initial_delay() {
    let job = Recorder::new(
        "delayed",
        Schedule::every(secs(10)).initial_delay(secs(90)),
        Behaviour::Work(Duration::ZERO),
    );
    run_for(secs(115), &[&job]).await;
    assert_eq!(job.starts_secs(), [90, 100, 110]);
}

#[tokio::test(start_paused = true)]
async fn fixed_rate_ticks_on_the_grid_whatever_the_run_takes() {
    let job = Recorder::new(
        "rate",
        Schedule::every(secs(10)),
        Behaviour::Work(millis(3_700)),
    );
    run_for(secs(45), &[&job]).await;
    assert_eq!(
        job.starts(),
        [secs(0), secs(10), secs(20), secs(30), secs(40)]
    );
}

#[tokio::test(start_paused = true)]
async fn fixed_delay_measures_from_the_end_of_the_last_run() {
    let job = Recorder::new(
        "delay",
        Schedule::every(secs(10)).mode(ScheduleMode::FixedDelay),
        Behaviour::Work(secs(3)),
    );
    run_for(secs(45), &[&job]).await;
    assert_eq!(job.starts_secs(), [0, 13, 26, 39]);
}

#[tokio::test(start_paused = true)]
async fn skip_if_running_skips_ticks_and_counts_them() {
    let job = Recorder::new("slow", Schedule::every(secs(10)), Behaviour::Work(secs(25)));
    let report = run_for(secs(65), &[&job]).await;
    // Runs at 0 (ends 25) and 30 (ends 55) and 60; ticks 10, 20, 40, 50 found a run in flight.
    assert_eq!(job.starts_secs(), [0, 30, 60]);
    let counters = report.job("slow").unwrap().status.counters;
    assert_eq!(counters.skipped, 4);
    assert_eq!(counters.runs, 3);
}

#[tokio::test(start_paused = true)]
async fn overlap_is_bounded_by_max_overlap() {
    let job = Recorder::new(
        "overlapping",
        Schedule::every(secs(10))
            .skip_if_running(false)
            .max_overlap(2),
        Behaviour::Work(secs(25)),
    );
    let report = run_for(secs(55), &[&job]).await;
    // 0 and 10 overlap; 20 is skipped (two in flight); 30 starts once 0 ended at 25; 40 is
    // skipped (10 → 35 ended, 30 runs, so one slot: 40 starts); check the exact sequence.
    assert_eq!(job.starts_secs(), [0, 10, 30, 40]);
    let spans = job.spans();
    for at in 0..55u64 {
        let t = secs(at) + millis(500);
        let running = spans
            .iter()
            .filter(|s| s.started <= t && s.ended.is_none_or(|end| end > t))
            .count();
        assert!(running <= 2, "{running} runs in flight at {t:?}");
    }
    assert_eq!(
        report.job("overlapping").unwrap().status.counters.skipped,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_stall_never_causes_a_burst_of_missed_ticks() {
    let job = Recorder::new(
        "stalled",
        Schedule::every(secs(10)),
        Behaviour::Work(Duration::ZERO),
    );
    let host = Host::builder().job(job.clone()).build().unwrap();
    let handle = host.handle();
    let running = tokio::spawn(host.run_until(std::future::pending()));
    let succeeded = |n| move |s: &loopjob::JobStatus| s.counters.succeeded == n;
    handle.wait_for("stalled", succeeded(1)).await.unwrap();

    // The runtime is stalled for 35 s: the clock jumps without the supervisor being polled.
    tokio::time::advance(secs(35)).await;
    handle.wait_for("stalled", succeeded(2)).await.unwrap();
    tokio::time::sleep_until(job.t0 + secs(41)).await;
    handle.shutdown();
    let report = running.await.unwrap();

    // The late tick of 10 s runs once, at 35 s; 20 and 30 are counted missed, not replayed;
    // the grid goes on at 40.
    assert_eq!(job.starts_secs(), [0, 35, 40]);
    assert_eq!(report.job("stalled").unwrap().status.counters.missed, 2);
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_delay_re_anchors_after_a_stall() {
    let job = Recorder::new(
        "re_anchored",
        Schedule::every(secs(10)).missed_ticks(MissedTicks::Delay),
        Behaviour::Work(Duration::ZERO),
    );
    let host = Host::builder().job(job.clone()).build().unwrap();
    let handle = host.handle();
    let running = tokio::spawn(host.run_until(std::future::pending()));
    handle
        .wait_for("re_anchored", |s| s.counters.succeeded == 1)
        .await
        .unwrap();
    tokio::time::advance(secs(35)).await;
    tokio::time::sleep_until(job.t0 + secs(56)).await;
    handle.shutdown();
    running.await.unwrap();
    assert_eq!(job.starts_secs(), [0, 35, 45, 55]);
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_tick_within_bounds_without_moving_the_grid() {
    let job = Recorder::new(
        "jittery",
        Schedule::every(secs(10)).jitter(secs(2)),
        Behaviour::Work(Duration::ZERO),
    );
    run_for(secs(200), &[&job]).await;
    let starts = job.starts();
    assert_eq!(starts.len(), 20);
    for (k, start) in starts.iter().enumerate() {
        let tick = secs(10 * k as u64);
        assert!(
            *start >= tick && *start <= tick + secs(2),
            "run {k} started at {start:?}, outside [{tick:?}, {tick:?} + 2s]"
        );
    }
    assert!(
        starts
            .iter()
            .enumerate()
            .any(|(k, s)| *s != secs(10 * k as u64)),
        "no tick was jittered"
    );
}

#[tokio::test(start_paused = true)]
async fn align_starts_on_the_next_wall_clock_multiple() {
    // A day-long interval: the first tick is at the next UTC midnight.
    let day = secs(86_400);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let until_midnight =
        day - Duration::from_nanos((since_epoch.as_nanos() % day.as_nanos()) as u64);
    let job = Recorder::new(
        "aligned",
        Schedule::every(day).align(true),
        Behaviour::Work(Duration::ZERO),
    );
    run_for(until_midnight + secs(1), &[&job]).await;
    let starts = job.starts();
    assert_eq!(starts.len(), 1, "exactly one run, at midnight");
    // The supervisor reads the wall clock a moment after the test did: it waits that much less.
    // The supervisor reads the wall clock a moment after the test did, and tokio's timers round
    // up to the millisecond: the first run is within a few milliseconds of midnight.
    let off = starts[0].abs_diff(until_midnight);
    assert!(
        off < millis(100),
        "first run at {:?}, {off:?} off midnight",
        starts[0]
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_cancels_the_token_and_the_run_ends_in_grace() {
    let job = Recorder::new(
        "cooperative",
        Schedule::every(secs(60))
            .timeout(secs(5))
            .cancel_grace(secs(2)),
        Behaviour::Work(secs(3_600)),
    );
    let report = run_for(secs(30), &[&job]).await;
    let span = job.spans()[0];
    // The token was cancelled at exactly 5 s and the run returned at once.
    assert_eq!(span.ended, Some(secs(5)));
    let status = &report.job("cooperative").unwrap().status;
    assert_eq!(status.last_outcome, Some(RunOutcome::TimedOut));
    assert_eq!(status.counters.timeouts, 1);
    assert_eq!(status.counters.failures, 1);
    assert_eq!(status.last_ended, Some(job.t0 + secs(5)));
}

#[tokio::test(start_paused = true)]
async fn timeout_drops_a_run_that_ignores_its_token_after_the_grace() {
    let job = Recorder::new(
        "stubborn",
        Schedule::every(secs(60))
            .timeout(secs(5))
            .cancel_grace(secs(2)),
        Behaviour::Stubborn(secs(3_600)),
    );
    let report = run_for(secs(30), &[&job]).await;
    assert_eq!(
        job.spans()[0].ended,
        None,
        "the run was dropped, never finished"
    );
    let status = &report.job("stubborn").unwrap().status;
    assert_eq!(
        status.last_ended,
        Some(job.t0 + secs(7)),
        "dropped at timeout + grace"
    );
    assert_eq!(status.last_outcome, Some(RunOutcome::TimedOut));
    assert_eq!(status.counters.timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_and_stop_before_the_next_tick() {
    let job = Recorder::new(
        "flaky",
        Schedule::every(secs(10)).retries(5).retry_backoff(secs(1)),
        Behaviour::Fail,
    );
    let report = run_for(secs(15), &[&job]).await;
    // Run 1: attempts at 0, 1, 3, 7; the next retry (7 + 8 = 15) would pass the tick at 10.
    // Run 2 starts on its tick at 10, then retries at 11 and 13.
    let attempts: Vec<_> = job
        .spans()
        .iter()
        .map(|s| (s.run_id, s.attempt, s.started.as_secs()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, 1, 0),
            (1, 2, 1),
            (1, 3, 3),
            (1, 4, 7),
            (2, 1, 10),
            (2, 2, 11),
            (2, 3, 13)
        ]
    );
    let counters = report.job("flaky").unwrap().status.counters;
    assert_eq!(counters.runs, 2);
    assert_eq!(counters.failures, 2);
    assert_eq!(counters.retries, 5);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_job_keeps_its_schedule_and_the_host_lives() {
    let panicking = Recorder::new("panicking", Schedule::every(secs(10)), Behaviour::Panic);
    let healthy = Recorder::new(
        "healthy",
        Schedule::every(secs(10)),
        Behaviour::Work(secs(1)),
    );
    let report = run_for(secs(35), &[&panicking, &healthy]).await;
    assert_eq!(panicking.starts_secs(), [0, 10, 20, 30]);
    assert_eq!(healthy.starts_secs(), [0, 10, 20, 30]);
    let status = &report.job("panicking").unwrap().status;
    assert_eq!(status.counters.panics, 4);
    assert_eq!(status.counters.failures, 4);
    assert_eq!(
        status.last_outcome,
        Some(RunOutcome::Panicked("deliberate panic in run 4".into()))
    );
    assert_eq!(report.job("healthy").unwrap().status.counters.succeeded, 4);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_runs_up_to_the_grace_then_drops_them() {
    let cooperative = Recorder::new(
        "cooperative",
        Schedule::every(secs(60)),
        Behaviour::Work(secs(3_600)),
    );
    let stubborn = Recorder::new(
        "stubborn",
        Schedule::every(secs(60)).cancel_grace(secs(600)),
        Behaviour::Stubborn(secs(3_600)),
    );
    let t0 = cooperative.t0;
    let report = run_for(secs(10), &[&cooperative, &stubborn]).await;

    // Shutdown at 10 s: the cooperative run stops at once; the stubborn one is dropped when
    // the host's 5 s grace ends, and the host returns then.
    assert_eq!(tokio::time::Instant::now() - t0, secs(15));
    assert_eq!(cooperative.spans()[0].ended, Some(secs(10)));
    assert_eq!(stubborn.spans()[0].ended, None);
    let cooperative = report.job("cooperative").unwrap();
    assert_eq!(
        (
            cooperative.in_flight_at_shutdown,
            cooperative.dropped_at_shutdown
        ),
        (1, 0)
    );
    let stubborn = report.job("stubborn").unwrap();
    assert_eq!(
        (stubborn.in_flight_at_shutdown, stubborn.dropped_at_shutdown),
        (1, 1)
    );
    assert_eq!(report.dropped(), 1);
    // The final status is the job's, name and all.
    assert_eq!(stubborn.status.name, "stubborn");
    assert_eq!(stubborn.status.state, JobState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_job_never_ticks() {
    let job = Recorder::new(
        "disabled",
        Schedule::every(secs(1)).enabled(false),
        Behaviour::Work(Duration::ZERO),
    );
    let report = run_for(secs(30), &[&job]).await;
    assert!(job.spans().is_empty());
    assert_eq!(report.job("disabled").unwrap().status.counters.runs, 0);
}

/// Times out on its first run (it waits for its token), then checks later runs start with a
/// live token.
struct TimesOutOnce {
    runs: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
}

impl loopjob::LoopJob for TimesOutOnce {
    fn name(&self) -> &str {
        "times_out_once"
    }
    fn schedule(&self) -> Schedule {
        Schedule::every(secs(10))
            .timeout(secs(2))
            .cancel_grace(secs(1))
    }
    async fn execute(&self, ctx: &loopjob::JobContext) -> Result<(), loopjob::JobError> {
        let first = ctx.run_id() == 1;
        self.runs.lock().unwrap().push(ctx.is_cancelled());
        if first {
            ctx.cancelled().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_run_does_not_leave_its_cancellation_to_the_next_run() {
    let runs = std::sync::Arc::default();
    let host = Host::builder()
        .job(TimesOutOnce {
            runs: std::sync::Arc::clone(&runs),
        })
        .build()
        .unwrap();
    let report = host.run_until(tokio::time::sleep(secs(25))).await;
    assert_eq!(
        *runs.lock().unwrap(),
        [false, false, false],
        "every run starts uncancelled"
    );
    let status = &report.job("times_out_once").unwrap().status;
    assert_eq!(
        (status.counters.timeouts, status.counters.succeeded),
        (1, 2)
    );
}

/// Jobs share a shard's task and timer heap; each keeps its own schedule, whether its runs end
/// at once, take a while, or make it skip ticks.
#[tokio::test(start_paused = true)]
async fn jobs_that_share_a_shard_keep_their_own_schedules() {
    // 768 jobs in shards of 32, each holding all three kinds below.
    let jobs: Vec<Recorder> = (0..768)
        .map(|index| {
            let name: &'static str = format!("job-{index}").leak();
            let (schedule, behaviour) = match index % 3 {
                0 => (Schedule::every(secs(10)), Behaviour::Work(Duration::ZERO)),
                1 => (
                    Schedule::every(secs(10))
                        .initial_delay(secs(5))
                        .mode(ScheduleMode::FixedDelay),
                    Behaviour::Work(secs(3)),
                ),
                _ => (Schedule::every(secs(10)), Behaviour::Work(secs(25))),
            };
            Recorder::new(name, schedule, behaviour)
        })
        .collect();
    run_for(secs(45), &jobs.iter().collect::<Vec<_>>()).await;
    for (index, job) in jobs.iter().enumerate() {
        let expected: &[u64] = match index % 3 {
            0 => &[0, 10, 20, 30, 40],
            1 => &[5, 18, 31, 44],
            _ => &[0, 30],
        };
        assert_eq!(job.starts_secs(), expected, "{}", job.name);
    }
}

/// Past 16,384 jobs a shard holds more than 64, and its marks of which jobs to poll take more
/// than one word: every job still runs on its grid.
#[tokio::test(start_paused = true)]
async fn a_host_past_sixteen_thousand_jobs_runs_each_of_them_on_its_grid() {
    // 256 shards of 65.
    let jobs: Vec<Recorder> = (0..256 * 65)
        .map(|index| {
            let name: &'static str = format!("job-{index}").leak();
            Recorder::new(
                name,
                Schedule::every(secs(10)),
                Behaviour::Work(Duration::ZERO),
            )
        })
        .collect();
    // Bounded: a job the shard never polls would never stop.
    let all: Vec<&Recorder> = jobs.iter().collect();
    tokio::time::timeout(secs(60), run_for(secs(25), &all))
        .await
        .expect("every job stops");
    for job in &jobs {
        assert_eq!(job.starts_secs(), [0, 10, 20], "{}", job.name);
    }
}
