//! Cron schedules: a job that runs at the occurrences of a cron expression, read on the wall
//! clock of a time zone (with the `cron` feature).
//!
//! # Crates
//!
//! The expression is parsed, and its next occurrence searched, by [croner] (its `jiff` backend,
//! without chrono): it reads five and six fields, `L`, `W` and `#`, and states, and tests, the
//! daylight-saving rules below for an expression that names one time of day; loopjob extends
//! them to each time of a list or range (`0 2,14 * * *`), which croner treats as a frequency
//! ([`CronSchedule::next_after`]). Time zones are [jiff]'s, with the
//! IANA database compiled into the binary (`tzdb-bundle-always`, read through
//! `TimeZoneDatabase::bundled`), so that an occurrence is the same on every machine whatever
//! its `/usr/share/zoneinfo` holds, or lacks (a distroless container has none). jiff is also
//! the crate whose `Zoned` type keeps the offset through a fold, so the search knows which of
//! the two 01:30s it is at. No date arithmetic is written here by hand.
//!
//! # Daylight saving
//!
//! An expression names wall-clock times in its zone. When the clocks change:
//!
//! * **Spring forward (a gap).** A time the gap skips (02:30 when 02:00 jumps to 03:00) runs
//!   once, at the first instant after the gap (03:00), if the expression names times of day:
//!   specific seconds, minutes and hours, one or a list or a range of each (`30 2 * * *`,
//!   `0 2,14 * * *`). An expression with a wildcard or a step in its second, minute or hour
//!   field (`0 * * * *`, `*/15 9 * * *`) is a frequency, not a time: its occurrences inside the
//!   gap do not exist, so an hourly job runs 23 times on a 23-hour day.
//! * **Fall back (a fold).** A time that the fold repeats (01:30 when 02:00 goes back to 01:00)
//!   runs once, at its first occurrence, if the expression names times of day. A frequency runs
//!   through both passes: an hourly job runs 25 times on a 25-hour day.
//!
//! Zones whose shift is not an hour (Australia/Lord_Howe moves 30 minutes) and zones whose
//! offset is not whole hours (Asia/Kathmandu, +05:45) follow the same rules.
//!
//! # The wall clock
//!
//! An interval job measures time with the monotonic clock; a cron job reads the wall clock,
//! because "02:30 in Berlin" is a wall-clock time. An unguarded cron job reads its node's wall
//! clock (the host's [`WallClock`](crate::WallClock)) each time it wakes, and wakes at least
//! every [`WALL_CLOCK_RECHECK`] while it waits, so that a step of the clock during a long wait
//! is seen:
//!
//! * **Backwards**: the next occurrence stays the one it was, so no occurrence runs twice (the
//!   job waits while the clock goes through the replayed time again).
//! * **Forwards past occurrences**: the occurrences that the clock jumped over were never
//!   reached; [`CatchUp`] decides: `once` runs one run at once for all of them, `skip` runs none
//!   and waits for the next occurrence. Never a burst. The missed ones are counted in
//!   [`JobCounters::missed`](crate::JobCounters). An occurrence the node lived through (reached
//!   by the passage of time, only late, as after a stall) always runs.
//!
//! The first occurrence is the first one after the host's start plus `initial_delay`.
//!
//! # A guarded cron job: the store's clock
//!
//! A guarded job (one with a leader) is one job of the cluster, so its occurrences are read on
//! one clock every node shares: the lease store's. Its key's schedule record (see
//! [`store::schedule`](crate::store::schedule)) keeps the next occurrence, which each run
//! writes as it starts, computed with [`CronSchedule::next_after_ms`] strictly after the
//! occurrence it runs for. Whichever node leads next runs that occurrence and no earlier one,
//! so a failover, a graceful handover or a restart of every node neither repeats nor skips an
//! occurrence, whatever the nodes' own clocks say.
//!
//! * **The first run ever** is the first occurrence at or after the store's clock plus
//!   `initial_delay` when the key's first holder plans it; a restart waits no delay.
//! * **Missed occurrences** (the leader died, or every node was down, past one or more):
//!   [`CatchUp`] decides, as for a clock jump: `once` runs the latest of them at once, once;
//!   `skip` waits for the next occurrence. Never a burst. The next run is the next occurrence,
//!   even if that comes soon after a catch-up: the occurrences are the schedule.
//! * **A due time that is no occurrence** (one written while the job had an interval) is
//!   rounded up to the next occurrence.
//! * Pause, resume and trigger are cluster-wide, as for every guarded job.
//!
//! [`CronSchedule::next_after`] is the pure search behind it all.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::{CatchUp, MissedTicks, Schedule, ScheduleMode, ScheduleProblem, cron_input};

