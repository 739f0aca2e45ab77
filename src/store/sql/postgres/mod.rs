//! The PostgreSQL lease store: many hosts, one statement per lease call, releases and operator
//! commands pushed by LISTEN/NOTIFY.

mod schedule;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgRow};
use sqlx::{Connection, Executor, Row};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::schedule::{self as shared, Command};
use super::{
    CORRUPT_ROW, MEMBER_RETENTION_MS, StoreRow, Tables, backend_error, bounded, give_back, members,
    open_warm, pool_options, statuses, ttl,
};
use crate::store::notify::Listener;
use crate::store::{
    Lease, LeaseRef, LeaseStatus, LeaseStore, Member, Plan, ReleaseNotice, ReleaseNotifications,
    RunEnd, RunRecord, RunStart, ScheduleRecord, StartedRun, StoreError, StoreOptions, args,
};

/// The database's clock in milliseconds since the Unix epoch, fixed for the whole statement.
const NOW: &str = "floor(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// A lease store in PostgreSQL (feature `postgres`), for replicas on many hosts.
///
/// Every call is one statement, so one round trip: `try_acquire` takes over expired keys with a
/// conditional `UPDATE` and creates missing ones with `INSERT … ON CONFLICT DO NOTHING` in the
/// same statement (a lost race writes no WAL); `renew` and `release` match all leases at once
/// through `unnest` of two arrays, never splitting a batch. The leases table has fillfactor 50
/// and no index on `expires_at`, so that renewals stay heap-only (HOT) updates and the table
/// does not bloat. Besides its primary key it has one unique index, on `(lease_key, epoch)`:
/// it makes an acquisition (which changes the epoch) a key update, so a schedule write can hold
/// the caller's lease with `FOR KEY SHARE`, which blocks a takeover until it commits but never
/// a renewal or a release. `release` sends `NOTIFY` on the channel named after the leases table
/// (such as `loopjob_leases`), and operator commands on the one named after the schedules table
/// (such as `loopjob_schedules`); [`LeaseStore::release_notifications`] listens on both through
/// one extra pooled connection. A release commits without waiting for the disk
/// (`synchronous_commit = off` for that transaction alone): losing one in a server crash only
/// leaves the lease to expire, and the new holder's durable acquisition flushes it anyway.
///
/// Each connection sets `statement_timeout` and `idle_in_transaction_session_timeout` to the
/// operation timeout, so the server also abandons a call that the client gave up on, or a
/// schedule write whose client froze while it held a lease row's lock.
///
/// Each connection also plans every statement once and keeps the plan (`plan_cache_mode =
/// force_generic_plan`). Planning one of these statements costs the server 0.4–0.6 ms,
/// several times its execution (0.05–0.25 ms), and a graceful handover runs seven in series:
/// planned once, the handover's median halved (see docs/BENCHMARKS.md). `initialise` plans the
/// seven (the acquisition, the release, the record read, and the start's transaction) on the
/// connections the pool keeps open (two for calls and the release listener's), which it keeps
/// for good (no `max_lifetime`), so a node that has followed for days takes over with them
/// planned. Other connections plan each statement at its first use: preparing or planning
/// them as they open made a connection opened in a burst, on a takeover's path, slower to open
/// than that saved.
///
/// A generic plan guesses 10 rows for `unnest` of an array parameter, which once joined a
/// 1000-lease renewal to a sequential scan in a nested loop (190 ms): `enable_seqscan = off`
/// keeps every join of a batch on the primary keys, so a batch of N keys is N index lookups (a
/// 1000-lease renewal 7.8–8.4 ms at p50, against 5.9 ms when planned for its arrays; one lease
/// 1.0 ms against 1.6 ms). Set these two settings and the two timeouts on a pool you pass to
/// [`PostgresStore::with_pool`], and no `max_lifetime`.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The statements of a takeover, planned ahead by `initialise`.
    hot_statements: Arc<[(String, usize)]>,
    tables: Tables,
    timeout: Duration,
    listener: Listener,
}

