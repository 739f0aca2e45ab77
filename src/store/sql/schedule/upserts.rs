//! Upserts of whole schedule rows for the dialects that bind `?` placeholders (SQLite, MySQL):
//! the statement parts and the binding of one row.

use super::{RECORD_NAMES, RUN_NAMES, RecordValues};
use crate::store::record::{FORMAT, Record};
use crate::store::schedule::{RunRecord, RunResult};
use crate::store::sql::Tables;

/// Upserts of whole records and runs, for the dialects that bind `?` placeholders (SQLite,
/// MySQL): `conflict` turns the list of columns to update into the dialect's clause.
#[derive(Debug)]
pub(crate) struct Upserts {
    /// `INSERT INTO {schedules} (…) VALUES ` before the rows.
    records_head: String,
    /// The conflict clause after the record rows.
    records_tail: String,
    /// `INSERT INTO {runs} (…) VALUES ` before the rows.
    runs_head: String,
    /// The conflict clause after the run rows.
    runs_tail: String,
}

/// One record row's placeholders (its format is this build's).
pub(crate) const RECORD_ROW: &str = "(?, 1, ?, ?, ?, ?, ?, ?, ?, ?)";
/// One run row's placeholders.
pub(crate) const RUN_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Binds per run row: the widest row any schedule statement binds (a record binds 9).
pub(crate) const RUN_BINDS: usize = 11;

impl Upserts {
    /// The statement that upserts `rows` records: bind each with [`bind_record`].
    pub(crate) fn records_sql(&self, rows: usize) -> String {
        let values = super::super::repeat(RECORD_ROW, rows);
        format!("{}{values}{}", self.records_head, self.records_tail)
    }

    /// The statement that upserts `rows` runs: bind each with [`bind_run`].
    pub(crate) fn runs_sql(&self, rows: usize) -> String {
        let values = super::super::repeat(RUN_ROW, rows);
        format!("{}{values}{}", self.runs_head, self.runs_tail)
    }

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
