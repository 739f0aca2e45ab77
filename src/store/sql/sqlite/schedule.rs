//! The SQLite store's schedule records and run history: the tables, the reads, and the
//! transaction the shared flows of [`sql::schedule`](super::super::schedule) write through.
//!
//! Writes run in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock before the
//! first read: the fenced read and the writes that follow see one state, and no other process
//! can take a lease in between.

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, Sqlite, SqliteConnection};

use super::super::schedule::{
    FenceRef, Fenced, RUN_BINDS, ReadRecord, ScheduleStore, ScheduleTx, Upserts, bind_record,
    bind_run, fenced_columns, select_history, select_records,
};
use super::super::{Tables, backend_error, bounded, repeat, schedule};
use super::{NOW, SqliteStore};
use crate::store::record::Record;
use crate::store::schedule::{RunRecord, ScheduleRecord};
use crate::store::{StoreError, args};

/// SQLite's bound-parameter limit (32,766) over the most parameters one row binds.
const MAX_ROWS_PER_STATEMENT: usize = 2_500;
// No statement binds more than this many rows of at most RUN_BINDS values.
const _: () = assert!(RUN_BINDS * MAX_ROWS_PER_STATEMENT < 32_766);

/// The statements that create the schedule tables (and so migrate a database of the previous
/// schema, which has only the leases and members tables).
pub(super) fn create_tables(tables: &Tables) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (lease_key TEXT NOT NULL PRIMARY KEY, \
         format INTEGER NOT NULL, anchor INTEGER, next_due INTEGER, \
         last_seq INTEGER NOT NULL, history_limit INTEGER NOT NULL, paused_by TEXT, \
         paused_at INTEGER, trigger_by TEXT, trigger_at INTEGER) WITHOUT ROWID; \
         CREATE TABLE IF NOT EXISTS {} (lease_key TEXT NOT NULL, seq INTEGER NOT NULL, \
         holder TEXT NOT NULL, epoch INTEGER NOT NULL, scheduled INTEGER NOT NULL, \
         started INTEGER NOT NULL, ended INTEGER, outcome TEXT, attempts INTEGER NOT NULL, \
         error TEXT, triggered INTEGER NOT NULL, PRIMARY KEY (lease_key, seq)) WITHOUT ROWID",
        tables.schedules, tables.runs
    )
}

/// SQLite's conflict clause: `ON CONFLICT (keys) DO UPDATE SET c = excluded.c, …`.
pub(super) fn on_conflict(keys: &str, columns: &[&str]) -> String {
    let set: Vec<String> = columns
        .iter()
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    format!(" ON CONFLICT ({keys}) DO UPDATE SET {}", set.join(", "))
}

/// One write transaction, on a pooled connection of its own.
///
/// The transaction is opened and committed with plain statements, and a connection whose
/// transaction did not commit (an error, or the caller dropping the call at any `await`: its
/// timeout, or a host that stops with a run start in flight) is closed, never given back to the
/// pool: closing it rolls the transaction back and frees the database's write lock. With sqlx's
/// `Transaction`, a write dropped at shutdown once left its connection holding the write lock
/// (the leases bench found it, a leader running every 10 ms): every other connection's writes
/// then waited out their timeouts, and the handover stalled until the pool was dropped.
/// `tests/store_cancelled_writes.rs` cuts writes off anywhere, and while they wait for the lock.
struct SqliteTx<'s> {
    /// The store's upserts of whole records and runs, made once with the store.
    upserts: &'s Upserts,
    /// `None` once committed.
    conn: Option<PoolConnection<Sqlite>>,
    tables: &'s Tables,
    operation: &'static str,
}

impl SqliteTx<'_> {
    fn tx(&mut self) -> Result<&mut PoolConnection<Sqlite>, StoreError> {
        self.conn.as_mut().ok_or_else(|| StoreError::Backend {
            operation: self.operation,
            source: "the transaction was already committed".into(),
        })
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not committed: close the connection (SQLite rolls back), see above.
            drop(conn.detach());
        }
    }
}

