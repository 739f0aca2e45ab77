//! When a job runs: its [`Schedule`], on an interval ([`ticks`]) or on a cron expression
//! ([`cron`], with the `cron` feature).
//!
//! Everything here is pure: functions take the instants they need and return instants, so the
//! timing rules are unit-tested directly, without a runtime. The supervisor
//! ([`crate::supervisor`]) is the only caller that reads a clock.
//!
//! **Two clocks.** An interval job ([`Cadence::Every`]) is timed by the monotonic clock: its
//! ticks are `interval` apart in elapsed time, whatever the wall clock or the time zone does.
//! A cron job ([`Cadence::Cron`]) is timed by a wall clock, read in its time zone: "every day
//! at 02:30" means 02:30 on the clock of that zone, so its runs follow daylight saving. An
//! unguarded cron job reads its node's clock, and follows any step of it (see [`cron`] for
//! what it does when the clock jumps); a guarded one reads the lease store's, through its
//! key's schedule record, so that every node agrees on which occurrences ran.
//!
//! The rules of an interval schedule, in one place:
//!
//! * The first tick is at `start + initial_delay`; with `align`, it is moved forward to the next
//!   wall-clock multiple of `interval`, so every node ticks at the same instants.
//! * [`ScheduleMode::FixedRate`]: ticks at `first + k·interval`. After a stall (a slow run in
//!   fixed-delay mode, a paused job, a starved runtime) the missed ticks are never replayed in a
//!   burst: [`MissedTicks`] says whether the grid is kept or re-anchored at the present.
//! * [`ScheduleMode::FixedDelay`]: the next run starts `interval` after the previous run ended.
//! * `jitter` adds a random delay in `[0, jitter]` to each tick without moving the grid.
//! * A guarded job follows its lease key's grid, kept in the store (see
//!   [`store::schedule`](crate::store::schedule)): `catch_up` ([`CatchUp`]) says what its
//!   leader does with a due time that nobody ran.
//! * A failed run is retried after `retry_backoff · 2^(n-1)`, but only while the retry still
//!   starts before the next tick: retries never push a run into the next one's slot.
//! * No arithmetic here can overflow, whatever the durations: an instant too far in the future
//!   to represent saturates at [`FAR_FUTURE`](ticks::FAR_FUTURE) ahead, which in practice
//!   means "never" (about thirty years away).

use std::fmt;
use std::time::Duration;

#[cfg(feature = "cron")]
pub(crate) mod cron;
#[cfg(feature = "cron")]
mod cron_input;
mod ticks;

#[cfg(feature = "cron")]
pub use cron::CronSchedule;
pub use ticks::NextTick;
pub(crate) use ticks::after;

/// How often a job runs, and what happens around each run.
///
/// Build one with [`Schedule::every`] (or `Schedule::cron`, with the `cron` feature) and chain
/// the settings that differ from the defaults:
///
/// ```
/// use std::time::Duration;
/// use loopjob::{Schedule, ScheduleMode};
///
/// let schedule = Schedule::every(Duration::from_secs(10))
///     .initial_delay(Duration::from_secs(60))
///     .mode(ScheduleMode::FixedDelay)
///     .timeout(Duration::from_secs(30))
///     .retries(2);
/// assert!(schedule.validate().is_ok());
/// ```
///
/// The fields are public so that settings can be read into a schedule and a status page can show
/// one; [`Schedule::validate`] checks the rules between them, and the host validates every job's
/// schedule before anything starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// When the ticks come: every `interval`, or at the occurrences of a cron expression.
    pub cadence: Cadence,
    /// Wait before the first tick. Default: zero.
    pub initial_delay: Duration,
    /// Whether ticks are on a fixed grid or measured from the end of the last run.
    pub mode: ScheduleMode,
    /// When a tick finds a run still in flight: skip it (`true`, the default) or start another
    /// run, up to `max_overlap` at once (`false`).
    pub skip_if_running: bool,
    /// How many runs may be in flight at once when `skip_if_running` is `false`. Default: 4.
    pub max_overlap: u32,
    /// What happens to the ticks missed during a stall. Default: [`MissedTicks::Skip`].
    pub missed_ticks: MissedTicks,
    /// What happens to a tick or occurrence that nobody ran on time: for a guarded job, a
    /// period of the cluster's schedule that no node ran (its leader died, every node was down);
    /// for a cron job, an occurrence its node's wall clock jumped over. Default:
    /// [`CatchUp::Once`].
    pub catch_up: CatchUp,
    /// A random extra delay in `[0, jitter]` added to each tick. Default: zero.
    pub jitter: Duration,
    /// Move the first tick to the next wall-clock multiple of `interval`. Default: `false`.
    pub align: bool,
    /// Cancel a run's token once it has run this long. Default: none.
    pub timeout: Option<Duration>,
    /// How long a run may keep going after its token was cancelled (timeout, shutdown, lost
    /// leadership) before it is dropped and counted failed. Default: 5s.
    pub cancel_grace: Duration,
    /// How many times a failed run is retried. Default: 0.
    pub retries: u32,
    /// Delay before the first retry; it doubles for each further retry. Default: 1s.
    pub retry_backoff: Duration,
    /// A disabled job is registered (and shows in status) but never ticks. Default: `true`.
    pub enabled: bool,
}

