//! Lease stores: the shared record of which replica holds which lease, that leader election
//! is built on.
//!
//! A lease is a row per key: the holder that owns it, a fencing **epoch**, and an expiry decided
//! by the store's own clock. Replicas call [`LeaseStore::try_acquire`] to take free or expired
//! keys, [`LeaseStore::renew`] to keep what they hold, and [`LeaseStore::release`] to hand a key
//! over at once. Membership heartbeats ([`LeaseStore::heartbeat`], [`LeaseStore::members`]) let
//! replicas see each other, which partitioned jobs use to share partitions fairly.
//!
//! Beside each lease row the store keeps the key's **schedule record** (see [`schedule`]): when
//! its next run is due on the cluster's grid, its last run, an operator's pause or trigger, and
//! a bounded run history. The key's holder writes it ([`LeaseStore::plan`],
//! [`LeaseStore::start_runs`], [`LeaseStore::end_runs`]), fenced by its epoch; anyone may read it
//! and give commands ([`LeaseStore::pause`], [`LeaseStore::resume`], [`LeaseStore::trigger`]).
//!
//! | backend | type | feature | for | notifications | schedule writes |
//! |---|---|---|---|---|---|
//! | `memory` | [`MemoryStore`] | always | one process, tests | yes | in memory, Tokio's clock |
//! | `sqlite://PATH` | `SqliteStore` | `sqlite` (default) | many processes on one host | yes (Unix datagrams beside the file) | one `BEGIN IMMEDIATE` transaction |
//! | `postgres://…` | `PostgresStore` | `postgres` | many hosts | yes (LISTEN/NOTIFY) | one transaction, arrays (`unnest`) |
//! | `mysql://…`, `mariadb://…` | `MySqlStore` | `mysql` | many hosts (MySQL 8, MariaDB 10.11) | no (poll) | one `READ COMMITTED` transaction |
//! | `redis://host:6379/N` | `RedisStore` | `redis` | many hosts sharing one Redis (not across a failover: see its docs) | yes (pub/sub) | one Lua script |
//! | `etcd://host:2379[,host:2379…]` | `EtcdStore` | `etcd` | many hosts, through the loss of a minority of etcd members | yes (watch) | a read, then one guarded transaction per 120 keys |
//!
//! Open one from a URL with [`open()`] (or [`open_with`] to set [`StoreOptions`]), then call
//! [`LeaseStore::initialise`] once at start-up:
//!
//! ```
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), loopjob::store::StoreError> {
//! let store = loopjob::store::open("memory")?;
//! store.initialise().await?;
//!
//! let won = store.try_acquire("web-1", &["report@eu".to_owned()], Duration::from_secs(15)).await?;
//! assert_eq!(won.len(), 1);
//! assert_eq!(won[0].epoch, 1);
//!
//! // Another replica cannot take it while it is held...
//! let lost = store.try_acquire("web-2", &["report@eu".to_owned()], Duration::from_secs(15)).await?;
//! assert!(lost.is_empty());
//!
//! // ...until it is released, and then it gets a higher epoch.
//! store.release("web-1", &[won[0].to_ref()]).await?;
//! let taken = store.try_acquire("web-2", &["report@eu".to_owned()], Duration::from_secs(15)).await?;
//! assert_eq!(taken[0].epoch, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # The contract every backend keeps
//!
//! 1. **Expiry is decided by the store's clock** (the database's `now()`; for [`MemoryStore`],
//!    Tokio's clock). No method takes or trusts a client timestamp. A returned [`Lease`] carries
//!    the store's expiry for information only: a holder computes its own deadline from the
//!    monotonic instant at which it *sent* the request, plus the ttl, minus a margin. The store
//!    sets the expiry to its clock at execution plus the ttl, which is never earlier than that.
//!    `EtcdStore` leaves expiry to etcd's leases (the cluster's clock, counted from a keep-alive
//!    sent during the call); etcd has no clock to read, so the times it reports, and those in
//!    its schedule records, are the calling node's clock (see its docs).
//!    The store's clock may drift but must not be *stepped*: a step back delays every takeover
//!    by the step, and a step forward frees leases early, while their holders still run (the
//!    epoch then tells their writes apart). NTP daemons slew rather than step once a host is
//!    up; for `SqliteStore` the store's clock is the host's wall clock, so this holds of the
//!    host.
//! 2. **Every successful acquisition increments the key's epoch**, strictly and forever, also
//!    when the holder already held the key. Lease rows are never deleted, so an epoch is never
//!    issued twice: it is a fencing token that downstream systems can compare. A key's first
//!    epoch is 1 on memory and the SQL stores; `RedisStore` starts it from the server's clock,
//!    so that epochs keep growing after a restart without persistence, and `EtcdStore` from the
//!    cluster's revision, so that they keep growing if a row is deleted.
//! 3. A key is taken only if its row is absent, expired (`expires_at <= now`), or held by the
//!    same holder. Renew and release match holder **and** epoch and act only on unexpired rows.
//! 4. [`LeaseStore::renew`] renews all the given leases in one statement: a node's renew cost does
//!    not grow in round trips with the number of leases it holds (backends split a batch only
//!    beyond their bind-parameter limit: 16,000 leases on SQLite, 32,000 on MySQL; PostgreSQL
//!    binds arrays and never splits; `EtcdStore` sends one keep-alive and reads 120 keys per
//!    round trip, etcd's transaction limit).
//! 5. Every call is bounded in time by [`StoreOptions::operation_timeout`] and returns a
//!    [`StoreError`] rather than hanging when the database is unreachable.
//! 6. A row that breaks the schema's invariants (no holder, a negative epoch, an unknown run
//!    outcome) is never taken over or repaired silently: calls that meet it return
//!    [`StoreError::Corrupted`] naming the key. A schedule record written by a newer version of
//!    loopjob is [`StoreError::NewerRecord`], neither read nor changed.
//! 7. **Schedule writes are fenced**: [`LeaseStore::plan`], [`LeaseStore::start_runs`] and
//!    [`LeaseStore::end_runs`] change a key's record only while the caller holds its lease at
//!    the epoch it names, unexpired by the store's clock, checked in the same transaction as the
//!    write (the lease row stays locked until the commit, so no new holder can take the key in
//!    between; on etcd, the transaction is guarded by the revisions of the lease it read). A
//!    write from any other epoch changes nothing.
//! 8. **A run's start is durable before the run**: `start_runs` commits the start (and the next
//!    due time) before it answers, and answers no start for a paused key unless a trigger is
//!    pending. Times in records are the store's clock in milliseconds; next due times are worked
//!    out by the store ([`NextDue`]), never from a client clock.
//! 9. **Schedule calls are batched**: each costs one round trip or one transaction of a few
//!    statements, however many keys it names (backends split only beyond their bind-parameter
//!    limit), so a node's statements do not grow with the number of its jobs that start or end
//!    together.
//! 10. **History is bounded**: each start trims its key's history to the newest
//!     `history_limit` runs (1 to 100,000) in the same transaction; no cleanup job is needed.
//! 11. [`LeaseStore::initialise`] creates the schedule tables beside the lease tables, so a
//!     database of the previous schema (leases and members only) is migrated in place, also when
//!     many replicas initialise at once.
//!
//! # Cancel safety
//!
//! Every method is cancel-safe in the sense that dropping its future (for example on a
//! timeout) never corrupts the store: each database change is a single atomic statement or one
//! transaction (rolled back unless it committed). The
//! caller cannot know whether a dropped call took effect, and need not: `try_acquire` may have
//! taken keys (they expire after the ttl, or the same holder takes them again with a new epoch on
//! its next call); `renew` may have extended leases (harmless: the holder's deadline stays the one
//! from its last *answered* call); `release` may or may not have expired them (release again);
//! `start_runs` may have recorded a start whose run never ran (the history shows it without an
//! end; the caller starts only runs it was answered).
//! A holder must not run two calls for the same keys concurrently.

mod args;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod memory;
mod notify;
mod open;
mod record;
#[cfg(feature = "redis")]
mod redis;
pub mod schedule;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

pub use error::StoreError;
#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use notify::{ReleaseNotice, ReleaseNotifications};
pub use open::{open, open_with, redact, supported_urls};
pub(crate) use record::due_set_by;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use schedule::{
    NextDue, OperatorMark, Plan, RunEnd, RunRecord, RunResult, RunStart, ScheduleRecord, StartedRun,
};
#[cfg(feature = "mysql")]
pub use sql::mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use sql::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sql::sqlite::SqliteStore;

/// The longest key, holder, scope or member name a store accepts, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A lease that a holder won or still holds, as the store answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The lease key, such as `report@eu-west` or `sync#3`.
    pub key: String,
    /// Who holds it.
    pub holder: String,
    /// The fencing token: strictly greater than every epoch issued for this key before.
    pub epoch: u64,
    /// When the lease expires by the store's clock, in milliseconds since the Unix epoch. For
    /// information and status tools only: holders compute their deadline locally (see the
    /// [module docs](self)).
    pub expires_at_ms: i64,
}

