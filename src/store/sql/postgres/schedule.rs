//! The PostgreSQL store's schedule records and run history: the tables, the reads, and the
//! transaction the shared flows of [`sql::schedule`](super::super::schedule) write through.
//!
//! A write's transaction locks the key's record (`FOR UPDATE`, so an operator's command waits
//! or is waited for) and the caller's lease row (`FOR KEY SHARE OF l`: an acquisition changes
//! the epoch, a column of a unique index, so no other holder can take the lease before the
//! commit, while the holder's own renewals and releases go on unblocked), then writes whole
//! batches through `unnest` of arrays: the
//! statements are the same few for one key or ten thousand. Operator commands `NOTIFY` on the
//! channel named after the schedules table (such as `loopjob_schedules`) in the same
//! transaction, so a subscriber hears of them when they commit.

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::super::schedule::{
    FenceRef, Fenced, RECORD_NAMES, RUN_NAMES, ReadRecord, RecordValues, ScheduleStore, ScheduleTx,
    fenced_columns, select_history, select_records,
};
use super::super::{Tables, backend_error, bounded, schedule};
use super::{NOW, PostgresStore};
use crate::store::record::{FORMAT, Record};
use crate::store::schedule::{RunRecord, RunResult, ScheduleRecord};
use crate::store::{StoreError, args};

/// The statements that create the schedule tables (and so migrate a database of the previous
/// schema). Records are rewritten at every run: fillfactor 50 and no index but the primary key
/// keep those updates in place (HOT). A run row is written once and ended once.
pub(super) fn create_tables(tables: &Tables) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (lease_key TEXT COLLATE \"C\" NOT NULL PRIMARY KEY, \
             format BIGINT NOT NULL, anchor BIGINT, next_due BIGINT, last_seq BIGINT NOT NULL, \
             history_limit BIGINT NOT NULL, paused_by TEXT, paused_at BIGINT, trigger_by TEXT, \
             trigger_at BIGINT) WITH (fillfactor = 50)",
            tables.schedules
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (lease_key TEXT COLLATE \"C\" NOT NULL, \
             seq BIGINT NOT NULL, holder TEXT NOT NULL, epoch BIGINT NOT NULL, \
             scheduled BIGINT NOT NULL, started BIGINT NOT NULL, ended BIGINT, outcome TEXT, \
             attempts BIGINT NOT NULL, error TEXT, triggered BOOLEAN NOT NULL, \
             PRIMARY KEY (lease_key, seq)) WITH (fillfactor = 70)",
            tables.runs
        ),
    ]
}

/// `SET c = EXCLUDED.c, …` for `columns`.
fn excluded(columns: &[&str]) -> String {
    let set: Vec<String> = columns
        .iter()
        .map(|column| format!("{column} = EXCLUDED.{column}"))
        .collect();
    set.join(", ")
}

/// The statements a new leader's first run waits for: the read of its keys' records, and those
/// of the start's (and the end's) transaction, each with its number of parameters, which
/// `initialise` plans ahead (see [`super::plan_ahead`]).
pub(super) fn hot_statements(tables: &Tables) -> [(String, usize); 5] {
    [
        (read_sql(tables), 1),
        (fenced_sql(tables), 4),
        (write_records_sql(tables), 9),
        (write_runs_sql(tables), 11),
        (trim_sql(tables), 1),
    ]
}

/// The records of the keys `$1`.
fn read_sql(tables: &Tables) -> String {
    format!(
        "{} WHERE s.lease_key = ANY($1) ORDER BY s.lease_key",
        select_records(tables, NOW)
    )
}

/// The records of the keys `$2` that the holder `$1` holds at the epochs `$3`, with the runs
/// `$4`, locked for the transaction.
///
/// The records are locked first, in key order, as operator commands lock them; an outer join
/// cannot lock its nullable side, so they are locked in their own CTE.
fn fenced_sql(tables: &Tables) -> String {
    format!(
        "WITH locked AS MATERIALIZED (SELECT * FROM {schedules} \
             WHERE lease_key = ANY($2) ORDER BY lease_key FOR UPDATE) \
         SELECT {columns} \
         FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS f(lease_key, epoch, seq) \
         JOIN {leases} l ON l.lease_key = f.lease_key AND l.epoch = f.epoch \
         LEFT JOIN locked s ON s.lease_key = f.lease_key \
         LEFT JOIN {runs} r ON r.lease_key = f.lease_key AND r.seq = f.seq \
         AND r.epoch = f.epoch \
         WHERE l.holder = $1 AND l.expires_at > {NOW} \
         FOR KEY SHARE OF l",
        schedules = tables.schedules,
        columns = fenced_columns(NOW),
        leases = tables.leases,
        runs = tables.runs,
    )
}