impl PostgresStore {
    /// A store for `url` (`postgres://user:password@host:port/database?…`), connecting lazily:
    /// no I/O happens until the first call. Must be called within a Tokio runtime.
    ///
    /// `initialise` plans the statements a node taking over a lease key waits for on the way
    /// to its first run on the connections the pool keeps open (see [`PostgresStore`]).
    pub fn connect_lazy(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let timeout_ms = options.get_operation_timeout().as_millis().to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::invalid("PostgreSQL URL", error.to_string()))?
            .application_name("loopjob")
            .options([
                ("statement_timeout", timeout_ms.as_str()),
                // A schedule write is a short transaction holding its lease row's lock: a client
                // frozen inside one (a paused VM, SIGSTOP) would keep every other node from
                // taking the lease. The server ends such a transaction once it has been idle
                // for as long as any one call may take.
                ("idle_in_transaction_session_timeout", timeout_ms.as_str()),
                // See the type's docs: planned once, never joined to a sequential scan.
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
            ]);
        let pool = pool_options(&options);
        // One more for the release listener, which keeps one of the pool's connections for
        // good: the two kept for calls are two besides it.
        let kept = pool.get_min_connections().saturating_add(1);
        let pool = pool
            .max_connections(options.get_max_connections().saturating_add(1))
            .min_connections(kept)
            // The connections `initialise` planned ahead are kept for good, not replaced by
            // cold ones every 30 minutes (sqlx's default); a broken one is still replaced.
            .max_lifetime(None)
            .connect_lazy_with(connect);
        PostgresStore::with_pool(pool, options)
    }

    /// A store on a pool you already have. The pool's own timeouts and size apply; every call is
    /// still bounded by [`StoreOptions::operation_timeout`]. `initialise` plans a takeover's
    /// statements on the connections it keeps open; connections the pool opens later plan them
    /// when they first run them.
    pub fn with_pool(pool: PgPool, options: StoreOptions) -> Result<Self, StoreError> {
        let tables = Tables::new(options.get_table_prefix(), '"')?;
        Ok(PostgresStore {
            pool,
            hot_statements: hot_statements(&tables),
            tables,
            timeout: options.get_operation_timeout(),
            listener: Listener::default(),
        })
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn channel(&self) -> &str {
        &self.tables.leases_plain
    }
}

/// Takes over the expired keys `$2` (and creates the missing ones) for the holder `$1`, with
/// the ttl `$3` and the free-for time `$4`, in milliseconds.
fn acquire_sql(tables: &Tables) -> String {
    let t = &tables.leases;
    // Corrupted rows among the keys stop the whole call before anything is written, so an
    // error never hides leases won in the same call. A key that another holder creates at
    // the same time conflicts on the primary key or on the epochs index (whichever the
    // insert meets first): `ON CONFLICT DO NOTHING` names no target so that both mean
    // "taken by the other" rather than an error.
    format!(
        "WITH clock AS (SELECT {NOW} AS now_ms), \
         input AS (SELECT unnest($2::text[]) AS lease_key), \
         bad AS (SELECT t.lease_key, t.holder, t.epoch, t.expires_at FROM {t} t \
                 JOIN input i ON t.lease_key = i.lease_key WHERE {CORRUPT_ROW}), \
         taken AS (UPDATE {t} t SET holder = $1, epoch = t.epoch + 1, \
                   expires_at = clock.now_ms + $3 FROM input i, clock \
                   WHERE t.lease_key = i.lease_key \
                   AND (t.expires_at <= clock.now_ms - $4 OR t.holder = $1) \
                   AND NOT EXISTS (SELECT 1 FROM bad) \
                   RETURNING t.lease_key, t.holder, t.epoch, t.expires_at), \
         created AS (INSERT INTO {t} (lease_key, holder, epoch, expires_at) \
                     SELECT i.lease_key, $1, 1, clock.now_ms + $3 FROM input i, clock \
                     WHERE NOT EXISTS (SELECT 1 FROM bad) \
                     ON CONFLICT DO NOTHING \
                     RETURNING lease_key, holder, epoch, expires_at) \
         SELECT * FROM bad UNION ALL SELECT * FROM taken UNION ALL SELECT * FROM created"
    )
}

/// Releases the leases `$2` at the epochs `$3` of the holder `$1`, notifying on the channel `$4`.
fn release_sql(tables: &Tables) -> String {
    // NOTIFY is transactional: listeners hear of the release when it commits.
    //
    // The commit does not wait for its WAL to reach the disk (`synchronous_commit = off`
    // for this transaction alone), which takes a disk flush off every graceful handover.
    // A release lost in a server crash only leaves the lease to expire, as a holder's crash
    // does; and a follower's acquisition of the released key is a durable commit later in
    // the same WAL, whose flush writes the release with it.
    format!(
        "WITH clock AS (SELECT {NOW} AS now_ms, \
             set_config('synchronous_commit', 'off', true) AS commit_mode), \
         released AS (UPDATE {} t SET expires_at = clock.now_ms \
             FROM clock, unnest($2::text[], $3::bigint[]) AS r(lease_key, epoch) \
             WHERE t.lease_key = r.lease_key AND t.epoch = r.epoch AND t.holder = $1 \
             AND t.expires_at > clock.now_ms RETURNING t.lease_key) \
         SELECT count(pg_notify($4, lease_key)) FROM released",
        tables.leases
    )
}