impl Lease {
    /// The key and epoch that identify this lease in [`LeaseStore::renew`] and
    /// [`LeaseStore::release`].
    pub fn to_ref(&self) -> LeaseRef {
        LeaseRef {
            key: self.key.clone(),
            epoch: self.epoch,
        }
    }
}

/// What [`LeaseStore::try_acquire_with_records`] answers: the leases won, and the schedule
/// records the store read of their keys in the same round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acquired {
    /// The leases won, sorted by key.
    pub leases: Vec<Lease>,
    /// Records of keys in `leases`, sorted by key, each as [`LeaseStore::schedules`] would
    /// answer it at the acquisition. A key missing here (it has no record, or the store does
    /// not read records on acquisition) is read with `schedules`.
    pub records: Vec<ScheduleRecord>,
}

/// A key and the epoch a holder believes it holds, as passed to renew and release.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseRef {
    /// The lease key.
    pub key: String,
    /// The epoch won when the lease was acquired.
    pub epoch: u64,
}

impl LeaseRef {
    /// A reference to `key` at `epoch`.
    pub fn new(key: impl Into<String>, epoch: u64) -> Self {
        LeaseRef {
            key: key.into(),
            epoch,
        }
    }
}

/// One lease row as [`LeaseStore::list`] reports it, with the time left by the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The last holder, its epoch and its expiry (released and expired leases keep their last
    /// holder).
    pub lease: Lease,
    /// Time left before expiry by the store's clock when listed; zero once expired or released.
    pub remaining: Duration,
}