/// How long an unguarded cron job waits at most before it reads the wall clock again: the
/// longest a step of the clock goes unseen.
pub const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(60);

/// How far the wall clock may run ahead of the monotonic clock between two looks before the
/// difference counts as a jump (it absorbs drift and the correction of a slewing clock).
const JUMP_TOLERANCE: Duration = Duration::from_secs(1);

/// How many occurrences a wake counts as missed, at most; beyond, the count stops there.
const MAX_COUNTED: u64 = 10_000;

/// How many occurrences [`CronSchedule::shortest_gap`] looks at.
const GAP_SAMPLE: usize = 64;

/// A cron expression and the time zone it is read in.
///
/// Made by [`Schedule::cron`] and [`Schedule::timezone`]; a bad expression or zone is kept and
/// reported by [`Schedule::validate`], like every schedule problem.
///
/// The expressions, five fields or six with seconds first:
///
/// | field | values | also |
/// |---|---|---|
/// | second (optional) | 0–59 | `*` `,` `-` `/` |
/// | minute | 0–59 | `*` `,` `-` `/` |
/// | hour | 0–23 | `*` `,` `-` `/` |
/// | day of month | 1–31 | `*` `,` `-` `/` `?`, `L` (last day), `15W` (nearest weekday) |
/// | month | 1–12, JAN–DEC | `*` `,` `-` `/` |
/// | day of week | 0–7, SUN–SAT (0 and 7 are Sunday) | `*` `,` `-` `/` `?`, `5L` (last Friday), `MON#2` (second Monday) |
///
/// As in Vixie cron, when both day fields are restricted a day matching either fires (`+` before
/// the day of week asks for both). `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` are
/// shorthands.
///
/// ```
/// use jiff::Timestamp;
/// use loopjob::Schedule;
///
/// let schedule = Schedule::cron("30 2 * * *").timezone("Europe/Berlin");
/// let cron = schedule.cron_schedule().unwrap();
/// // 29 March 2026: Berlin's clocks jump from 02:00 to 03:00, so 02:30 runs at 03:00.
/// let saturday_noon: Timestamp = "2026-03-28T12:00:00Z".parse().unwrap();
/// let next = cron.next_after(saturday_noon).unwrap();
/// assert_eq!(next.to_string(), "2026-03-29T03:00:00+02:00[Europe/Berlin]");
/// ```
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    timezone: String,
    /// Shared: a parsed pattern is a few hundred bytes, and schedules are cloned.
    pattern: Arc<Result<Cron, String>>,
    zone: Result<TimeZone, String>,
    /// Whether the expression names times of day (see [`names_times_of_day`]).
    times_of_day: bool,
}