/// Upserts whole records, one per element of the arrays.
fn write_records_sql(tables: &Tables) -> String {
    format!(
        "INSERT INTO {} ({RECORD_NAMES}) \
         SELECT k, {FORMAT}, a, d, q, h, pb, pa, tb, ta FROM unnest($1::text[], \
         $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], \
         $8::text[], $9::bigint[]) AS v(k, a, d, q, h, pb, pa, tb, ta) \
         ON CONFLICT (lease_key) DO UPDATE SET {}",
        tables.schedules,
        excluded(&[
            "format",
            "anchor",
            "next_due",
            "last_seq",
            "history_limit",
            "paused_by",
            "paused_at",
            "trigger_by",
            "trigger_at",
        ]),
    )
}

/// Inserts runs, or updates their ends, one per element of the arrays.
fn write_runs_sql(tables: &Tables) -> String {
    format!(
        "INSERT INTO {} ({RUN_NAMES}) SELECT * FROM unnest($1::text[], $2::bigint[], \
         $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], \
         $9::bigint[], $10::text[], $11::boolean[]) \
         ON CONFLICT (lease_key, seq) DO UPDATE SET {}",
        tables.runs,
        excluded(&["ended", "outcome", "attempts", "error"]),
    )
}

/// Trims the histories of the keys `$1` to their limits.
fn trim_sql(tables: &Tables) -> String {
    format!(
        "DELETE FROM {} r USING {} s WHERE s.lease_key = ANY($1) \
         AND r.lease_key = s.lease_key AND r.seq <= s.last_seq - s.history_limit",
        tables.runs, tables.schedules
    )
}

/// One write transaction.
struct PgTx<'s> {
    tx: Option<Transaction<'static, Postgres>>,
    tables: &'s Tables,
    operation: &'static str,
}

impl PgTx<'_> {
    fn tx(&mut self) -> Result<&mut Transaction<'static, Postgres>, StoreError> {
        self.tx.as_mut().ok_or_else(|| StoreError::Backend {
            operation: self.operation,
            source: "the transaction was already committed".into(),
        })
    }
}

