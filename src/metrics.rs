//! Counters and histograms through the `metrics` facade (feature `metrics`); without the feature
//! every function here is empty and compiles away.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `loopjob_runs_total` | counter | `job`, `outcome` (succeeded, failed, panicked, timed_out, overran, dropped) |
//! | `loopjob_run_duration_seconds` | histogram | `job` |
//! | `loopjob_ticks_skipped_total` | counter | `job` |
//! | `loopjob_ticks_missed_total` | counter | `job` |
//! | `loopjob_leadership_changes_total` | counter | `job`, `change` (acquired, lost) |

use std::time::Duration;

use crate::status::RunOutcome;

#[cfg(feature = "metrics")]
pub(crate) fn run_finished(job: &str, outcome: &RunOutcome, elapsed: Duration) {
    let job = job.to_owned();
    metrics::counter!("loopjob_runs_total", "job" => job.clone(), "outcome" => outcome.label())
        .increment(1);
    metrics::histogram!("loopjob_run_duration_seconds", "job" => job).record(elapsed.as_secs_f64());
}

#[cfg(feature = "metrics")]
pub(crate) fn tick_skipped(job: &str) {
    metrics::counter!("loopjob_ticks_skipped_total", "job" => job.to_owned()).increment(1);
}

#[cfg(feature = "metrics")]
pub(crate) fn ticks_missed(job: &str, missed: u64) {
    metrics::counter!("loopjob_ticks_missed_total", "job" => job.to_owned()).increment(missed);
}

#[cfg(feature = "metrics")]
pub(crate) fn leadership_changed(job: &str, change: &'static str, count: u64) {
    metrics::counter!("loopjob_leadership_changes_total", "job" => job.to_owned(), "change" => change)
        .increment(count);
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn run_finished(_job: &str, _outcome: &RunOutcome, _elapsed: Duration) {}

#[cfg(not(feature = "metrics"))]
pub(crate) fn tick_skipped(_job: &str) {}

#[cfg(not(feature = "metrics"))]
pub(crate) fn ticks_missed(_job: &str, _missed: u64) {}

#[cfg(not(feature = "metrics"))]
pub(crate) fn leadership_changed(_job: &str, _change: &'static str, _count: u64) {}
