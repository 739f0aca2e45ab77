//! The cluster schedule of one guarded job on this node: for each lease key it holds, when the
//! key's next run is due on the cluster's grid, whether an operator paused or triggered it, and
//! the runs under way whose starts the store committed.
//!
//! The key's record in the store is the schedule; this node follows it while it holds the key.
//! On winning a key it reads the record (the elector does, [`RecordsRead`]) and converts the due
//! time, in the store's clock, to a local instant measured from when the answer was
//! *received*, plus a margin of a tenth of the wait (at most a tenth of the lease ttl, like the
//! lease deadline's): the store's clock reached the due time no sooner, so a run never starts
//! early. A due time already past is a period nobody ran: [`CatchUp`] says whether it runs once
//! at once or waits for the next grid point. A run that starts later than that margin after
//! its point (a period caught up, a stalled process) moves the grid: the next run is due an
//! interval less the margin after it, so that runs of a key, cluster-wide, never start closer
//! than that (DESIGN.md's P6). From then on the node keeps the grid itself and
//! only refreshes the conversion and the operator's marks from the elector's periodic reads; a
//! read never moves a due time back, so a stale read cannot start a period twice.
//!
//! A run starts only once the [ledger](crate::guard::ledger) answered that the store committed
//! its start; its end is reported with its outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::guard::ledger::LedgerLine;
use crate::guard::{HeldLease, RecordsRead, StartAnswer};
use crate::run::RunReport;
use crate::schedule::{CatchUp, Schedule, ScheduleMode};
use crate::status::{ClusterView, RunOutcome};
use crate::store::schedule::MAX_ERROR_LEN;
use crate::store::{NextDue, RunEnd, RunResult, RunStart, ScheduleRecord};

/// One guarded job's cluster schedule on this node.
pub(crate) struct ClusterTiming {
    ledger: LedgerLine,
    keys: BTreeMap<String, KeyTiming>,
    /// The start request in flight, if any.
    starting: Option<Starting>,
    last_request: u64,
    /// Runs under way, by run id, with the keys whose starts were committed for them.
    runs: Vec<(u64, Vec<RunKey>)>,
    /// How long a key waits after a start the store did not commit.
    retry_every: Duration,
    /// A tenth of it is the most margin a due time gets.
    lease_ttl: Duration,
    history: u32,
}

/// A start request in flight.
struct Starting {
    request: u64,
    keys: Vec<String>,
    /// The local instant of the tick it is for.
    scheduled: Instant,
}

/// A run's key, as its end is reported.
struct RunKey {
    key: String,
    epoch: u64,
    seq: i64,
}

/// What this node knows of one key it holds.
struct KeyTiming {
    epoch: u64,
    clock: StoreClock,
    /// The next run's due time; `None` while a fixed-delay run is under way.
    due: Option<Due>,
    /// The grid's anchor, once the record has one.
    anchor_ms: Option<i64>,
    paused: bool,
    /// A trigger waiting for a run: the store time it was asked at.
    trigger: Option<i64>,
    /// The trigger this node last ran, so that a read from before that start does not run it
    /// again.
    served_trigger: Option<i64>,
    /// After a start the store did not commit, no start is asked before this.
    blocked_until: Option<Instant>,
    /// For a fixed-rate start in flight: the due time the key has once it is committed.
    next_after_start: Option<i64>,
    /// The record as last read, for the status.
    record: ScheduleRecord,
}

/// A due time: in the store's clock, and as a local instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    ms: i64,
    at: Instant,
}

/// How the store's clock maps to this node's, from one read: the store read its clock at
/// `read_at_ms` no later than the local instant `received`.
#[derive(Debug, Clone, Copy)]
struct StoreClock {
    received: Instant,
    read_at_ms: i64,
    /// The largest margin a wait gets (a tenth of the lease ttl).
    margin_cap: Duration,
}

impl StoreClock {
    /// The local instant by which the store's clock has surely reached `ms`: the wait measured
    /// from `received`, plus a tenth of it (at most a tenth of the ttl) for clock drift.
    fn local(&self, ms: i64) -> Instant {
        let ahead = ms.saturating_sub(self.read_at_ms);
        if ahead <= 0 {
            return self.received;
        }
        let ahead = Duration::from_millis(ahead as u64);
        self.received + ahead + ahead.min(self.margin_cap) / 10
    }