impl CronSchedule {
    /// The schedule of `expression`, in UTC.
    pub(crate) fn new(expression: impl Into<String>) -> Self {
        let expression = expression.into();
        let pattern = cron_input::parse(&expression).and_then(|cron| {
            // A pattern that matches no date at all (30 February) would sleep forever.
            let epoch = Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC);
            match cron.find_next_occurrence(&epoch, false) {
                Ok(_) => Ok(cron),
                Err(_) => Err(format!(
                    "`{}` never fires: no date matches it (check the day of month against the \
                     month, e.g. 30 February)",
                    expression.trim()
                )),
            }
        });
        CronSchedule {
            times_of_day: names_times_of_day(&expression),
            expression,
            timezone: "UTC".to_owned(),
            pattern: Arc::new(pattern),
            zone: Ok(TimeZone::UTC),
        }
    }

    /// Reads the expression in the time zone `name` from now on.
    pub(crate) fn set_timezone(&mut self, name: impl Into<String>) {
        self.timezone = name.into();
        self.zone = cron_input::zone(&self.timezone);
    }

    /// The expression, as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's name, as written (`UTC` unless set).
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// What is wrong with the expression and the zone (`cron` and `timezone` problems).
    pub(crate) fn problems(&self) -> Vec<ScheduleProblem> {
        let mut problems = Vec::new();
        if let Err(message) = &*self.pattern {
            problems.push(ScheduleProblem {
                field: "cron",
                message: message.clone(),
            });
        }
        if let Err(message) = &self.zone {
            problems.push(ScheduleProblem {
                field: "timezone",
                message: message.clone(),
            });
        }
        problems
    }

    /// The first occurrence strictly after `after`, in the schedule's time zone; `None` if the
    /// expression or the zone is invalid (see [`Schedule::validate`]) or no occurrence comes
    /// before the year 5000.
    ///
    /// This is the whole timing rule of a cron job: pure, and the same on every machine.
    pub fn next_after(&self, after: Timestamp) -> Option<Zoned> {
        let (pattern, zone) = self.parts()?;
        let mut from = after;
        loop {
            let next = pattern
                .find_next_occurrence(&from.to_zoned(zone.clone()), false)
                .ok()?;
            if !self.times_of_day {
                return Some(next);
            }
            // croner keeps the daylight-saving rule of a time for an expression that names one
            // time of day (`30 2 * * *`), and treats a list or a range (`0 2,14 * * *`) as a
            // frequency; here each time of a list gets the rule of a time.
            if let Some(gap_end) = skipped_in_a_gap(pattern, zone, after, next.timestamp()) {
                return Some(gap_end.to_zoned(zone.clone()));
            }
            if !is_second_pass(zone, &next) {
                return Some(next);
            }
            from = next.timestamp();
        }
    }

    /// [`CronSchedule::next_after`] in milliseconds since the Unix epoch, as a store's clock
    /// counts: the next occurrence strictly after `after_ms` (a guarded job writes it as the
    /// key's next due time).
    pub fn next_after_ms(&self, after_ms: i64) -> Option<i64> {
        let after = Timestamp::from_millisecond(after_ms).ok()?;
        // An occurrence is on a whole second, so one strictly after the millisecond `after_ms`
        // is also strictly after any instant within it.
        let next = self.next_after(after)?;
        Some(next.timestamp().as_millisecond())
    }

    /// The first occurrence at or after `ms` (milliseconds since the Unix epoch): where a
    /// guarded job's due time that is not an occurrence (its first run ever, planned
    /// `initial_delay` from the store's now; a time written for another cadence) is rounded up
    /// to.
    pub(crate) fn first_at_or_after_ms(&self, ms: i64) -> Option<i64> {
        // Occurrences are on whole seconds: strictly after the millisecond before is at or after.
        self.next_after_ms(ms.saturating_sub(1))
    }

    /// The next `count` occurrences after `after`, in the schedule's time zone: what a status
    /// page shows.
    ///
    /// ```
    /// use jiff::Timestamp;
    /// use loopjob::Schedule;
    ///
    /// let schedule = Schedule::cron("0 9 * * MON-FRI").timezone("America/New_York");
    /// let runs = schedule.cron_schedule().unwrap().next_runs(Timestamp::UNIX_EPOCH, 2);
    /// let shown: Vec<String> = runs.iter().map(|run| run.to_string()).collect();
    /// // 1 January 1970 was a Thursday.
    /// assert_eq!(shown, [
    ///     "1970-01-01T09:00:00-05:00[America/New_York]",
    ///     "1970-01-02T09:00:00-05:00[America/New_York]",
    /// ]);
    /// ```
    pub fn next_runs(&self, after: Timestamp, count: usize) -> Vec<Zoned> {
        let mut runs = Vec::with_capacity(count.min(1024));
        let mut at = after;
        while runs.len() < count {
            let Some(next) = self.next_after(at) else {
                break;
            };
            at = next.timestamp();
            runs.push(next);
        }
        runs
    }

    /// The shortest time between two consecutive occurrences among the first [`GAP_SAMPLE`]
    /// after a fixed instant, for the rules that compare `jitter` and `retry_backoff` with it.
    pub(crate) fn shortest_gap(&self) -> Option<Duration> {
        let start: Timestamp = "2025-01-01T00:00:00Z".parse().ok()?;
        let runs = self.next_runs(start, GAP_SAMPLE);
        runs.windows(2)
            .filter_map(|pair| {
                let gap = pair[1].timestamp().duration_since(pair[0].timestamp());
                Duration::try_from(gap).ok()
            })
            .min()
    }

    /// What a cron job does when it wakes with its wall clock at `now`, past `scheduled` (its
    /// next occurrence), `elapsed` (monotonic) after it last looked at the wall clock and read
    /// `looked`: see the module's rules.
    ///
    /// The clock may have been stepped at any moment between the two looks, so an occurrence
    /// counts as jumped over only if no moment fits otherwise: it lies after what the passage
    /// of time alone reached from the last look (`looked + elapsed`), and before what it could
    /// have reached since a step at the very start (`now - elapsed`).
    pub(crate) fn due(
        &self,
        scheduled: Timestamp,
        looked: Timestamp,
        elapsed: Duration,
        now: Timestamp,
        catch_up: CatchUp,
    ) -> Due {
        let next = self.next_after(now).map(|next| next.timestamp());
        let (latest, passed_before) = self.latest_not_after(scheduled, now);
        let passed = passed_before + 1; // `scheduled` itself
        let margin = elapsed.saturating_add(JUMP_TOLERANCE);
        let reached = looked.checked_add(margin).unwrap_or(now).min(now);
        let since_step = now.checked_sub(margin).unwrap_or(looked);
        let lived_through = scheduled <= reached || latest > since_step;
        let run = (lived_through || catch_up == CatchUp::Once).then_some(latest);
        Due {
            run,
            missed: passed - u64::from(run.is_some()),
            next,
        }
    }

    /// The latest occurrence from the occurrence `from` on that is not after `now` (`from`
    /// itself if `now` is before the next), and how many occurrences before it `now` passed,
    /// counted up to [`MAX_COUNTED`].
    fn latest_not_after(&self, from: Timestamp, now: Timestamp) -> (Timestamp, u64) {
        let mut passed = 0;
        let mut latest = from;
        while passed < MAX_COUNTED {
            match self.next_after(latest) {
                Some(occurrence) if occurrence.timestamp() <= now => {
                    latest = occurrence.timestamp();
                    passed += 1;
                }
                _ => return (latest, passed),
            }
        }
        // Counted enough: the latest one is the last at or before `now`.
        (self.previous_or_at(now).unwrap_or(latest), passed)
    }

    /// [`CronSchedule::latest_not_after`] in milliseconds since the Unix epoch, as a store's
    /// clock counts: for a guarded job, the occurrence a key's leader runs when it finds the
    /// key's due occurrence `due_ms` reached or passed at `now_ms`, and how many it passes
    /// without a run.
    pub(crate) fn latest_not_after_ms(&self, due_ms: i64, now_ms: i64) -> (i64, u64) {
        let (Ok(due), Ok(now)) = (
            Timestamp::from_millisecond(due_ms),
            Timestamp::from_millisecond(now_ms),
        ) else {
            return (due_ms, 0);
        };
        let (latest, passed) = self.latest_not_after(due, now);
        (latest.as_millisecond(), passed)
    }

    fn previous_or_at(&self, at: Timestamp) -> Option<Timestamp> {
        let (pattern, zone) = self.parts()?;
        let previous = pattern
            .find_previous_occurrence(&at.to_zoned(zone.clone()), true)
            .ok()?;
        Some(previous.timestamp())
    }

    fn parts(&self) -> Option<(&Cron, &TimeZone)> {
        Some(((*self.pattern).as_ref().ok()?, self.zone.as_ref().ok()?))
    }
}

