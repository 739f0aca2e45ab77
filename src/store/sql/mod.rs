//! What the SQL lease stores share: the schema's names, row decoding, time bounds and error
//! mapping. Each backend keeps its own statements, since each dialect has its own best form.
//!
//! The schema, in every backend (types differ by dialect):
//!
//! ```text
//! {prefix}leases    (lease_key PRIMARY KEY, holder, epoch BIGINT, expires_at BIGINT)
//! {prefix}members   (scope, member, expires_at BIGINT, PRIMARY KEY (scope, member))
//! {prefix}schedules (lease_key PRIMARY KEY, format, anchor, next_due, last_seq, history_limit,
//!                    paused_by, paused_at, trigger_by, trigger_at)
//! {prefix}runs      (lease_key, seq, holder, epoch, scheduled, started, ended, outcome,
//!                    attempts, error, triggered, PRIMARY KEY (lease_key, seq))
//! ```
//!
//! Times are milliseconds since the Unix epoch by the database's clock. Only the primary keys
//! are indexed: renew rewrites `expires_at`, every run rewrites its record's times and ends its
//! run row, and an index on any of those columns would stop PostgreSQL from updating rows in
//! place. The one exception is PostgreSQL's unique index on `leases (lease_key, epoch)`: only an
//! acquisition changes it (renewals stay in place), and it lets a schedule write hold the lease
//! row against takeovers without blocking renewals (see `postgres::schedule`).
//!
//! The schedule tables came with the cluster schedule; `initialise` creates them beside the
//! older two, so a database of the previous schema is migrated in place. Each schedule row
//! carries its record `format` (see `record::FORMAT`), so a row written by a newer version is
//! refused by name, never misread.

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod schedule;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::future::Future;
use std::time::Duration;

use sqlx::pool::PoolOptions;

use super::{Lease, LeaseStatus, Member, StoreError, StoreOptions, args};

/// How long an expired membership is kept before a heartbeat in its scope sweeps it.
pub(crate) const MEMBER_RETENTION_MS: i64 = 3_600_000;

/// The tables' names, quoted for the dialect, and the plain names used in messages.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    /// The leases table, quoted (and schema-qualified when the prefix names a schema).
    pub(crate) leases: String,
    /// The members table, quoted likewise.
    pub(crate) members: String,
    /// The schedule records table, quoted likewise.
    pub(crate) schedules: String,
    /// The run history table, quoted likewise.
    pub(crate) runs: String,
    /// The name of the leases table's unique index on `(lease_key, epoch)`, quoted, without its
    /// schema (an index lives in its table's schema); PostgreSQL's fence needs it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) lease_epochs_index: String,
    /// The leases table as the user wrote it, unquoted: for messages and notification channels.
    pub(crate) leases_plain: String,
    /// The members table as the user wrote it, unquoted: for messages.
    pub(crate) members_plain: String,
    /// The schema the prefix names (`jobs` of `jobs.loopjob_`), unquoted, if it names one:
    /// `initialise` creates it where the backend can.
    pub(crate) schema: Option<String>,
    /// The schedules table as the user wrote it, unquoted: for messages and notification
    /// channels.
    pub(crate) schedules_plain: String,
    /// The runs table as the user wrote it, unquoted: for messages.
    pub(crate) runs_plain: String,
}

impl Tables {
    /// The schema, quoted with `quote`, if the prefix names one.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn schema_quoted(&self, quote: char) -> Option<String> {
        self.schema
            .as_ref()
            .map(|schema| format!("{quote}{schema}{quote}"))
    }
}

impl Tables {
    /// The table names for `prefix`, quoting each identifier with `quote`.
    pub(crate) fn new(prefix: &str, quote: char) -> Result<Self, StoreError> {
        const MAX_PREFIX: usize = 40;
        let bad = |problem: &str| {
            StoreError::invalid(
                "table prefix",
                format!(
                    "`{prefix}` {problem}; give `[schema.]prefix` of letters, digits and `_`, at \
                     most {MAX_PREFIX} characters, such as `loopjob_` or `jobs.loopjob_`"
                ),
            )
        };
        if prefix.len() > MAX_PREFIX {
            return Err(bad("is too long"));
        }
        let (schema, table_prefix) = match prefix.split_once('.') {
            Some((schema, rest)) => (Some(schema), rest),
            None => (None, prefix),
        };
        let plain = |part: &str| part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain(table_prefix) || schema.is_some_and(|s| s.is_empty() || !plain(s)) {
            return Err(bad(
                "has characters other than letters, digits, `_` and one `.`",
            ));
        }
        let qualify = |table: &str| match schema {
            Some(schema) => format!("{quote}{schema}{quote}.{quote}{table}{quote}"),
            None => format!("{quote}{table}{quote}"),
        };
        Ok(Tables {
            leases: qualify(&format!("{table_prefix}leases")),
            members: qualify(&format!("{table_prefix}members")),
            schedules: qualify(&format!("{table_prefix}schedules")),
            runs: qualify(&format!("{table_prefix}runs")),
            lease_epochs_index: format!("{quote}{table_prefix}leases_epoch{quote}"),
            leases_plain: format!("{prefix}leases"),
            members_plain: format!("{prefix}members"),
            schema: schema.map(str::to_owned),
            schedules_plain: format!("{prefix}schedules"),
            runs_plain: format!("{prefix}runs"),
        })
    }
}