impl LeaseStatus {
    /// Whether the lease was held (unexpired) when listed.
    pub fn is_held(&self) -> bool {
        !self.remaining.is_zero()
    }
}

/// A live member of a membership scope, as [`LeaseStore::members`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// The scope the member announced itself in, such as a job name.
    pub scope: String,
    /// The member's name, usually the node id.
    pub member: String,
    /// When the membership expires by the store's clock, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// How a store is opened: table names, time bounds and pool size.
///
/// ```
/// use std::time::Duration;
/// use loopjob::store::StoreOptions;
///
/// let options = StoreOptions::default()
///     .table_prefix("jobs.loopjob_")
///     .operation_timeout(Duration::from_secs(2));
/// assert_eq!(options.get_table_prefix(), "jobs.loopjob_");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    table_prefix: String,
    operation_timeout: Duration,
    max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            table_prefix: "loopjob_".to_owned(),
            operation_timeout: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

impl StoreOptions {
    /// Prefix of the tables, `{prefix}leases`, `{prefix}members`, `{prefix}schedules` and
    /// `{prefix}runs` (default `loopjob_`).
    ///
    /// An optional schema may come first, `schema.prefix_`, to place the tables in a schema
    /// (PostgreSQL) or database (MySQL) of your own, which [`LeaseStore::initialise`] creates
    /// if it is missing (the user then needs the right to create it), or in an attached
    /// database (SQLite), which `initialise` checks is attached. Letters,
    /// digits and `_` only, at most 40 characters in all; names are quoted, so case is kept.
    /// Ignored by [`MemoryStore`]. For `RedisStore` it prefixes every key: 1 to 64 letters,
    /// digits, `_`, `-`, `.` or `:`; for `EtcdStore` likewise, `/` allowed too.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// The longest any one call may take, connecting included (default 5 s). A call that takes
    /// longer returns [`StoreError::Timeout`]. Keep it well below the lease ttl.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The most connections an SQL store keeps open (default 8; PostgreSQL uses one more, while
    /// release notifications are subscribed). The store opens three at `initialise` and keeps
    /// them however idle (`max`, when it is less), so that a takeover's back-to-back calls
    /// seldom wait for a new connection; PostgreSQL keeps one more, for its release listener.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// The table prefix.
    pub fn get_table_prefix(&self) -> &str {
        &self.table_prefix
    }