    /// The store time at the local instant `at`, never ahead of the store's clock.
    fn store_ms(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.received).as_millis();
        self.read_at_ms
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

/// What a tick did, for the job's counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ClusterTick {
    /// Grid points passed without a run (a stall, or a run still under way).
    pub(crate) missed: u64,
    /// Due keys left for a run in flight.
    pub(crate) skipped: bool,
    /// A start was asked for.
    pub(crate) asked: bool,
}

/// A start the store committed: the run to begin.
pub(crate) struct CommittedStart {
    /// The leases of the keys it runs for.
    pub(crate) leases: Vec<HeldLease>,
    /// The local instant of the tick it is for.
    pub(crate) scheduled: Instant,
    keys: Vec<RunKey>,
}

impl ClusterTiming {
    pub(crate) fn new(
        ledger: LedgerLine,
        retry_every: Duration,
        lease_ttl: Duration,
        history: u32,
    ) -> Self {
        ClusterTiming {
            ledger,
            keys: BTreeMap::new(),
            starting: None,
            last_request: 0,
            runs: Vec::new(),
            retry_every,
            lease_ttl,
            history,
        }
    }

    /// Takes in records the elector read; only those of keys `held` at the epoch they were read
    /// for count.
    pub(crate) fn records(&mut self, read: RecordsRead, held: &[HeldLease], schedule: &Schedule) {
        for (epoch, record) in read.records {
            let holds = held
                .iter()
                .any(|lease| lease.key() == record.key && lease.epoch() == epoch);
            if !holds {
                continue;
            }
            let clock = StoreClock {
                received: read.received,
                read_at_ms: record.read_at_ms,
                margin_cap: self.lease_ttl,
            };
            match self.keys.get_mut(&record.key) {
                Some(known) if known.epoch == epoch => {
                    known.refresh(clock, record, schedule.mode == ScheduleMode::FixedRate)
                }
                _ => {
                    if let Some(timing) = KeyTiming::first_read(epoch, clock, record, schedule) {
                        self.keys.insert(timing.record.key.clone(), timing);
                    }
                }
            }
        }
    }

    /// A lease was lost: its key is no longer this node's to run.
    pub(crate) fn lost(&mut self, key: &str) {
        self.keys.remove(key);
    }

    /// When the next tick is due: the earliest due key, or a pending trigger (unless `busy`,
    /// when a trigger waits for the run in flight to end). A disabled job (`!enabled`) ticks
    /// for triggers only.
    pub(crate) fn next_tick(&self, busy: bool, enabled: bool) -> Option<Instant> {
        let busy = busy || self.starting.is_some();
        self.keys
            .iter()
            .filter(|(key, _)| !self.is_starting(key))
            .filter_map(|(_, timing)| {
                let at = match (timing.trigger, busy) {
                    (Some(_), false) => Some(timing.clock.received),
                    _ => timing.due.filter(|_| enabled).map(|due| due.at),
                }?;
                Some(timing.blocked_until.map_or(at, |blocked| blocked.max(at)))
            })
            .min()
    }

    fn is_starting(&self, key: &str) -> bool {
        self.starting
            .as_ref()
            .is_some_and(|starting| starting.keys.iter().any(|k| k == key))
    }