/// A lease row as read, before its invariants are checked.
pub(crate) struct RawLease {
    pub(crate) key: String,
    pub(crate) holder: Option<String>,
    pub(crate) epoch: Option<i64>,
    pub(crate) expires_at_ms: Option<i64>,
}

impl RawLease {
    /// The lease, or [`StoreError::Corrupted`] naming the key if the row breaks an invariant.
    pub(crate) fn check(self, tables: &Tables) -> Result<Lease, StoreError> {
        let corrupted =
            |problem: &str| StoreError::corrupted(&tables.leases_plain, &self.key, problem);
        let holder = match self.holder {
            Some(holder) if !holder.is_empty() => holder,
            Some(_) => return Err(corrupted("its holder is empty")),
            None => return Err(corrupted("its holder is NULL")),
        };
        let epoch = match self.epoch {
            Some(i64::MAX) => {
                return Err(corrupted(
                    "its epoch is at the BIGINT maximum, so no higher fencing token can be issued",
                ));
            }
            Some(epoch) => u64::try_from(epoch)
                .map_err(|_| corrupted(&format!("its epoch {epoch} is negative")))?,
            None => return Err(corrupted("its epoch is NULL")),
        };
        let expires_at_ms = self
            .expires_at_ms
            .ok_or_else(|| corrupted("its expires_at is NULL"))?;
        Ok(Lease {
            key: self.key,
            holder,
            epoch,
            expires_at_ms,
        })
    }
}

/// Reading one backend's result rows: the three column types the schema uses.
pub(crate) trait StoreRow {
    /// A text column (a name), `None` if NULL.
    fn text(&self, index: usize) -> Result<Option<String>, sqlx::Error>;
    /// A BIGINT column, `None` if NULL.
    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error>;
    /// A BOOLEAN column, `None` if NULL.
    fn flag(&self, index: usize) -> Result<Option<bool>, sqlx::Error>;
}

/// The lease in columns `lease_key, holder, epoch, expires_at`, checked. A value of the wrong
/// type (SQLite lets one into any column) makes the row corrupted, named by its key.
pub(crate) fn lease(row: &impl StoreRow, tables: &Tables) -> Result<Lease, StoreError> {
    let key = match row.text(0) {
        Ok(key) => key.unwrap_or_default(),
        Err(error) => {
            let problem = format!("its key cannot be read as text ({error})");
            return Err(StoreError::corrupted(&tables.leases_plain, "?", problem));
        }
    };
    let read = |column: &str, error: sqlx::Error| {
        let problem = format!("its {column} has a value of the wrong type ({error})");
        StoreError::corrupted(&tables.leases_plain, &key, problem)
    };
    RawLease {
        holder: row.text(1).map_err(|e| read("holder", e))?,
        epoch: row.int(2).map_err(|e| read("epoch", e))?,
        expires_at_ms: row.int(3).map_err(|e| read("expires_at", e))?,
        key: key.clone(),
    }
    .check(tables)
}

/// The leases in `rows` (see [`lease`]), sorted by key.
pub(crate) fn leases<R: StoreRow>(rows: &[R], tables: &Tables) -> Result<Vec<Lease>, StoreError> {
    let leases = rows
        .iter()
        .map(|row| lease(row, tables))
        .collect::<Result<_, _>>()?;
    Ok(sorted(leases))
}

