//! What a node knows of one lease key it holds on the cluster schedule: the key's due time,
//! in the store's clock and as a local instant, and the arithmetic of its points, an interval's
//! grid or a cron expression's occurrences (pure, tested here).

use std::time::Duration;

use tokio::time::Instant;

use crate::schedule::{Cadence, CatchUp, Schedule, ScheduleMode};
use crate::store::{NextDue, ScheduleRecord, due_set_by};

/// What this node knows of one key it holds.
pub(super) struct KeyTiming {
    pub(super) epoch: u64,
    pub(super) clock: StoreClock,
    /// The next run's due time; `None` while a fixed-delay run is under way.
    pub(super) due: Option<Due>,
    /// The grid's anchor, once the record has one.
    pub(super) anchor_ms: Option<i64>,
    pub(super) paused: bool,
    /// A trigger waiting for a run: the store time it was asked at.
    pub(super) trigger: Option<i64>,
    /// The trigger this node last ran, so that a read from before that start does not run it
    /// again.
    pub(super) served_trigger: Option<i64>,
    /// After a start the store did not commit, no start is asked before this.
    pub(super) blocked_until: Option<Instant>,
    /// The due point passed while another key's run of the job was under way: the key starts
    /// when that run ends, rather than waiting for its next point.
    pub(super) waiting: bool,
    /// For a fixed-rate start in flight: the due time it asks the store to set.
    pub(super) next_after_start: Option<NextDue>,
    /// The record as last read, for the status.
    pub(super) record: ScheduleRecord,
}

/// A due time: in the store's clock, and as a local instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Due {
    pub(super) ms: i64,
    pub(super) at: Instant,
}

/// How the store's clock maps to this node's, from one answer: the store read its clock at
/// `read_at_ms` between the local instants `sent` and `received`.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreClock {
    pub(super) sent: Instant,
    pub(super) received: Instant,
    pub(super) read_at_ms: i64,
    /// The largest margin a wait gets (a tenth of the lease ttl).
    pub(super) margin_cap: Duration,
}

impl StoreClock {
    /// The local instant by which the store's clock has surely reached `ms`: the wait measured
    /// from `received`, plus a tenth of it (at most a tenth of the ttl) for clock drift.
    pub(super) fn local(&self, ms: i64) -> Instant {
        let ahead = ms.saturating_sub(self.read_at_ms);
        if ahead <= 0 {
            return self.received;
        }
        let ahead = Duration::from_millis(ahead as u64);
        self.received + ahead + ahead.min(self.margin_cap) / 10
    }

    /// Of two conversions, the one made from the later answer. Both are true (each store time
    /// was read no later than its `received`), and the later one's margin covers less drift:
    /// the margin grows with the time since the answer, so that a conversion kept for a whole
    /// renew period would make a short interval's runs late enough to pass grid points.
    pub(super) fn fresher(self, other: StoreClock) -> StoreClock {
        if other.received >= self.received {
            other
        } else {
            self
        }
    }

    /// The store time at the local instant `at`, never ahead of the store's clock.
    pub(super) fn store_ms(&self, at: Instant) -> i64 {
        self.read_at_ms
            .saturating_add(millis(at.saturating_duration_since(self.received)))
    }

    /// The store time at the local instant `at`, never behind the store's clock (but for the
    /// clocks' drift, a few parts per million): measured from when the call was sent.
    ///
    /// [`StoreClock::store_ms`] trails the store's clock by the call's way back, this one leads
    /// it by the way out; after a call that a stalled store held, each by up to the stall. How
    /// late a run is is judged by this one, so that a stall cannot make a late run look on time
    /// and keep its grid, which would start the key's next run less than an interval after it.
    pub(super) fn store_ms_at_most(&self, at: Instant) -> i64 {
        self.read_at_ms
            .saturating_add(millis(at.saturating_duration_since(self.sent)))
    }
}

