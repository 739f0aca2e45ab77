//! Two cron jobs: a nightly report at 02:30 Berlin time (which runs at 03:00 on the night the
//! clocks spring forward, and once on the night they fall back), and one every ten seconds.
//! Prints their next runs, then runs them until Ctrl-C.
//!
//! ```text
//! cargo run --example cron --features cron
//! ```

use loopjob::{CatchUp, Host, JobContext, JobError, LoopJob, Schedule};
use tracing_subscriber::EnvFilter;

/// The nightly report: skipped, not made up, if the machine's clock jumps over 02:30.
#[derive(LoopJob)]
#[loopjob(
    cron = "30 2 * * *",
    timezone = "Europe/Berlin",
    catch_up = "skip",
    retries = 2
)]
struct NightlyReport;

impl NightlyReport {
    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        tracing::info!(run = ctx.run_id(), "nightly report");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), loopjob::Report> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // Seconds first: six fields.
    let every_ten_seconds = Schedule::cron("*/10 * * * * *").catch_up(CatchUp::Once);
    let host = Host::builder()
        .job(NightlyReport)
        .job_fn("pulse", every_ten_seconds, |ctx| async move {
            tracing::info!(run = ctx.run_id(), "pulse");
            Ok(())
        })
        .build()?;
    let handle = host.handle();
    for job in ["nightly_report", "pulse"] {
        for run in handle.next_runs(job, 3)? {
            tracing::info!(job, next = %run, "scheduled");
        }
    }
    let report = host.run().await;
    tracing::info!(dropped = report.dropped(), "stopped");
    Ok(())
}
