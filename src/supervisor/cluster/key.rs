//! What a node knows of one lease key it holds on the cluster schedule: the key's due time,
//! in the store's clock and as a local instant, and the arithmetic of its grid (pure, tested
//! here).

use std::time::Duration;

use tokio::time::Instant;

use crate::schedule::{CatchUp, Schedule, ScheduleMode};
use crate::store::ScheduleRecord;

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
    /// For a fixed-rate start in flight: the due time the key has once it is committed.
    pub(super) next_after_start: Option<i64>,
    /// The record as last read, for the status.
    pub(super) record: ScheduleRecord,
}

/// A due time: in the store's clock, and as a local instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Due {
    pub(super) ms: i64,
    pub(super) at: Instant,
}

/// How the store's clock maps to this node's, from one read: the store read its clock at
/// `read_at_ms` no later than the local instant `received`.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreClock {
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

    /// The store time at the local instant `at`, never ahead of the store's clock.
    pub(super) fn store_ms(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.received).as_millis();
        self.read_at_ms
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
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
        let mut due_ms = record.next_due_ms?;
        let interval = schedule.tick_interval();
        let fixed_rate = schedule.mode == ScheduleMode::FixedRate;
        if fixed_rate && schedule.align && record.anchor_ms.is_none() {
            due_ms = align_up(due_ms, interval);
        }
        let read_at = record.read_at_ms;
        let due = if due_ms >= read_at {
            Due {
                ms: due_ms,
                at: clock.local(due_ms),
            }
        } else if fixed_rate {
            let (point, _) = latest_point(due_ms, interval, read_at);
            match schedule.catch_up {
                CatchUp::Once => Due {
                    ms: point,
                    at: clock.received,
                },
                CatchUp::Skip => {
                    let next = point.saturating_add(millis(interval));
                    Due {
                        ms: next,
                        at: clock.local(next),
                    }
                }
            }
        } else {
            match schedule.catch_up {
                CatchUp::Once => Due {
                    ms: due_ms,
                    at: clock.received,
                },
                CatchUp::Skip => {
                    let next = read_at.saturating_add(millis(interval));
                    Due {
                        ms: next,
                        at: clock.local(next),
                    }
                }
            }
        };
        Some(KeyTiming {
            epoch,
            clock,
            due: Some(due),
            anchor_ms: record.anchor_ms,
            paused: record.paused.is_some(),
            trigger: record.trigger.as_ref().map(|mark| mark.at_ms),
            served_trigger: None,
            blocked_until: None,
            next_after_start: None,
            record,
        })
    }

    /// A later read of a key this node has held since: the operator's marks and the clock's
    /// conversion are refreshed; the due time stays this node's (a fixed-rate one is converted
    /// again with the fresher clock).
    pub(super) fn refresh(&mut self, clock: StoreClock, record: ScheduleRecord, fixed_rate: bool) {
        self.clock = clock;
        // A fixed-rate due time is a grid point in the store's clock: if the fresher clock says
        // it comes later here (this clock runs fast), wait for it. Never earlier.
        if let Some(due) = self.due.as_mut().filter(|_| fixed_rate) {
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

    /// A run began under this key at `now`: the trigger is served, the due time moves on.
    pub(super) fn began(&mut self, now: Instant, schedule: &Schedule) {
        self.served_trigger = self.trigger.take().or(self.served_trigger);
        self.blocked_until = None;
        match (schedule.mode, self.next_after_start.take()) {
            (ScheduleMode::FixedRate, Some(ms)) => {
                self.due = Some(Due {
                    ms,
                    at: self.clock.local(ms).max(now),
                })
            }
            // A trigger between two points leaves the grid as it is.
            (ScheduleMode::FixedRate, None) => {}
            (ScheduleMode::FixedDelay, _) => self.due = None,
        }
    }

    /// The due point passed without a run: move to the grid's next point after `now` (fixed
    /// delay: an interval from now).
    pub(super) fn pass(&mut self, now: Instant, schedule: &Schedule) {
        let now_ms = self.clock.store_ms(now);
        let ms = match (schedule.mode, self.due) {
            (ScheduleMode::FixedRate, Some(due)) => {
                let (point, _) = latest_point(due.ms, schedule.tick_interval(), now_ms);
                point.saturating_add(millis(schedule.tick_interval()))
            }
            _ => now_ms.saturating_add(millis(schedule.tick_interval())),
        };
        self.due = Some(Due {
            ms,
            at: self.clock.local(ms).max(now),
        });
    }
}

/// The latest point of the grid through `due_ms` with step `interval` that is not after
/// `now_ms` (`due_ms` itself if it is not passed yet), and how many points before it were
/// passed.
pub(super) fn latest_point(due_ms: i64, interval: Duration, now_ms: i64) -> (i64, u64) {
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
            received,
            read_at_ms,
            margin_cap: 15 * SEC,
        }
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
        assert_eq!(latest_point(100, 10 * SEC, 50), (100, 0));
        assert_eq!(latest_point(0, 10 * SEC, 10_000), (10_000, 1));
        assert_eq!(latest_point(0, 10 * SEC, 35_000), (30_000, 3));
    }
}