/// `due_ms`, the key's due time as its record says, unless it is further ahead of the store's
/// clock than any holder of this schedule writes one: on an interval, the first run's
/// `initial_delay` or one interval, plus an interval for alignment; on a cron expression, the
/// second occurrence after `initial_delay` from now. Further ahead is a row edited by hand (or a
/// schedule shortened since): the key then runs at its schedule's next point from the store's
/// now (one interval, or the next occurrence), with a warning, and that run's start writes a
/// due time on the schedule again.
fn sane_due(record: &ScheduleRecord, due_ms: i64, schedule: &Schedule) -> i64 {
    let read_at = record.read_at_ms;
    let initial_delay = millis(schedule.initial_delay);
    // The furthest due time the schedule ever sets from `read_at`, and the one a repair sets.
    let (horizon_ms, repaired_ms) = match schedule.interval() {
        Some(interval) => (
            read_at
                .saturating_add(initial_delay.max(millis(interval)))
                .saturating_add(millis(interval)),
            read_at.saturating_add(millis(interval)),
        ),
        // A cron job's first plan is the first occurrence from now plus `initial_delay`, a
        // run sets the occurrence after its own; one occurrence more for a due time written
        // for another cadence, which is rounded up to the next occurrence.
        None => match (
            point_after(schedule, read_at.saturating_add(initial_delay))
                .and_then(|first| point_after(schedule, first)),
            point_after(schedule, read_at),
        ) {
            (Some(horizon), Some(repaired)) => (horizon, repaired),
            _ => return due_ms,
        },
    };
    if due_ms <= horizon_ms {
        return due_ms;
    }
    tracing::warn!(
        key = %record.key,
        next_due_ms = due_ms,
        ahead_ms = due_ms.saturating_sub(read_at),
        "the key's next run is due further ahead than its schedule ever sets (the row was edited, or the schedule changed); it runs at its schedule's next point from now instead"
    );
    repaired_ms
}

impl KeyTiming {
    /// A key this node just won, from its record: when its next run is due, with catch-up for a
    /// due time already past. `None` while the record has no due time (not planned yet).
    pub(super) fn first_read(
        epoch: u64,
        clock: StoreClock,
        record: ScheduleRecord,
        schedule: &Schedule,
    ) -> Option<Self> {
        let mut due_ms = sane_due(&record, record.next_due_ms?, schedule);
        let unanchored = record.anchor_ms.is_none();
        if schedule.mode == ScheduleMode::FixedRate && schedule.align && unanchored {
            due_ms = align_up(due_ms, schedule.tick_interval());
        }
        Some(KeyTiming {
            epoch,
            clock,
            due: first_due(clock, due_ms, schedule),
            anchor_ms: record.anchor_ms,
            paused: record.paused.is_some(),
            trigger: record.trigger.as_ref().map(|mark| mark.at_ms),
            served_trigger: None,
            blocked_until: None,
            waiting: false,
            next_after_start: None,
            record,
        })
    }

    /// A later read of a key this node has held since: the operator's marks and the clock's
    /// conversion are refreshed; the due time stays this node's (a fixed-rate one is converted
    /// again with the fresher clock).
    pub(super) fn refresh(&mut self, clock: StoreClock, record: ScheduleRecord, fixed_rate: bool) {
        // The read may have been answered before the last start was (which gave a clock too).
        self.clock = self.clock.fresher(clock);
        let clock = self.clock;
        // A fixed-rate due time is a grid point in the store's clock: if the fresher clock says
        // it comes later here (this clock runs fast), wait for it. Never earlier.
        // A due time the store's clock had already reached at this read is not early anywhere:
        // it keeps its instant (converting it again would move it to this read's arrival, and
        // a jittered tick waiting past it would be drawn again from there).
        if let Some(due) = self
            .due
            .as_mut()
            .filter(|due| fixed_rate && due.ms > clock.read_at_ms)
        {
            due.at = due.at.max(clock.local(due.ms));
        }
        self.anchor_ms = self.anchor_ms.or(record.anchor_ms);
        self.paused = record.paused.is_some();
        self.trigger = record
            .trigger
            .as_ref()
            .map(|mark| mark.at_ms)
            .filter(|at| self.served_trigger.is_none_or(|served| *at > served));
        self.record = record;
    }