/// Whether `expression` names times of day: one or more specific values, and no wildcard or
/// step, in each of its second, minute and hour fields (`30 2 * * *`, `0 2,14 * * *`,
/// `@daily`). Each such time keeps the daylight-saving rule of a time; any other expression is
/// a frequency (`0 * * * *`, `*/15 9-17 * * *`).
fn names_times_of_day(expression: &str) -> bool {
    let expression = expression.trim();
    if let Some(nickname) = expression.strip_prefix('@') {
        return !nickname.eq_ignore_ascii_case("hourly");
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let time_fields = match fields.len() {
        6 => &fields[..3],
        _ => &fields[..fields.len().min(2)],
    };
    time_fields
        .iter()
        .all(|field| !field.contains(['*', '/', '?']))
}

/// The first instant after a daylight-saving gap between `after` (excluded) and `until`, if the
/// gap skipped a time that `pattern` names: such a time runs once, when the gap ends.
fn skipped_in_a_gap(
    pattern: &Cron,
    zone: &TimeZone,
    after: Timestamp,
    until: Timestamp,
) -> Option<Timestamp> {
    for transition in zone.following(after) {
        let ends = transition.timestamp();
        if ends > until {
            return None;
        }
        if ends <= after {
            continue;
        }
        let before = zone.to_offset(ends.checked_sub(jiff::SignedDuration::from_nanos(1)).ok()?);
        let (gap_start, gap_end) = (
            before.to_datetime(ends),
            transition.offset().to_datetime(ends),
        );
        if gap_end <= gap_start {
            continue; // a fold, not a gap
        }
        // Civil times as UTC: the pattern matched against the clock's face, with no zone.
        let from = gap_start.to_zoned(TimeZone::UTC).ok()?;
        let matched = pattern.find_next_occurrence(&from, true).ok()?;
        if matched.datetime() < gap_end {
            return Some(ends);
        }
    }
    None
}

/// Whether `occurrence` is the second time its wall-clock time happens, in a fold.
fn is_second_pass(zone: &TimeZone, occurrence: &Zoned) -> bool {
    match zone.to_ambiguous_timestamp(occurrence.datetime()).offset() {
        jiff::tz::AmbiguousOffset::Fold { before, after } => {
            before != after && occurrence.offset() == after
        }
        _ => false,
    }
}

/// The outcome of [`CronSchedule::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    /// The occurrence to run now, if any.
    pub(crate) run: Option<Timestamp>,
    /// Occurrences passed without a run of their own.
    pub(crate) missed: u64,
    /// The next occurrence after now.
    pub(crate) next: Option<Timestamp>,
}