#[async_trait]
impl ScheduleTx for SqliteTx<'_> {
    async fn fenced(
        &mut self,
        holder: &str,
        refs: &[FenceRef<'_>],
    ) -> Result<Vec<Fenced>, StoreError> {
        let (operation, tables) = (self.operation, self.tables);
        let mut found = Vec::with_capacity(refs.len());
        for chunk in refs.chunks(MAX_ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH refs(lease_key, epoch, seq) AS (VALUES {}) \
                 SELECT {} FROM refs f \
                 JOIN {} l ON l.lease_key = f.lease_key AND l.epoch = f.epoch \
                 LEFT JOIN {} s ON s.lease_key = f.lease_key \
                 LEFT JOIN {} r ON r.lease_key = f.lease_key AND r.seq = f.seq \
                 AND r.epoch = f.epoch \
                 WHERE l.holder = ? AND l.expires_at > {NOW}",
                repeat("(?, ?, ?)", chunk.len()),
                fenced_columns(NOW),
                tables.leases,
                tables.schedules,
                tables.runs,
            );
            let mut query = sqlx::query(&sql);
            for fence in chunk {
                query = query.bind(fence.key).bind(fence.epoch).bind(fence.seq);
            }
            let rows = query
                .bind(holder)
                .fetch_all(&mut **self.tx()?)
                .await
                .map_err(backend_error(operation))?;
            for row in &rows {
                found.push(schedule::fenced(row, tables)?);
            }
        }
        Ok(found)
    }

    async fn record(&mut self, key: &str) -> Result<Option<ReadRecord>, StoreError> {
        let (operation, tables) = (self.operation, self.tables);
        let sql = format!("{} WHERE s.lease_key = ?", select_records(tables, NOW));
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&mut **self.tx()?)
            .await
            .map_err(backend_error(operation))?;
        row.map(|row| schedule::read_record(&row, tables).map(|(_, read)| read))
            .transpose()
    }

    async fn write_records(&mut self, records: &[(&str, &Record)]) -> Result<(), StoreError> {
        let operation = self.operation;
        for chunk in records.chunks(MAX_ROWS_PER_STATEMENT) {
            let sql = self.upserts.records_sql(chunk.len());
            let query = chunk
                .iter()
                .fold(sqlx::query(&sql), |query, (key, record)| {
                    bind_record(query, key, record)
                });
            query
                .execute(&mut **self.tx()?)
                .await
                .map_err(backend_error(operation))?;
        }
        Ok(())
    }

    async fn write_runs(&mut self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let operation = self.operation;
        for chunk in runs.chunks(MAX_ROWS_PER_STATEMENT) {
            let sql = self.upserts.runs_sql(chunk.len());
            let query = chunk.iter().fold(sqlx::query(&sql), bind_run);
            query
                .execute(&mut **self.tx()?)
                .await
                .map_err(backend_error(operation))?;
        }
        Ok(())
    }

    async fn trim(&mut self, keys: &[&str]) -> Result<(), StoreError> {
        let (operation, tables) = (self.operation, self.tables);
        for chunk in keys.chunks(MAX_ROWS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM {runs} WHERE lease_key IN ({}) AND seq <= \
                 (SELECT s.last_seq - s.history_limit FROM {} s \
                  WHERE s.lease_key = {runs}.lease_key)",
                repeat("?", chunk.len()),
                tables.schedules,
                runs = tables.runs,
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(*key);
            }
            query
                .execute(&mut **self.tx()?)
                .await
                .map_err(backend_error(operation))?;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        let operation = self.operation;
        let conn: &mut SqliteConnection = self.tx()?;
        conn.execute("COMMIT")
            .await
            .map_err(backend_error(operation))?;
        // Committed: the connection goes back to the pool.
        self.conn = None;
        Ok(())
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    async fn begin(&self, operation: &'static str) -> Result<Box<dyn ScheduleTx + '_>, StoreError> {
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(backend_error(operation))?;
        let mut tx = SqliteTx {
            conn: Some(conn),
            tables: &self.tables,
            upserts: &self.upserts,
            operation,
        };
        let conn: &mut SqliteConnection = tx.tx()?;
        conn.execute("BEGIN IMMEDIATE")
            .await
            .map_err(backend_error(operation))?;
        Ok(Box::new(tx))
    }
}

impl SqliteStore {
    pub(super) async fn read_schedules(
        &self,
        keys: &[String],
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let keys = args::keys(keys)?;
        let mut records = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_ROWS_PER_STATEMENT) {
            let sql = format!(
                "{} WHERE s.lease_key IN ({}) ORDER BY s.lease_key",
                select_records(&self.tables, NOW),
                repeat("?", chunk.len())
            );
            let rows = bounded("schedules", self.timeout, async {
                let mut query = sqlx::query(&sql);
                for key in chunk {
                    query = query.bind(*key);
                }
                query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend_error("schedules"))
            })
            .await?;
            for row in &rows {
                records.push(schedule::schedule_record(row, &self.tables)?);
            }
        }
        Ok(records)
    }

    pub(super) async fn read_list_schedules(
        &self,
        prefix: &str,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let sql = format!(
            "{} WHERE substr(s.lease_key, 1, length(?1)) = ?1 ORDER BY s.lease_key",
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
    ) -> Result<Vec<crate::store::RunRecord>, StoreError> {
        let key = args::name("lease key", key)?;
        let limit = args::history_limit(limit)?;
        let sql = format!(
            "{} WHERE s.lease_key = ? ORDER BY r.seq DESC LIMIT ?",
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
