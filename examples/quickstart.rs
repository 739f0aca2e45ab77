//! Three small jobs under one host: one on a plain interval, one that waits before its first
//! run, and one deliberately slower than its interval, so you can watch skip-if-running skip
//! ticks. Press Ctrl-C to shut down gracefully.
//!
//! ```text
//! cargo run --example quickstart -- --config config/quickstart.toml
//! ```
//!
//! The settings file overrides the schedules in the code; the environment overrides the file
//! (`LOOPJOB__JOBS__HEARTBEAT__INTERVAL=1s`).

use std::time::Duration;

use loopjob::{Host, JobContext, JobError, LoopJob, Schedule, Settings};
use tracing_subscriber::EnvFilter;

/// Says hello every two seconds.
struct Heartbeat;

impl LoopJob for Heartbeat {
    fn name(&self) -> &str {
        "heartbeat"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(Duration::from_secs(2))
    }

    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        tracing::info!(run = ctx.run_id(), "heartbeat: still alive");
        Ok(())
    }
}

/// Takes five seconds of work but is due every two: most ticks find it running and are skipped.
struct SlowReport;

impl LoopJob for SlowReport {
    fn name(&self) -> &str {
        "slow_report"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(Duration::from_secs(2)).skip_if_running(true)
    }

    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        tracing::info!(run = ctx.run_id(), "slow_report: started, takes 5s");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                tracing::info!(run = ctx.run_id(), "slow_report: done");
            }
            _ = ctx.cancelled() => tracing::info!(run = ctx.run_id(), "slow_report: cancelled, stopping"),
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), loopjob::Report> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,loopjob=debug")),
        )
        .init();

    let settings = match config_path() {
        Some(path) => Settings::load(path)?,
        None => Settings::default(),
    };
    let host = Host::builder()
        .settings(settings)
        .job(Heartbeat)
        .job(SlowReport)
        // A closure job that waits three seconds before its first run.
        .job_fn(
            "warm_cache",
            Schedule::every(Duration::from_secs(4)).initial_delay(Duration::from_secs(3)),
            |ctx| async move {
                tracing::info!(run = ctx.run_id(), "warm_cache: warming");
                Ok(())
            },
        )
        .shutdown_grace(Duration::from_secs(10))
        .build()?;

    let handle = host.handle();
    tracing::info!(jobs = ?handle.job_names(), "running; press Ctrl-C to stop");
    let report = host.run().await;

    for job in &report.jobs {
        let c = job.status.counters;
        tracing::info!(
            job = %job.name,
            runs = c.runs,
            succeeded = c.succeeded,
            skipped = c.skipped,
            in_flight_at_shutdown = job.in_flight_at_shutdown,
            dropped = job.dropped_at_shutdown,
            "final counts"
        );
    }
    Ok(())
}

/// The file after `--config`, if one is given.
fn config_path() -> Option<String> {
    std::env::args().skip_while(|arg| arg != "--config").nth(1)
}