/// The statuses in rows of `lease_key, holder, epoch, expires_at, now`.
pub(crate) fn statuses<R: StoreRow>(
    rows: &[R],
    tables: &Tables,
) -> Result<Vec<LeaseStatus>, StoreError> {
    rows.iter()
        .map(|row| {
            let now = row
                .int(4)
                .map_err(backend_error("list"))?
                .unwrap_or(i64::MAX);
            let lease = lease(row, tables)?;
            Ok(LeaseStatus {
                remaining: args::remaining(lease.expires_at_ms, now),
                lease,
            })
        })
        .collect()
}

/// The members in rows of `scope, member, expires_at`. A value of the wrong type makes the row
/// corrupted, named by its member.
pub(crate) fn members<R: StoreRow>(rows: &[R], tables: &Tables) -> Result<Vec<Member>, StoreError> {
    let member = |row: &R| -> Result<Member, StoreError> {
        let corrupted = |name: &str, column: &str, error: sqlx::Error| {
            let problem = format!("its {column} has a value of the wrong type ({error})");
            StoreError::corrupted(&tables.members_plain, name, problem)
        };
        let member = row
            .text(1)
            .map_err(|e| corrupted("?", "member", e))?
            .unwrap_or_default();
        Ok(Member {
            scope: row
                .text(0)
                .map_err(|e| corrupted(&member, "scope", e))?
                .unwrap_or_default(),
            expires_at_ms: row
                .int(2)
                .map_err(|e| corrupted(&member, "expires_at", e))?
                .unwrap_or_default(),
            member,
        })
    };
    rows.iter().map(member).collect()
}

/// The SQL condition that finds rows [`RawLease::check`] would refuse, on table alias `t`.
/// (SQLite adds type checks, see `sqlite::CORRUPT_ROW`.)
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const CORRUPT_ROW: &str = "(t.holder IS NULL OR t.holder = '' OR t.epoch IS NULL \
     OR t.epoch < 0 OR t.epoch = 9223372036854775807 OR t.expires_at IS NULL)";

/// Maps a driver error of `operation` to a [`StoreError`].
pub(crate) fn backend_error(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| match error {
        sqlx::Error::PoolTimedOut => StoreError::Backend {
            operation,
            source: "no database connection could be had in time (the database is unreachable, \
                     or every pooled connection is busy)"
                .into(),
        },
        error => StoreError::Backend {
            operation,
            source: Box::new(error),
        },
    }
}

/// Runs `call` within `timeout`, so that no store call can hang on an unreachable database.
pub(crate) async fn bounded<T>(
    operation: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => {
            if let Err(error) = &result {
                tracing::debug!(operation, %error, "lease store call failed");
            }
            result
        }
        Err(_) => {
            tracing::debug!(operation, ?timeout, "lease store call timed out");
            Err(StoreError::Timeout { operation, timeout })
        }
    }
}

/// The pool settings every SQL store uses: bounded waits, tested connections (see
/// [`PING_AFTER_IDLE`]), and three connections kept open (see [`WARM_CONNECTIONS`]).
pub(crate) fn pool_options<DB: sqlx::Database>(options: &StoreOptions) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(options.get_max_connections())
        .min_connections(WARM_CONNECTIONS.min(options.get_max_connections()))
        .acquire_timeout(options.get_operation_timeout())
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
        .idle_timeout(Some(Duration::from_secs(600)))
}

/// How long a pooled connection may have been idle and still be used without a ping first.
///
/// sqlx pings every connection on its way back to the pool, and by default again before a call
/// takes it, a round trip each. The second finds a connection that broke while it sat idle (a
/// restarted server, a proxy's idle timeout); for one released moments ago it tests what the
/// first just did, and costs every call on a busy connection a round trip: a graceful handover
/// makes three calls back to back (the acquisition, the record read, the start). Idle for less,
/// a connection broken since is one that any call would have found broken that moment.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The connections a pool keeps open, however idle: three, one for each of a takeover's
/// back-to-back calls (the acquisition, the record read, the start; a holder's last end and
/// its release are two). sqlx pings a connection on its way back to the pool, from a task of
/// its own, so the one a call just used may not be free when the next call asks, and with none
/// idle the pool opens another: several milliseconds (TCP, authentication) and, on PostgreSQL,
/// the statements parsed and planned cold. With two kept, the start found neither idle in
/// about one graceful handover in ten and took 9–11 ms, which was their p99 on PostgreSQL
/// (docs/BENCHMARKS.md, fifteenth pass). The pool keeps them with `min_connections`, and
/// [`open_warm`] opens them at `initialise`. A larger burst may still open another, which the
/// pool then keeps until it idles out. (PostgreSQL keeps one more, which its release listener
/// holds for good.)
const WARM_CONNECTIONS: u32 = 3;