    /// The per-call time bound.
    pub fn get_operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// The connection limit.
    pub fn get_max_connections(&self) -> u32 {
        self.max_connections
    }
}

/// The shared record of leases and memberships that replicas elect leaders through.
///
/// Implemented by [`MemoryStore`], `SqliteStore`, `PostgresStore`, `MySqlStore`, `RedisStore`
/// and `EtcdStore`; the elector holds one as `Arc<dyn LeaseStore>`. See the [module docs](self) for the contract
/// every implementation keeps and for cancel safety. Methods that take a `ttl` accept 1 ms to
/// one year; names (keys, holders, scopes, members) must be 1 to [`MAX_NAME_LEN`] bytes.
#[async_trait]
pub trait LeaseStore: Send + Sync + fmt::Debug + 'static {
    /// The backend's name: `"memory"`, `"sqlite"`, `"postgres"`, `"mysql"`, `"redis"` or
    /// `"etcd"`.
    fn backend(&self) -> &'static str;

    /// Creates the tables if they are missing. Idempotent, and safe when many replicas start at
    /// once; call it once before anything else.
    async fn initialise(&self) -> Result<(), StoreError>;

    /// Takes each of `keys` that is free, expired, or already held by `holder`, in one round
    /// trip where the backend allows, and returns the leases won (sorted by key) with their new
    /// epochs. Keys held by others are simply absent from the answer.
    async fn try_acquire(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        self.try_acquire_free_for(holder, keys, ttl, Duration::ZERO)
            .await
    }

    /// [`LeaseStore::try_acquire`], taking a key held by another holder only once it has been
    /// free (expired or released) for at least `free_for` by the store's clock. Keys never held
    /// and keys `holder` holds are taken at once.
    ///
    /// This is how a candidate of lower priority lets a higher one win: it waits
    /// `priority · retry_every` after a lease frees before it competes, measured where the lease
    /// is kept, so no clock of any replica enters into it.
    async fn try_acquire_free_for(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Vec<Lease>, StoreError>;

    /// [`LeaseStore::try_acquire_free_for`], answering beside the leases won the schedule
    /// records of their keys, where the store reads them in the same round trip. A new leader's
    /// first question is when its key's next run is due: a store that answers it with the
    /// acquisition saves a round trip on every handover. The elector acquires through this.
    ///
    /// The default acquires and answers no records; the caller then reads them with
    /// [`LeaseStore::schedules`], as it does for any key won without its record.
    async fn try_acquire_with_records(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Acquired, StoreError> {
        Ok(Acquired {
            leases: self
                .try_acquire_free_for(holder, keys, ttl, free_for)
                .await?,
            records: Vec::new(),
        })
    }

    /// Extends every lease in `leases` that `holder` still holds at that epoch and that has not
    /// expired, in one statement, to expire `ttl` from now by the store's clock. Returns the
    /// leases renewed (sorted by key); the missing ones are lost.
    async fn renew(
        &self,
        holder: &str,
        leases: &[LeaseRef],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError>;

    /// Expires at once every lease in `leases` that `holder` holds at that epoch, so that others
    /// can take them without waiting, and notifies subscribers where the backend can. Leases not
    /// held are ignored, so a retry is harmless.
    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError>;

    /// Announces `member` as alive in `scope` until `ttl` from now by the store's clock, and
    /// returns the live members of `scope` (`member` among them), sorted by name: what a
    /// partitioned job needs each renew period, in one call. Memberships that expired over an
    /// hour ago are swept by later heartbeats in that scope.
    async fn heartbeat(
        &self,
        scope: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<Member>, StoreError>;

    /// The live members of `scope`, sorted by name.
    async fn members(&self, scope: &str) -> Result<Vec<Member>, StoreError>;

    /// Every lease whose key starts with `prefix` (all of them for `""`), held or not, sorted by
    /// key: for status tools.
    async fn list(&self, prefix: &str) -> Result<Vec<LeaseStatus>, StoreError>;

    /// The schedule records of `keys` (see [`schedule`]), in one round trip, sorted by key;
    /// keys without a record are absent.
    async fn schedules(&self, keys: &[String]) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Every schedule record whose key starts with `prefix` (all for `""`), sorted by key: for
    /// status tools.
    async fn list_schedules(&self, prefix: &str) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Sets the next due time of keys `holder` holds at the epochs given (fenced), creating
    /// their records if missing; a plan with [`Plan::only_if_unset`] writes only a record that
    /// has no next due time yet (how the first holder of a key plans its first run ever).
    /// Returns the keys written, sorted.
    async fn plan(&self, holder: &str, plans: &[Plan]) -> Result<Vec<String>, StoreError>;

    /// Commits the start of a run for each of `starts` that `holder` holds at its epoch and
    /// that is not paused (or is triggered), in one round trip: records it in the key's history
    /// (trimmed to its `history_limit`), sets the next due time, clears a pending trigger when
    /// triggered. Returns the runs started, sorted by key; the caller runs only those.
    async fn start_runs(
        &self,
        holder: &str,
        starts: &[RunStart],
    ) -> Result<Vec<StartedRun>, StoreError>;

    /// Records the end of each of `ends` that `holder` holds at its epoch, in one round trip,
    /// and sets the next due time. Returns the keys written, sorted; an end from a stale epoch
    /// is left out.
    async fn end_runs(&self, holder: &str, ends: &[RunEnd]) -> Result<Vec<String>, StoreError>;

    /// Pauses `key` cluster-wide (not fenced): its holder starts no scheduled run until it is
    /// resumed. Pausing a paused key keeps the first mark. Returns the record after the write,
    /// [`StoreError::UnknownKey`] if the key has no record, and notifies subscribers
    /// ([`ReleaseNotice::Commanded`]) where the backend can.
    async fn pause(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError>;

    /// Resumes `key` cluster-wide (not fenced). Returns the record after the write (or
    /// [`StoreError::UnknownKey`]), and notifies like [`LeaseStore::pause`].
    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError>;

    /// Asks `key`'s holder for one run as soon as it can, even while paused (not fenced); a
    /// pending trigger keeps its first mark until a triggered start clears it. Returns the
    /// record after the write (or [`StoreError::UnknownKey`]), and notifies like
    /// [`LeaseStore::pause`].
    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError>;

    /// The newest `limit` runs of `key` (1 to 100,000), newest first, in one round trip;
    /// [`StoreError::UnknownKey`] if the key has no record.
    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError>;

    /// A subscription to releases and operator commands, for backends that can push them
    /// (memory, SQLite on a file, PostgreSQL, Redis, etcd); `None` where followers and holders
    /// must poll (MySQL). A notice only hints:
    /// that a key may be free now (it wakes a follower early and never replaces
    /// [`LeaseStore::try_acquire`]), or that a key's record changed (its holder re-reads it with
    /// [`LeaseStore::schedules`]).
    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        None
    }
}
