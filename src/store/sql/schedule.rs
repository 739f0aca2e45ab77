//! What the SQL stores share for the cluster schedule: the columns they read, how a row becomes
//! a record or a run (or an error naming its key), and each write's flow as one transaction.
//!
//! Every fenced write (plan, start, end) and every operator command runs as one transaction on
//! a [`ScheduleTx`]: it first reads and locks the rows it will change (the lease rows the caller
//! holds, by the database's clock, with their records), applies the shared rules of
//! [`record`](crate::store::record) to them in Rust, writes the changed rows back in a few
//! batched statements, and commits. So the number of statements does not grow with the batch,
//! a stale epoch changes nothing (its lease row does not match), and the new leader of a key
//! cannot take the lease between the check and the write (the lease row is locked until the
//! commit).

use std::time::Duration;

use async_trait::async_trait;

use super::{StoreRow, Tables, bounded};
use crate::store::args::{CheckedEnd, CheckedPlan, CheckedStart};
use crate::store::record::{FORMAT, Record};
use crate::store::schedule::{OperatorMark, RunRecord, RunResult, ScheduleRecord, StartedRun};
use crate::store::{Plan, RunEnd, RunStart, StoreError, args};

/// A record's columns, on table alias `s`.
pub(crate) const RECORD_COLUMNS: &str = "s.lease_key, s.format, s.anchor, s.next_due, \
     s.last_seq, s.history_limit, s.paused_by, s.paused_at, s.trigger_by, s.trigger_at";
const RECORD_WIDTH: usize = 10;

/// A run's columns, on table alias `r`.
pub(crate) const RUN_COLUMNS: &str = "r.lease_key, r.seq, r.holder, r.epoch, r.scheduled, \
     r.started, r.ended, r.outcome, r.attempts, r.error, r.triggered";

/// The record columns and run columns in the order they are written.
pub(crate) const RECORD_NAMES: &str = "lease_key, format, anchor, next_due, last_seq, \
     history_limit, paused_by, paused_at, trigger_by, trigger_at";
pub(crate) const RUN_NAMES: &str = "lease_key, seq, holder, epoch, scheduled, started, ended, \
     outcome, attempts, error, triggered";

/// `SELECT` of a record with its last run: rows decoded by [`schedule_record`]. The caller
/// adds `WHERE` and the rest; `now` is the dialect's clock expression.
pub(crate) fn select_records(tables: &Tables, now: &str) -> String {
    format!(
        "SELECT {RECORD_COLUMNS}, {now}, {RUN_COLUMNS} FROM {} s \
         LEFT JOIN {} r ON r.lease_key = s.lease_key AND r.seq = s.last_seq",
        tables.schedules, tables.runs
    )
}

/// `SELECT` of a record with every run of its history: rows decoded by [`history`]. The caller
/// adds `WHERE s.lease_key = …` and orders by `r.seq DESC`.
pub(crate) fn select_history(tables: &Tables, now: &str) -> String {
    format!(
        "SELECT {RECORD_COLUMNS}, {now}, {RUN_COLUMNS} FROM {} s \
         LEFT JOIN {} r ON r.lease_key = s.lease_key",
        tables.schedules, tables.runs
    )
}

/// The columns of a fenced read, in order: the lease's key, the store's clock, the record,
/// the run asked for. Rows are decoded by [`fenced`].
pub(crate) fn fenced_columns(now: &str) -> String {
    format!("l.lease_key, {now}, {RECORD_COLUMNS}, {RUN_COLUMNS}")
}

/// A key the caller holds, as a fenced read found it.
#[derive(Debug)]
pub(crate) struct Fenced {
    pub(crate) key: String,
    /// The store's clock at the read.
    pub(crate) now: i64,
    pub(crate) record: Option<Record>,
    /// The run asked for, if its row exists and was started at the caller's epoch.
    pub(crate) run: Option<RunRecord>,
}

/// A key and epoch to fence on, with the run (by sequence number) an end names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FenceRef<'a> {
    pub(crate) key: &'a str,
    pub(crate) epoch: i64,
    pub(crate) seq: Option<i64>,
}

/// A record read by an operator command: the store's clock, the record and its last run.
#[derive(Debug)]
pub(crate) struct ReadRecord {
    pub(crate) now: i64,
    pub(crate) record: Record,
    pub(crate) last_run: Option<RunRecord>,
}

