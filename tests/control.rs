//! Operating a running host through its handle: trigger, pause, resume, cancel, status; and the
//! job lifecycle hooks. Under tokio's paused clock.

#[path = "support/recorder.rs"]
mod recorder;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use loopjob::{
    ControlError, Host, HostHandle, JobContext, JobError, JobState, LoopJob, RunOutcome, Schedule,
    ScheduleMode, ShutdownReport, Triggered,
};
use recorder::{Behaviour, Recorder, secs};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

fn start(jobs: &[&Recorder]) -> (HostHandle, JoinHandle<ShutdownReport>) {
    let mut builder = Host::builder().shutdown_grace(secs(5));
    for job in jobs {
        builder = builder.job((*job).clone());
    }
    let host = builder.build().unwrap();
    let handle = host.handle();
    (handle, tokio::spawn(host.run_until(std::future::pending())))
}

#[tokio::test(start_paused = true)]
async fn trigger_starts_a_run_now_outside_the_schedule() {
    let job = Recorder::new(
        "report",
        Schedule::every(secs(100)).initial_delay(secs(100)),
        Behaviour::Work(secs(3)),
    );
    let (handle, running) = start(&[&job]);
    sleep_until(job.t0 + secs(7)).await;
    assert_eq!(handle.trigger("report").await, Ok(Triggered::Started(1)));
    // While that run is in flight, a second trigger is refused (skip_if_running).
    sleep_until(job.t0 + secs(8)).await;
    assert_eq!(
        handle.trigger("report").await,
        Ok(Triggered::AlreadyRunning)
    );
    sleep_until(job.t0 + secs(101)).await;
    handle.shutdown();
    running.await.unwrap();
    // The trigger did not move the schedule: the first tick still came at 100.
    assert_eq!(job.starts_secs(), [7, 100]);
}