    /// A run began under this key at `now`, once the store answered that it committed the start
    /// asked for at `asked` at `started_ms` (its clock): the next due time is the one the store
    /// set, converted from that answer, the freshest there is. `served` is the time of the
    /// operator's trigger it was asked for, if it was. That trigger, and any older one, is
    /// served. A trigger read while a scheduled start was being committed is still pending in
    /// the store (the start did not clear it) and runs next; the due time moves on.
    pub(super) fn began(
        &mut self,
        asked: Instant,
        now: Instant,
        started_ms: i64,
        schedule: &Schedule,
        served: Option<i64>,
    ) {
        self.clock = self.clock.fresher(StoreClock {
            sent: asked,
            received: now,
            read_at_ms: started_ms,
            ..self.clock
        });
        if let Some(served) = served {
            self.served_trigger = Some(self.served_trigger.map_or(served, |s| s.max(served)));
            self.trigger = self.trigger.filter(|at| *at > served);
        }
        self.blocked_until = None;
        self.waiting = false;
        match (schedule.mode, self.next_after_start.take()) {
            (ScheduleMode::FixedRate, Some(next)) => {
                if let Some(ms) = due_set_by(next, started_ms) {
                    self.due = Some(Due {
                        ms,
                        at: self.clock.local(ms).max(now),
                    });
                }
            }
            // A trigger between two points leaves the grid as it is.
            (ScheduleMode::FixedRate, None) => {}
            (ScheduleMode::FixedDelay, _) => self.due = None,
        }
    }

    /// The due point passed without a run: move to the schedule's next point after `now`
    /// (fixed delay: an interval from now).
    pub(super) fn pass(&mut self, now: Instant, schedule: &Schedule) {
        self.waiting = false;
        let now_ms = self.clock.store_ms(now);
        let ms = match (schedule.mode, self.due) {
            (ScheduleMode::FixedRate, Some(due)) => {
                let (point, _) = latest_point(schedule, due.ms, now_ms);
                point_after(schedule, point)
            }
            _ => Some(now_ms.saturating_add(millis(schedule.tick_interval()))),
        };
        self.due = ms.map(|ms| Due {
            ms,
            at: self.clock.local(ms).max(now),
        });
    }

    /// How the store is to set the key's due time as a fixed-rate run for its point `point_ms`
    /// starts, asked for when the store's clock was at most `latest_ms`; `None` when no point
    /// follows (a cron expression past its last occurrence before the year 5000).
    ///
    /// On an interval: the grid's next point, unless the run may be late beyond the
    /// conversion's margin (`grace`) and the job's jitter (a period caught up, a stall): then the
    /// grid goes on from this run's start, an interval less the margin after it, so that runs of
    /// the key never start closer than that. The margin a wait of an interval gets is a tenth of
    /// it, at most `grace`: an interval shorter than ten times `grace` (a 1 s job under the
    /// default 15 s ttl) moves by a tenth of the interval, not by `grace`, which could pass the
    /// whole interval.
    ///
    /// On a cron expression: its next occurrence, however late this run is, since the
    /// occurrences are the schedule (a catch-up run may come shortly before the next one, but
    /// never replays one: the next is strictly after the point run).
    pub(super) fn next_after_run(
        &self,
        schedule: &Schedule,
        point_ms: i64,
        latest_ms: i64,
        grace: Duration,
    ) -> Option<NextDue> {
        let Some(interval) = schedule.interval() else {
            return point_after(schedule, point_ms).map(NextDue::At);
        };
        let allowed = millis(grace)
            .saturating_add(millis(schedule.jitter))
            .saturating_add(1);
        if latest_ms.saturating_sub(point_ms) > allowed {
            return Some(NextDue::After(
                interval.saturating_sub(grace.min(interval / 10)),
            ));
        }
        Some(match self.anchor_ms {
            None => NextDue::OnGrid {
                anchor_ms: point_ms,
                interval,
            },
            Some(_) => NextDue::At(point_ms.saturating_add(millis(interval))),
        })
    }
}

