//! The SQLite lease store: many processes sharing one database file on one host.

mod bell;
mod schedule;

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteRow, SqliteSynchronous,
};
use sqlx::{Executor, Row};

use self::bell::Bell;

use super::schedule::{self as shared, Command, Upserts};
use super::{
    MEMBER_RETENTION_MS, StoreRow, Tables, backend_error, bounded, give_back, lease, leases,
    members, open_warm, pool_options, repeat, statuses, ttl,
};
use crate::store::notify::Listener;
use crate::store::{
    Lease, LeaseRef, LeaseStatus, LeaseStore, Member, Plan, ReleaseNotice, ReleaseNotifications,
    RunEnd, RunRecord, RunStart, ScheduleRecord, StartedRun, StoreError, StoreOptions, args,
};

/// The host's clock in milliseconds since the Unix epoch (SQLite keeps 'now' fixed within one
/// statement step; `julianday` works on every SQLite version, unlike `unixepoch('subsec')`).
const NOW: &str = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";

/// Rows [`super::RawLease::check`] or decoding would refuse: SQLite's columns take a value of
/// any type, so the type of each is checked too.
const CORRUPT_ROW: &str = "(t.holder IS NULL OR t.holder = '' OR t.epoch IS NULL \
     OR t.epoch < 0 OR t.epoch = 9223372036854775807 OR t.expires_at IS NULL \
     OR typeof(t.lease_key) <> 'text' OR typeof(t.holder) <> 'text' \
     OR typeof(t.epoch) <> 'integer' OR typeof(t.expires_at) <> 'integer')";

/// SQLite allows 32,766 bound parameters per statement; renew binds two per lease.
const MAX_LEASES_PER_STATEMENT: usize = 16_000;

/// A lease store in an SQLite database file (feature `sqlite`, on by default), for replicas that
/// are processes on one host.
///
/// The file is opened in WAL mode with `synchronous = FULL` (a committed acquisition survives a
/// power cut, so an epoch is never issued twice) and a busy timeout equal to the operation
/// timeout, so processes writing at once wait for each other instead of failing. Every call is
/// one statement (`try_acquire` is one upsert; it reads again only when it did not win every
/// key, to tell a corrupted row from a held one). The store's clock is the host's clock.
/// Schedule writes (plan, starts, ends, operator commands) are each one `BEGIN IMMEDIATE`
/// transaction of a few statements, whatever the batch's size.
///
/// Releases and operator commands are pushed to the stores of every process on the host that
/// use the same file, through Unix datagram sockets in a directory beside it
/// (`<file>-loopjob/`): a follower takes a released lease at once instead of at its next retry,
/// and a holder obeys a pause at once. See [`LeaseStore::release_notifications`]; where the
/// sockets cannot be used (an in-memory database, a path over 86 bytes, not Unix), followers
/// poll every retry period as before.
///
/// > **Note:** SQLite on a network file system (NFS, SMB) does not lock reliably: keep the file on
/// > a local disk, and use PostgreSQL or MySQL for replicas on several hosts.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    tables: Tables,
    /// The schedule's upserts of whole rows, built once from the table names.
    upserts: Upserts,
    timeout: Duration,
    /// The release bell of the database file, once the file exists (see `bell.rs`).
    bell: OnceLock<Bell>,
    /// The listener for the bell's notices, once someone subscribed.
    listener: Listener,
}

