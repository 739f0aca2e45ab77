//! When a job runs: its [`Schedule`] and the tick arithmetic behind it.
//!
//! Everything here is pure: functions take the instants they need and return instants, so the
//! timing rules are unit-tested directly, without a runtime. The supervisor
//! ([`crate::supervisor`]) is the only caller that reads a clock.
//!
//! The rules, in one place:
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

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// How often a job runs, and what happens around each run.
///
/// Build one with [`Schedule::every`] and chain the settings that differ from the defaults:
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
    /// Time between ticks. Must be more than zero.
    pub interval: Duration,
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
    /// For a guarded job: what its leader does with a due time already past when it takes the
    /// lease (a period nobody ran). Default: [`CatchUp::Once`].
    pub catch_up: CatchUp,
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

/// What a guarded job's new leader does when the key's next due time is already past: a
/// period that nobody ran (the leader died, every node was down, the job was paused).
///
/// Neither choice runs more than once: a cluster never bursts to catch up. Unguarded jobs have
/// no cluster schedule and ignore it ([`MissedTicks`] covers their stalls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Run once at once, then go on with the grid.
    #[default]
    Once,
    /// Run nothing now: wait for the grid's next point (fixed delay: a whole interval).
    Skip,
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
        Schedule {
            interval,
            initial_delay: Duration::ZERO,
            mode: ScheduleMode::FixedRate,
            skip_if_running: true,
            max_overlap: DEFAULT_MAX_OVERLAP,
            missed_ticks: MissedTicks::Skip,
            jitter: Duration::ZERO,
            align: false,
            timeout: None,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            retries: 0,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            enabled: true,
            catch_up: CatchUp::Once,
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

    /// Sets [`Schedule::catch_up`].
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
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
        if self.interval.is_zero() {
            problem("interval", "must be more than zero, e.g. \"10s\"".into());
        }
        if self.max_overlap == 0 {
            problem(
                "max_overlap",
                "must be at least 1 (set skip_if_running = true to never overlap)".into(),
            );
        }
        if !self.interval.is_zero() && self.jitter >= self.interval {
            problem(
                "jitter",
                format!(
                    "is {}, not shorter than interval {}: ticks would overtake each other",
                    humanize(self.jitter),
                    humanize(self.interval)
                ),
            );
        }
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            problem(
                "timeout",
                "must be more than zero; leave it unset for no timeout".into(),
            );
        }
        if self.retries > 0 && !self.interval.is_zero() && self.retry_backoff >= self.interval {
            problem(
                "retry_backoff",
                format!(
                    "is {}, not shorter than interval {}: no retry could start before the next tick",
                    humanize(self.retry_backoff),
                    humanize(self.interval)
                ),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The instant of the first tick for a job started at `start`, when the wall clock read
    /// `wall_at_start`.
    ///
    /// With `align`, the tick is moved forward to the next instant at which the wall clock is a
    /// whole multiple of `interval` since the Unix epoch (a tick that already falls on one stays).
    pub fn first_tick(&self, start: Instant, wall_at_start: SystemTime) -> Instant {
        let first = start + self.initial_delay;
        if !self.align {
            return first;
        }
        let wall_at_first = wall_at_start + self.initial_delay;
        let since_epoch = wall_at_first
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let remainder = nanos(since_epoch) % nanos(self.interval).max(1);
        if remainder == 0 {
            first
        } else {
            first + from_nanos(nanos(self.interval) - remainder)
        }
    }

    /// The fixed-rate tick that follows `previous`, as seen at `now`.
    ///
    /// Returns the next tick and how many ticks were missed on the way (zero unless `now` is
    /// already past `previous + interval`). A tick that falls exactly on `now` is due, not missed.
    pub fn next_fixed_rate_tick(&self, previous: Instant, now: Instant) -> NextTick {
        let due = previous + self.interval;
        if due >= now {
            return NextTick { at: due, missed: 0 };
        }
        match self.missed_ticks {
            MissedTicks::Skip => {
                // Smallest k ≥ 1 with previous + k·interval ≥ now; ticks 1..k were missed.
                let behind = nanos(now - previous);
                let step = nanos(self.interval).max(1);
                let k = behind.div_ceil(step);
                NextTick {
                    at: previous + from_nanos(k * step),
                    missed: saturating_u64(k - 1),
                }
            }
            MissedTicks::Delay => {
                let step = nanos(self.interval).max(1);
                let missed = nanos(now - previous) / step;
                NextTick {
                    at: now + self.interval,
                    missed: saturating_u64(missed),
                }
            }
        }
    }

    /// The tick after a fixed-delay run that ended at `ended`.
    pub fn next_fixed_delay_tick(&self, ended: Instant) -> Instant {
        ended + self.interval
    }

    /// The instant at which a tick scheduled at `tick` actually fires, given a random
    /// `fraction` in `[0, 1]` (the supervisor draws it per tick).
    pub fn jittered(&self, tick: Instant, fraction: f64) -> Instant {
        tick + self.jitter.mul_f64(fraction.clamp(0.0, 1.0))
    }

    /// When retry number `retry` (1 for the first) of a run that failed at `failed_at` should
    /// start, or `None` when no retries are left or the retry would not start before
    /// `next_tick`.
    ///
    /// The backoff doubles with each retry: `retry_backoff · 2^(retry-1)`.
    pub fn retry_at(
        &self,
        retry: u32,
        failed_at: Instant,
        next_tick: Option<Instant>,
    ) -> Option<Instant> {
        if retry == 0 || retry > self.retries {
            return None;
        }
        let factor = 1u32.checked_shl(retry - 1)?;
        let at = failed_at.checked_add(self.retry_backoff.checked_mul(factor)?)?;
        match next_tick {
            Some(next) if at >= next => None,
            _ => Some(at),
        }
    }
}

/// The result of [`Schedule::next_fixed_rate_tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextTick {
    /// When the next tick is due.
    pub at: Instant,
    /// How many ticks were missed (not run) before it.
    pub missed: u64,
}

