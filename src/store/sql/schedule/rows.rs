//! How a schedule row is read (checked, every problem an error naming its key) and written:
//! the columns, the `SELECT`s whose rows the decoders take, and the upserts of whole rows.

use super::super::{StoreRow, Tables, backend_error};
use super::{Fenced, ReadRecord};
use crate::store::record::{FORMAT, Record, run_times_problem};
use crate::store::schedule::{OperatorMark, RunRecord, RunResult, ScheduleRecord};
use crate::store::{StoreError, args};

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
    let time = |index: usize, column: &str| match int(index, column)? {
        Some(ms) if !(0..=args::MAX_TIME_MS).contains(&ms) => Err(corrupted(format!(
            "its {column} {ms} is not a time from 1970 to 9999 in ms"
        ))),
        ms => Ok(ms),
    };
    let record = Record {
        anchor: time(2, "anchor")?,
        next_due: time(3, "next_due")?,
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
    let (scheduled_ms, started_ms) = (required(4, "scheduled")?, required(5, "started")?);
    let ended_ms = int(6, "ended")?;
    if let Some(problem) = run_times_problem(seq, scheduled_ms, started_ms, ended_ms) {
        return Err(corrupted(problem));
    }
    Ok(Some(RunRecord {
        seq,
        holder,
        epoch,
        scheduled_ms,
        started_ms,
        ended_ms,
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
        .map_err(backend_error("schedule read"))?
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
        .map_err(backend_error("schedule write"))?
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