#[tokio::test(start_paused = true)]
async fn pause_stops_ticks_and_resume_goes_on_with_the_grid() {
    let job = Recorder::new(
        "pausable",
        Schedule::every(secs(10)),
        Behaviour::Work(secs(1)),
    );
    let (handle, running) = start(&[&job]);
    sleep_until(job.t0 + secs(15)).await;
    handle.pause("pausable").await.unwrap();
    assert_eq!(handle.status("pausable").unwrap().state, JobState::Paused);
    sleep_until(job.t0 + secs(43)).await;
    handle.resume("pausable").await.unwrap();
    sleep_until(job.t0 + secs(61)).await;
    handle.shutdown();
    let report = running.await.unwrap();
    // Runs at 0 and 10; paused from 15 to 43 (ticks 20, 30, 40 not run, not counted);
    // resumed onto the grid at 50.
    assert_eq!(job.starts_secs(), [0, 10, 50, 60]);
    let counters = report.job("pausable").unwrap().status.counters;
    assert_eq!((counters.skipped, counters.missed), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn resume_of_a_fixed_delay_job_runs_when_its_delay_has_passed() {
    let job = Recorder::new(
        "delayed",
        Schedule::every(secs(10)).mode(ScheduleMode::FixedDelay),
        Behaviour::Work(secs(2)),
    );
    let (handle, running) = start(&[&job]);
    sleep_until(job.t0 + secs(5)).await;
    handle.pause("delayed").await.unwrap();
    sleep_until(job.t0 + secs(30)).await;
    handle.resume("delayed").await.unwrap();
    sleep_until(job.t0 + secs(43)).await;
    handle.shutdown();
    running.await.unwrap();
    // Run 0–2; next due at 12, paused; resumed at 30: runs at once (30–32), next at 42.
    assert_eq!(job.starts_secs(), [0, 30, 42]);
}

#[tokio::test(start_paused = true)]
async fn cancel_runs_cancels_the_token_and_the_schedule_goes_on() {
    let job = Recorder::new(
        "long",
        Schedule::every(secs(60)),
        Behaviour::Work(secs(3_600)),
    );
    let (handle, running) = start(&[&job]);
    sleep_until(job.t0 + secs(4)).await;
    assert_eq!(handle.status("long").unwrap().state, JobState::Running);
    assert_eq!(handle.cancel_runs("long").await, Ok(1));
    sleep_until(job.t0 + secs(61)).await;
    handle.shutdown();
    running.await.unwrap();
    let spans = job.spans();
    assert_eq!(
        spans[0].ended,
        Some(secs(4)),
        "the run saw its token cancelled at once"
    );
    assert_eq!(job.starts_secs(), [0, 60], "the next tick still ran");
    assert_eq!(
        spans[1].ended,
        Some(secs(61)),
        "with a live token, until shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn status_shows_state_next_tick_last_run_and_counters() {
    let job = Recorder::new("watched", Schedule::every(secs(10)), Behaviour::Fail);
    let (handle, running) = start(&[&job]);
    sleep_until(job.t0 + secs(15)).await;
    let status = handle.status("watched").unwrap();
    assert_eq!(status.name, "watched");
    assert_eq!(status.state, JobState::Idle);
    assert_eq!(status.next_tick, Some(job.t0 + secs(20)));
    assert_eq!(status.last_started, Some(job.t0 + secs(10)));
    assert_eq!(status.last_ended, Some(job.t0 + secs(10)));
    assert_eq!(
        status.last_outcome,
        Some(RunOutcome::Failed("deliberate failure".into()))
    );
    assert_eq!((status.counters.runs, status.counters.failures), (2, 2));
    assert_eq!(handle.statuses().len(), 1);
    handle.shutdown();
    running.await.unwrap();
    assert_eq!(handle.status("watched").unwrap().state, JobState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn control_calls_name_what_is_wrong() {
    let job = Recorder::new("known", Schedule::every(secs(10)), Behaviour::Work(secs(1)));
    let (handle, running) = start(&[&job]);
    let error = handle.pause("unknown").await.unwrap_err();
    assert_eq!(
        error,
        ControlError::UnknownJob {
            name: "unknown".into(),
            known: "known".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "no job is named `unknown`; the jobs are: known"
    );
    handle.shutdown();
    running.await.unwrap();
    assert_eq!(
        handle.trigger("known").await,
        Err(ControlError::NotRunning {
            name: "known".into()
        })
    );
}

/// A job that counts its lifecycle calls and reads a shared resource.
struct Lifecycle {
    started: Arc<AtomicU32>,
    stopped: Arc<AtomicU32>,
}

struct Greeting(&'static str);

impl LoopJob for Lifecycle {
    fn name(&self) -> &str {
        "lifecycle"
    }
    fn schedule(&self) -> Schedule {
        Schedule::every(secs(10))
    }
    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        assert_eq!(
            self.started.load(Ordering::SeqCst),
            1,
            "on_started ran before the first run"
        );
        let greeting = ctx
            .resource::<Greeting>()
            .ok_or_else(|| JobError::msg("no greeting"))?;
        assert_eq!(greeting.0, "hello");
        Ok(())
    }
    async fn on_started(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    async fn on_stopped(&self) {
        self.stopped.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn hooks_run_once_and_resources_reach_runs() {
    let started = Arc::new(AtomicU32::new(0));
    let stopped = Arc::new(AtomicU32::new(0));
    let job = Lifecycle {
        started: started.clone(),
        stopped: stopped.clone(),
    };
    let fn_runs = Arc::new(AtomicU32::new(0));
    let host = Host::builder()
        .resource(Greeting("hello"))
        .resource_shared(fn_runs.clone())
        .job(job)
        .job_fn("closure", Schedule::every(secs(10)), |ctx| async move {
            assert!(ctx.resource::<Greeting>().is_some());
            let runs = ctx
                .resource::<AtomicU32>()
                .ok_or_else(|| JobError::msg("no counter"))?;
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .build()
        .unwrap();
    let t0 = Instant::now();
    let report = host.run_until(sleep_until(t0 + secs(25))).await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(stopped.load(Ordering::SeqCst), 1);
    assert_eq!(
        report.job("lifecycle").unwrap().status.counters.succeeded,
        3
    );
    assert_eq!(fn_runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn wait_for_ends_when_the_job_stops_without_the_condition() {
    let job = Recorder::new(
        "short_lived",
        Schedule::every(secs(10)),
        Behaviour::Work(secs(1)),
    );
    let (handle, running) = start(&[&job]);
    let waiting = {
        let handle = handle.clone();
        tokio::spawn(async move {
            handle
                .wait_for("short_lived", |s| s.counters.runs >= 100)
                .await
        })
    };
    sleep_until(job.t0 + secs(25)).await;
    handle.shutdown();
    running.await.unwrap();
    assert_eq!(
        waiting.await.unwrap(),
        Err(ControlError::NotRunning {
            name: "short_lived".into()
        })
    );
    let status = handle
        .wait_for("short_lived", |s| s.counters.runs == 3)
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Stopped);
}

/// A job whose `on_started` panics and whose `on_stopped` never returns.
struct BadHooks {
    runs: Arc<AtomicU32>,
}

impl LoopJob for BadHooks {
    fn name(&self) -> &str {
        "bad_hooks"
    }
    fn schedule(&self) -> Schedule {
        Schedule::every(secs(10))
    }
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn on_started(&self) {
        panic!("deliberate panic in on_started");
    }
    async fn on_stopped(&self) {
        std::future::pending::<()>().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_or_hanging_hook_neither_stops_the_job_nor_holds_up_shutdown() {
    let runs = Arc::new(AtomicU32::new(0));
    let host = Host::builder()
        .job(BadHooks { runs: runs.clone() })
        .shutdown_grace(secs(5))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let report = host.run_until(sleep_until(t0 + secs(25))).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "ran at 0, 10 and 20 despite on_started"
    );
    // on_stopped is given the shutdown grace, then dropped.
    assert_eq!(Instant::now() - t0, secs(30));
    assert_eq!(
        report.job("bad_hooks").unwrap().status.state,
        JobState::Stopped
    );
}