/// The statements of a takeover, with their numbers of parameters: the acquisition, the
/// record read, the start's (and the end's) transaction, and the release.
fn hot_statements(tables: &Tables) -> Arc<[(String, usize)]> {
    let mut statements = vec![(acquire_sql(tables), 4), (release_sql(tables), 4)];
    statements.extend(schedule::hot_statements(tables));
    statements.into()
}

/// Prepares and plans `statements` on `connection` (see [`PostgresStore`]): each runs once
/// with every parameter NULL, which matches no row, in a transaction that is rolled back. The
/// connection keeps the plans.
async fn plan_ahead(connection: &mut PgConnection, statements: &[(String, usize)]) {
    let planned = async {
        // Prepared first, the server infers each parameter's type from the statement; a NULL
        // bound then fits any of them.
        for (sql, _) in statements {
            connection.prepare(sql.as_str()).await?;
        }
        let mut tx = connection.begin().await?;
        for (sql, parameters) in statements {
            let mut query = sqlx::query(sql);
            for _ in 0..*parameters {
                query = query.bind(None::<i64>);
            }
            query.execute(&mut *tx).await?;
        }
        tx.rollback().await
    };
    if let Err(error) = planned.await {
        tracing::debug!(%error, "statements not planned ahead: planned at first use");
    }
}

impl StoreRow for PgRow {
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
impl LeaseStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn initialise(&self) -> Result<(), StoreError> {
        let leases = format!(
            "CREATE TABLE IF NOT EXISTS {} (lease_key TEXT COLLATE \"C\" NOT NULL PRIMARY KEY, \
             holder TEXT NOT NULL, epoch BIGINT NOT NULL, expires_at BIGINT NOT NULL) \
             WITH (fillfactor = 50)",
            self.tables.leases
        );
        // Added with the cluster schedule (see the type's docs); built on older tables too.
        let lease_epochs = format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (lease_key, epoch)",
            self.tables.lease_epochs_index, self.tables.leases
        );
        let members = format!(
            "CREATE TABLE IF NOT EXISTS {} (scope TEXT COLLATE \"C\" NOT NULL, \
             member TEXT COLLATE \"C\" NOT NULL, expires_at BIGINT NOT NULL, \
             PRIMARY KEY (scope, member)) WITH (fillfactor = 50)",
            self.tables.members
        );
        let error = backend_error("initialise");
        bounded("initialise", self.timeout, async {
            // Concurrent CREATE TABLE IF NOT EXISTS can fail on the catalog's unique index in
            // PostgreSQL; a transaction-scoped advisory lock serialises replicas starting at once.
            let mut tx = self.pool.begin().await.map_err(&error)?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("loopjob initialise {}", self.tables.leases_plain))
                .execute(&mut *tx)
                .await
                .map_err(&error)?;
            // A prefix `schema.prefix_` places the tables in a schema of their own.
            if let Some(schema) = self.tables.schema_quoted('"') {
                let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
                tx.execute(create.as_str()).await.map_err(&error)?;
            }
            tx.execute(leases.as_str()).await.map_err(&error)?;
            tx.execute(lease_epochs.as_str()).await.map_err(&error)?;
            tx.execute(members.as_str()).await.map_err(&error)?;
            // The schedule tables came later: creating them migrates an older database.
            for table in schedule::create_tables(&self.tables) {
                tx.execute(table.as_str()).await.map_err(&error)?;
            }
            tx.commit().await.map_err(&error)?;
            let mut warm = open_warm(&self.pool).await;
            for connection in &mut warm {
                plan_ahead(connection, &self.hot_statements).await;
            }
            give_back(&self.pool, warm).await;
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
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = acquire_sql(&self.tables);
        let rows = bounded("try_acquire", self.timeout, async {
            sqlx::query(&sql)
                .bind(holder)
                .bind(&keys)
                .bind(ttl)
                .bind(free_for)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error("try_acquire"))
        })
        .await?;
        super::leases(&rows, &self.tables)
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
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (keys, epochs): (Vec<&str>, Vec<i64>) = leases.into_iter().unzip();
        let sql = format!(
            "WITH clock AS (SELECT {NOW} AS now_ms) \
             UPDATE {} t SET expires_at = clock.now_ms + $4 \
             FROM clock, unnest($2::text[], $3::bigint[]) AS r(lease_key, epoch) \
             WHERE t.lease_key = r.lease_key AND t.epoch = r.epoch AND t.holder = $1 \
             AND t.expires_at > clock.now_ms \
             RETURNING t.lease_key, t.holder, t.epoch, t.expires_at",
            self.tables.leases
        );
        let rows = bounded("renew", self.timeout, async {
            sqlx::query(&sql)
                .bind(holder)
                .bind(&keys)
                .bind(&epochs)
                .bind(ttl)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error("renew"))
        })
        .await?;
        super::leases(&rows, &self.tables)
    }

    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        if leases.is_empty() {
            return Ok(());
        }
        let (keys, epochs): (Vec<&str>, Vec<i64>) = leases.into_iter().unzip();
        let sql = release_sql(&self.tables);
        bounded("release", self.timeout, async {
            sqlx::query(&sql)
                .bind(holder)
                .bind(&keys)
                .bind(&epochs)
                .bind(self.channel())
                .execute(&self.pool)
                .await
                .map_err(backend_error("release"))
        })
        .await?;
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
        // One statement: the sweep, the upsert, and the live members. The final SELECT sees the
        // table as it was before the upsert, so this member comes from the upsert's RETURNING.
        let sql = format!(
            "WITH clock AS (SELECT {NOW} AS now_ms), \
             swept AS (DELETE FROM {m} m USING clock WHERE m.scope = $1 AND m.member <> $2 \
                       AND m.expires_at < clock.now_ms - {MEMBER_RETENTION_MS}), \
             announced AS (INSERT INTO {m} (scope, member, expires_at) \
                           SELECT $1, $2, clock.now_ms + $3 FROM clock \
                           ON CONFLICT (scope, member) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                           RETURNING scope, member, expires_at) \
             SELECT scope, member, expires_at FROM announced \
             UNION ALL SELECT m.scope, m.member, m.expires_at FROM {m} m, clock \
             WHERE m.scope = $1 AND m.member <> $2 AND m.expires_at > clock.now_ms \
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
            "SELECT scope, member, expires_at FROM {} WHERE scope = $1 AND expires_at > {NOW} \
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
             WHERE starts_with(lease_key, $1) ORDER BY lease_key",
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

    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        // The channels are named only for the first subscription, which starts the listener.
        self.listener.subscribe_spawning(|sender, stop| {
            let channels = Channels {
                releases: self.channel().to_owned(),
                commands: self.tables.schedules_plain.clone(),
            };
            listen(self.pool.clone(), channels, sender, self.timeout, stop)
        })
    }
}

