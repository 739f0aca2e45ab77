//! The cluster schedule of one guarded job on this node: for each lease key it holds, when the
//! key's next run is due (on the cluster's grid for an interval job, at the next occurrence by
//! the store's clock for a cron job), whether an operator paused or triggered it, and the runs
//! under way whose starts the store committed.
//!
//! The key's record in the store is the schedule; this node follows it while it holds the key.
//! On winning a key it reads the record (the elector does, [`RecordsRead`]) and converts the due
//! time, in the store's clock, to a local instant measured from when the answer was
//! *received*, plus a margin of a tenth of the wait (at most a tenth of the lease ttl, like the
//! lease deadline's): the store's clock reached the due time no sooner, so a run never starts
//! early. Every committed start answers with the store's time of the start, which converts the
//! next due time afresh: the margin covers the drift since the last answer, not since the
//! elector's last read, which can be a renew period old (a tenth of that made runs of a short
//! interval late by more than the interval, and passed one point in three). A due time already
//! past is a period nobody ran: [`CatchUp`](crate::CatchUp) says whether it runs once at once
//! or waits for the next grid point. A run that starts later than that margin after its point
//! (a period caught up, a stalled process) moves the grid: the next run is due an interval less
//! the margin after its start, as the store commits it, so that runs of a key, cluster-wide,
//! never start closer than that (DESIGN.md's P6). How late a run is is judged by the store's
//! clock measured from when the last answer's call was *sent*, which never trails it: measured
//! from when the answer came, a call that a stalled store held made a late run look on time,
//! and it kept its grid, 587 ms before its next run (docs/RELIABILITY.md, item 18).
//!
//! A cron job's points are its expression's occurrences, in the store's clock: each run is for
//! the latest occurrence reached and writes the next one after it as the key's due time, so a
//! new leader, whenever it takes over, neither repeats an occurrence nor skips one (unless
//! `catch_up = "skip"` says so; a catch-up runs only the latest missed occurrence, once).
//! A late run does not move them: they are the schedule. A due time that is no occurrence (the
//! first run ever, planned `initial_delay` from the store's now; one written while the job had
//! an interval) is rounded up to the next occurrence.
//!
//! Once it holds a key, the node keeps the key's points itself and only refreshes the
//! conversion and the operator's marks from the elector's periodic reads; a read never moves a
//! due time back, so a stale read cannot start a period twice.
//!
//! A run starts only once the [ledger](crate::guard::ledger) answered that the store committed
//! its start; its end is reported with its outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use key::{Due, KeyTiming, StoreClock, latest_point};

