//! The MySQL and MariaDB lease store: many hosts, with the fewest round trips a dialect without
//! `UPDATE … RETURNING` allows.

mod schedule;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlRow};
use sqlx::{Executor, Row};

use super::schedule::{self as shared, Command, Upserts};
use super::{
    CORRUPT_ROW, MEMBER_RETENTION_MS, StoreRow, Tables, backend_error, bounded, give_back, lease,
    leases, members, open_warm, pool_options, repeat, statuses, ttl,
};
use crate::store::{
    Lease, LeaseRef, LeaseStatus, LeaseStore, Member, Plan, RunEnd, RunRecord, RunStart,
    ScheduleRecord, StartedRun, StoreError, StoreOptions, args,
};

/// The database's clock in milliseconds since the Unix epoch, fixed for the whole statement.
/// Exact because every connection sets `time_zone = '+00:00'` (no daylight-saving folds).
const NOW: &str = "CAST(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)";

/// MySQL allows 65,535 bound parameters per statement: renew and release bind two per lease,
/// try_acquire three per key.
const MAX_LEASES_PER_STATEMENT: usize = 32_000;
const MAX_KEYS_PER_STATEMENT: usize = 20_000;

/// A lease store in MySQL 8 or MariaDB 10.11 (feature `mysql`), for replicas on many hosts.
///
/// Names are stored as `VARBINARY`, so keys compare byte for byte (no case folding or trailing
/// space padding from a collation). Neither server has `UPDATE … RETURNING`, so a call that
/// changes rows reads them back with a second statement: `renew` is one `UPDATE` plus, if it
/// matched anything, one `SELECT` — two round trips whatever the number of leases. `try_acquire`
/// first reads the keys' rows; when none can be taken (the usual poll of a follower) that one
/// read is the whole call; otherwise a conditional `UPDATE` takes over, an `INSERT IGNORE`
/// creates missing keys, and a `SELECT` reads what was won. Each statement is atomic and checks
/// its own conditions, so races between them only make a call win less, never wrongly. A
/// membership heartbeat is one round trip: its three statements go as one query.
///
/// Schedule writes (plan, starts, ends, operator commands) are each one `READ COMMITTED`
/// transaction of a few statements, whatever the batch's size. It locks the caller's lease rows
/// (`FOR UPDATE`) until it commits, so that no other holder can take them in between: the
/// holder's own renewal of those leases waits for it too (a few milliseconds; MySQL has no lock
/// that blocks a takeover but not a renewal, as PostgreSQL's store uses).
///
/// Connections set `time_zone = '+00:00'`, `innodb_lock_wait_timeout` to the operation
/// timeout (in whole seconds, at least 1) and, on MariaDB, `idle_transaction_timeout` to the
/// operation timeout rounded up to whole seconds: the server then ends a schedule write whose
/// client froze inside it (SIGSTOP, a suspended VM, a network gone silent), which would
/// otherwise keep the lease row locked, and every takeover waiting, until the connection ends.
/// MySQL 8 has no timeout for an idle transaction alone: there a frozen holder's takeover can
/// come late by as long as the server takes to notice the connection is gone. Set the same on
/// a pool you pass to [`MySqlStore::with_pool`].
#[derive(Debug)]
pub struct MySqlStore {
    pool: MySqlPool,
    tables: Tables,
    /// The schedule's upserts of whole rows, built once from the table names.
    upserts: Upserts,
    timeout: Duration,
}

impl MySqlStore {
    /// A store for `url` (`mysql://user:password@host:port/database`; `mariadb://` is accepted
    /// too), connecting lazily: no I/O happens until the first call. Must be called within a
    /// Tokio runtime.
    pub fn connect_lazy(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let url = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        let connect = MySqlConnectOptions::from_str(&url)
            .map_err(|error| StoreError::invalid("MySQL URL", error.to_string()))?
            .timezone(Some("+00:00".to_owned()));
        let timeout = options.get_operation_timeout();
        let lock_wait = timeout.as_secs().max(1);
        // Whole seconds, never shorter than a call may take.
        let idle = timeout.as_millis().div_ceil(1000).max(1);
        let pool = pool_options(&options)
            .after_connect(move |connection: &mut sqlx::MySqlConnection, _| {
                Box::pin(async move {
                    // A schedule write is a short transaction holding its lease row's lock: a
                    // client frozen inside one (a paused VM, SIGSTOP, a silent network) would
                    // keep every other node from taking the lease until its connection ends.
                    // MariaDB (10.3 on) ends a transaction idle for as long as any one call may
                    // take; MySQL reads the executable comment as a comment and has no such
                    // timeout.
                    let set = format!(
                        "SET SESSION innodb_lock_wait_timeout = {lock_wait} \
                         /*M!100300 , idle_transaction_timeout = {idle} */"
                    );
                    connection.execute(set.as_str()).await.map(drop)
                })
            })
            .connect_lazy_with(connect);
        MySqlStore::with_pool(pool, options)
    }