/// When a job's ticks come: every interval (monotonic time) or at a cron expression's
/// occurrences (wall-clock time in a time zone).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cadence {
    /// Every this long, by the monotonic clock. Must be more than zero.
    Every(Duration),
    /// At the occurrences of a cron expression, by the wall clock in the expression's time zone.
    #[cfg(feature = "cron")]
    Cron(CronSchedule),
}

/// What a schedule does with a period or occurrence that nobody ran on time: for a guarded job,
/// the key's next due time is already past when a leader takes the lease (its leader died,
/// every node was down); for a cron job, its node's wall clock jumped over occurrences.
///
/// Never a burst: at most one run makes up for any number of missed periods. An unguarded
/// interval job has no cluster schedule; [`MissedTicks`] covers its stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Run once, at once, for all the missed periods together; then go on with the schedule.
    #[default]
    Once,
    /// Run none of them: wait for the next point of the schedule (a guarded fixed-delay job:
    /// a whole interval).
    Skip,
}

/// Whether a job's ticks follow a fixed grid or the end of its last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleMode {
    /// Ticks at `first + k·interval`, whatever the runs take.
    #[default]
    FixedRate,
    /// The next run starts `interval` after the previous run ended; runs never overlap.
    FixedDelay,
}

/// What a fixed-rate schedule does with the ticks it missed during a stall.
///
/// Neither choice replays missed ticks in a burst; the missed ticks are counted in the job's
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTicks {
    /// Keep the grid: the next tick is the next future instant `first + k·interval`.
    #[default]
    Skip,
    /// Re-anchor the grid: the next tick is one `interval` after the moment the stall ended.
    Delay,
}

/// One broken rule in a [`Schedule`]: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleProblem {
    /// The schedule field at fault, as it is spelled in settings (`interval`, `max_overlap`, …).
    pub field: &'static str,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ScheduleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

/// Defaults that are not zero, shared by [`Schedule::every`] and the docs above.
const DEFAULT_MAX_OVERLAP: u32 = 4;
const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

impl Schedule {
    /// A schedule that ticks every `interval`, with every other setting at its default.
    pub fn every(interval: Duration) -> Self {
        Self::with_cadence(Cadence::Every(interval))
    }

    /// A schedule that ticks at the occurrences of a cron `expression` (five fields, or six with
    /// seconds first), in UTC unless [`Schedule::timezone`] says otherwise, with every other
    /// setting at its default. See [`CronSchedule`] for the expressions and the daylight-saving
    /// rules.
    ///
    /// A bad expression is reported by [`Schedule::validate`] (and by the host, before anything
    /// starts), like every other schedule problem.
    ///
    /// ```
    /// use loopjob::Schedule;
    ///
    /// let nightly = Schedule::cron("30 2 * * *").timezone("Europe/Berlin");
    /// assert!(nightly.validate().is_ok());
    ///
    /// let problems = Schedule::cron("61 * * * *").validate().unwrap_err();
    /// assert_eq!(problems[0].to_string(), "`cron`: minute: 61 is out of range 0–59");
    /// ```
    #[cfg(feature = "cron")]
    pub fn cron(expression: impl Into<String>) -> Self {
        Self::with_cadence(Cadence::Cron(CronSchedule::new(expression)))
    }

    /// Sets the time zone a cron schedule reads its expression in: an IANA name such as
    /// `"Europe/Berlin"` (default `"UTC"`). An interval schedule has no time zone: on one, this
    /// does nothing.
    #[cfg(feature = "cron")]
    pub fn timezone(mut self, name: impl Into<String>) -> Self {
        if let Cadence::Cron(cron) = &mut self.cadence {
            cron.set_timezone(name);
        }
        self
    }

