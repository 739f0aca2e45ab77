//! The cluster schedule: each lease key's schedule record and run history, kept in the store
//! beside the lease row and timed by the store's clock.
//!
//! A guarded job is one job of the cluster, so its timing belongs to its lease key, not to the
//! process that happens to hold the lease. The record says when the key's next run is due on
//! the cluster's grid, how its last run went and where, and what an operator asked for (a pause,
//! a trigger). Every time in it is the store's clock, in milliseconds since the Unix epoch.
//!
//! The rules every backend keeps:
//!
//! 1. **Fenced writes.** [`LeaseStore::plan`](super::LeaseStore::plan),
//!    [`LeaseStore::start_runs`](super::LeaseStore::start_runs) and
//!    [`LeaseStore::end_runs`](super::LeaseStore::end_runs) change a key's record only when the
//!    caller holds the key's lease at the epoch it names, unexpired, by the store's clock. A
//!    write from any other epoch matches nothing and is left out of the answer.
//! 2. **A start is durable before the run.** `start_runs` commits the run's start (and the next
//!    due time) before answering; the caller starts the body only for the starts answered.
//!    A key that is paused answers no start, unless the start is an operator's trigger.
//! 3. **Batched.** Each method takes a batch of keys and costs one round trip (one statement or
//!    one transaction), whatever the batch's size, like `renew`.
//! 4. **Operator commands are not fenced**: anyone may pause, resume or trigger a key that has a
//!    record; a key without one is [`StoreError::UnknownKey`](super::StoreError).
//! 5. **History is bounded**: a start trims the key's history to the newest `history_limit`
//!    runs in the same round trip; no cleanup job is needed.
//! 6. **Times are checked**: store times lie in 1970..=9999, intervals and delays in 1 ms (0 for
//!    a delay) ..= 100 years, history limits in 1..=100,000; a key named twice in one batch is
//!    [`StoreError::InvalidInput`](super::StoreError). A record in a newer format than this
//!    build knows is [`StoreError::NewerRecord`](super::StoreError), never guessed at.
//! 7. **Rows edited by hand are reported, never guessed at.** Reading a record or a run whose
//!    fields are not what this build writes is [`StoreError::Corrupted`](super::StoreError)
//!    naming the key: a NULL, negative or mistyped count or epoch, a half-set operator mark,
//!    a time (`anchor`, `next_due`, a run's `scheduled`, `started`, `ended`) outside
//!    1970..=9999, a run that ended before it started, an outcome no version knows. Values
//!    within range are read as they are, even when odd: an epoch above the lease's (a run's
//!    end at another epoch matches nothing), or a `next_due` years ahead. No store writes such
//!    a row itself: an end time is never before its run's start, even if the clock was set
//!    back.
//!
//! What a host makes of them: it reads every key's record in one call, and when the store
//! reports one key's record unreadable it reads the others again without it, so one bad row
//! never stops another key; the bad key keeps its lease but runs nothing, with one warning
//! naming it, until the row is repaired or deleted. A `next_due` further ahead than the job's
//! schedule ever sets (its `initial_delay` or one interval, plus one interval) is taken for a
//! hand edit, or an interval shortened since: the key runs one interval from the store's now,
//! with a warning, and that run's start writes a due time on the schedule again. The
//! repository's `docs/RELIABILITY.md` lists every field.

use std::time::Duration;

/// The longest error text a run record keeps, in bytes; longer texts are cut at a character
/// boundary and end with `…`.
pub const MAX_ERROR_LEN: usize = 1024;

/// One lease key's schedule record, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// The lease key the record belongs to.
    pub key: String,
    /// The store's clock when the record was read: what a reader measures `next_due_ms` from.
    pub read_at_ms: i64,
    /// The grid's anchor for fixed-rate jobs: the scheduled time of the key's first run ever.
    pub anchor_ms: Option<i64>,
    /// When the key's next run is due; `None` until the first holder plans it.
    pub next_due_ms: Option<i64>,
    /// The key's most recent run, ended or not.
    pub last_run: Option<RunRecord>,
    /// Set while an operator has the key paused.
    pub paused: Option<OperatorMark>,
    /// Set while an operator's trigger waits for the holder to start a run.
    pub trigger: Option<OperatorMark>,
}

/// Who asked for an operator command, and when by the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMark {
    /// Who asked: a node id, a user name, a tool's name.
    pub by: String,
    /// When the store recorded it.
    pub at_ms: i64,
}