impl SqliteStore {
    /// A store in the database at `url` (`sqlite://path/to/file.db`, `sqlite:file.db`, or
    /// `sqlite::memory:` for one process), creating the file if missing. Connects lazily: no I/O
    /// happens until the first call. Must be called within a Tokio runtime.
    pub fn connect_lazy(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::invalid("SQLite URL", error.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.get_operation_timeout());
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            // An in-memory database lives as long as one connection to it: keep one, forever.
            pool_options(&options)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool_options(&options)
        }
        .connect_lazy_with(connect);
        SqliteStore::with_pool(pool, options)
    }

    /// A store on a pool you already have (open it with WAL and a busy timeout). Every call is
    /// bounded by [`StoreOptions::operation_timeout`].
    pub fn with_pool(pool: SqlitePool, options: StoreOptions) -> Result<Self, StoreError> {
        let tables = Tables::new(options.get_table_prefix(), '"')?;
        Ok(SqliteStore {
            pool,
            upserts: Upserts::new(&tables, schedule::on_conflict),
            tables,
            timeout: options.get_operation_timeout(),
            bell: OnceLock::new(),
            listener: Listener::default(),
        })
    }

    /// The database file's release bell, if it can have one (see `bell.rs`). Looked for again
    /// until the file exists: a lazily connected store creates it at its first statement.
    fn bell(&self) -> Option<&Bell> {
        if let Some(bell) = self.bell.get() {
            return Some(bell);
        }
        let options = self.pool.connect_options();
        let bell = Bell::new(options.get_filename(), &self.tables.leases_plain)?;
        Some(self.bell.get_or_init(|| bell))
    }

    /// Tells the stores of every process using this file of `notices` (hints only).
    fn ring(&self, notices: impl IntoIterator<Item = ReleaseNotice>) {
        if let Some(bell) = self.bell() {
            bell.ring(notices);
        }
    }

    /// Writes an operator's command, then rings it to the key's holder wherever it runs.
    async fn command(
        &self,
        command: Command,
        key: &str,
        by: &str,
    ) -> Result<ScheduleRecord, StoreError> {
        let record = shared::command_with(self, command, key, by).await?;
        self.ring([ReleaseNotice::Commanded(record.key.clone())]);
        Ok(record)
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The first corrupted row among `keys`, as an error.
    async fn find_corrupted(&self, keys: &[&str]) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT lease_key, holder, epoch, expires_at FROM {} t \
             WHERE lease_key IN ({}) AND {CORRUPT_ROW} LIMIT 1",
            self.tables.leases,
            repeat("?", keys.len())
        );
        let mut query = sqlx::query(&sql);
        for key in keys {
            query = query.bind(*key);
        }
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error("try_acquire"))?;
        match row {
            Some(row) => lease(&row, &self.tables).map(drop),
            None => Ok(()),
        }
    }
}

/// A `WITH refs(lease_key, epoch) AS (VALUES …)` clause with `n` pairs of parameters.
fn refs_cte(n: usize) -> String {
    format!(
        "WITH refs(lease_key, epoch) AS (VALUES {})",
        repeat("(?, ?)", n)
    )
}

/// Matches rows named by `refs` (see [`refs_cte`]). The extra `lease_key IN` lets SQLite search
/// the primary key instead of scanning the table, which it does for a row-value `IN` alone.
const MATCHES_REFS: &str = "lease_key IN (SELECT lease_key FROM refs) \
     AND (lease_key, epoch) IN (SELECT lease_key, epoch FROM refs)";