    /// The time between ticks of an interval schedule; `None` for a cron schedule.
    pub fn interval(&self) -> Option<Duration> {
        match &self.cadence {
            Cadence::Every(interval) => Some(*interval),
            #[cfg(feature = "cron")]
            Cadence::Cron(_) => None,
        }
    }

    /// The cron schedule, if the job runs on one.
    #[cfg(feature = "cron")]
    pub fn cron_schedule(&self) -> Option<&CronSchedule> {
        match &self.cadence {
            Cadence::Cron(cron) => Some(cron),
            Cadence::Every(_) => None,
        }
    }

    /// The interval for the tick arithmetic of [`ticks`] (zero for a cron schedule, which does
    /// not use it).
    pub(crate) fn tick_interval(&self) -> Duration {
        self.interval().unwrap_or_default()
    }

    fn with_cadence(cadence: Cadence) -> Self {
        Schedule {
            cadence,
            initial_delay: Duration::ZERO,
            mode: ScheduleMode::FixedRate,
            skip_if_running: true,
            max_overlap: DEFAULT_MAX_OVERLAP,
            missed_ticks: MissedTicks::Skip,
            catch_up: CatchUp::Once,
            jitter: Duration::ZERO,
            align: false,
            timeout: None,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            retries: 0,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            enabled: true,
        }
    }

    /// Sets [`Schedule::initial_delay`].
    pub fn initial_delay(mut self, initial_delay: Duration) -> Self {
        self.initial_delay = initial_delay;
        self
    }

    /// Sets [`Schedule::mode`].
    pub fn mode(mut self, mode: ScheduleMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`Schedule::skip_if_running`].
    pub fn skip_if_running(mut self, skip_if_running: bool) -> Self {
        self.skip_if_running = skip_if_running;
        self
    }

    /// Sets [`Schedule::max_overlap`].
    pub fn max_overlap(mut self, max_overlap: u32) -> Self {
        self.max_overlap = max_overlap;
        self
    }

    /// Sets [`Schedule::missed_ticks`].
    pub fn missed_ticks(mut self, missed_ticks: MissedTicks) -> Self {
        self.missed_ticks = missed_ticks;
        self
    }

