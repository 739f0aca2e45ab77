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

use key::{Due, KeyTiming, StoreClock, latest_point, millis};

use crate::guard::ledger::LedgerLine;
use crate::guard::{HeldLease, RecordsRead, StartAnswer};
use crate::run::RunReport;
use crate::schedule::{Schedule, ScheduleMode};
use crate::status::{ClusterView, RunOutcome};
use crate::store::schedule::MAX_ERROR_LEN;
use crate::store::{NextDue, RunEnd, RunResult, RunStart};

mod key;

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
        let interval = schedule.tick_interval();
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
                    // The job's missed ticks: the keys of a partitioned job miss the same
                    // points, which count once.
                    outcome.missed = outcome.missed.max(missed);
                    // Late beyond the conversion's margin and the job's own jitter (a period
                    // caught up, a stall): the grid goes on from this run, so that the next one
                    // is still an interval (less the margin) after it. On time, jitter
                    // included: the grid's next point, so jitter never moves the grid.
                    let grace = self.lease_ttl / 10;
                    let allowed = millis(grace)
                        .saturating_add(millis(schedule.jitter))
                        .saturating_add(1);
                    let next = if now_ms.saturating_sub(point) > allowed {
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
            ScheduleMode::FixedDelay => NextDue::After(schedule.tick_interval()),
        };
        let ends = keys
            .into_iter()
            .map(|run| {
                if let Some(timing) = self.keys.get_mut(&run.key) {
                    if schedule.mode == ScheduleMode::FixedDelay && timing.epoch == run.epoch {
                        let at = report.ended + schedule.tick_interval();
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

/// How a run's outcome is kept in the history, with its error text capped.
fn result_of(outcome: &RunOutcome) -> (RunResult, Option<String>) {
    match outcome {
        RunOutcome::Succeeded => (RunResult::Succeeded, None),
        RunOutcome::Failed(error) => (RunResult::Failed, Some(capped(error))),
        RunOutcome::Panicked(message) => (RunResult::Panicked, Some(capped(message))),
        RunOutcome::TimedOut => (RunResult::TimedOut, None),
        RunOutcome::Overran => (
            RunResult::TimedOut,
            Some("finished only after its timeout: it kept the thread, so its token could not stop it".to_owned()),
        ),
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

    #[test]
    fn error_texts_are_capped_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_ERROR_LEN);
        assert!(cut.ends_with('…'));
        assert_eq!(capped("short"), "short");
    }
}