/// The two channels a store notifies on: releases, and operator commands.
struct Channels {
    releases: String,
    commands: String,
}

impl Channels {
    /// The notice a notification on `channel` with `payload` (a key) stands for.
    fn notice(&self, channel: &str, payload: &str) -> ReleaseNotice {
        if channel == self.commands {
            ReleaseNotice::Commanded(payload.to_owned())
        } else {
            ReleaseNotice::Released(payload.to_owned())
        }
    }
}

/// Forwards NOTIFYs on the `channels` to `sender` until `stop`, reconnecting after failures with
/// backoff. After every (re)connection it sends [`ReleaseNotice::Missed`], since notices sent
/// while it was not listening are lost; an idle connection is checked every few seconds, so a
/// silently dead one (a network partition) is noticed.
async fn listen(
    pool: PgPool,
    channels: Channels,
    sender: broadcast::Sender<ReleaseNotice>,
    timeout: Duration,
    stop: CancellationToken,
) {
    const IDLE_CHECK: Duration = Duration::from_secs(10);
    let mut backoff = Duration::from_millis(100);
    let channel = &channels.releases;
    loop {
        let connect = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener
                .listen_all([channels.releases.as_str(), channels.commands.as_str()])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = tokio::time::timeout(timeout, connect) => connected,
        };
        let mut listener = match connected {
            Ok(Ok(listener)) => listener,
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {timeout:?}"),
                };
                tracing::warn!(%channel, %error, ?backoff, "cannot listen for lease releases; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        tracing::debug!(%channel, "listening for lease releases");
        let _ = sender.send(ReleaseNotice::Missed);
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = tokio::time::timeout(IDLE_CHECK, listener.try_recv()) => received,
            };
            match received {
                Ok(Ok(Some(notification))) => {
                    let notice = channels.notice(notification.channel(), notification.payload());
                    let _ = sender.send(notice);
                }
                // The connection dropped and sqlx re-established it: notices may be lost.
                Ok(Ok(None)) => {
                    let _ = sender.send(ReleaseNotice::Missed);
                }
                Ok(Err(error)) => {
                    tracing::warn!(%channel, %error, "lost the lease release listener; reconnecting");
                    break;
                }
                Err(_idle) => {
                    let alive =
                        tokio::time::timeout(timeout, (&mut listener).execute("SELECT 1")).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::warn!(%channel, "lease release listener stopped answering; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