impl StoreRow for SqliteRow {
    fn text(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(index)
    }

    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(index)
    }

    fn flag(&self, index: usize) -> Result<Option<bool>, sqlx::Error> {
        self.try_get(index)
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn initialise(&self) -> Result<(), StoreError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (lease_key TEXT NOT NULL PRIMARY KEY, \
             holder TEXT NOT NULL, epoch INTEGER NOT NULL, expires_at INTEGER NOT NULL) \
             WITHOUT ROWID; \
             CREATE TABLE IF NOT EXISTS {} (scope TEXT NOT NULL, member TEXT NOT NULL, \
             expires_at INTEGER NOT NULL, PRIMARY KEY (scope, member)) WITHOUT ROWID; {}",
            self.tables.leases,
            self.tables.members,
            schedule::create_tables(&self.tables),
        );
        let schema = self.tables.schema.as_deref();
        bounded("initialise", self.timeout, async {
            // SQLite has no CREATE SCHEMA: a prefix `schema.prefix_` names a database that
            // the connections attach (ATTACH DATABASE on a pool given to `with_pool`).
            if let Some(schema) = schema {
                let attached: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM pragma_database_list WHERE name = ?1")
                        .bind(schema)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(backend_error("initialise"))?;
                if attached.is_none() {
                    return Err(StoreError::invalid(
                        "table prefix",
                        format!(
                            "`{}` names the schema `{schema}`, but no database of that name is \
                             attached to this SQLite database: use a prefix without `.` (such \
                             as `loopjob_`), or ATTACH DATABASE on every connection of a pool \
                             given to SqliteStore::with_pool",
                            self.tables.leases_plain.trim_end_matches("leases")
                        ),
                    ));
                }
            }
            self.pool
                .execute(sql.as_str())
                .await
                .map_err(backend_error("initialise"))?;
            give_back(&self.pool, open_warm(&self.pool).await).await;
            Ok(())
        })
        .await
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
        for chunk in keys.chunks(MAX_LEASES_PER_STATEMENT) {
            // One upsert creates missing keys and takes over expired or own ones. If any key's
            // row is corrupted, the WHERE NOT EXISTS stops the whole statement, so nothing is
            // written; the follow-up read then reports the row.
            let t = &self.tables.leases;
            let sql = format!(
                "WITH input(lease_key) AS (VALUES {}) \
                 INSERT INTO {t} AS l (lease_key, holder, epoch, expires_at) \
                 SELECT lease_key, ?, 1, {NOW} + ? FROM input \
                 WHERE NOT EXISTS (SELECT 1 FROM {t} t JOIN input i ON t.lease_key = i.lease_key \
                                   WHERE {CORRUPT_ROW}) \
                 ON CONFLICT (lease_key) DO UPDATE SET holder = excluded.holder, \
                 epoch = l.epoch + 1, expires_at = excluded.expires_at \
                 WHERE l.expires_at <= {NOW} - ? OR l.holder = excluded.holder \
                 RETURNING lease_key, holder, epoch, expires_at",
                repeat("(?)", chunk.len())
            );
            let rows = bounded("try_acquire", self.timeout, async {
                let mut query = sqlx::query(&sql);
                for key in chunk {
                    query = query.bind(*key);
                }
                let rows = query
                    .bind(holder)
                    .bind(ttl)
                    .bind(free_for)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend_error("try_acquire"))?;
                if rows.len() < chunk.len() {
                    self.find_corrupted(chunk).await?;
                }
                Ok(rows)
            })
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
        let mut renewed = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(MAX_LEASES_PER_STATEMENT) {
            let sql = format!(
                "{} UPDATE {} SET expires_at = {NOW} + ? \
                 WHERE holder = ? AND expires_at > {NOW} AND {MATCHES_REFS} \
                 RETURNING lease_key, holder, epoch, expires_at",
                refs_cte(chunk.len()),
                self.tables.leases,
            );
            let rows = bounded("renew", self.timeout, async {
                let mut query = sqlx::query(&sql);
                for (key, epoch) in chunk {
                    query = query.bind(*key).bind(*epoch);
                }
                query
                    .bind(ttl)
                    .bind(holder)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend_error("renew"))
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
                "{} UPDATE {} SET expires_at = {NOW} \
                 WHERE holder = ? AND expires_at > {NOW} AND {MATCHES_REFS} \
                 RETURNING lease_key",
                refs_cte(chunk.len()),
                self.tables.leases,
            );
            let released: Vec<String> = bounded("release", self.timeout, async {
                let mut query = sqlx::query_scalar(&sql);
                for (key, epoch) in chunk {
                    query = query.bind(*key).bind(*epoch);
                }
                query
                    .bind(holder)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend_error("release"))
            })
            .await?;
            self.ring(released.into_iter().map(ReleaseNotice::Released));
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
        // One call to the connection's worker (sqlx runs the statements of one query in turn,
        // each taking its own parameters): sweep the long-gone members, upsert this one, read
        // the live ones.
        let sql = format!(
            "DELETE FROM {m} WHERE scope = ?1 AND member <> ?2 \
             AND expires_at < {NOW} - {MEMBER_RETENTION_MS}; \
             INSERT INTO {m} (scope, member, expires_at) VALUES (?1, ?2, {NOW} + ?3) \
             ON CONFLICT (scope, member) DO UPDATE SET expires_at = excluded.expires_at; \
             SELECT scope, member, expires_at FROM {m} WHERE scope = ?1 AND expires_at > {NOW} \
             ORDER BY member"
        );
        let error = backend_error("heartbeat");
        bounded("heartbeat", self.timeout, async {
            let rows = sqlx::query(&sql)
                .bind(scope)
                .bind(member)
                .bind(ttl)
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
             WHERE substr(lease_key, 1, length(?1)) = ?1 ORDER BY lease_key",
            self.tables.leases
        );
        let rows = bounded("list", self.timeout, async {
            sqlx::query(&sql)
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
        self.command(Command::Pause, key, by).await
    }

    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(Command::Resume, key, by).await
    }

    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(Command::Trigger, key, by).await
    }

    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        self.read_history(key, limit).await
    }

    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        let bell = self.bell()?;
        self.listener
            .subscribe(|sender, stop| bell.listen(sender, stop))
    }
}