#[async_trait]
impl ScheduleTx for PgTx<'_> {
    async fn fenced(
        &mut self,
        holder: &str,
        refs: &[FenceRef<'_>],
    ) -> Result<Vec<Fenced>, StoreError> {
        let (operation, tables) = (self.operation, self.tables);
        let keys: Vec<&str> = refs.iter().map(|fence| fence.key).collect();
        let epochs: Vec<i64> = refs.iter().map(|fence| fence.epoch).collect();
        let seqs: Vec<Option<i64>> = refs.iter().map(|fence| fence.seq).collect();
        let rows = sqlx::query(&fenced_sql(tables))
            .bind(holder)
            .bind(&keys)
            .bind(&epochs)
            .bind(&seqs)
            .fetch_all(&mut **self.tx()?)
            .await
            .map_err(backend_error(operation))?;
        rows.iter()
            .map(|row| schedule::fenced(row, tables))
            .collect()
    }

    async fn record(&mut self, key: &str) -> Result<Option<ReadRecord>, StoreError> {
        let (operation, tables) = (self.operation, self.tables);
        let sql = format!(
            "{} WHERE s.lease_key = $1 FOR UPDATE OF s",
            select_records(tables, NOW)
        );
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&mut **self.tx()?)
            .await
            .map_err(backend_error(operation))?;
        row.map(|row| schedule::read_record(&row, tables).map(|(_, read)| read))
            .transpose()
    }

    async fn write_records(&mut self, records: &[(&str, &Record)]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let operation = self.operation;
        let values: Vec<_> = records
            .iter()
            .map(|(key, record)| (*key, RecordValues::of(record)))
            .collect();
        let column = |get: fn(&RecordValues<'_>) -> Option<i64>| -> Vec<Option<i64>> {
            values.iter().map(|(_, v)| get(v)).collect()
        };
        let keys: Vec<&str> = values.iter().map(|(key, _)| *key).collect();
        sqlx::query(&write_records_sql(self.tables))
            .bind(&keys)
            .bind(column(|v| v.anchor))
            .bind(column(|v| v.next_due))
            .bind(column(|v| Some(v.last_seq)))
            .bind(column(|v| Some(v.history_limit)))
            .bind(values.iter().map(|(_, v)| v.paused_by).collect::<Vec<_>>())
            .bind(column(|v| v.paused_at))
            .bind(values.iter().map(|(_, v)| v.trigger_by).collect::<Vec<_>>())
            .bind(column(|v| v.trigger_at))
            .execute(&mut **self.tx()?)
            .await
            .map_err(backend_error(operation))?;
        Ok(())
    }

    async fn write_runs(&mut self, runs: &[RunRecord]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let operation = self.operation;
        let ints = |get: fn(&RunRecord) -> i64| -> Vec<i64> { runs.iter().map(get).collect() };
        let texts = |get: fn(&RunRecord) -> Option<&str>| -> Vec<Option<&str>> {
            runs.iter().map(get).collect()
        };
        sqlx::query(&write_runs_sql(self.tables))
            .bind(texts(|run| Some(run.key.as_str())))
            .bind(ints(|run| run.seq))
            .bind(texts(|run| Some(run.holder.as_str())))
            .bind(ints(|run| run.epoch as i64))
            .bind(ints(|run| run.scheduled_ms))
            .bind(ints(|run| run.started_ms))
            .bind(runs.iter().map(|run| run.ended_ms).collect::<Vec<_>>())
            .bind(texts(|run| run.outcome.map(RunResult::as_str)))
            .bind(ints(|run| i64::from(run.attempts)))
            .bind(texts(|run| run.error.as_deref()))
            .bind(runs.iter().map(|run| run.triggered).collect::<Vec<_>>())
            .execute(&mut **self.tx()?)
            .await
            .map_err(backend_error(operation))?;
        Ok(())
    }

    async fn trim(&mut self, keys: &[&str]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let operation = self.operation;
        sqlx::query(&trim_sql(self.tables))
            .bind(keys)
            .execute(&mut **self.tx()?)
            .await
            .map_err(backend_error(operation))?;
        Ok(())
    }

    async fn notify(&mut self, key: &str) -> Result<(), StoreError> {
        let operation = self.operation;
        let channel = self.tables.schedules_plain.clone();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(key)
            .execute(&mut **self.tx()?)
            .await
            .map_err(backend_error(operation))?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        let operation = self.operation;
        if let Some(tx) = self.tx.take() {
            tx.commit().await.map_err(backend_error(operation))?;
        }
        Ok(())
    }
}

#[async_trait]
impl ScheduleStore for PostgresStore {
    fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    async fn begin(&self, operation: &'static str) -> Result<Box<dyn ScheduleTx + '_>, StoreError> {
        let tx = self.pool.begin().await.map_err(backend_error(operation))?;
        Ok(Box::new(PgTx {
            tx: Some(tx),
            tables: &self.tables,
            operation,
        }))
    }
}

impl PostgresStore {
    pub(super) async fn read_schedules(
        &self,
        keys: &[String],
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let keys = args::keys(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = read_sql(&self.tables);
        let rows = bounded("schedules", self.timeout, async {
            sqlx::query(&sql)
                .bind(&keys)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error("schedules"))
        })
        .await?;
        rows.iter()
            .map(|row| schedule::schedule_record(row, &self.tables))
            .collect()
    }

    pub(super) async fn read_list_schedules(
        &self,
        prefix: &str,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let sql = format!(
            "{} WHERE starts_with(s.lease_key, $1) ORDER BY s.lease_key",
            select_records(&self.tables, NOW)
        );
        let rows = bounded("list_schedules", self.timeout, async {
            sqlx::query(&sql)
                .bind(prefix)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error("list_schedules"))
        })
        .await?;
        rows.iter()
            .map(|row| schedule::schedule_record(row, &self.tables))
            .collect()
    }

    pub(super) async fn read_history(
        &self,
        key: &str,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let key = args::name("lease key", key)?;
        let limit = args::history_limit(limit)?;
        let sql = format!(
            "{} WHERE s.lease_key = $1 ORDER BY r.seq DESC LIMIT $2",
            select_history(&self.tables, NOW)
        );
        let rows = bounded("history", self.timeout, async {
            sqlx::query(&sql)
                .bind(key)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error("history"))
        })
        .await?;
        schedule::history(key, &rows, &self.tables)
    }
}
