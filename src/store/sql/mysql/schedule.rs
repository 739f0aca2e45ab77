//! The MySQL store's schedule records and run history: the tables, the reads, and the
//! transaction the shared flows of [`sql::schedule`](super::super::schedule) write through.
//!
//! Writes run in a `READ COMMITTED` transaction (no gap locks, so holders creating records side
//! by side do not deadlock) whose fenced read locks the caller's lease rows and the keys'
//! records and runs (`FOR UPDATE`): no other holder can take a lease, and no operator command
//! can change a record, between the read and the commit.

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, MySql, MySqlConnection};

use super::super::schedule::{
    FenceRef, Fenced, RUN_BINDS, ReadRecord, ScheduleStore, ScheduleTx, Upserts, bind_record,
    bind_run, fenced_columns, select_history, select_records,
};
use super::super::{Tables, backend_error, bounded, repeat, schedule};
use super::{MySqlStore, NOW};
use crate::store::record::Record;
use crate::store::schedule::{RunRecord, ScheduleRecord};
use crate::store::{StoreError, args};

/// MySQL's bound-parameter limit (65,535) over the most parameters one row binds.
const MAX_ROWS_PER_STATEMENT: usize = 5_000;
// No statement binds more than this many rows of at most RUN_BINDS values.
const _: () = assert!(RUN_BINDS * MAX_ROWS_PER_STATEMENT < 65_535);

/// The statements that create the schedule tables (and so migrate a database of the previous
/// schema, which has only the leases and members tables). Names are `VARBINARY`, as in the
/// leases table; an error text is at most 1,024 bytes.
pub(super) fn create_tables(tables: &Tables) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (lease_key VARBINARY(255) NOT NULL PRIMARY KEY, \
             format BIGINT NOT NULL, anchor BIGINT NULL, next_due BIGINT NULL, \
             last_seq BIGINT NOT NULL, history_limit BIGINT NOT NULL, \
             paused_by VARBINARY(255) NULL, paused_at BIGINT NULL, \
             trigger_by VARBINARY(255) NULL, trigger_at BIGINT NULL) ENGINE = InnoDB",
            tables.schedules
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (lease_key VARBINARY(255) NOT NULL, \
             seq BIGINT NOT NULL, holder VARBINARY(255) NOT NULL, epoch BIGINT NOT NULL, \
             scheduled BIGINT NOT NULL, started BIGINT NOT NULL, ended BIGINT NULL, \
             outcome VARBINARY(32) NULL, attempts BIGINT NOT NULL, \
             error VARBINARY(1024) NULL, triggered BOOLEAN NOT NULL, \
             PRIMARY KEY (lease_key, seq)) ENGINE = InnoDB",
            tables.runs
        ),
    ]
}

/// MySQL's conflict clause: `ON DUPLICATE KEY UPDATE c = VALUES(c), …`.
pub(super) fn on_conflict(_keys: &str, columns: &[&str]) -> String {
    let set: Vec<String> = columns
        .iter()
        .map(|column| format!("{column} = VALUES({column})"))
        .collect();
    format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
}

/// The statement that opens a write transaction.
const BEGIN: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION";

/// One write transaction, on a pooled connection of its own.
///
/// The transaction is opened and committed with plain statements, and a connection whose
/// transaction did not commit (an error, or the call's timeout dropping it at any `await`,
/// also in the middle of its `START TRANSACTION`) is closed, never given back to the pool: the
/// server then rolls it back and frees its locks. Given back instead, such a connection could
/// carry a transaction the pool does not know of (sqlx counts one only once its begin
/// returned), and every later statement on it (renewals too) would run inside it, uncommitted
/// and holding its locks. The chaos suite met that: a begin cut by the timeout, then error 1568
/// on every schedule write and renewals that never committed.
struct MySqlTx<'s> {
    /// The store's upserts of whole records and runs, made once with the store.
    upserts: &'s Upserts,
    /// `None` once committed.
    conn: Option<PoolConnection<MySql>>,
    tables: &'s Tables,
    operation: &'static str,
}