    /// The tick at `now`: asks the ledger to start a run for the keys that are due or
    /// triggered, if `may_start`; passes the due points of paused keys (and, when a run is in
    /// flight, of every key) without a run.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        may_start: bool,
        schedule: &Schedule,
    ) -> ClusterTick {
        let mut outcome = ClusterTick::default();
        let mut starts = Vec::new();
        let interval = schedule.interval;
        let history = self.history;
        let busy = self.starting.is_some();
        for (key, timing) in &mut self.keys {
            if busy && self.starting.as_ref().is_some_and(|s| s.keys.contains(key)) {
                continue;
            }
            if timing.blocked_until.is_some_and(|blocked| blocked > now) {
                continue;
            }
            let triggered = timing.trigger.is_some() && may_start && !busy;
            let due = timing.due.filter(|due| due.at <= now && schedule.enabled);
            if !triggered && due.is_none() {
                continue;
            }
            if !triggered && (timing.paused || !may_start || busy) {
                // Not run: the grid moves on (a fixed-delay key waits a whole interval).
                outcome.skipped |= !timing.paused;
                timing.pass(now, schedule);
                continue;
            }
            let now_ms = timing.clock.store_ms(now);
            let (scheduled_ms, next_due) = match (schedule.mode, due) {
                (ScheduleMode::FixedRate, Some(due)) => {
                    let (point, missed) = latest_point(due.ms, interval, now_ms);
                    outcome.missed += missed;
                    // Late beyond the conversion's margin (a period caught up, a stall): the
                    // grid goes on from this run, so that the next one is still an interval
                    // (less the margin) after it. On time: the grid's next point.
                    let grace = self.lease_ttl / 10;
                    let next = if now_ms.saturating_sub(point) > millis(grace) + 1 {
                        let next = now_ms.saturating_add(millis(interval - grace));
                        (next, NextDue::After(interval - grace))
                    } else {
                        let next = point.saturating_add(millis(interval));
                        match timing.anchor_ms {
                            None => (
                                next,
                                NextDue::OnGrid {
                                    anchor_ms: point,
                                    interval,
                                },
                            ),
                            Some(_) => (next, NextDue::At(next)),
                        }
                    };
                    timing.next_after_start = Some(next.0);
                    (point, next.1)
                }
                (ScheduleMode::FixedRate, None) => (now_ms, NextDue::Unchanged),
                (ScheduleMode::FixedDelay, due) => {
                    (due.map_or(now_ms, |due| due.ms), NextDue::After(interval))
                }
            };
            starts.push(RunStart {
                key: key.clone(),
                epoch: timing.epoch,
                scheduled_ms,
                next_due,
                triggered,
                history_limit: history,
            });
        }
        if starts.is_empty() {
            return outcome;
        }
        self.last_request += 1;
        let keys = starts.iter().map(|s| s.key.clone()).collect();
        if self.ledger.start(self.last_request, starts) {
            self.starting = Some(Starting {
                request: self.last_request,
                keys,
                scheduled: now,
            });
            outcome.asked = true;
        }
        outcome
    }

    /// The ledger answered a start request: the keys whose starts were committed begin a run
    /// (`None` if none did); the others wait a retry period before asking again.
    pub(crate) fn answered(
        &mut self,
        answer: StartAnswer,
        held: &[HeldLease],
        now: Instant,
        schedule: &Schedule,
        job: &str,
    ) -> Option<CommittedStart> {
        let starting = self
            .starting
            .take_if(|starting| starting.request == answer.request)?;
        let started = answer.started.unwrap_or_default();
        let mut run = CommittedStart {
            leases: Vec::new(),
            scheduled: starting.scheduled,
            keys: Vec::new(),
        };
        for key in starting.keys {
            let Some(timing) = self.keys.get_mut(&key) else {
                continue;
            };
            let committed = started.iter().find(|s| s.key == key);
            let lease = held
                .iter()
                .find(|lease| lease.key() == key && lease.epoch() == timing.epoch);
            match (committed, lease) {
                (Some(committed), Some(lease)) => {
                    timing.began(now, schedule);
                    run.leases.push(lease.clone());
                    run.keys.push(RunKey {
                        key,
                        epoch: timing.epoch,
                        seq: committed.seq,
                    });
                }
                _ => {
                    tracing::warn!(job, key, retry_in = ?self.retry_every, "run not started: the store did not commit its start (store unreachable, key paused, or lease lost)");
                    timing.blocked_until = Some(now + self.retry_every);
                    timing.next_after_start = None;
                }
            }
        }
        (!run.keys.is_empty()).then_some(run)
    }

    /// The run `run_id` began for `start`'s keys.
    pub(crate) fn began(&mut self, run_id: u64, start: CommittedStart) {
        self.runs.push((run_id, start.keys));
    }

    /// A run ended: its end is reported for each of its keys, and a fixed-delay key is due an
    /// interval after it.
    pub(crate) fn ended(&mut self, report: &RunReport, schedule: &Schedule) {
        let Some(index) = self.runs.iter().position(|(id, _)| *id == report.run_id) else {
            return;
        };
        let (_, keys) = self.runs.swap_remove(index);
        let (outcome, error) = result_of(&report.outcome);
        let next_due = match schedule.mode {
            ScheduleMode::FixedRate => NextDue::Unchanged,
            ScheduleMode::FixedDelay => NextDue::After(schedule.interval),
        };
        let ends = keys
            .into_iter()
            .map(|run| {
                if let Some(timing) = self.keys.get_mut(&run.key) {
                    if schedule.mode == ScheduleMode::FixedDelay && timing.epoch == run.epoch {
                        let at = report.ended + schedule.interval;
                        timing.due = Some(Due {
                            ms: timing.clock.store_ms(at),
                            at,
                        });
                    }
                }
                RunEnd {
                    key: run.key,
                    epoch: run.epoch,
                    seq: run.seq,
                    outcome,
                    attempts: report.attempts,
                    error: error.clone(),
                    next_due,
                }
            })
            .collect();
        self.ledger.end(ends);
    }

    /// Whether every key this node runs is paused (and it runs at least one).
    pub(crate) fn all_paused(&self) -> bool {
        !self.keys.is_empty() && self.keys.values().all(|timing| timing.paused)
    }

    /// The cluster's view of the job, from the records last read.
    pub(crate) fn view(&self) -> Option<ClusterView> {
        if self.keys.is_empty() {
            return None;
        }
        Some(ClusterView::from_records(
            self.keys
                .values()
                .map(|timing| timing.record.clone())
                .collect(),
        ))
    }
}