/// One backend's schedule transaction: the reads and batched writes the shared flows need.
/// Dropping it without [`ScheduleTx::commit`] rolls everything back.
#[async_trait]
pub(crate) trait ScheduleTx: Send {
    /// Reads and locks, among `refs`, the lease rows `holder` holds at their epoch and that are
    /// unexpired by the store's clock, with each key's record and the run each ref names (if it
    /// was started at that epoch). Decoding errors name the key.
    async fn fenced(
        &mut self,
        holder: &str,
        refs: &[FenceRef<'_>],
    ) -> Result<Vec<Fenced>, StoreError>;

    /// Reads and locks `key`'s record and last run; `None` if it has no record.
    async fn record(&mut self, key: &str) -> Result<Option<ReadRecord>, StoreError>;

    /// Writes these records whole (inserting the missing ones), with this build's format.
    async fn write_records(&mut self, records: &[(&str, &Record)]) -> Result<(), StoreError>;

    /// Writes these runs whole (inserting the missing ones).
    async fn write_runs(&mut self, runs: &[RunRecord]) -> Result<(), StoreError>;

    /// Deletes the runs of `keys` older than their record's history keeps.
    async fn trim(&mut self, keys: &[&str]) -> Result<(), StoreError>;

    /// Tells subscribers, when the transaction commits, that an operator changed `key`.
    async fn notify(&mut self, key: &str) -> Result<(), StoreError> {
        let _ = key;
        Ok(())
    }

    /// Commits.
    async fn commit(&mut self) -> Result<(), StoreError>;
}

/// An SQL store that opens schedule transactions: what the shared flows below need of it.
#[async_trait]
pub(crate) trait ScheduleStore: Send + Sync {
    /// The bound on every call.
    fn timeout(&self) -> Duration;

    /// Opens a write transaction for `operation`.
    async fn begin(&self, operation: &'static str) -> Result<Box<dyn ScheduleTx + '_>, StoreError>;
}

/// [`LeaseStore::plan`](crate::store::LeaseStore::plan): checks, then one transaction.
pub(crate) async fn plan_with(
    store: &dyn ScheduleStore,
    holder: &str,
    plans: &[Plan],
) -> Result<Vec<String>, StoreError> {
    let holder = args::name("holder", holder)?;
    let plans = args::plans(plans)?;
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    bounded("plan", store.timeout(), async {
        let mut tx = store.begin("plan").await?;
        plan(&mut *tx, holder, &plans).await
    })
    .await
}

/// [`LeaseStore::start_runs`](crate::store::LeaseStore::start_runs): checks, then one
/// transaction.
pub(crate) async fn start_runs_with(
    store: &dyn ScheduleStore,
    holder: &str,
    starts: &[RunStart],
) -> Result<Vec<StartedRun>, StoreError> {
    let holder = args::name("holder", holder)?;
    let starts = args::starts(starts)?;
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    bounded("start_runs", store.timeout(), async {
        let mut tx = store.begin("start_runs").await?;
        start_runs(&mut *tx, holder, &starts).await
    })
    .await
}

/// [`LeaseStore::end_runs`](crate::store::LeaseStore::end_runs): checks, then one transaction.
pub(crate) async fn end_runs_with(
    store: &dyn ScheduleStore,
    holder: &str,
    ends: &[RunEnd],
) -> Result<Vec<String>, StoreError> {
    let holder = args::name("holder", holder)?;
    let ends = args::ends(ends)?;
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    bounded("end_runs", store.timeout(), async {
        let mut tx = store.begin("end_runs").await?;
        end_runs(&mut *tx, holder, &ends).await
    })
    .await
}

/// The operator commands.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Command {
    Pause,
    Resume,
    Trigger,
}

/// An operator command: checks, then one transaction (see [`command`]).
pub(crate) async fn command_with(
    store: &dyn ScheduleStore,
    which: Command,
    key: &str,
    by: &str,
) -> Result<ScheduleRecord, StoreError> {
    let key = args::name("lease key", key)?;
    let by = args::name("operator name", by)?;
    let operation = match which {
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::Trigger => "trigger",
    };
    bounded(operation, store.timeout(), async {
        let mut tx = store.begin(operation).await?;
        command(&mut *tx, key, by, |record, by, now| match which {
            Command::Pause => record.pause(by, now),
            Command::Resume => record.resume(),
            Command::Trigger => record.trigger(by, now),
        })
        .await
    })
    .await
}

/// The element of `batch` (sorted by key) for `key`.
fn find<'b, T>(batch: &'b [T], key: &str, key_of: impl Fn(&T) -> &str) -> Option<&'b T> {
    let index = batch.binary_search_by(|item| key_of(item).cmp(key)).ok()?;
    batch.get(index)
}

