//! Counters and histograms through the `metrics` facade (feature `metrics`); without the feature
//! every function here is empty and compiles away. The `job` label is the job's shared name:
//! a count costs a reference count, not a copy of the name.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `loopjob_runs_total` | counter | `job`, `outcome` (succeeded, failed, panicked, timed_out, overran, dropped) |
//! | `loopjob_run_duration_seconds` | histogram | `job` |
//! | `loopjob_ticks_skipped_total` | counter | `job` |
//! | `loopjob_ticks_missed_total` | counter | `job` |
//! | `loopjob_leadership_changes_total` | counter | `job`, `change` (acquired, lost) |

use std::sync::Arc;
use std::time::Duration;

use crate::status::RunOutcome;

#[cfg(feature = "metrics")]
pub(crate) fn run_finished(
    job: &Arc<str>,
    outcome: &RunOutcome,
    elapsed: impl FnOnce() -> Duration,
) {
    metrics::counter!("loopjob_runs_total", "job" => job.clone(), "outcome" => outcome.label())
        .increment(1);
    metrics::histogram!("loopjob_run_duration_seconds", "job" => job.clone())
        .record(elapsed().as_secs_f64());
}

#[cfg(feature = "metrics")]
pub(crate) fn tick_skipped(job: &Arc<str>) {
    metrics::counter!("loopjob_ticks_skipped_total", "job" => job.clone()).increment(1);
}

#[cfg(feature = "metrics")]
pub(crate) fn ticks_missed(job: &Arc<str>, missed: u64) {
    metrics::counter!("loopjob_ticks_missed_total", "job" => job.clone()).increment(missed);
}

#[cfg(feature = "metrics")]
pub(crate) fn leadership_changed(job: &Arc<str>, change: &'static str, count: u64) {
    metrics::counter!("loopjob_leadership_changes_total", "job" => job.clone(), "change" => change)
        .increment(count);
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn run_finished(
    _job: &Arc<str>,
    _outcome: &RunOutcome,
    _elapsed: impl FnOnce() -> Duration,
) {
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn tick_skipped(_job: &Arc<str>) {}

#[cfg(not(feature = "metrics"))]
pub(crate) fn ticks_missed(_job: &Arc<str>, _missed: u64) {}

#[cfg(not(feature = "metrics"))]
pub(crate) fn leadership_changed(_job: &Arc<str>, _change: &'static str, _count: u64) {}