/// The due time of a key just won whose record says `due_ms`: that time rounded up to a point
/// of the schedule, waited for while ahead; when past (a period nobody ran), by [`CatchUp`]:
/// the latest point passed at once, or the next point after the store's now.
fn first_due(clock: StoreClock, due_ms: i64, schedule: &Schedule) -> Option<Due> {
    let due_ms = point_from(schedule, due_ms)?;
    let read_at = clock.read_at_ms;
    if due_ms >= read_at {
        return Some(Due {
            ms: due_ms,
            at: clock.local(due_ms),
        });
    }
    let (run_at_once, next) = match schedule.mode {
        ScheduleMode::FixedRate => {
            let (point, _) = latest_point(schedule, due_ms, read_at);
            (point, point_after(schedule, point))
        }
        ScheduleMode::FixedDelay => (
            due_ms,
            Some(read_at.saturating_add(millis(schedule.tick_interval()))),
        ),
    };
    match schedule.catch_up {
        CatchUp::Once => Some(Due {
            ms: run_at_once,
            at: clock.received,
        }),
        CatchUp::Skip => next.map(|ms| Due {
            ms,
            at: clock.local(ms),
        }),
    }
}

/// The latest point of `schedule` from the point `due_ms` on that is not after `now_ms`
/// (`due_ms` itself if it is not passed yet), and how many points before it were passed: on
/// the interval's grid through `due_ms`, or among the cron expression's occurrences.
pub(super) fn latest_point(schedule: &Schedule, due_ms: i64, now_ms: i64) -> (i64, u64) {
    match &schedule.cadence {
        Cadence::Every(interval) => latest_grid_point(due_ms, *interval, now_ms),
        #[cfg(feature = "cron")]
        Cadence::Cron(cron) => cron.latest_not_after_ms(due_ms, now_ms),
    }
}

/// The point of `schedule` that follows the point `point_ms`: an interval later, or the cron
/// expression's next occurrence.
fn point_after(schedule: &Schedule, point_ms: i64) -> Option<i64> {
    match &schedule.cadence {
        Cadence::Every(interval) => Some(point_ms.saturating_add(millis(*interval))),
        #[cfg(feature = "cron")]
        Cadence::Cron(cron) => cron.next_after_ms(point_ms),
    }
}

/// The first point of `schedule` at or after a due time read from a record: the due time
/// itself on an interval (the key's grid goes through it); on a cron expression, its first
/// occurrence at or after it, so that a first run planned `initial_delay` from the store's
/// now, or a due time written for another cadence, waits for an occurrence.
fn point_from(schedule: &Schedule, due_ms: i64) -> Option<i64> {
    match &schedule.cadence {
        Cadence::Every(_) => Some(due_ms),
        #[cfg(feature = "cron")]
        Cadence::Cron(cron) => cron.first_at_or_after_ms(due_ms),
    }
}

/// The latest point of the grid through `due_ms` with step `interval` that is not after
/// `now_ms` (`due_ms` itself if it is not passed yet), and how many points before it were
/// passed.
fn latest_grid_point(due_ms: i64, interval: Duration, now_ms: i64) -> (i64, u64) {
    let step = millis(interval).max(1);
    if now_ms <= due_ms {
        return (due_ms, 0);
    }
    let behind = (now_ms - due_ms) / step;
    (
        due_ms.saturating_add(behind.saturating_mul(step)),
        behind as u64,
    )
}