impl MySqlTx<'_> {
    fn tx(&mut self) -> Result<&mut PoolConnection<MySql>, StoreError> {
        self.conn.as_mut().ok_or_else(|| StoreError::Backend {
            operation: self.operation,
            source: "the transaction was already committed".into(),
        })
    }
}

impl Drop for MySqlTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not committed: close the connection (the server rolls back), see above.
            drop(conn.detach());
        }
    }
}

#[async_trait]
impl ScheduleTx for MySqlTx<'_> {
    async fn fenced(
        &mut self,
        holder: &str,
        refs: &[FenceRef<'_>],
    ) -> Result<Vec<Fenced>, StoreError> {
        let (operation, tables) = (self.operation, self.tables);
        let mut found = Vec::with_capacity(refs.len());
        for chunk in refs.chunks(MAX_ROWS_PER_STATEMENT) {
            let seqs: Vec<(&str, i64)> = chunk
                .iter()
                .filter_map(|fence| Some((fence.key, fence.seq?)))
                .collect();
            let runs_named = if seqs.is_empty() {
                "FALSE".to_owned()
            } else {
                format!("(r.lease_key, r.seq) IN ({})", repeat("(?, ?)", seqs.len()))
            };
            // The plain `IN` lets the server search the primary key for the row values.
            let sql = format!(
                "SELECT {} FROM {} l \
                 LEFT JOIN {} s ON s.lease_key = l.lease_key \
                 LEFT JOIN {} r ON r.lease_key = l.lease_key AND r.epoch = l.epoch \
                 AND {runs_named} \
                 WHERE l.holder = ? AND l.expires_at > {NOW} AND l.lease_key IN ({}) \
                 AND (l.lease_key, l.epoch) IN ({}) FOR UPDATE",
                fenced_columns(NOW),
                tables.leases,
                tables.schedules,
                tables.runs,
                repeat("?", chunk.len()),
                repeat("(?, ?)", chunk.len()),
            );
            let mut query = sqlx::query(&sql);
            for (key, seq) in &seqs {
                query = query.bind(*key).bind(*seq);
            }
            query = query.bind(holder);
            for fence in chunk {
                query = query.bind(fence.key);
            }
            for fence in chunk {
                query = query.bind(fence.key).bind(fence.epoch);
            }
            let rows = query
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
        let sql = format!(
            "{} WHERE s.lease_key = ? FOR UPDATE",
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
                "DELETE r FROM {} r JOIN {} s ON s.lease_key = r.lease_key \
                 WHERE r.lease_key IN ({}) AND r.seq <= s.last_seq - s.history_limit",
                tables.runs,
                tables.schedules,
                repeat("?", chunk.len()),
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
        let conn: &mut MySqlConnection = self.tx()?;
        conn.execute("COMMIT")
            .await
            .map_err(backend_error(operation))?;
        // Committed: the connection goes back to the pool.
        self.conn = None;
        Ok(())
    }
}

#[async_trait]
impl ScheduleStore for MySqlStore {
    fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    async fn begin(&self, operation: &'static str) -> Result<Box<dyn ScheduleTx + '_>, StoreError> {
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(backend_error(operation))?;
        let mut tx = MySqlTx {
            conn: Some(conn),
            tables: &self.tables,
            upserts: &self.upserts,
            operation,
        };
        let conn: &mut MySqlConnection = tx.tx()?;
        conn.execute(BEGIN)
            .await
            .map_err(backend_error(operation))?;
        Ok(Box::new(tx))
    }
}

impl MySqlStore {
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
            "{} WHERE LEFT(s.lease_key, LENGTH(?)) = ? ORDER BY s.lease_key",
            select_records(&self.tables, NOW)
        );
        let rows = bounded("list_schedules", self.timeout, async {
            sqlx::query(&sql)
                .bind(prefix)
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