/// One run of a key, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The lease key.
    pub key: String,
    /// The run's number in the key's history: strictly increasing per key.
    pub seq: i64,
    /// The holder that ran it.
    pub holder: String,
    /// The lease epoch it ran under (its fencing token).
    pub epoch: u64,
    /// The grid point it ran for.
    pub scheduled_ms: i64,
    /// When the store committed its start.
    pub started_ms: i64,
    /// When the store recorded its end; `None` while it runs, or if its holder never said.
    pub ended_ms: Option<i64>,
    /// How it ended; `None` while it runs, or if its holder never said.
    pub outcome: Option<RunResult>,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// The last attempt's error, at most [`MAX_ERROR_LEN`] bytes.
    pub error: Option<String>,
    /// Whether an operator's trigger started it.
    pub triggered: bool,
}

impl RunRecord {
    /// Whether its host ended it without running it: the store committed its start as the host
    /// stopped, so it is `cancelled` with no attempt, and its point was due again for the next
    /// leader, whose run for the same `scheduled_ms` follows it in the history.
    ///
    /// ```
    /// # use loopjob::store::RunRecord;
    /// fn runs_that_ran(history: &[RunRecord]) -> usize {
    ///     history.iter().filter(|run| !run.ended_unrun()).count()
    /// }
    /// ```
    pub fn ended_unrun(&self) -> bool {
        self.outcome == Some(RunResult::Cancelled) && self.attempts == 0
    }
}

/// How a run ended, as the history keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunResult {
    /// Its last attempt returned `Ok`.
    Succeeded,
    /// Its last attempt returned an error.
    Failed,
    /// Its last attempt panicked.
    Panicked,
    /// It passed its timeout.
    TimedOut,
    /// It was cancelled: by shutdown, an operator, or the loss of its lease.
    Cancelled,
}

impl RunResult {
    /// The name stored in the database and shown to people: `succeeded`, `failed`, `panicked`,
    /// `timed_out`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Succeeded => "succeeded",
            RunResult::Failed => "failed",
            RunResult::Panicked => "panicked",
            RunResult::TimedOut => "timed_out",
            RunResult::Cancelled => "cancelled",
        }
    }

    /// The result named `name` (see [`RunResult::as_str`]), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            RunResult::Succeeded,
            RunResult::Failed,
            RunResult::Panicked,
            RunResult::TimedOut,
            RunResult::Cancelled,
        ]
        .into_iter()
        .find(|result| result.as_str() == name)
    }
}

/// When a key's next run is due, as a write asks the store to set it. The store works it out
/// by its own clock, so no client clock enters into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextDue {
    /// Leave it as it is.
    Unchanged,
    /// Exactly at this store time (ms since the Unix epoch).
    At(i64),
    /// This long after the store's clock at the write (fixed delay; a first run's initial delay).
    After(Duration),
    /// The first point of the grid `anchor + k·interval` (k ≥ 0) strictly after the store's
    /// clock at the write (fixed rate); the anchor itself while it is still ahead.
    ///
    /// The anchor is set once: the grid uses the record's anchor when it has one, and
    /// `anchor_ms` only to set it when it has none. So every leader continues the same grid,
    /// whatever it passes.
    OnGrid {
        /// The grid's anchor, if the record has none yet.
        anchor_ms: i64,
        /// The grid's step.
        interval: Duration,
    },
}

/// A holder's request to set a key's next due time without starting a run: the first holder
/// of a key plans its first run ever, `initial_delay` from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The key, which the caller holds at `epoch`.
    pub key: String,
    /// The epoch the caller holds.
    pub epoch: u64,
    /// The next due time to set.
    pub next_due: NextDue,
    /// Write only if the record has no next due time yet (creating the record if missing).
    pub only_if_unset: bool,
}

/// A holder's request to start a run of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// The key, which the caller holds at `epoch`.
    pub key: String,
    /// The epoch the caller holds.
    pub epoch: u64,
    /// The grid point this run is for (store time).
    pub scheduled_ms: i64,
    /// The next due time to set as the run starts.
    pub next_due: NextDue,
    /// Whether an operator's trigger asked for this run: it clears the pending trigger, and
    /// starts even while the key is paused if a trigger is pending (so a retried triggered start
    /// cannot run twice while paused).
    pub triggered: bool,
    /// How many runs of the key's history to keep, this one included (1 to 100,000).
    pub history_limit: u32,
}

/// A run whose start the store committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    /// The key.
    pub key: String,
    /// The run's number in the key's history.
    pub seq: i64,
    /// When the store committed the start.
    pub started_ms: i64,
}

/// A holder's report of a run's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// The key, which the caller holds at `epoch`.
    pub key: String,
    /// The epoch the caller holds.
    pub epoch: u64,
    /// The run's number, from [`StartedRun::seq`]. The history's run is updated if it is still
    /// kept and was started at `epoch`; a second end of the same run keeps the first end time.
    pub seq: i64,
    /// How it ended.
    pub outcome: RunResult,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error (the store keeps at most [`MAX_ERROR_LEN`] bytes).
    pub error: Option<String>,
    /// The next due time to set as the run ends (fixed delay: `After(interval)`).
    pub next_due: NextDue,
}