/// [`LeaseStore::plan`](crate::store::LeaseStore::plan) on a transaction.
async fn plan(
    tx: &mut dyn ScheduleTx,
    holder: &str,
    plans: &[CheckedPlan<'_>],
) -> Result<Vec<String>, StoreError> {
    let refs: Vec<_> = plans
        .iter()
        .map(|plan| FenceRef {
            key: plan.key,
            epoch: plan.epoch,
            seq: None,
        })
        .collect();
    let mut writes = Vec::new();
    for fenced in tx.fenced(holder, &refs).await? {
        let Some(plan) = find(plans, &fenced.key, |plan| plan.key) else {
            continue;
        };
        let mut record = fenced.record.unwrap_or_default();
        if plan.only_if_unset && record.next_due.is_some() {
            continue;
        }
        record.set_due(plan.due, fenced.now);
        writes.push((plan.key, record));
    }
    writes.sort_unstable_by_key(|(key, _)| *key);
    let records: Vec<_> = writes.iter().map(|(key, record)| (*key, record)).collect();
    tx.write_records(&records).await?;
    tx.commit().await?;
    Ok(writes.into_iter().map(|(key, _)| key.to_owned()).collect())
}

/// [`LeaseStore::start_runs`](crate::store::LeaseStore::start_runs) on a transaction.
async fn start_runs(
    tx: &mut dyn ScheduleTx,
    holder: &str,
    starts: &[CheckedStart<'_>],
) -> Result<Vec<StartedRun>, StoreError> {
    let refs: Vec<_> = starts
        .iter()
        .map(|start| FenceRef {
            key: start.key,
            epoch: start.epoch,
            seq: None,
        })
        .collect();
    let mut records = Vec::new();
    let mut runs = Vec::new();
    for fenced in tx.fenced(holder, &refs).await? {
        let Some(start) = find(starts, &fenced.key, |start| start.key) else {
            continue;
        };
        let mut record = fenced.record.unwrap_or_default();
        let now = fenced.now;
        let Some(seq) = record.start(start.due, start.triggered, start.history_limit, now) else {
            continue;
        };
        records.push((start.key, record));
        runs.push(RunRecord {
            key: start.key.to_owned(),
            seq,
            holder: holder.to_owned(),
            epoch: start.epoch as u64,
            scheduled_ms: start.scheduled,
            started_ms: now,
            ended_ms: None,
            outcome: None,
            attempts: 0,
            error: None,
            triggered: start.triggered,
        });
    }
    records.sort_unstable_by_key(|(key, _)| *key);
    runs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let written: Vec<_> = records.iter().map(|(key, record)| (*key, record)).collect();
    let keys: Vec<_> = records.iter().map(|(key, _)| *key).collect();
    tx.write_records(&written).await?;
    tx.write_runs(&runs).await?;
    tx.trim(&keys).await?;
    tx.commit().await?;
    Ok(runs
        .into_iter()
        .map(|run| StartedRun {
            key: run.key,
            seq: run.seq,
            started_ms: run.started_ms,
        })
        .collect())
}

/// [`LeaseStore::end_runs`](crate::store::LeaseStore::end_runs) on a transaction.
async fn end_runs(
    tx: &mut dyn ScheduleTx,
    holder: &str,
    ends: &[CheckedEnd<'_>],
) -> Result<Vec<String>, StoreError> {
    let refs: Vec<_> = ends
        .iter()
        .map(|end| FenceRef {
            key: end.key,
            epoch: end.epoch,
            seq: Some(end.seq),
        })
        .collect();
    let mut records = Vec::new();
    let mut runs = Vec::new();
    for fenced in tx.fenced(holder, &refs).await? {
        let Some(end) = find(ends, &fenced.key, |end| end.key) else {
            continue;
        };
        let Some(mut record) = fenced.record else {
            continue;
        };
        if let Some(mut run) = fenced.run {
            run.ended_ms.get_or_insert(fenced.now);
            run.outcome = Some(end.outcome);
            run.attempts = u32::try_from(end.attempts).unwrap_or(u32::MAX);
            run.error.clone_from(&end.error);
            runs.push(run);
        }
        record.set_due(end.due, fenced.now);
        records.push((end.key, record));
    }
    records.sort_unstable_by_key(|(key, _)| *key);
    runs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let written: Vec<_> = records.iter().map(|(key, record)| (*key, record)).collect();
    tx.write_records(&written).await?;
    tx.write_runs(&runs).await?;
    tx.commit().await?;
    Ok(records.into_iter().map(|(key, _)| key.to_owned()).collect())
}

/// An operator command on a transaction: reads `key`'s record (or answers
/// [`StoreError::UnknownKey`]), applies `apply`, writes it, notifies, and answers the record.
async fn command(
    tx: &mut dyn ScheduleTx,
    key: &str,
    by: &str,
    apply: impl FnOnce(&mut Record, &str, i64) + Send,
) -> Result<ScheduleRecord, StoreError> {
    let Some(mut read) = tx.record(key).await? else {
        return Err(StoreError::UnknownKey {
            key: key.to_owned(),
        });
    };
    apply(&mut read.record, by, read.now);
    tx.write_records(&[(key, &read.record)]).await?;
    tx.notify(key).await?;
    tx.commit().await?;
    Ok(read.record.to_public(key, read.now, read.last_run))
}

/// The record in columns [`RECORD_COLUMNS`] from `at`, checked; `None` when the key column is
/// NULL (an outer join found no record).
fn record_at(
    row: &impl StoreRow,
    at: usize,
    tables: &Tables,
) -> Result<Option<(String, Record)>, StoreError> {
    let key = match row.text(at) {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(None),
        Err(error) => {
            let problem = format!("its key cannot be read as text ({error})");
            return Err(StoreError::corrupted(&tables.schedules_plain, "?", problem));
        }
    };
    let corrupted = |problem: String| StoreError::corrupted(&tables.schedules_plain, &key, problem);
    let int = |index: usize, column: &str| {
        row.int(at + index).map_err(|error| {
            corrupted(format!(
                "its {column} has a value of the wrong type ({error})"
            ))
        })
    };
    let text = |index: usize, column: &str| {
        row.text(at + index).map_err(|error| {
            corrupted(format!(
                "its {column} has a value of the wrong type ({error})"
            ))
        })
    };
    match int(1, "format")? {
        Some(FORMAT) => {}
        Some(format) if format > FORMAT => {
            return Err(StoreError::NewerRecord {
                table: tables.schedules_plain.clone(),
                key,
                format,
                supported: FORMAT,
            });
        }
        Some(format) => return Err(corrupted(format!("its format {format} is not 1 or more"))),
        None => return Err(corrupted("its format is NULL".to_owned())),
    }
    let count = |index: usize, column: &str| match int(index, column)? {
        Some(value) if value >= 0 => Ok(value),
        Some(value) => Err(corrupted(format!("its {column} {value} is negative"))),
        None => Err(corrupted(format!("its {column} is NULL"))),
    };
    let mark =
        |by: usize, at_column: usize, what: &str| match (text(by, what)?, int(at_column, what)?) {
            (Some(by), Some(at_ms)) if !by.is_empty() => Ok(Some(OperatorMark { by, at_ms })),
            (None, None) => Ok(None),
            _ => Err(corrupted(format!(
                "its {what}_by and {what}_at are not both set (by a non-empty name) or both NULL"
            ))),
        };
    let record = Record {
        anchor: int(2, "anchor")?,
        next_due: int(3, "next_due")?,
        last_seq: count(4, "last_seq")?,
        history_limit: count(5, "history_limit")?,
        paused: mark(6, 7, "paused")?,
        trigger: mark(8, 9, "trigger")?,
    };
    Ok(Some((key, record)))
}

/// The run in columns [`RUN_COLUMNS`] from `at`, checked; `None` when the key column is NULL.
fn run_at(
    row: &impl StoreRow,
    at: usize,
    tables: &Tables,
) -> Result<Option<RunRecord>, StoreError> {
    let key = match row.text(at) {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(None),
        Err(error) => {
            let problem = format!("its key cannot be read as text ({error})");
            return Err(StoreError::corrupted(&tables.runs_plain, "?", problem));
        }
    };
    let corrupted = |problem: String| StoreError::corrupted(&tables.runs_plain, &key, problem);
    let wrong = |column: &str, error: sqlx::Error| {
        corrupted(format!(
            "its {column} has a value of the wrong type ({error})"
        ))
    };
    let int = |index: usize, column: &str| row.int(at + index).map_err(|e| wrong(column, e));
    let required = |index: usize, column: &str| {
        int(index, column)?.ok_or_else(|| corrupted(format!("its {column} is NULL")))
    };
    let seq = required(1, "seq")?;
    let holder = match row.text(at + 2).map_err(|e| wrong("holder", e))? {
        Some(holder) if !holder.is_empty() => holder,
        _ => return Err(corrupted("its holder is NULL or empty".to_owned())),
    };
    let epoch = required(3, "epoch")?;
    let epoch = u64::try_from(epoch)
        .map_err(|_| corrupted(format!("run {seq} has a negative epoch {epoch}")))?;
    let outcome = match row.text(at + 7).map_err(|e| wrong("outcome", e))? {
        Some(name) => Some(RunResult::from_name(&name).ok_or_else(|| {
            corrupted(format!(
                "run {seq} has outcome `{name}`, not one of succeeded, failed, panicked, \
                 timed_out, cancelled"
            ))
        })?),
        None => None,
    };
    let attempts = required(8, "attempts")?;
    let attempts = u32::try_from(attempts)
        .map_err(|_| corrupted(format!("run {seq} has {attempts} attempts")))?;
    let triggered = row
        .flag(at + 10)
        .map_err(|e| wrong("triggered", e))?
        .ok_or_else(|| corrupted("its triggered is NULL".to_owned()))?;
    Ok(Some(RunRecord {
        seq,
        holder,
        epoch,
        scheduled_ms: required(4, "scheduled")?,
        started_ms: required(5, "started")?,
        ended_ms: int(6, "ended")?,
        outcome,
        attempts,
        error: row.text(at + 9).map_err(|e| wrong("error", e))?,
        triggered,
        key,
    }))
}

/// The clock column at `index`.
fn now_at(row: &impl StoreRow, index: usize) -> Result<i64, StoreError> {
    row.int(index)
        .map_err(super::backend_error("schedule read"))?
        .ok_or_else(|| StoreError::Backend {
            operation: "schedule read",
            source: "the database's clock read as NULL".into(),
        })
}

/// A row of [`select_records`]: the record as the store answers it.
pub(crate) fn schedule_record(
    row: &impl StoreRow,
    tables: &Tables,
) -> Result<ScheduleRecord, StoreError> {
    let (key, read) = read_record(row, tables)?;
    Ok(read.record.to_public(&key, read.now, read.last_run))
}

/// A row of [`select_records`] as its key and a [`ReadRecord`].
pub(crate) fn read_record(
    row: &impl StoreRow,
    tables: &Tables,
) -> Result<(String, ReadRecord), StoreError> {
    let Some((key, record)) = record_at(row, 0, tables)? else {
        return Err(StoreError::Backend {
            operation: "schedule read",
            source: "a record row came back without its key".into(),
        });
    };
    let read = ReadRecord {
        now: now_at(row, RECORD_WIDTH)?,
        record,
        last_run: run_at(row, RECORD_WIDTH + 1, tables)?,
    };
    Ok((key, read))
}

/// Upserts of whole records and runs, for the dialects that bind `?` placeholders (SQLite,
/// MySQL): `conflict` turns the list of columns to update into the dialect's clause.
pub(crate) struct Upserts {
    /// `INSERT INTO {schedules} (…) VALUES ` before the rows.
    pub(crate) records_head: String,
    /// The conflict clause after the record rows.
    pub(crate) records_tail: String,
    /// `INSERT INTO {runs} (…) VALUES ` before the rows.
    pub(crate) runs_head: String,
    /// The conflict clause after the run rows.
    pub(crate) runs_tail: String,
}

/// One record row's placeholders (its format is this build's).
pub(crate) const RECORD_ROW: &str = "(?, 1, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Binds per record row.
pub(crate) const RECORD_BINDS: usize = 9;
/// One run row's placeholders.
pub(crate) const RUN_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Binds per run row.
pub(crate) const RUN_BINDS: usize = 11;

impl Upserts {
    /// The upserts on `tables`, with `conflict(key columns, columns to update)` the dialect's
    /// conflict clause.
    pub(crate) fn new(tables: &Tables, conflict: impl Fn(&str, &[&str]) -> String) -> Self {
        const RECORD_UPDATES: [&str; 9] = [
            "format",
            "anchor",
            "next_due",
            "last_seq",
            "history_limit",
            "paused_by",
            "paused_at",
            "trigger_by",
            "trigger_at",
        ];
        const RUN_UPDATES: [&str; 4] = ["ended", "outcome", "attempts", "error"];
        debug_assert_eq!(FORMAT, 1, "RECORD_ROW writes format 1");
        Upserts {
            records_head: format!("INSERT INTO {} ({RECORD_NAMES}) VALUES ", tables.schedules),
            records_tail: conflict("lease_key", &RECORD_UPDATES),
            runs_head: format!("INSERT INTO {} ({RUN_NAMES}) VALUES ", tables.runs),
            runs_tail: conflict("lease_key, seq", &RUN_UPDATES),
        }
    }
}

/// The rows of [`select_history`], newest first: the runs, or [`StoreError::UnknownKey`] when
/// there is no record.
pub(crate) fn history<R: StoreRow>(
    key: &str,
    rows: &[R],
    tables: &Tables,
) -> Result<Vec<RunRecord>, StoreError> {
    if rows.is_empty() {
        return Err(StoreError::UnknownKey {
            key: key.to_owned(),
        });
    }
    let mut runs = Vec::with_capacity(rows.len());
    for row in rows {
        record_at(row, 0, tables)?;
        runs.extend(run_at(row, RECORD_WIDTH + 1, tables)?);
    }
    Ok(runs)
}

/// A row of a fenced read (see [`fenced_columns`]).
pub(crate) fn fenced(row: &impl StoreRow, tables: &Tables) -> Result<Fenced, StoreError> {
    let key = row
        .text(0)
        .map_err(super::backend_error("schedule write"))?
        .unwrap_or_default();
    Ok(Fenced {
        now: now_at(row, 1)?,
        record: record_at(row, 2, tables)?.map(|(_, record)| record),
        run: run_at(row, 2 + RECORD_WIDTH, tables)?,
        key,
    })
}

/// The values of `record` in the order of [`RECORD_NAMES`] after the key, for binding.
pub(crate) struct RecordValues<'a> {
    pub(crate) anchor: Option<i64>,
    pub(crate) next_due: Option<i64>,
    pub(crate) last_seq: i64,
    pub(crate) history_limit: i64,
    pub(crate) paused_by: Option<&'a str>,
    pub(crate) paused_at: Option<i64>,
    pub(crate) trigger_by: Option<&'a str>,
    pub(crate) trigger_at: Option<i64>,
}

impl<'a> RecordValues<'a> {
    pub(crate) fn of(record: &'a Record) -> Self {
        RecordValues {
            anchor: record.anchor,
            next_due: record.next_due,
            last_seq: record.last_seq,
            history_limit: record.history_limit,
            paused_by: record.paused.as_ref().map(|mark| mark.by.as_str()),
            paused_at: record.paused.as_ref().map(|mark| mark.at_ms),
            trigger_by: record.trigger.as_ref().map(|mark| mark.by.as_str()),
            trigger_at: record.trigger.as_ref().map(|mark| mark.at_ms),
        }
    }
}

/// Binds one record row of [`RECORD_ROW`] (a `?` dialect's upsert).
pub(crate) fn bind_record<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    key: &'q str,
    record: &'q Record,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let values = RecordValues::of(record);
    query
        .bind(key)
        .bind(values.anchor)
        .bind(values.next_due)
        .bind(values.last_seq)
        .bind(values.history_limit)
        .bind(values.paused_by)
        .bind(values.paused_at)
        .bind(values.trigger_by)
        .bind(values.trigger_at)
}

/// Binds one run row of [`RUN_ROW`] (a `?` dialect's upsert).
pub(crate) fn bind_run<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    run: &'q RunRecord,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(run.key.as_str())
        .bind(run.seq)
        .bind(run.holder.as_str())
        .bind(run.epoch as i64)
        .bind(run.scheduled_ms)
        .bind(run.started_ms)
        .bind(run.ended_ms)
        .bind(run.outcome.map(RunResult::as_str))
        .bind(i64::from(run.attempts))
        .bind(run.error.as_deref())
        .bind(run.triggered)
}
