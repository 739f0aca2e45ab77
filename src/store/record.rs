//! The rules every backend applies to a schedule record, as plain functions on plain values:
//! how a next due time is worked out from the store's clock, when a run may start, and what
//! operator commands change. The memory store keeps [`Record`]s directly; the SQL stores read
//! and lock the rows a write changes in one transaction, apply the same functions, and write
//! the rows back (see `store::sql::schedule`), held to the same results by the conformance
//! suite.

use super::schedule::{NextDue, OperatorMark, RunRecord, ScheduleRecord};

/// The record format this build writes and reads. A row with a higher format was written by a
/// newer loopjob and is refused with [`StoreError::NewerRecord`](super::StoreError), never
/// guessed at.
#[cfg_attr(
    not(any(
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql",
        feature = "redis",
        feature = "etcd"
    )),
    allow(dead_code)
)]
pub(crate) const FORMAT: i64 = 1;

/// What is wrong with a run's times as a database holds them, if anything: each must be a
/// store time (1970..=9999 in ms), and a run cannot end before it started. A hand-edited
/// history row is refused as corrupted rather than shown or counted with nonsense times.
#[cfg_attr(
    not(any(
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql",
        feature = "redis",
        feature = "etcd"
    )),
    allow(dead_code)
)]
pub(crate) fn run_times_problem(
    seq: i64,
    scheduled_ms: i64,
    started_ms: i64,
    ended_ms: Option<i64>,
) -> Option<String> {
    let times = [
        ("scheduled", Some(scheduled_ms)),
        ("started", Some(started_ms)),
        ("ended", ended_ms),
    ];
    for (what, ms) in times {
        if let Some(ms) = ms.filter(|ms| !(0..=super::args::MAX_TIME_MS).contains(ms)) {
            return Some(format!(
                "run {seq} has {what} time {ms}, not a time from 1970 to 9999 in ms"
            ));
        }
    }
    match ended_ms {
        Some(ended) if ended < started_ms => Some(format!(
            "run {seq} ended at {ended}, before it started at {started_ms}"
        )),
        _ => None,
    }
}

/// A checked next due time, in milliseconds (see [`NextDue`](super::NextDue)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Unchanged,
    At(i64),
    After(i64),
    OnGrid { anchor: i64, interval: i64 },
}

/// The first point of the grid `anchor + k·interval` (k ≥ 0) strictly after `now`: the anchor
/// itself while it is still ahead. Worked out in 128 bits and clamped, so that no anchor read
/// back from a database, however wrong, can overflow it; an interval below 1 ms counts as 1 ms.
pub(crate) fn grid_after(anchor: i64, interval: i64, now: i64) -> i64 {
    if now < anchor {
        return anchor;
    }
    let (anchor, interval, now) = (
        i128::from(anchor),
        i128::from(interval.max(1)),
        i128::from(now),
    );
    let next = anchor + ((now - anchor) / interval + 1) * interval;
    i64::try_from(next).unwrap_or(i64::MAX)
}

/// The due time that `next` sets on a key whose record has no grid anchor yet, when the store
/// applies it at its time `now`: what a node expects of a start it asked for, worked out by
/// the rules every backend applies. `None` when it sets none: [`NextDue::Unchanged`], or a time
/// out of range, which every store refuses.
pub(crate) fn due_set_by(next: NextDue, now: i64) -> Option<i64> {
    let mut record = Record::default();
    record.set_due(super::args::due(next).ok()?, now);
    record.next_due
}

/// A key's record, without its history rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) anchor: Option<i64>,
    pub(crate) next_due: Option<i64>,
    /// The sequence number of the key's newest run (0 before the first).
    pub(crate) last_seq: i64,
    /// How many runs the last start asked to keep.
    pub(crate) history_limit: i64,
    pub(crate) paused: Option<OperatorMark>,
    pub(crate) trigger: Option<OperatorMark>,
}

impl Record {
    /// Sets the next due time as `due` asks, at store time `now`. A grid keeps the record's
    /// anchor once it has one: the cluster has one grid per key, whoever leads.
    pub(crate) fn set_due(&mut self, due: Due, now: i64) {
        match due {
            Due::Unchanged => {}
            Due::At(at) => self.next_due = Some(at),
            Due::After(delay) => self.next_due = Some(now.saturating_add(delay)),
            Due::OnGrid { anchor, interval } => {
                let anchor = *self.anchor.get_or_insert(anchor);
                self.next_due = Some(grid_after(anchor, interval, now));
            }
        }
    }

    /// Whether a run may start: the key is not paused, or the start answers a pending trigger.
    pub(crate) fn may_start(&self, triggered: bool) -> bool {
        self.paused.is_none() || (triggered && self.trigger.is_some())
    }

    /// Starts a run if [`Record::may_start`]: sets the next due time, takes the next sequence
    /// number (returned), and clears the trigger when `triggered`.
    pub(crate) fn start(
        &mut self,
        due: Due,
        triggered: bool,
        history_limit: i64,
        now: i64,
    ) -> Option<i64> {
        if !self.may_start(triggered) {
            return None;
        }
        self.set_due(due, now);
        self.last_seq = self.last_seq.saturating_add(1);
        self.history_limit = history_limit;
        if triggered {
            self.trigger = None;
        }
        Some(self.last_seq)
    }

