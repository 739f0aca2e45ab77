//! The largest durations the build accepts (`loopjob::limits`) never make a tick or a deadline
//! overflow: a host with such schedules, leases and grace runs, and shuts down, without a panic.
//! Under tokio's paused clock. (Durations past the bounds are build errors, tested in
//! `tests/build.rs`; the arithmetic saturates at "never" even for `Duration::MAX`, tested beside
//! it in `src/schedule/ticks.rs`.)

use std::sync::Arc;
use std::time::Duration;

use loopjob::limits::{
    MAX_GRACE, MAX_LEASE_TTL, MAX_PRIORITY, MAX_RETRY_EVERY, MAX_SCHEDULE_DURATION,
};
use loopjob::store::MemoryStore;
use loopjob::{Host, JobState, LeaderMode, Leadership, NodeIdentity, Schedule, ShutdownReport};

const HUGE: Duration = MAX_SCHEDULE_DURATION;
const SEC: Duration = Duration::from_secs(1);

/// Every job's supervisor stopped by itself: one that panicked would show as still running.
fn assert_all_stopped(report: &ShutdownReport, jobs: usize) {
    assert_eq!(report.jobs.len(), jobs);
    for job in &report.jobs {
        assert_eq!(job.status.state, JobState::Stopped, "{}", job.name);
    }
}

#[tokio::test(start_paused = true)]
async fn huge_schedule_durations_run_and_shut_down_without_a_panic() {
    let ok = |_ctx| async { Ok(()) };
    let host = Host::builder()
        .shutdown_grace(MAX_GRACE)
        // Runs once at once; its next tick is "never".
        .job_fn(
            "huge_interval",
            Schedule::every(HUGE).timeout(HUGE).cancel_grace(MAX_GRACE),
            ok,
        )
        // Its first tick is aligned and jittered "never" away.
        .job_fn(
            "huge_jitter",
            Schedule::every(HUGE).jitter(HUGE / 2).align(true),
            ok,
        )
        // Never runs.
        .job_fn("huge_delay", Schedule::every(SEC).initial_delay(HUGE), ok)
        // Fails, and retries after a backoff that is too long to come before the next tick.
        .job_fn(
            "huge_backoff",
            Schedule::every(HUGE)
                .retries(u32::MAX)
                .retry_backoff(HUGE / 2),
            |_ctx| async { Err(loopjob::JobError::msg("fails")) },
        )
        // Fixed delay, with a run in flight at shutdown that obeys its token.
        .job_fn(
            "huge_fixed_delay",
            Schedule::every(HUGE)
                .mode(loopjob::ScheduleMode::FixedDelay)
                .timeout(HUGE),
            |ctx| async move {
                ctx.cancelled().await;
                Ok(())
            },
        )
        .build()
        .expect("valid jobs");
    let report = host.run_until(tokio::time::sleep(10 * SEC)).await;
    assert_all_stopped(&report, 5);
    let counters = |name| report.job(name).unwrap().status.counters;
    assert_eq!(counters("huge_interval").runs, 1);
    assert_eq!(counters("huge_interval").succeeded, 1);
    assert_eq!(counters("huge_delay").runs, 0);
    assert_eq!(counters("huge_jitter").runs, 0);
    assert_eq!(counters("huge_backoff").runs, 1);
    assert_eq!(counters("huge_backoff").failures, 1);
    assert_eq!(
        counters("huge_fixed_delay").succeeded,
        1,
        "ended at shutdown"
    );
    assert_eq!(report.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_guarded_job_with_huge_lease_timings_leads_and_releases() {
    let store = Arc::new(MemoryStore::new());
    let host = Host::builder()
        .node(NodeIdentity::new("a", "default"))
        .store(store.clone())
        .shutdown_grace(MAX_GRACE)
        .job_fn("guarded", Schedule::every(SEC), |_ctx| async { Ok(()) })
        .leadership(
            "guarded",
            Leadership::new(LeaderMode::Global)
                .lease_ttl(MAX_LEASE_TTL)
                .retry_every(MAX_RETRY_EVERY)
                .priority(MAX_PRIORITY),
        )
        .job_fn("partitioned", Schedule::every(SEC), |_ctx| async { Ok(()) })
        .leadership(
            "partitioned",
            Leadership::new(LeaderMode::Partitioned)
                .lease_ttl(MAX_LEASE_TTL)
                .with_renew_every(MAX_LEASE_TTL / 4)
                .retry_every(MAX_RETRY_EVERY)
                .partitions(3),
        )
        .build()
        .expect("valid jobs");
    let report = host.run_until(tokio::time::sleep(10 * SEC)).await;
    assert_all_stopped(&report, 2);
    // The lowest priority waits "forever" before its first try, so it never led.
    assert_eq!(report.job("guarded").unwrap().status.counters.runs, 0);
}