/// Opens the pool's warm connections now (see [`WARM_CONNECTIONS`]), so that the first
/// takeover does not pay for them, and returns them (for [`give_back`]). A connection that
/// cannot be opened is the next call's error. The connection of the call just before (the
/// tables' creation) is on its way back to the pool (see [`give_back`]): it is waited for, to
/// be one of them, rather than a third opened beside it.
///
/// A pool that already has as many connections (a later `initialise`, which the pool's
/// `min_connections` has kept warm since) opens none and waits for none: some of them may be
/// busy, or stuck behind a database that stalled, and would hold `initialise` up.
pub(crate) async fn open_warm<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Vec<sqlx::pool::PoolConnection<DB>> {
    let wanted = pool.options().get_min_connections() as usize;
    if pool.size() as usize >= wanted {
        return Vec::new();
    }
    until_idle(pool, pool.size() as usize).await;
    let mut held = Vec::with_capacity(wanted);
    while held.len() < wanted {
        match pool.acquire().await {
            Ok(connection) => held.push(connection),
            Err(_) => break,
        }
    }
    held
}

/// Gives the connections [`open_warm`] opened back to `pool`, and waits (a second at most)
/// until they are idle there. sqlx gives a dropped connection back from a task of its own,
/// after a ping; a caller that acquires before that (the PostgreSQL release listener, right
/// after `initialise`) would find none idle and open another.
pub(crate) async fn give_back<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    connections: Vec<sqlx::pool::PoolConnection<DB>>,
) {
    let wanted = connections.len();
    drop(connections);
    until_idle(pool, wanted).await;
}

/// Waits (a second at most) until `wanted` connections are idle in `pool`.
async fn until_idle<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, wanted: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while pool.num_idle() < wanted && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The ttl in milliseconds, checked.
pub(crate) fn ttl(ttl: Duration) -> Result<i64, StoreError> {
    args::ttl_ms(ttl)
}

/// `n` comma-separated copies of `item`, such as `?, ?, ?` or `(?, ?), (?, ?)`.
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn repeat(item: &str, n: usize) -> String {
    let mut out = String::with_capacity((item.len() + 2) * n);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
    out
}

/// Sorts leases by key, as every method answers.
pub(crate) fn sorted(mut leases: Vec<Lease>) -> Vec<Lease> {
    leases.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    leases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_and_quoted() {
        let tables = Tables::new("loopjob_", '"').unwrap();
        assert_eq!(tables.leases, r#""loopjob_leases""#);
        let tables = Tables::new("jobs.lj_", '`').unwrap();
        assert_eq!(tables.members, "`jobs`.`lj_members`");
        assert_eq!(tables.leases_plain, "jobs.lj_leases");
        assert!(Tables::new("", '"').is_ok());
        for bad in ["a-b", "a.b.c", ".x", "x\"; drop", &"x".repeat(41)] {
            assert!(Tables::new(bad, '"').is_err(), "{bad}");
        }
    }

    #[test]
    fn corrupted_rows_name_their_key() {
        let tables = Tables::new("t_", '"').unwrap();
        let raw = |holder: Option<&str>, epoch| RawLease {
            key: "job#1".to_owned(),
            holder: holder.map(str::to_owned),
            epoch,
            expires_at_ms: Some(0),
        };
        let err = raw(None, Some(1)).check(&tables).unwrap_err().to_string();
        assert!(err.contains("job#1") && err.contains("NULL"), "{err}");
        let err = raw(Some("a"), Some(-3))
            .check(&tables)
            .unwrap_err()
            .to_string();
        assert!(err.contains("job#1") && err.contains("-3"), "{err}");
        assert!(raw(Some("a"), Some(0)).check(&tables).is_ok());
    }

    /// `initialise` opens the warm connections: three, or as many as the limit when it is less.
    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn initialise_opens_the_warm_connections() {
        use crate::store::{LeaseStore, SqliteStore};
        let dir = std::env::temp_dir().join(format!("loopjob-warm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (max, warm) in [(8, 3), (2, 2), (1, 1)] {
            let url = format!("sqlite://{}/max{max}.db", dir.display());
            let options = StoreOptions::default().max_connections(max);
            let store = SqliteStore::connect_lazy(&url, options).unwrap();
            assert_eq!(store.pool().size(), 0, "no I/O before the first call");
            store.initialise().await.unwrap();
            assert_eq!(store.pool().size(), warm, "max_connections {max}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