/// The first multiple of `interval` since the Unix epoch at or after `ms`.
pub(super) fn align_up(ms: i64, interval: Duration) -> i64 {
    let step = millis(interval).max(1);
    let rest = ms.rem_euclid(step);
    if rest == 0 {
        ms
    } else {
        ms.saturating_add(step - rest)
    }
}

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    pub(super) fn record(read_at_ms: i64, next_due_ms: Option<i64>) -> ScheduleRecord {
        ScheduleRecord {
            key: "job".into(),
            read_at_ms,
            anchor_ms: next_due_ms,
            next_due_ms,
            last_run: None,
            paused: None,
            trigger: None,
        }
    }

    pub(super) fn clock(received: Instant, read_at_ms: i64) -> StoreClock {
        StoreClock {
            sent: received,
            received,
            read_at_ms,
            margin_cap: 15 * SEC,
        }
    }

    #[test]
    fn a_stalled_call_leaves_the_store_time_between_its_two_bounds() {
        let sent = Instant::now();
        // The store read its clock at 1,000,000 somewhere in a call it held for 450 ms.
        let stalled = StoreClock {
            received: sent + Duration::from_millis(450),
            ..clock(sent, 1_000_000)
        };
        let later = sent + SEC;
        assert_eq!(stalled.store_ms(later), 1_000_550);
        assert_eq!(stalled.store_ms_at_most(later), 1_001_000);
    }

    #[test]
    fn a_run_late_by_the_leading_bound_moves_the_grid_to_its_start() {
        let every_second = Schedule::every(SEC);
        let grace = Duration::from_millis(200);
        let timing = KeyTiming::first_read(
            1,
            clock(Instant::now(), 0),
            record(0, Some(0)),
            &every_second,
        )
        .unwrap();
        // Asked 150 ms after its point: on the grid, which the store keeps.
        assert_eq!(
            timing.next_after_run(&every_second, 10_000, 10_150, grace),
            Some(NextDue::At(11_000))
        );
        // Asked when the store's clock was at most 446 ms past the point (its trailing estimate
        // may say less, after a stall): the next run is due an interval less the margin its
        // wait gets (a tenth of the interval, within `grace`) after this one's start, as the
        // store commits it, not on the grid 554 ms after.
        let late = timing.next_after_run(&every_second, 10_000, 10_446, grace);
        assert_eq!(late, Some(NextDue::After(Duration::from_millis(900))));
        assert_eq!(due_set_by(late.unwrap(), 10_460), Some(11_360));
        // With a margin under a tenth of the interval, less that margin.
        let short_ttl = timing.next_after_run(&every_second, 10_000, 10_446, grace / 4);
        assert_eq!(short_ttl, Some(NextDue::After(Duration::from_millis(950))));
    }

    #[test]
    fn a_due_time_ahead_is_waited_from_the_answer_with_a_margin_never_early() {
        let now = Instant::now();
        let clock = clock(now, 1_000_000);
        // 5 s ahead: 5 s plus a tenth.
        assert_eq!(
            clock.local(1_005_000),
            now + 5 * SEC + 500 * Duration::from_millis(1)
        );
        // An hour ahead: the margin stops at a tenth of the ttl (1.5 s).
        assert_eq!(
            clock.local(1_000_000 + 3_600_000),
            now + 3600 * SEC + 1500 * Duration::from_millis(1)
        );
        // Past or now: at once.
        assert_eq!(clock.local(999_000), now);
        assert_eq!(clock.store_ms(now + 2 * SEC), 1_002_000);
    }

    #[test]
    fn a_due_time_further_ahead_than_the_schedule_sets_runs_one_interval_from_now() {
        let schedule = Schedule::every(10 * SEC).initial_delay(60 * SEC);
        let due =
            |ahead_ms: i64| sane_due(&record(1_000_000, None), 1_000_000 + ahead_ms, &schedule);
        // Up to the initial delay plus an interval: as written.
        assert_eq!(due(70_000), 1_070_000);
        assert_eq!(due(-5_000), 995_000);
        // Further (a hand-edited year 9999): one interval from the store's now.
        assert_eq!(due(70_001), 1_010_000);
        assert_eq!(due(i64::MAX - 1_000_000), 1_010_000);
    }

    #[test]
    fn a_missed_due_time_runs_once_at_once_or_waits_for_the_next_point() {
        let now = Instant::now();
        let schedule = Schedule::every(10 * SEC);
        // Due at 100 s, read at 135 s: the points 100, 110, 120, 130 passed unrun.
        let once = KeyTiming::first_read(
            1,
            clock(now, 135_000),
            record(135_000, Some(100_000)),
            &schedule,
        )
        .unwrap();
        assert_eq!(
            once.due,
            Some(Due {
                ms: 130_000,
                at: now
            })
        );
        let skip = schedule.clone().catch_up(CatchUp::Skip);
        let skipped = KeyTiming::first_read(
            1,
            clock(now, 135_000),
            record(135_000, Some(100_000)),
            &skip,
        )
        .unwrap();
        assert_eq!(skipped.due.unwrap().ms, 140_000);
        assert!(skipped.due.unwrap().at >= now + 5 * SEC);
        // Not planned yet: nothing to run.
        assert!(KeyTiming::first_read(1, clock(now, 0), record(0, None), &schedule).is_none());
    }

    #[test]
    fn align_moves_the_first_point_ever_to_a_multiple_of_the_interval() {
        assert_eq!(align_up(1_234_567, 10 * SEC), 1_240_000);
        assert_eq!(align_up(1_240_000, 10 * SEC), 1_240_000);
        let now = Instant::now();
        let mut first = record(1_234_000, Some(1_234_567));
        first.anchor_ms = None;
        let aligned = Schedule::every(10 * SEC).align(true);
        let timing = KeyTiming::first_read(1, clock(now, 1_234_000), first, &aligned).unwrap();
        assert_eq!(timing.due.unwrap().ms, 1_240_000);
    }

    #[test]
    fn the_latest_point_not_after_now_and_the_points_passed_before_it() {
        let every = Schedule::every(10 * SEC);
        assert_eq!(latest_point(&every, 100, 50), (100, 0));
        assert_eq!(latest_point(&every, 0, 10_000), (10_000, 1));
        assert_eq!(latest_point(&every, 0, 35_000), (30_000, 3));
    }

    /// Midnight, 1 January 2026, in ms since the Unix epoch.
    #[cfg(feature = "cron")]
    const MIDNIGHT: i64 = 1_767_225_600_000;

    #[cfg(feature = "cron")]
    #[test]
    fn a_cron_due_time_further_ahead_than_its_occurrences_runs_at_the_next_one() {
        let daily = Schedule::cron("0 0 3 * * *");
        let s = |secs: i64| MIDNIGHT + secs * 1000;
        let due = |due_ms: i64| sane_due(&record(s(3600), None), due_ms, &daily);
        // Read at 01:00: today's 03:00 and tomorrow's (a due time written for another
        // cadence, rounded up later) are as written, although both are more than any interval
        // ahead.
        assert_eq!(due(s(3 * 3600)), s(3 * 3600));
        assert_eq!(due(s(27 * 3600)), s(27 * 3600));
        // Further (a hand-edited year 9999): the next occurrence from the store's now.
        assert_eq!(due(s(27 * 3600) + 1), s(3 * 3600));
        assert_eq!(due(i64::MAX - 1), s(3 * 3600));
    }

    #[cfg(feature = "cron")]
    #[test]
    fn a_cron_key_runs_its_occurrences_on_the_stores_clock() {
        let every_ten = Schedule::cron("*/10 * * * * *");
        let s = |secs: i64| MIDNIGHT + secs * 1000;
        // The first run ever, planned an initial delay of 25.5 s from 00:00:00, waits for
        // 00:00:30.
        let now = Instant::now();
        let first = KeyTiming::first_read(
            1,
            clock(now, s(0)),
            record(s(0), Some(s(25) + 500)),
            &every_ten
                .clone()
                .initial_delay(Duration::from_millis(25_500)),
        )
        .unwrap();
        assert_eq!(first.due.unwrap().ms, s(30));
        // Due 00:00:30, read at 00:00:47: 00:00:40 runs at once (once), or 00:00:50 (skip).
        let read = || (clock(now, s(47)), record(s(47), Some(s(30))));
        let (at, rec) = read();
        let once = KeyTiming::first_read(1, at, rec, &every_ten).unwrap();
        assert_eq!(once.due, Some(Due { ms: s(40), at: now }));
        let (at, rec) = read();
        let skip = every_ten.clone().catch_up(CatchUp::Skip);
        assert_eq!(
            KeyTiming::first_read(1, at, rec, &skip)
                .unwrap()
                .due
                .unwrap()
                .ms,
            s(50)
        );
        // The next occurrence after a run, however late it starts: never the grid of a
        // late interval run, never an occurrence again.
        let grace = Duration::from_millis(300);
        assert_eq!(
            once.next_after_run(&every_ten, s(40), s(47), grace),
            Some(NextDue::At(s(50)))
        );
        assert_eq!(latest_point(&every_ten, s(30), s(47)), (s(40), 1));
        assert_eq!(latest_point(&every_ten, s(30), s(29)), (s(30), 0));
        // A point passed without a run (paused): the next occurrence after now.
        let mut paused = once;
        paused.pass(now + 6 * SEC, &every_ten);
        assert_eq!(paused.due.unwrap().ms, s(60));
    }
}
