//! The rules every backend applies to a schedule record, as plain functions on plain values:
//! how a next due time is worked out from the store's clock, when a run may start, and what
//! operator commands change. The memory store keeps [`Record`]s directly; the SQL stores that
//! read a record in a transaction before they write it (SQLite, MySQL) apply the same
//! functions, and PostgreSQL, which writes in one statement, states the same rules in SQL (its
//! `schedule` module) and is held to them by the conformance suite.

use super::schedule::{OperatorMark, RunRecord, ScheduleRecord};

/// The record format this build writes and reads. A row with a higher format was written by a
/// newer loopjob and is refused with [`StoreError::NewerRecord`](super::StoreError), never
/// guessed at.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
pub(crate) const FORMAT: i64 = 1;

/// A checked next due time, in milliseconds (see [`NextDue`](super::NextDue)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Unchanged,
    At(i64),
    After(i64),
    OnGrid { anchor: i64, interval: i64 },
}

/// The first point of the grid `anchor + k·interval` (k ≥ 0) strictly after `now`: the anchor
/// itself while it is still ahead.
pub(crate) fn grid_after(anchor: i64, interval: i64, now: i64) -> i64 {
    if now < anchor {
        anchor
    } else {
        anchor + ((now - anchor) / interval + 1) * interval
    }
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
        self.last_seq += 1;
        self.history_limit = history_limit;
        if triggered {
            self.trigger = None;
        }
        Some(self.last_seq)
    }

    /// The oldest sequence number the history keeps after a start.
    pub(crate) fn oldest_kept(&self) -> i64 {
        self.last_seq - self.history_limit + 1
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
    use super::*;

    #[test]
    fn the_grid_point_is_strictly_after_now() {
        assert_eq!(grid_after(1_000, 100, 500), 1_000);
        assert_eq!(grid_after(1_000, 100, 1_000), 1_100);
        assert_eq!(grid_after(1_000, 100, 1_099), 1_100);
        assert_eq!(grid_after(1_000, 100, 1_100), 1_200);
        assert_eq!(grid_after(1_000, 100, 5_432), 5_500);
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