    /// A store on a pool you already have (its connections must use `time_zone = '+00:00'`, as
    /// sqlx sets by default). Every call is bounded by [`StoreOptions::operation_timeout`].
    pub fn with_pool(pool: MySqlPool, options: StoreOptions) -> Result<Self, StoreError> {
        let tables = Tables::new(options.get_table_prefix(), '`')?;
        Ok(MySqlStore {
            pool,
            upserts: Upserts::new(&tables, schedule::on_conflict),
            tables,
            timeout: options.get_operation_timeout(),
        })
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Reads the rows of `keys` (with the store's clock as the fifth column) whose holder, if
    /// `holder` is given, is `holder` and which are unexpired.
    async fn read(
        &self,
        operation: &'static str,
        keys: &[&str],
        holder: Option<&str>,
    ) -> Result<Vec<MySqlRow>, StoreError> {
        let mut sql = format!(
            "SELECT lease_key, holder, epoch, expires_at, {NOW} FROM {} WHERE lease_key IN ({})",
            self.tables.leases,
            repeat("?", keys.len())
        );
        if holder.is_some() {
            sql.push_str(&format!(" AND holder = ? AND expires_at > {NOW}"));
        }
        let mut query = sqlx::query(&sql);
        for key in keys {
            query = query.bind(*key);
        }
        if let Some(holder) = holder {
            query = query.bind(holder);
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(backend_error(operation))
    }

    /// One chunk of [`LeaseStore::try_acquire`]: returns the won rows.
    async fn acquire_chunk(
        &self,
        holder: &str,
        keys: &[&str],
        ttl: i64,
        free_for: i64,
    ) -> Result<Vec<MySqlRow>, StoreError> {
        let error = backend_error("try_acquire");
        let mut absent: BTreeSet<&str> = keys.iter().copied().collect();
        let mut takeable = Vec::new();
        for row in self.read("try_acquire", keys, None).await? {
            let now: i64 = row.try_get(4).map_err(&error)?;
            let lease = lease(&row, &self.tables)?;
            if let Some(key) = absent.take(lease.key.as_str()) {
                if lease.expires_at_ms <= now.saturating_sub(free_for) || lease.holder == holder {
                    takeable.push(key);
                }
            }
        }
        let mut changed = 0;
        if !takeable.is_empty() {
            let sql = format!(
                "UPDATE {} t SET t.holder = ?, t.epoch = t.epoch + 1, t.expires_at = {NOW} + ? \
                 WHERE t.lease_key IN ({}) AND (t.expires_at <= {NOW} - ? OR t.holder = ?) \
                 AND NOT {CORRUPT_ROW}",
                self.tables.leases,
                repeat("?", takeable.len())
            );
            let mut query = sqlx::query(&sql).bind(holder).bind(ttl);
            for key in &takeable {
                query = query.bind(*key);
            }
            let done = query
                .bind(free_for)
                .bind(holder)
                .execute(&self.pool)
                .await
                .map_err(&error)?;
            changed += done.rows_affected();
        }
        if !absent.is_empty() {
            let sql = format!(
                "INSERT IGNORE INTO {} (lease_key, holder, epoch, expires_at) VALUES {}",
                self.tables.leases,
                repeat(&format!("(?, ?, 1, {NOW} + ?)"), absent.len())
            );
            let mut query = sqlx::query(&sql);
            for key in &absent {
                query = query.bind(*key).bind(holder).bind(ttl);
            }
            changed += query
                .execute(&self.pool)
                .await
                .map_err(&error)?
                .rows_affected();
        }
        if changed == 0 {
            return Ok(Vec::new());
        }
        takeable.extend(absent);
        self.read("try_acquire", &takeable, Some(holder)).await
    }
}

impl StoreRow for MySqlRow {
    /// Names are VARBINARY: bytes, decoded lossily (the store only ever writes UTF-8).
    fn text(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        let bytes: Option<Vec<u8>> = self.try_get(index)?;
        Ok(bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(index)
    }

    fn flag(&self, index: usize) -> Result<Option<bool>, sqlx::Error> {
        self.try_get(index)
    }
}

#[async_trait]
impl LeaseStore for MySqlStore {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    async fn initialise(&self) -> Result<(), StoreError> {
        let leases = format!(
            "CREATE TABLE IF NOT EXISTS {} (lease_key VARBINARY(255) NOT NULL PRIMARY KEY, \
             holder VARBINARY(255) NOT NULL, epoch BIGINT NOT NULL, \
             expires_at BIGINT NOT NULL) ENGINE = InnoDB",
            self.tables.leases
        );
        let members = format!(
            "CREATE TABLE IF NOT EXISTS {} (scope VARBINARY(255) NOT NULL, \
             member VARBINARY(255) NOT NULL, expires_at BIGINT NOT NULL, \
             PRIMARY KEY (scope, member)) ENGINE = InnoDB",
            self.tables.members
        );
        let error = backend_error("initialise");
        bounded("initialise", self.timeout, async {
            // A prefix `schema.prefix_` places the tables in a database of their own.
            if let Some(schema) = self.tables.schema_quoted('`') {
                let create = format!("CREATE DATABASE IF NOT EXISTS {schema}");
                self.pool.execute(create.as_str()).await.map_err(&error)?;
            }
            self.pool.execute(leases.as_str()).await.map_err(&error)?;
            self.pool.execute(members.as_str()).await.map_err(&error)?;
            // The schedule tables came later: creating them migrates an older database.
            for table in schedule::create_tables(&self.tables) {
                self.pool.execute(table.as_str()).await.map_err(&error)?;
            }
            give_back(&self.pool, open_warm(&self.pool).await).await;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn try_acquire_free_for(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let (holder, keys, ttl, free_for) = args::acquire(holder, keys, ttl, free_for)?;
        let mut won = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_KEYS_PER_STATEMENT) {
            let rows = bounded(
                "try_acquire",
                self.timeout,
                self.acquire_chunk(holder, chunk, ttl, free_for),
            )
            .await?;
            won.extend(rows);
        }
        leases(&won, &self.tables)
    }

    async fn renew(
        &self,
        holder: &str,
        leases: &[LeaseRef],
        ttl_: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        let ttl = ttl(ttl_)?;
        let error = backend_error("renew");
        let mut renewed = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(MAX_LEASES_PER_STATEMENT) {
            let matches = format!(
                "holder = ? AND expires_at > {NOW} AND (lease_key, epoch) IN ({})",
                repeat("(?, ?)", chunk.len())
            );
            let update = format!(
                "UPDATE {} SET expires_at = {NOW} + ? WHERE {matches}",
                self.tables.leases
            );
            let select = format!(
                "SELECT lease_key, holder, epoch, expires_at FROM {} WHERE {matches}",
                self.tables.leases
            );
            let rows = bounded("renew", self.timeout, async {
                let mut query = sqlx::query(&update).bind(ttl).bind(holder);
                for (key, epoch) in chunk {
                    query = query.bind(*key).bind(*epoch);
                }
                if query
                    .execute(&self.pool)
                    .await
                    .map_err(&error)?
                    .rows_affected()
                    == 0
                {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::query(&select).bind(holder);
                for (key, epoch) in chunk {
                    query = query.bind(*key).bind(*epoch);
                }
                query.fetch_all(&self.pool).await.map_err(&error)
            })
            .await?;
            renewed.extend(rows);
        }
        super::leases(&renewed, &self.tables)
    }

    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        for chunk in leases.chunks(MAX_LEASES_PER_STATEMENT) {
            let sql = format!(
                "UPDATE {} SET expires_at = {NOW} WHERE holder = ? AND expires_at > {NOW} \
                 AND (lease_key, epoch) IN ({})",
                self.tables.leases,
                repeat("(?, ?)", chunk.len())
            );
            bounded("release", self.timeout, async {
                let mut query = sqlx::query(&sql).bind(holder);
                for (key, epoch) in chunk {
                    query = query.bind(*key).bind(*epoch);
                }
                query
                    .execute(&self.pool)
                    .await
                    .map_err(backend_error("release"))
            })
            .await?;
        }
        Ok(())
    }

    async fn heartbeat(
        &self,
        scope: &str,
        member: &str,
        ttl_: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        let scope = args::name("membership scope", scope)?;
        let member = args::name("member", member)?;
        let ttl = ttl(ttl_)?;
        let m = &self.tables.members;
        // One round trip: sweep the long-gone members, upsert this one and read the live ones
        // as one query of three statements. Only the text protocol (sqlx's `raw_sql`) takes
        // several statements, and it binds no parameters: the names are written as hex
        // literals, which compare byte for byte with the VARBINARY columns, like a bound value,
        // and cannot end the statement whatever they hold.
        let (scope_hex, member_hex) = (hex_literal(scope), hex_literal(member));
        let sql = format!(
            "DELETE FROM {m} WHERE scope = {scope_hex} AND member <> {member_hex} \
             AND expires_at < {NOW} - {MEMBER_RETENTION_MS}; \
             INSERT INTO {m} (scope, member, expires_at) \
             VALUES ({scope_hex}, {member_hex}, {NOW} + {ttl}) \
             ON DUPLICATE KEY UPDATE expires_at = {NOW} + {ttl}; \
             SELECT scope, member, expires_at FROM {m} WHERE scope = {scope_hex} \
             AND expires_at > {NOW} ORDER BY member"
        );
        let error = backend_error("heartbeat");
        bounded("heartbeat", self.timeout, async {
            let rows = sqlx::raw_sql(&sql)
                .fetch_all(&self.pool)
                .await
                .map_err(&error)?;
            members(&rows, &self.tables)
        })
        .await
    }

    async fn members(&self, scope: &str) -> Result<Vec<Member>, StoreError> {
        let scope = args::name("membership scope", scope)?;
        let sql = format!(
            "SELECT scope, member, expires_at FROM {} WHERE scope = ? AND expires_at > {NOW} \
             ORDER BY member",
            self.tables.members
        );
        let error = backend_error("members");
        bounded("members", self.timeout, async {
            let rows = sqlx::query(&sql)
                .bind(scope)
                .fetch_all(&self.pool)
                .await
                .map_err(&error)?;
            members(&rows, &self.tables)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaseStatus>, StoreError> {
        let sql = format!(
            "SELECT lease_key, holder, epoch, expires_at, {NOW} FROM {} \
             WHERE LEFT(lease_key, LENGTH(?)) = ? ORDER BY lease_key",
            self.tables.leases
        );
        let rows = bounded("list", self.timeout, async {
            sqlx::query(&sql)
                .bind(prefix)
                .bind(prefix)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error("list"))
        })
        .await?;
        statuses(&rows, &self.tables)
    }

    async fn schedules(&self, keys: &[String]) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.read_schedules(keys).await
    }

    async fn list_schedules(&self, prefix: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.read_list_schedules(prefix).await
    }

    async fn plan(&self, holder: &str, plans: &[Plan]) -> Result<Vec<String>, StoreError> {
        shared::plan_with(self, holder, plans).await
    }

    async fn start_runs(
        &self,
        holder: &str,
        starts: &[RunStart],
    ) -> Result<Vec<StartedRun>, StoreError> {
        shared::start_runs_with(self, holder, starts).await
    }

    async fn end_runs(&self, holder: &str, ends: &[RunEnd]) -> Result<Vec<String>, StoreError> {
        shared::end_runs_with(self, holder, ends).await
    }

    async fn pause(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        shared::command_with(self, Command::Pause, key, by).await
    }

    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        shared::command_with(self, Command::Resume, key, by).await
    }

    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        shared::command_with(self, Command::Trigger, key, by).await
    }

    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        self.read_history(key, limit).await
    }
}

/// `bytes` as a MySQL hex literal (`X'6A6F62'`): a binary string that holds exactly those
/// bytes, for a statement sent where no parameter can be bound.
fn hex_literal(bytes: impl AsRef<[u8]>) -> String {
    use std::fmt::Write;
    let bytes = bytes.as_ref();
    let mut literal = String::with_capacity(3 + 2 * bytes.len());
    literal.push_str("X'");
    for byte in bytes {
        let _ = write!(literal, "{byte:02X}");
    }
    literal.push('\'');
    literal
}

#[cfg(test)]
mod tests {
    use super::hex_literal;

    #[test]
    fn hex_literals_hold_any_bytes_and_nothing_else() {
        assert_eq!(hex_literal("job"), "X'6A6F62'");
        assert_eq!(
            hex_literal("a'; DROP TABLE t; --"),
            "X'61273B2044524F50205441424C4520743B202D2D'"
        );
        assert_eq!(hex_literal("é"), "X'C3A9'");
    }
}