use crate::guard::ledger::{LedgerLine, not_run};
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
    /// Each key asked for, with the point its run is for (store clock).
    keys: Vec<(String, i64)>,
    /// The keys asked for as an operator's trigger, with the trigger's time (store clock).
    triggered: Vec<(String, i64)>,
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
    /// for count. A key whose record could not be read is forgotten: no run of it starts until
    /// a read succeeds again.
    pub(crate) fn records(&mut self, read: RecordsRead, held: &[HeldLease], schedule: &Schedule) {
        for key in &read.unreadable {
            self.keys.remove(key);
        }
        for (epoch, record) in read.records {
            let holds = held
                .iter()
                .any(|lease| lease.key() == record.key && lease.epoch() == epoch);
            if !holds {
                continue;
            }
            let clock = StoreClock {
                sent: read.round_trip.sent,
                received: read.round_trip.received,
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
                    // Waits for the run under way to end (see `tick`).
                    (_, true) if timing.waiting => None,
                    _ => timing.due.filter(|_| enabled).map(|due| due.at),
                }?;
                Some(timing.blocked_until.map_or(at, |blocked| blocked.max(at)))
            })
            .min()
    }

    /// Whether an operator's trigger of a key is pending.
    pub(crate) fn triggered(&self) -> bool {
        self.keys.values().any(|timing| timing.trigger.is_some())
    }

    fn is_starting(&self, key: &str) -> bool {
        self.starting
            .as_ref()
            .is_some_and(|starting| starting.keys.iter().any(|(k, _)| k == key))
    }

    /// The tick at `now`: asks the ledger to start a run for the keys that are due or
    /// triggered, if `may_start`; passes the due points of paused keys, and of keys whose own
    /// run is in flight, without a run. A due key that only the job's runs for other keys hold
    /// back (`job_full`: the job runs as many runs as it may) waits for them.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        may_start: bool,
        job_full: bool,
        schedule: &Schedule,
    ) -> ClusterTick {
        let mut outcome = ClusterTick::default();
        let mut starts = Vec::new();
        let history = self.history;
        let busy = self.starting.is_some();
        let runs = &self.runs;
        // The job's own runs (or a start) hold it, rather than the host's run slots.
        let job_busy = busy || job_full;
        for (key, timing) in &mut self.keys {
            let starting = self.starting.as_ref();
            if busy && starting.is_some_and(|s| s.keys.iter().any(|(k, _)| k == key)) {
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
                let own_run = runs
                    .iter()
                    .any(|(_, keys)| keys.iter().any(|run| run.key == *key));
                if !timing.paused && job_busy && !own_run {
                    // Another key's run (or start) of the job is under way: this key starts
                    // when it ends, late, and its grid moves. Passing its point instead would
                    // starve a partition whose siblings' runs on this node cover its phase
                    // (DESIGN's P7).
                    timing.waiting = true;
                    continue;
                }
                // Not run: the grid moves on (a fixed-delay key waits a whole interval).
                outcome.skipped |= !timing.paused;
                timing.pass(now, schedule);
                continue;
            }
            let now_ms = timing.clock.store_ms(now);
            let (scheduled_ms, next_due) = match (schedule.mode, due) {
                (ScheduleMode::FixedRate, Some(due)) => {
                    let (point, missed) = latest_point(schedule, due.ms, now_ms);
                    // The job's missed ticks: the keys of a partitioned job miss the same
                    // points, which count once.
                    outcome.missed = outcome.missed.max(missed);
                    let grace = self.lease_ttl / 10;
                    let latest_ms = timing.clock.store_ms_at_most(now);
                    let Some(next_due) = timing.next_after_run(schedule, point, latest_ms, grace)
                    else {
                        tracing::warn!(key = %key, "the cron schedule has no occurrence after this one: the key runs no more");
                        timing.due = None;
                        continue;
                    };
                    timing.next_after_start = Some(next_due);
                    (point, next_due)
                }
                (ScheduleMode::FixedRate, None) => (now_ms, NextDue::Unchanged),
                (ScheduleMode::FixedDelay, due) => (
                    due.map_or(now_ms, |due| due.ms),
                    NextDue::After(schedule.tick_interval()),
                ),
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
        let keys = starts
            .iter()
            .map(|s| (s.key.clone(), s.scheduled_ms))
            .collect();
        let triggered = starts
            .iter()
            .filter(|s| s.triggered)
            .filter_map(|s| Some((s.key.clone(), self.keys.get(&s.key)?.trigger?)))
            .collect();
        if self.ledger.start(self.last_request, starts) {
            self.starting = Some(Starting {
                request: self.last_request,
                keys,
                triggered,
                scheduled: now,
            });
            outcome.asked = true;
        } else {
            // The ledger has stopped (the host's task was dropped while this shard ran, or the
            // ledger failed): no start can be committed. The keys wait a retry period, as
            // after a start the store did not commit. Left due, they would fire the next tick
            // at once, and the job's loop would tick again and again without yielding: one
            // worker thread spun at 100%, and the shard could not be aborted.
            for (key, _) in keys {
                if let Some(timing) = self.keys.get_mut(&key) {
                    timing.blocked_until = Some(now + self.retry_every);
                    timing.next_after_start = None;
                }
            }
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
        for (key, _) in starting.keys {
            let Some(timing) = self.keys.get_mut(&key) else {
                continue;
            };
            let committed = started.iter().find(|s| s.key == key);
            let lease = held
                .iter()
                .find(|lease| lease.key() == key && lease.epoch() == timing.epoch);
            match (committed, lease) {
                (Some(committed), Some(lease)) => {
                    let trigger = starting
                        .triggered
                        .iter()
                        .find_map(|(k, at)| (*k == key).then_some(*at));
                    let asked = starting.scheduled;
                    timing.began(asked, now, committed.started_ms, schedule, trigger);
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

    /// The job stopped before it acted on `answer`: each start the store committed is ended
    /// unrun ([`not_run`]), so that the next leader runs its period at once.
    pub(crate) fn abandoned(&mut self, answer: StartAnswer) {
        let Some(starting) = self
            .starting
            .take_if(|starting| starting.request == answer.request)
        else {
            return;
        };
        let ends = answer
            .started
            .into_iter()
            .flatten()
            .filter_map(|run| {
                let (_, point_ms) = starting.keys.iter().find(|(key, _)| *key == run.key)?;
                let epoch = self.keys.get(&run.key)?.epoch;
                Some(not_run(run, epoch, *point_ms))
            })
            .collect();
        self.ledger.end(ends);
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
pub(super) mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::guard::GuardNotice;
    use crate::guard::ledger::Request;
    use crate::guard::notice::RoundTrip;
    use crate::store::{ScheduleRecord, StartedRun};

    const SEC: Duration = Duration::from_secs(1);

    /// A cluster timing of one key, `k`, held at epoch 3, with a start of it in flight; with
    /// the ledger's end of the line, the start's request number, and the point it is for.
    pub(in crate::supervisor) fn a_start_in_flight(
        reply: mpsc::UnboundedSender<GuardNotice>,
    ) -> (ClusterTiming, mpsc::UnboundedReceiver<Request>, u64, i64) {
        let (ledger, mut requests) = mpsc::unbounded_channel();
        let mut cluster = ClusterTiming::new(LedgerLine::new(&ledger, reply), SEC, 10 * SEC, 10);
        let schedule = Schedule::every(SEC);
        let now = Instant::now();
        read_k(&mut cluster, &schedule, now);
        // At store time 6,000 the run is for the 6,000 point (5,000 passed with it).
        let tick = cluster.tick(now + 2 * SEC, true, false, &schedule);
        assert!(tick.asked, "{tick:?}");
        let Ok(Request::Start {
            request, starts, ..
        }) = requests.try_recv()
        else {
            panic!("no start asked for");
        };
        assert_eq!(starts[0].scheduled_ms, 6_000);
        (cluster, requests, request, 6_000)
    }

    /// Gives `cluster` the record of `k`, held at epoch 3, as read at `now`: due at store time
    /// 5,000, read at 4,000.
    fn read_k(cluster: &mut ClusterTiming, schedule: &Schedule, now: Instant) {
        let record = ScheduleRecord {
            key: "k".into(),
            read_at_ms: 4_000,
            anchor_ms: Some(5_000),
            next_due_ms: Some(5_000),
            last_run: None,
            paused: None,
            trigger: None,
        };
        let read = RecordsRead {
            round_trip: RoundTrip {
                sent: now,
                received: now,
            },
            records: vec![(3, record)],
            unreadable: Vec::new(),
        };
        let held = [HeldLease::new("k".into(), 3, None, now + 10 * SEC)];
        cluster.records(read, &held, schedule);
    }

    /// The store's answer that it committed `request`'s start of `k` as run 7.
    pub(in crate::supervisor) fn committed(request: u64) -> StartAnswer {
        StartAnswer {
            request,
            started: Some(vec![StartedRun {
                key: "k".into(),
                seq: 7,
                started_ms: 6_010,
            }]),
        }
    }

    /// The end of `k`'s run 7, which never began.
    pub(in crate::supervisor) fn unrun(point_ms: i64) -> RunEnd {
        RunEnd {
            key: "k".into(),
            epoch: 3,
            seq: 7,
            outcome: RunResult::Cancelled,
            attempts: 0,
            error: None,
            next_due: NextDue::At(point_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_committed_start_abandoned_at_stop_is_ended_unrun_and_due_again_at_its_point() {
        let (reply, _answers) = mpsc::unbounded_channel();
        let (mut cluster, mut requests, request, point_ms) = a_start_in_flight(reply);
        cluster.abandoned(committed(request));
        let Ok(Request::End(ends)) = requests.try_recv() else {
            panic!("the abandoned start was not ended");
        };
        assert_eq!(ends, [unrun(point_ms)]);
        // An answer to no request in flight ends nothing.
        cluster.abandoned(committed(request));
        assert!(requests.try_recv().is_err());
    }

    /// A start the ledger can no longer take (it stopped) leaves its key waiting a retry
    /// period, not due: a due key would fire the job's next tick at once, again and again,
    /// and its loop would never yield (a crash trial of `benches/leases.rs` found a worker
    /// thread spinning so after the leader's host was aborted).
    #[tokio::test(start_paused = true)]
    async fn a_start_the_stopped_ledger_cannot_take_waits_a_retry_period() {
        let (reply, _answers) = mpsc::unbounded_channel();
        let (ledger, requests) = mpsc::unbounded_channel();
        drop(requests);
        let retry_every = SEC;
        let mut cluster =
            ClusterTiming::new(LedgerLine::new(&ledger, reply), retry_every, 10 * SEC, 10);
        let schedule = Schedule::every(SEC);
        let now = Instant::now();
        read_k(&mut cluster, &schedule, now);
        let at = now + 2 * SEC;
        assert!(
            cluster
                .next_tick(false, true)
                .is_some_and(|next| next <= at)
        );
        let tick = cluster.tick(at, true, false, &schedule);
        assert!(!tick.asked, "{tick:?}");
        assert_eq!(cluster.next_tick(false, true), Some(at + retry_every));
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