/// The rules between a cron cadence and the schedule's other keys: those that only mean
/// something on an interval.
pub(super) fn problems_with_other_keys(schedule: &Schedule) -> Vec<ScheduleProblem> {
    let mut problems = Vec::new();
    if schedule.mode == ScheduleMode::FixedDelay {
        problems.push(ScheduleProblem {
            field: "mode",
            message: "fixed_delay does not apply to a cron schedule, whose runs follow the clock: \
                      remove `mode`, or use `interval`"
                .into(),
        });
    }
    if schedule.align {
        problems.push(ScheduleProblem {
            field: "align",
            message: "applies to an interval schedule; a cron schedule is on the clock already: \
                      remove `align`"
                .into(),
        });
    }
    if schedule.missed_ticks == MissedTicks::Delay {
        problems.push(ScheduleProblem {
            field: "missed_ticks",
            message: "applies to an interval schedule; a cron schedule's missed occurrences \
                      follow `catch_up` (\"once\" or \"skip\")"
                .into(),
        });
    }
    problems
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl Eq for CronSchedule {}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expression", &self.expression)
            .field("timezone", &self.timezone)
            .finish()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` in {}", self.expression, self.timezone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn every_five_minutes() -> CronSchedule {
        CronSchedule::new("*/5 * * * *")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn an_occurrence_reached_on_time_runs() {
        let due = every_five_minutes().due(
            at("2026-01-01T00:05:00Z"),
            at("2026-01-01T00:04:00Z"),
            MINUTE,
            at("2026-01-01T00:05:00Z"),
            CatchUp::Skip,
        );
        assert_eq!(
            due,
            Due {
                run: Some(at("2026-01-01T00:05:00Z")),
                missed: 0,
                next: Some(at("2026-01-01T00:10:00Z")),
            }
        );
    }

    #[test]
    fn after_a_stall_the_latest_occurrence_runs_once() {
        // Looked at 00:04, stalled twenty minutes (monotonic): 00:05 … 00:20 were lived through.
        let due = every_five_minutes().due(
            at("2026-01-01T00:05:00Z"),
            at("2026-01-01T00:04:00Z"),
            20 * MINUTE,
            at("2026-01-01T00:24:00Z"),
            CatchUp::Skip,
        );
        assert_eq!(due.run, Some(at("2026-01-01T00:20:00Z")));
        assert_eq!(due.missed, 3);
        assert_eq!(due.next, Some(at("2026-01-01T00:25:00Z")));
    }

    #[test]
    fn occurrences_jumped_over_follow_catch_up() {
        // Looked at 00:03; one minute later the clock reads 01:07:30: 00:05 … 01:05 were jumped
        // over (01:05 too: a step at any moment of that minute lands after it).
        let jumped = |catch_up| {
            every_five_minutes().due(
                at("2026-01-01T00:05:00Z"),
                at("2026-01-01T00:03:00Z"),
                MINUTE,
                at("2026-01-01T01:07:30Z"),
                catch_up,
            )
        };
        let once = jumped(CatchUp::Once);
        assert_eq!(once.run, Some(at("2026-01-01T01:05:00Z")));
        assert_eq!(once.missed, 12);
        let skip = jumped(CatchUp::Skip);
        assert_eq!(skip.run, None);
        assert_eq!(skip.missed, 13);
        assert_eq!(skip.next, Some(at("2026-01-01T01:10:00Z")));
    }
}