    /// Sets [`Schedule::catch_up`].
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// Sets [`Schedule::jitter`].
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`Schedule::align`].
    pub fn align(mut self, align: bool) -> Self {
        self.align = align;
        self
    }

    /// Sets [`Schedule::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`Schedule::cancel_grace`].
    pub fn cancel_grace(mut self, cancel_grace: Duration) -> Self {
        self.cancel_grace = cancel_grace;
        self
    }

    /// Sets [`Schedule::retries`].
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets [`Schedule::retry_backoff`].
    pub fn retry_backoff(mut self, retry_backoff: Duration) -> Self {
        self.retry_backoff = retry_backoff;
        self
    }

    /// Sets [`Schedule::enabled`].
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Checks the rules between the fields and returns every broken one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use loopjob::Schedule;
    ///
    /// let problems = Schedule::every(Duration::ZERO).max_overlap(0).validate().unwrap_err();
    /// let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
    /// assert_eq!(fields, ["interval", "max_overlap"]);
    /// ```
    pub fn validate(&self) -> Result<(), Vec<ScheduleProblem>> {
        let mut problems = Vec::new();
        let mut problem =
            |field, message: String| problems.push(ScheduleProblem { field, message });
        // The shortest time between two ticks, for the rules below that compare a duration
        // with it; `None` while the cadence itself is broken. Named only in a message: a host
        // of 100,000 valid jobs formats nothing here.
        let spacing: Option<Duration> = match &self.cadence {
            Cadence::Every(interval) if interval.is_zero() => {
                problem(
                    "interval",
                    "must be more than zero, e.g. \"10s\" (or give a `cron` expression)".into(),
                );
                None
            }
            Cadence::Every(interval) => Some(*interval),
            #[cfg(feature = "cron")]
            Cadence::Cron(cron) => {
                let broken = cron.problems();
                let valid = broken.is_empty();
                problems.extend(broken);
                problems.extend(cron::problems_with_other_keys(self));
                let compared = !self.jitter.is_zero() || self.retries > 0;
                cron.shortest_gap().filter(|_| valid && compared)
            }
        };
        let named = |spacing: Duration| match &self.cadence {
            Cadence::Every(_) => format!("interval {}", humanize(spacing)),
            #[cfg(feature = "cron")]
            Cadence::Cron(cron) => format!(
                "{}, the shortest time between two occurrences of `{}`",
                humanize(spacing),
                cron.expression()
            ),
        };
        let mut problem =
            |field, message: String| problems.push(ScheduleProblem { field, message });
        if self.max_overlap == 0 {
            problem(
                "max_overlap",
                "must be at least 1 (set skip_if_running = true to never overlap)".into(),
            );
        }
        if let Some(spacing) = spacing {
            if self.jitter >= spacing {
                problem(
                    "jitter",
                    format!(
                        "is {}, not shorter than {}: ticks would overtake each other",
                        humanize(self.jitter),
                        named(spacing),
                    ),
                );
            }
        }
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            problem(
                "timeout",
                "must be more than zero; leave it unset for no timeout".into(),
            );
        }
        if let Some(spacing) = spacing {
            if self.retries > 0 && self.retry_backoff >= spacing {
                problem(
                    "retry_backoff",
                    format!(
                        "is {}, not shorter than {}: no retry could start before the next tick",
                        humanize(self.retry_backoff),
                        named(spacing),
                    ),
                );
            }
        }
        problems.extend(self.out_of_bounds());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The durations longer than their bound in [`limits`](crate::limits).
    ///
    /// Each duration is compared with its bound here, and `at_most` called only for one over
    /// it: a host checks every job's schedule, and six calls, each answering `None`, gathered
    /// and flattened, cost about 250 instructions a job.
    fn out_of_bounds(&self) -> impl Iterator<Item = ScheduleProblem> {
        use crate::limits::{MAX_GRACE, MAX_SCHEDULE_DURATION, at_most};
        const SCHEDULE: (Duration, &str) = (MAX_SCHEDULE_DURATION, "MAX_SCHEDULE_DURATION");
        const GRACE: (Duration, &str) = (MAX_GRACE, "MAX_GRACE");
        [
            ("interval", self.interval(), SCHEDULE),
            ("initial_delay", Some(self.initial_delay), SCHEDULE),
            ("jitter", Some(self.jitter), SCHEDULE),
            ("timeout", self.timeout, SCHEDULE),
            ("cancel_grace", Some(self.cancel_grace), GRACE),
            ("retry_backoff", Some(self.retry_backoff), SCHEDULE),
        ]
        .into_iter()
        .filter_map(|(field, value, (max, constant))| {
            let over = value.filter(|value| *value > max)?;
            at_most(field, over, max, constant)
        })
    }
}

/// A duration as humantime writes it ("1m 30s"), for messages.
pub(crate) fn humanize(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn schedule(interval_secs: u32) -> Schedule {
        Schedule::every(interval_secs * SEC)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = schedule(10);
        assert_eq!(s.initial_delay, Duration::ZERO);
        assert_eq!(s.mode, ScheduleMode::FixedRate);
        assert!(s.skip_if_running);
        assert_eq!(s.max_overlap, 4);
        assert_eq!(s.missed_ticks, MissedTicks::Skip);
        assert_eq!(s.catch_up, CatchUp::Once);
        assert_eq!(s.jitter, Duration::ZERO);
        assert!(!s.align);
        assert_eq!(s.timeout, None);
        assert_eq!(s.retries, 0);
        assert_eq!(s.retry_backoff, SEC);
        assert!(s.enabled);
        assert_eq!(s.catch_up, CatchUp::Once);
    }

    #[test]
    fn validate_reports_every_problem() {
        let s = Schedule::every(Duration::ZERO)
            .max_overlap(0)
            .timeout(Duration::ZERO)
            .retries(1);
        let fields: Vec<_> = s.validate().unwrap_err().iter().map(|p| p.field).collect();
        assert_eq!(fields, ["interval", "max_overlap", "timeout"]);

        let slow_retry = schedule(10).retries(1).retry_backoff(10 * SEC);
        let problems = slow_retry.validate().unwrap_err();
        assert_eq!(problems[0].field, "retry_backoff");
        assert!(problems[0].message.contains("10s"), "{}", problems[0]);
        // A long backoff is fine when there are no retries.
        assert!(schedule(10).retry_backoff(30 * SEC).validate().is_ok());
    }
}