impl KeyTiming {
    /// A key this node just won, from its record: when its next run is due, with catch-up for a
    /// due time already past. `None` while the record has no due time (not planned yet).
    fn first_read(
        epoch: u64,
        clock: StoreClock,
        record: ScheduleRecord,
        schedule: &Schedule,
    ) -> Option<Self> {
        let mut due_ms = record.next_due_ms?;
        let interval = schedule.interval;
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
    fn refresh(&mut self, clock: StoreClock, record: ScheduleRecord, fixed_rate: bool) {
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
    fn began(&mut self, now: Instant, schedule: &Schedule) {
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
    fn pass(&mut self, now: Instant, schedule: &Schedule) {
        let now_ms = self.clock.store_ms(now);
        let ms = match (schedule.mode, self.due) {
            (ScheduleMode::FixedRate, Some(due)) => {
                let (point, _) = latest_point(due.ms, schedule.interval, now_ms);
                point.saturating_add(millis(schedule.interval))
            }
            _ => now_ms.saturating_add(millis(schedule.interval)),
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
fn latest_point(due_ms: i64, interval: Duration, now_ms: i64) -> (i64, u64) {
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
fn align_up(ms: i64, interval: Duration) -> i64 {
    let step = millis(interval).max(1);
    let rest = ms.rem_euclid(step);
    if rest == 0 {
        ms
    } else {
        ms.saturating_add(step - rest)
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// How a run's outcome is kept in the history, with its error text capped.
fn result_of(outcome: &RunOutcome) -> (RunResult, Option<String>) {
    match outcome {
        RunOutcome::Succeeded => (RunResult::Succeeded, None),
        RunOutcome::Failed(error) => (RunResult::Failed, Some(capped(error))),
        RunOutcome::Panicked(message) => (RunResult::Panicked, Some(capped(message))),
        RunOutcome::TimedOut => (RunResult::TimedOut, None),
        RunOutcome::Dropped => (RunResult::Cancelled, None),
    }
}

/// `text`, cut at a character boundary to fit [`MAX_ERROR_LEN`] bytes with its `…`.
fn capped(text: &str) -> String {
    if text.len() <= MAX_ERROR_LEN {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_LEN - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn record(read_at_ms: i64, next_due_ms: Option<i64>) -> ScheduleRecord {
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

    fn clock(received: Instant, read_at_ms: i64) -> StoreClock {
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

    #[test]
    fn error_texts_are_capped_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_ERROR_LEN);
        assert!(cut.ends_with('…'));
        assert_eq!(capped("short"), "short");
    }
}