    /// The oldest sequence number the history keeps after a start.
    pub(crate) fn oldest_kept(&self) -> i64 {
        self.last_seq
            .saturating_sub(self.history_limit)
            .saturating_add(1)
    }

    /// Pauses the key; a paused key keeps its first mark.
    pub(crate) fn pause(&mut self, by: &str, now: i64) {
        self.paused.get_or_insert_with(|| mark(by, now));
    }

    /// Resumes the key.
    pub(crate) fn resume(&mut self) {
        self.paused = None;
    }

    /// Asks for a run; a pending trigger keeps its first mark.
    pub(crate) fn trigger(&mut self, by: &str, now: i64) {
        self.trigger.get_or_insert_with(|| mark(by, now));
    }

    /// The record as [`LeaseStore::schedules`](super::LeaseStore::schedules) answers it.
    pub(crate) fn to_public(
        &self,
        key: &str,
        read_at_ms: i64,
        last_run: Option<RunRecord>,
    ) -> ScheduleRecord {
        ScheduleRecord {
            key: key.to_owned(),
            read_at_ms,
            anchor_ms: self.anchor,
            next_due_ms: self.next_due,
            last_run,
            paused: self.paused.clone(),
            trigger: self.trigger.clone(),
        }
    }
}

fn mark(by: &str, now: i64) -> OperatorMark {
    OperatorMark {
        by: by.to_owned(),
        at_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_grid_point_is_strictly_after_now() {
        assert_eq!(grid_after(1_000, 100, 500), 1_000);
        assert_eq!(grid_after(1_000, 100, 1_000), 1_100);
        assert_eq!(grid_after(1_000, 100, 1_099), 1_100);
        assert_eq!(grid_after(1_000, 100, 1_100), 1_200);
        assert_eq!(grid_after(1_000, 100, 5_432), 5_500);
        // A corrupted anchor or interval never overflows.
        assert_eq!(grid_after(i64::MIN, 1, i64::MAX - 1), i64::MAX);
        assert_eq!(grid_after(i64::MIN, i64::MAX, 0), i64::MAX - 1);
        assert_eq!(grid_after(0, 0, 5), 6);
    }

    /// What a node expects of a start it asked for: the grid's first point strictly after the
    /// start (the anchor while it is ahead), a fixed time, a wait from the start, or nothing.
    #[test]
    fn the_due_time_a_start_sets_is_worked_out_by_the_records_rules() {
        let on_grid = |anchor_ms| NextDue::OnGrid {
            anchor_ms,
            interval: Duration::from_secs(1),
        };
        assert_eq!(due_set_by(on_grid(10_000), 10_150), Some(11_000));
        assert_eq!(due_set_by(on_grid(10_000), 11_000), Some(12_000));
        assert_eq!(due_set_by(on_grid(10_000), 9_900), Some(10_000));
        assert_eq!(due_set_by(NextDue::At(11_000), 10_150), Some(11_000));
        let after = NextDue::After(Duration::from_millis(800));
        assert_eq!(due_set_by(after, 10_150), Some(10_950));
        assert_eq!(due_set_by(NextDue::Unchanged, 10_150), None);
    }

    #[test]
    fn run_times_must_be_store_times_and_end_after_the_start() {
        assert_eq!(run_times_problem(1, 0, 5, Some(5)), None);
        assert_eq!(run_times_problem(1, 10, 5, None), None);
        assert!(
            run_times_problem(1, -1, 5, None)
                .unwrap()
                .contains("scheduled time -1")
        );
        assert!(
            run_times_problem(2, 0, i64::MAX, None)
                .unwrap()
                .contains("started time")
        );
        assert!(
            run_times_problem(3, 0, 5, Some(-5))
                .unwrap()
                .contains("ended time -5")
        );
        assert!(
            run_times_problem(4, 0, 5, Some(4))
                .unwrap()
                .contains("before it started")
        );
    }

    #[test]
    fn the_anchor_is_set_once() {
        let mut record = Record::default();
        let grid = |anchor| Due::OnGrid {
            anchor,
            interval: 10,
        };
        record.set_due(grid(3), 100);
        assert_eq!((record.anchor, record.next_due), (Some(3), Some(103)));
        record.set_due(grid(5), 100);
        assert_eq!((record.anchor, record.next_due), (Some(3), Some(103)));
    }

    #[test]
    fn a_paused_key_starts_only_for_a_pending_trigger() {
        let mut record = Record::default();
        record.pause("ops", 1);
        assert_eq!(record.start(Due::Unchanged, false, 5, 2), None);
        assert_eq!(record.start(Due::Unchanged, true, 5, 2), None);
        record.trigger("ops", 3);
        assert_eq!(record.start(Due::Unchanged, true, 5, 4), Some(1));
        assert_eq!(record.trigger, None);
        assert_eq!(record.start(Due::Unchanged, true, 5, 5), None);
        record.resume();
        assert_eq!(record.start(Due::After(7), false, 5, 6), Some(2));
        assert_eq!(record.next_due, Some(13));
    }
}
