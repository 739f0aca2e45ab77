//! Unguarded cron jobs on the node's wall clock, under tokio's paused clock and a [`TestClock`]
//! that the tests step backwards and forwards: every assertion is an exact wall-clock time or
//! count. (A guarded cron job keeps its occurrences on the store's clock instead:
//! `tests/cluster_cron.rs`.)
#![cfg(feature = "cron")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use loopjob::{CatchUp, Host, Schedule, ShutdownReport, TestClock, WallClock};
use tokio::time::{Instant, sleep_until};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn at(text: &str) -> SystemTime {
    let timestamp: Timestamp = text.parse().expect("a timestamp");
    SystemTime::from(timestamp)
}

/// The wall-clock times at which a job's runs started, as `HH:MM:SS` in UTC.
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<Vec<String>>>);

impl Starts {
    fn push(&self, clock: &TestClock) {
        let now = Timestamp::try_from(clock.now()).expect("a timestamp");
        let shown = now.strftime("%H:%M:%S").to_string();
        self.0.lock().unwrap().push(shown);
    }

    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Runs one cron job on `clock`; `steer` gets the clock and the start instant, steps the clock
/// as it likes, and returns when the host is to shut down.
async fn run_with<F, Fut>(
    schedule: Schedule,
    clock: TestClock,
    steer: F,
) -> (Vec<String>, ShutdownReport)
where
    F: FnOnce(TestClock, Instant) -> Fut,
    Fut: Future<Output = ()>,
{
    let starts = Starts::default();
    let (recorded, job_clock) = (starts.clone(), clock.clone());
    let host = Host::builder()
        .wall_clock(clock.clone())
        .job_fn("cron", schedule, move |_ctx| {
            recorded.push(&job_clock);
            async { Ok(()) }
        })
        .build()
        .expect("a valid job");
    let report = host.run_until(steer(clock, Instant::now())).await;
    (starts.get(), report)
}

#[tokio::test(start_paused = true)]
async fn runs_at_the_occurrences_of_the_wall_clock() {
    let clock = TestClock::starting_at(at("2026-01-01T00:00:30Z"));
    let (starts, _) = run_with(Schedule::cron("*/5 * * * *"), clock, |_, start| {
        sleep_until(start + 16 * MINUTE)
    })
    .await;
    assert_eq!(starts, ["00:05:00", "00:10:00", "00:15:00"]);
}

#[tokio::test(start_paused = true)]
async fn a_clock_stepped_back_an_hour_repeats_no_occurrence() {
    let clock = TestClock::starting_at(at("2026-01-01T00:00:30Z"));
    let starts = Starts::default();
    let (recorded, job_clock) = (starts.clone(), clock.clone());
    let host = Host::builder()
        .wall_clock(clock.clone())
        .job_fn("cron", Schedule::cron("*/5 * * * *"), move |_ctx| {
            recorded.push(&job_clock);
            async { Ok(()) }
        })
        .build()
        .expect("a valid job");
    let handle = host.handle();
    let start = Instant::now();
    let steer = async move {
        // At 00:12:30 the clock goes back to 23:12:30 the day before.
        sleep_until(start + 12 * MINUTE).await;
        clock.step_back(HOUR);
        // The job looks at the clock within a minute: it still waits for 00:15, and says so.
        sleep_until(start + 14 * MINUTE).await;
        let next = handle.next_runs("cron", 2).expect("a job");
        let shown: Vec<String> = next
            .iter()
            .map(|run| run.strftime("%H:%M").to_string())
            .collect();
        assert_eq!(shown, ["00:15", "00:20"]);
        // 00:05 and 00:10 ran; the job waits until the clock reaches 00:15 again.
        sleep_until(start + 12 * MINUTE + HOUR + 4 * MINUTE).await;
    };
    let report = host.run_until(steer).await;
    assert_eq!(starts.get(), ["00:05:00", "00:10:00", "00:15:00"]);
    assert_eq!(report.job("cron").unwrap().status.counters.missed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_clock_stepped_forward_an_hour_catches_up_once() {
    let clock = TestClock::starting_at(at("2026-01-01T00:00:30Z"));
    let (starts, report) = run_with(
        Schedule::cron("*/5 * * * *"),
        clock,
        |clock, start| async move {
            // At 00:12:30 the clock jumps to 01:12:30, past 00:15 … 01:10.
            sleep_until(start + 12 * MINUTE).await;
            clock.step_forward(HOUR);
            sleep_until(start + 19 * MINUTE).await;
        },
    )
    .await;
    // The jump is seen at the next look at the clock (within a minute): one run for the twelve
    // occurrences jumped over, then the schedule goes on.
    assert_eq!(starts, ["00:05:00", "00:10:00", "01:13:00", "01:15:00"]);
    assert_eq!(report.job("cron").unwrap().status.counters.missed, 11);
}

#[tokio::test(start_paused = true)]
async fn a_clock_stepped_forward_skips_with_catch_up_skip() {
    let clock = TestClock::starting_at(at("2026-01-01T00:00:30Z"));
    let schedule = Schedule::cron("*/5 * * * *").catch_up(CatchUp::Skip);
    let (starts, report) = run_with(schedule, clock, |clock, start| async move {
        sleep_until(start + 12 * MINUTE).await;
        clock.step_forward(HOUR);
        sleep_until(start + 19 * MINUTE).await;
    })
    .await;
    assert_eq!(starts, ["00:05:00", "00:10:00", "01:15:00"]);
    assert_eq!(report.job("cron").unwrap().status.counters.missed, 12);
}

#[tokio::test(start_paused = true)]
async fn a_small_step_forward_within_the_period_loses_nothing() {
    let clock = TestClock::starting_at(at("2026-01-01T00:00:30Z"));
    let schedule = Schedule::cron("*/5 * * * *").catch_up(CatchUp::Skip);
    let (starts, report) = run_with(schedule, clock, |clock, start| async move {
        // 00:12:30 → 00:14:30: no occurrence is jumped over.
        sleep_until(start + 12 * MINUTE).await;
        clock.step_forward(2 * MINUTE);
        sleep_until(start + 15 * MINUTE).await;
    })
    .await;
    assert_eq!(starts, ["00:05:00", "00:10:00", "00:15:00"]);
    assert_eq!(report.job("cron").unwrap().status.counters.missed, 0);
}

#[tokio::test(start_paused = true)]
async fn an_hourly_job_runs_23_times_on_berlins_spring_day() {
    // 29 March 2026 in Berlin: midnight is 23:00 UTC the day before; the day has 23 hours.
    let clock = TestClock::starting_at(at("2026-03-28T22:59:30Z"));
    let schedule = Schedule::cron("0 * * * *").timezone("Europe/Berlin");
    let (starts, report) =
        run_with(schedule, clock, |_, start| sleep_until(start + 23 * HOUR)).await;
    assert_eq!(starts.len(), 23, "{starts:?}");
    // In UTC: one run every hour, on the hour, from 23:00 to 21:00.
    assert_eq!(starts.first().map(String::as_str), Some("23:00:00"));
    assert_eq!(starts.last().map(String::as_str), Some("21:00:00"));
    assert_eq!(report.job("cron").unwrap().status.counters.missed, 0);
}

#[tokio::test(start_paused = true)]
async fn the_handle_shows_the_next_runs_in_the_jobs_zone() {
    let clock = TestClock::starting_at(at("2026-03-28T12:00:00Z"));
    let schedule = Schedule::cron("30 2 * * *").timezone("Europe/Berlin");
    let host = Host::builder()
        .wall_clock(clock)
        .job_fn("nightly", schedule, |_ctx| async { Ok(()) })
        .job_fn("interval", Schedule::every(MINUTE), |_ctx| async { Ok(()) })
        .build()
        .expect("valid jobs");
    let handle = host.handle();
    let next: Vec<String> = handle
        .next_runs("nightly", 2)
        .expect("a job")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        next,
        [
            "2026-03-29T03:00:00+02:00[Europe/Berlin]",
            "2026-03-30T02:30:00+02:00[Europe/Berlin]",
        ]
    );
    assert!(handle.next_runs("interval", 2).expect("a job").is_empty());
    assert!(handle.next_runs("unknown", 2).is_err());
}

#[tokio::test(start_paused = true)]
async fn occurrences_that_fall_due_while_paused_are_not_run() {
    let clock = TestClock::starting_at(at("2026-01-01T00:00:30Z"));
    let starts = Starts::default();
    let (recorded, job_clock) = (starts.clone(), clock.clone());
    let host = Host::builder()
        .wall_clock(clock)
        .job_fn("cron", Schedule::cron("*/5 * * * *"), move |_ctx| {
            recorded.push(&job_clock);
            async { Ok(()) }
        })
        .build()
        .expect("a valid job");
    let handle = host.handle();
    let start = Instant::now();
    let steer = async move {
        sleep_until(start + 6 * MINUTE).await;
        handle.pause("cron").await.expect("paused");
        sleep_until(start + 16 * MINUTE).await;
        handle.resume("cron").await.expect("resumed");
        sleep_until(start + 21 * MINUTE).await;
    };
    host.run_until(steer).await;
    // 00:10 and 00:15 fell due while paused; the job goes on at 00:20.
    assert_eq!(starts.get(), ["00:05:00", "00:20:00"]);
}

#[tokio::test(start_paused = true)]
async fn an_hourly_job_runs_25_times_on_berlins_autumn_day() {
    // 25 October 2026 in Berlin: midnight is 22:00 UTC the day before; the day has 25 hours.
    let clock = TestClock::starting_at(at("2026-10-24T21:59:30Z"));
    let schedule = Schedule::cron("0 * * * *").timezone("Europe/Berlin");
    let (starts, _) = run_with(schedule, clock, |_, start| sleep_until(start + 25 * HOUR)).await;
    assert_eq!(starts.len(), 25, "{starts:?}");
    assert_eq!(starts.first().map(String::as_str), Some("22:00:00"));
    assert_eq!(starts.last().map(String::as_str), Some("22:00:00"));
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_occurrence_within_its_bound() {
    let clock = TestClock::starting_at(at("2026-01-01T00:00:30Z"));
    let schedule = Schedule::cron("*/5 * * * *").jitter(Duration::from_secs(30));
    let (starts, _) = run_with(schedule, clock, |_, start| sleep_until(start + 16 * MINUTE)).await;
    let minutes: Vec<&str> = starts.iter().map(|start| &start[..5]).collect();
    assert_eq!(minutes, ["00:05", "00:10", "00:15"], "{starts:?}");
    assert!(
        starts
            .iter()
            .all(|start| start[6..].parse::<u32>().unwrap() <= 30),
        "{starts:?}"
    );
}