fn nanos(duration: Duration) -> u128 {
    duration.as_nanos()
}

fn from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits.
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

fn saturating_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
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
        assert_eq!(s.jitter, Duration::ZERO);
        assert!(!s.align);
        assert_eq!(s.timeout, None);
        assert_eq!(s.retries, 0);
        assert_eq!(s.retry_backoff, SEC);
        assert!(s.enabled);
        assert_eq!(s.catch_up, CatchUp::Once);
    }

    #[test]
    fn first_tick_waits_the_initial_delay() {
        let start = Instant::now();
        let s = schedule(10).initial_delay(90 * SEC);
        assert_eq!(
            s.first_tick(start, SystemTime::UNIX_EPOCH),
            start + 90 * SEC
        );
    }

    #[test]
    fn aligned_first_tick_lands_on_the_next_wall_clock_multiple() {
        let start = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_007);
        // 1_000_007 s since the epoch; the next multiple of 10 s is 1_000_010 s: 3 s away.
        assert_eq!(
            schedule(10).align(true).first_tick(start, wall),
            start + 3 * SEC
        );
        // The initial delay is waited first, then aligned: 1_000_012 → 1_000_020.
        let delayed = schedule(10).align(true).initial_delay(5 * SEC);
        assert_eq!(delayed.first_tick(start, wall), start + 13 * SEC);
        // Already on a multiple: no wait.
        let on_grid = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(schedule(10).align(true).first_tick(start, on_grid), start);
    }

    #[test]
    fn fixed_rate_ticks_follow_the_grid() {
        let t0 = Instant::now();
        let s = schedule(10);
        let next = s.next_fixed_rate_tick(t0, t0 + 3 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 10 * SEC,
                missed: 0
            }
        );
        // Exactly on the next tick: due now, nothing missed.
        let next = s.next_fixed_rate_tick(t0, t0 + 10 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 10 * SEC,
                missed: 0
            }
        );
    }

    #[test]
    fn a_stall_skips_to_the_next_future_tick_without_a_burst() {
        let t0 = Instant::now();
        let s = schedule(10);
        // Stalled until t0 + 35 s: ticks at 10, 20 and 30 were missed; the next is at 40.
        let next = s.next_fixed_rate_tick(t0, t0 + 35 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 40 * SEC,
                missed: 3
            }
        );
        // Stalled until exactly t0 + 30 s: 10 and 20 missed, 30 is due now.
        let next = s.next_fixed_rate_tick(t0, t0 + 30 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 30 * SEC,
                missed: 2
            }
        );
    }

    #[test]
    fn missed_ticks_delay_re_anchors_the_grid() {
        let t0 = Instant::now();
        let s = schedule(10).missed_ticks(MissedTicks::Delay);
        let next = s.next_fixed_rate_tick(t0, t0 + 35 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 45 * SEC,
                missed: 3
            }
        );
    }

    #[test]
    fn fixed_delay_counts_from_the_end_of_the_run() {
        let ended = Instant::now() + 7 * SEC;
        assert_eq!(schedule(10).next_fixed_delay_tick(ended), ended + 10 * SEC);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let tick = Instant::now();
        let s = schedule(10).jitter(2 * SEC);
        assert_eq!(s.jittered(tick, 0.0), tick);
        assert_eq!(s.jittered(tick, 0.5), tick + SEC);
        assert_eq!(s.jittered(tick, 1.0), tick + 2 * SEC);
        assert_eq!(s.jittered(tick, 7.0), tick + 2 * SEC, "fraction is clamped");
        assert_eq!(
            schedule(10).jittered(tick, 0.7),
            tick,
            "no jitter configured"
        );
    }

    #[test]
    fn retries_back_off_exponentially_and_stop_before_the_next_tick() {
        let failed = Instant::now();
        let s = schedule(60).retries(5).retry_backoff(2 * SEC);
        let next_tick = Some(failed + 20 * SEC);
        assert_eq!(s.retry_at(1, failed, next_tick), Some(failed + 2 * SEC));
        assert_eq!(s.retry_at(2, failed, next_tick), Some(failed + 4 * SEC));
        assert_eq!(s.retry_at(3, failed, next_tick), Some(failed + 8 * SEC));
        assert_eq!(s.retry_at(4, failed, next_tick), Some(failed + 16 * SEC));
        // 32 s would start after the next tick at 20 s: capped, no retry.
        assert_eq!(s.retry_at(5, failed, next_tick), None);
        // Beyond the configured retries: none, whatever the time.
        assert_eq!(s.retry_at(6, failed, None), None);
        assert_eq!(s.retry_at(0, failed, None), None);
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
