//! The etcd lease store: leases ride on etcd leases (one per node and ttl), epochs grow from
//! etcd's revision, and every write is a transaction guarded by the revisions it read.
//!
//! What a user relies on (the keys, where the epochs come from, what the clock is) is
//! documented on [`EtcdStore`], where rustdoc shows it. `layout.rs` names the keys and reads
//! their values, `batch.rs` reads and writes many keys per round trip, `known.rs` keeps what
//! the store last saw of its holders' keys so a fenced write need not read first,
//! `node_lease.rs` keeps the node's etcd leases alive, `listen.rs` turns watch events into
//! release notices, and `checks.rs` checks the URL and the key prefix.

mod batch;
mod checks;
mod known;
mod layout;
mod listen;
mod node_lease;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use etcd_client::{
    Client, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::OnceCell;

use self::batch::Guarded;
use self::known::{Fenced, Known, LeaseSeen, RecordSeen, RunSeen};
use self::layout::{Layout, LeaseRow};
use self::node_lease::NodeLeases;
use super::notify::Listener;
use super::open::redact;
use super::record::Record;
use super::{
    Acquired, Lease, LeaseRef, LeaseStatus, LeaseStore, Member, Plan, ReleaseNotifications, RunEnd,
    RunRecord, RunStart, ScheduleRecord, StartedRun, StoreError, StoreOptions, args,
};

/// A lease store on an etcd cluster (`etcd://[user:password@]host:2379[,host:2379…]`, every
/// client endpoint the nodes may use), for services that run where etcd already is, such as
/// Kubernetes, and want leases that survive the loss of any minority of its members.
///
/// # How the contract maps onto etcd
///
/// - **One etcd lease per node and ttl.** A holder's keys taken with the same ttl (in whole
///   seconds) ride on one etcd lease, granted on first use: [`LeaseStore::renew`] is one
///   keep-alive of that lease, plus a read of the keys to answer which are still held at
///   their epochs (one round trip per 64 keys, sent side by side). A call with another ttl uses (and a renew moves the keys to) the
///   holder's lease for that ttl.
/// - **Expiry is etcd's.** A key is held while its marker `P held/KEY`, attached to the
///   holder's etcd lease, exists; etcd deletes it when the lease runs out, by the cluster
///   leader's clock, and no client clock enters into it. etcd counts whole seconds, so a ttl
///   is rounded up (and raised to the cluster's minimum: 2 s on etcd's defaults): a key never
///   expires before the ttl asked, counted from the call, but may outlive it by up to a second
///   before another holder can take it. Acquisitions and renewals restart the lease's
///   countdown first, unless it was restarted so recently that the rounding still covers the
///   ttl from the call. Renewals and fenced writes also refuse a key whose holder's ttl has
///   passed by its own clock although etcd still keeps it: the holder no longer counts on it.
/// - **Acquisition** reads the keys (their leases, and their schedule records, which
///   [`LeaseStore::try_acquire_with_records`] answers with the leases won, so a new leader's
///   first run waits for no read of its own) and, beside the read, restarts the countdown of the
///   holder's etcd lease (a keep-alive, which etcd's leader answers from memory; a grant if
///   the holder has none), then writes in a transaction per 120 keys, each key's writes
///   guarded by the revisions at which its row and marker were read: a key that changed in
///   between is simply not won.
/// - **Reads are reads to etcd**: transactions of plain gets, which etcd answers without a log
///   entry (see `batch`); only writes go through its raft log and every member's disk.
/// - **Epochs grow from etcd's revision.** A key's first epoch is the cluster's revision when
///   it was read (a large number); each acquisition adds one, guarded by the row's revision.
///   Lease rows are never deleted; if one is deleted by hand, the key's next first epoch is a
///   later revision, above every epoch the key had (each was written by a transaction that
///   itself raised the revision past it), unless the deletion races an acquisition of the
///   same key. Revisions survive restarts and are never reused; only restoring an older
///   snapshot of the cluster could lower them.
/// - **Release** deletes the marker in a guarded transaction; the deletion (as an expiry's)
///   reaches every store's watch, which wakes waiting followers at once.
/// - **Schedule writes are fenced** by the same guards: the marker and the lease row unchanged
///   since they were read with the caller's holder and epoch, so the key was held, unexpired,
///   at the epoch the caller names when the write committed. Each is one transaction per 120
///   keys when the store knows the keys (from its own acquisition, which reads the keys'
///   records beside their leases, from its reads of the records, and from its last fenced
///   write of each): a run's start and its end are one round trip each. Where it does not, or
///   another writer changed a key since, it reads first (see `known.rs`).
///
/// # The clock
///
/// etcd has no clock a client can read. Times the contract reports in milliseconds (a lease's
/// `expires_at_ms`, members' expiries, and every time in schedule records: next due times, a
/// run's start and end, operator marks) are therefore the calling node's system clock. They
/// decide no expiry (etcd does), but they time the cluster schedule: keep the nodes' clocks
/// synchronised (NTP), as a clock that is off shifts the runs its node starts by as much.
/// [`LeaseStore::try_acquire_free_for`] measures how long a key has been free by the same
/// clocks (from its release, or from the expiry its holder last asked for).
///
/// # Keys
///
/// All keys start with [`StoreOptions::table_prefix`] (default `loopjob_`, shown as `P`):
///
/// ```text
/// P lease/KEY                 lease row (JSON): holder, epoch, etcd lease, expiry, release time
/// P held/KEY                  holder's name, attached to its etcd lease: present while held
/// P expiry/LEASE              the last expiry asked of that etcd lease (swept by initialise an hour after)
/// P members/LEN/SCOPE/MEMBER  member's expiry, attached to the member's etcd lease
/// P schedule/KEY              schedule record (JSON)
/// P runs/LEN/KEY/SEQ          one run (JSON), the newest history_limit kept (trimmed at each start)
/// P commands/KEY              the last operator command, unique to its call: watched by holders
/// ```
///
/// Each call is bounded by [`StoreOptions::operation_timeout`]. The client spreads requests
/// over every endpoint of the URL; one whose connection fails (its member is down) is sent
/// again, so calls go on while a minority of members is down. Requests need the cluster to have a
/// leader (quorum): without one they fail at once or time out with a [`StoreError`] that says
/// so, and guarded jobs do not run until the cluster recovers.
///
/// ```no_run
/// # async fn demo() -> Result<(), loopjob::store::StoreError> {
/// let store = loopjob::store::open("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379")?;
/// store.initialise().await?;
/// # Ok(())
/// # }
/// ```
pub struct EtcdStore {
    endpoints: Vec<String>,
    connect_options: ConnectOptions,
    url: String,
    layout: Layout,
    tables: Tables,
    timeout: Duration,
    client: OnceCell<Client>,
    node_leases: NodeLeases,
    known: Known,
    listener: Listener,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("url", &self.url)
            .field("layout", &self.layout)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The names errors give the key ranges, like the SQL stores' table names.
#[derive(Debug)]
struct Tables {
    leases: String,
    schedules: String,
    runs: String,
    members: String,
}

/// What a lease key looks like in the store: its marker (present while held) and its row.
struct KeyState {
    held: Option<KeyValue>,
    row_kv: Option<KeyValue>,
    row: Option<LeaseRow>,
    /// Why the row cannot be read: acquisition and listing refuse it, renew, release and
    /// fenced writes never match it.
    corrupt: Option<StoreError>,
}

impl KeyState {
    /// Whether `holder` holds the key at `epoch`, by etcd (its marker exists).
    fn holds(&self, holder: &str, epoch: i64) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| held.value() == holder.as_bytes())
            && self
                .row
                .as_ref()
                .is_some_and(|row| row.holder == holder && row.epoch == epoch)
    }

    /// Whether the key is held and the expiry its holder last asked for is still ahead at
    /// `now`: etcd may keep a key up to a second longer than asked (see `node_lease.rs`), and
    /// renewals and fenced writes refuse that extra time, as the holder no longer counts on it.
    fn alive(&self, expiries: &HashMap<i64, i64>, now: i64) -> bool {
        let (Some(held), Some(row)) = (&self.held, &self.row) else {
            return false;
        };
        let asked = expiries.get(&held.lease()).copied().unwrap_or(0);
        now < row.expires.max(asked)
    }

    /// The key's lease as fenced writes see it, if it is held.
    fn seen(&self) -> Option<LeaseSeen> {
        let (held, row) = (self.held.as_ref()?, self.row.clone()?);
        Some(LeaseSeen {
            held_revision: held.mod_revision(),
            held_by: String::from_utf8_lossy(held.value()).into_owned(),
            etcd_lease: held.lease(),
            row_revision: batch::revision(self.row_kv.as_ref()),
            row,
        })
    }
}

/// The keys read, with the expiries asked of the etcd leases they ride on.
struct LeaseStates {
    states: Vec<KeyState>,
    expiries: HashMap<i64, i64>,
}

/// One fenced write of a key (see [`EtcdStore::fenced_writes`]): the caller's answer if it is
/// made, the guarded write, and what it writes, for the store to know after.
struct FencedWrite<T> {
    answer: T,
    write: Guarded,
    record: Record,
    /// The run written, by number, if any.
    run: Option<(i64, RunRecord)>,
}

/// The system clock in ms since the Unix epoch: the store's clock (see [`EtcdStore`]).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn get(key: Vec<u8>) -> TxnOp {
    TxnOp::get(key, None)
}

fn get_prefix(key: Vec<u8>) -> TxnOp {
    TxnOp::get(key, Some(GetOptions::new().with_prefix()))
}

/// The newest run under `runs`.
fn get_newest(runs: Vec<u8>, limit: i64) -> TxnOp {
    TxnOp::get(
        runs,
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(limit),
        ),
    )
}

fn put(key: Vec<u8>, value: impl Into<Vec<u8>>) -> TxnOp {
    TxnOp::put(key, value, None)
}

fn put_on(lease: i64, key: Vec<u8>, value: impl Into<Vec<u8>>) -> TxnOp {
    TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))
}

/// What one operator command call writes to its key's command key, unique across calls and
/// processes, so that the call can tell whether its write was made (see `command_written`).
fn command_token(operation: &str, by: &str) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    format!(
        "{operation} by {by} ({}.{nanos}.{call})",
        std::process::id()
    )
}

/// An etcd error as a [`StoreError`] of `operation`, with a hint at what to fix.
fn failed(operation: &'static str) -> impl Fn(etcd_client::Error) -> StoreError {
    move |error| {
        let text = error.to_string();
        let hint = if text.contains("no leader") {
            "; the etcd cluster has no leader: a majority of its members must be up and \
             reach each other"
        } else if matches!(error, etcd_client::Error::TransportError(_))
            || text.contains("Unavailable")
            || text.contains("transport")
        {
            "; no etcd endpoint of the store URL answers: check the hosts and ports (the \
             client port, usually 2379)"
        } else if text.contains("permission denied") || text.contains("authentication") {
            "; check the user and password in the store URL, and that the user's role may \
             read and write the key prefix"
        } else {
            ""
        };
        StoreError::Backend {
            operation,
            source: format!("etcd: {text}{hint}").into(),
        }
    }
}

impl EtcdStore {
    /// A store on the cluster at `url`, connecting on its first call (call
    /// [`LeaseStore::initialise`] to find out whether the cluster is reachable).
    ///
    /// A URL that is not `etcd://[user:password@]host:port[,host:port…]`, or a key prefix that
    /// is empty, longer than 64 bytes or holds characters other than letters, digits, `_`,
    /// `-`, `.`, `:` and `/`, is [`StoreError::InvalidInput`]; the message shows the URL with
    /// its password as `***`.
    pub fn connect_lazy(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let prefix = checks::key_prefix(options.get_table_prefix())?;
        let target = checks::target(url)?;
        let timeout = options.get_operation_timeout();
        let mut connect_options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(timeout, timeout);
        if let Some((name, password)) = target.user {
            connect_options = connect_options.with_user(name, password);
        }
        let table = |section: &str| format!("{prefix}{section}/");
        Ok(EtcdStore {
            endpoints: target.endpoints,
            connect_options,
            url: redact(url),
            layout: Layout::new(prefix),
            tables: Tables {
                leases: table("lease"),
                schedules: table("schedule"),
                runs: table("runs"),
                members: table("members"),
            },
            timeout,
            client: OnceCell::new(),
            node_leases: NodeLeases::default(),
            known: Known::default(),
            listener: Listener::default(),
        })
    }

    /// Runs `work` within the operation timeout.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| StoreError::Timeout {
                operation,
                timeout: self.timeout,
            })?
    }

    /// The client, connecting first if needed.
    async fn client(&self, operation: &'static str) -> Result<Client, StoreError> {
        let client = self
            .client
            .get_or_try_init(|| {
                Client::connect(self.endpoints.clone(), Some(self.connect_options.clone()))
            })
            .await
            .map_err(failed(operation))?;
        Ok(client.clone())
    }

    /// The marker and row of each of `keys`, and the expiries asked of `leases` (read in the
    /// same round trip; callers that need those of other leases add them with
    /// [`EtcdStore::add_expiries`]). `always` is written after the reads.
    async fn read_leases(
        &self,
        client: &mut Client,
        operation: &'static str,
        always: Vec<TxnOp>,
        keys: &[&str],
        leases: &[i64],
    ) -> Result<LeaseStates, StoreError> {
        let items = keys.iter().map(|key| self.lease_gets(key)).collect();
        let (found, expiries, _) = self
            .read_with_expiries(client, operation, always, items, leases)
            .await?;
        let states: Vec<KeyState> = keys
            .iter()
            .zip(found)
            .map(|(key, gets)| self.key_state(key, &mut gets.into_iter()))
            .collect();
        Ok(LeaseStates { states, expiries })
    }

    /// The gets of a key's lease: its marker, then its row (see [`EtcdStore::key_state`]).
    fn lease_gets(&self, key: &str) -> Vec<TxnOp> {
        vec![get(self.layout.held(key)), get(self.layout.row(key))]
    }

    /// A key's lease from the next two answers of `gets`, the answers to
    /// [`EtcdStore::lease_gets`].
    fn key_state(&self, key: &str, gets: &mut impl Iterator<Item = Vec<KeyValue>>) -> KeyState {
        let held = gets.next().and_then(|mut kvs| kvs.pop());
        let row_kv = gets.next().and_then(|mut kvs| kvs.pop());
        let (row, corrupt) = match row_kv
            .as_ref()
            .map(|kv| LeaseRow::read(&self.tables.leases, key, kv.value()))
        {
            None => (None, None),
            Some(Ok(row)) => (Some(row), None),
            Some(Err(error)) => (None, Some(error)),
        };
        KeyState {
            held,
            row_kv,
            row,
            corrupt,
        }
    }

    /// Reads `items` and the expiry records of `leases` in the same round trips (`always`
    /// written after them); answers the items' answers, the expiries found, and the revision.
    async fn read_with_expiries(
        &self,
        client: &mut Client,
        operation: &'static str,
        always: Vec<TxnOp>,
        mut items: Vec<Vec<TxnOp>>,
        leases: &[i64],
    ) -> Result<(Vec<Vec<Vec<KeyValue>>>, HashMap<i64, i64>, i64), StoreError> {
        let count = items.len();
        items.extend(
            leases
                .iter()
                .map(|lease| vec![get(self.layout.expiry(*lease))]),
        );
        let (mut found, revision) = batch::read(client, always, items)
            .await
            .map_err(failed(operation))?;
        let records = found.split_off(count.min(found.len()));
        let expiries = leases
            .iter()
            .zip(records)
            .filter_map(|(lease, gets)| {
                let kv = gets.first()?.first()?;
                Some((*lease, layout::read_ms(kv.value())?))
            })
            .collect();
        Ok((found, expiries, revision))
    }

    /// Adds to `expiries` those of `leases` that it lacks, read in one round trip.
    async fn add_expiries(
        &self,
        client: &mut Client,
        operation: &'static str,
        leases: impl IntoIterator<Item = i64>,
        expiries: &mut HashMap<i64, i64>,
    ) -> Result<(), StoreError> {
        let mut missing: Vec<i64> = leases
            .into_iter()
            .filter(|lease| !expiries.contains_key(lease))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let (_, found, _) = self
                .read_with_expiries(client, operation, Vec::new(), Vec::new(), &missing)
                .await?;
            expiries.extend(found);
        }
        Ok(())
    }

    /// [`failed`], for a write attaching keys to `lease`: if etcd no longer knows the lease
    /// (it was revoked by hand), the next call grants a new one.
    fn failed_on(
        &self,
        lease: i64,
        operation: &'static str,
    ) -> impl Fn(etcd_client::Error) -> StoreError {
        move |error| {
            if error.to_string().contains("lease not found") {
                self.node_leases.forget(lease);
            }
            failed(operation)(error)
        }
    }

    /// The guard of a key's lease: its marker and row unchanged since `state` was read.
    fn lease_guard(&self, key: &str, state: &KeyState) -> Guarded {
        Guarded::default()
            .unchanged(self.layout.held(key), batch::revision(state.held.as_ref()))
            .unchanged(self.layout.row(key), batch::revision(state.row_kv.as_ref()))
    }

    /// The release of `key` whose marker and row were last changed at `revisions` (guarded on
    /// them): the marker deleted, the row kept with the time it was freed.
    fn release_write(&self, key: &str, revisions: (i64, i64), row: &LeaseRow, now: i64) -> Guarded {
        let row = LeaseRow {
            freed: Some(now),
            ..row.clone()
        };
        Guarded::default()
            .unchanged(self.layout.held(key), revisions.0)
            .unchanged(self.layout.row(key), revisions.1)
            .write(TxnOp::delete(self.layout.held(key), None))
            .write(put(self.layout.row(key), row.to_json()))
    }

    /// Records the expiry asked of `lease`, for how long its keys have been free after it ends.
    fn record_expiry(&self, lease: i64, expires: i64) -> TxnOp {
        put(self.layout.expiry(lease), expires.to_string())
    }

    /// The records of `keys` with their newest runs; keys without one are left out.
    async fn read_schedules(
        &self,
        client: &mut Client,
        keys: &[String],
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let items = keys.iter().map(|key| self.record_gets(key)).collect();
        let now = now_ms();
        let (found, _) = batch::read(client, Vec::new(), items)
            .await
            .map_err(failed("schedules"))?;
        let mut records = Vec::new();
        for (key, gets) in keys.iter().zip(found) {
            let (seen, record) = self.record_state(key, &mut gets.into_iter(), now)?;
            self.known.record_read(key, seen);
            records.extend(record);
        }
        Ok(records)
    }

    /// The gets of a key's record: the record, then its newest run (see
    /// [`EtcdStore::record_state`]).
    fn record_gets(&self, key: &str) -> Vec<TxnOp> {
        vec![
            get(self.layout.schedule(key)),
            get_newest(self.layout.runs(key), 1),
        ]
    }

    /// A key's record from the next two answers of `gets`, the answers to
    /// [`EtcdStore::record_gets`] read when this node's clock said `now`: as the store knows it,
    /// and as [`LeaseStore::schedules`] answers it (`None` for a key without one).
    fn record_state(
        &self,
        key: &str,
        gets: &mut impl Iterator<Item = Vec<KeyValue>>,
        now: i64,
    ) -> Result<(RecordSeen, Option<ScheduleRecord>), StoreError> {
        let record_kv = gets.next().and_then(|mut kvs| kvs.pop());
        let run_kv = gets.next().and_then(|mut kvs| kvs.pop());
        let Some(record_kv) = record_kv else {
            return Ok((RecordSeen::default(), None));
        };
        let record = layout::read_record(&self.tables.schedules, key, record_kv.value())?;
        let last_run = run_kv
            .map(|run| layout::read_run(&self.tables.runs, key, run.value()))
            .transpose()?;
        let public = record.to_public(key, now, last_run);
        let seen = RecordSeen {
            revision: record_kv.mod_revision(),
            record: Some(record),
        };
        Ok((seen, Some(public)))
    }

    /// What fenced writes of `holder` need of each key, in one round trip (for up to 32
    /// keys): its lease, its record and, where a run's number is given, that run; with the
    /// expiries asked of the etcd leases the keys ride on.
    async fn read_fenced(
        &self,
        client: &mut Client,
        operation: &'static str,
        holder: &str,
        keys: &[(&str, Option<i64>)],
    ) -> Result<(Vec<Fenced>, HashMap<i64, i64>), StoreError> {
        let items = keys
            .iter()
            .map(|(key, run)| {
                let mut gets = self.lease_gets(key);
                gets.push(get(self.layout.schedule(key)));
                gets.extend(run.map(|seq| get(self.layout.run(key, seq))));
                gets
            })
            .collect();
        let leases = self.node_leases.of(holder);
        let (found, mut expiries, _) = self
            .read_with_expiries(client, operation, Vec::new(), items, &leases)
            .await?;
        let mut fenced = Vec::with_capacity(keys.len());
        let mut riding = Vec::new();
        for ((key, seq), gets) in keys.iter().zip(found) {
            let mut gets = gets.into_iter();
            let lease = self.key_state(key, &mut gets);
            riding.extend(lease.held.as_ref().map(KeyValue::lease));
            let record_kv = gets.next().and_then(|mut kvs| kvs.pop());
            let run_kv = gets.next().and_then(|mut kvs| kvs.pop());
            let record = record_kv
                .as_ref()
                .map(|kv| layout::read_record(&self.tables.schedules, key, kv.value()))
                .transpose()?;
            let run = match (seq, run_kv) {
                (Some(seq), Some(kv)) => Some(RunSeen {
                    seq: *seq,
                    revision: kv.mod_revision(),
                    run: layout::read_run(&self.tables.runs, key, kv.value())?,
                }),
                _ => None,
            };
            let state = Fenced {
                lease: lease.seen(),
                record: RecordSeen {
                    revision: batch::revision(record_kv.as_ref()),
                    record,
                },
                run,
            };
            self.known.read(key, &state);
            fenced.push(state);
        }
        self.add_expiries(client, operation, riding, &mut expiries)
            .await?;
        for (lease, expires) in &expiries {
            self.known.expiry(*lease, *expires);
        }
        Ok((fenced, expiries))
    }

    /// The guard of a fenced write: the key's lease and record unchanged since seen.
    fn fence(&self, key: &str, state: &Fenced) -> Guarded {
        let (held, row) = state
            .lease
            .as_ref()
            .map_or((0, 0), |lease| (lease.held_revision, lease.row_revision));
        Guarded::default()
            .unchanged(self.layout.held(key), held)
            .unchanged(self.layout.row(key), row)
            .unchanged(self.layout.schedule(key), state.record.revision)
    }

    /// Makes fenced writes of `holder` to `keys` (each with the epoch the caller holds it at
    /// and the run an end names): from what the store knows of them if it knows all of them,
    /// in one round trip, else after reading them (see `known.rs`). A key is written only if
    /// `holder` holds it at that epoch, unexpired at `now` (the caller's view of its lease at
    /// the call; the guards fence the write). A key whose write failed on what was known, or
    /// whose known state did not let it write, is read and tried once more. `write` makes an
    /// item's write from its state, or `None` where it has nothing to write. Answers the
    /// answers of the writes made, in the order of `keys`.
    async fn fenced_writes<T>(
        &self,
        client: &mut Client,
        operation: &'static str,
        holder: &str,
        keys: &[(&str, i64, Option<i64>)],
        now: i64,
        write: impl Fn(usize, &Fenced) -> Option<FencedWrite<T>>,
    ) -> Result<Vec<T>, StoreError> {
        let mut answers = Vec::with_capacity(keys.len());
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let mut may_know = true;
        while !pending.is_empty() {
            let asked: Vec<(&str, Option<i64>)> = pending
                .iter()
                .map(|&index| (keys[index].0, keys[index].2))
                .collect();
            let known = may_know.then(|| self.known.fenced(&asked)).flatten();
            let from_known = known.is_some();
            let (states, expiries) = match known {
                Some(known) => known,
                None => self.read_fenced(client, operation, holder, &asked).await?,
            };
            let (mut made, mut writes, mut again) = (Vec::new(), Vec::new(), Vec::new());
            for (&index, state) in pending.iter().zip(&states) {
                let epoch = keys[index].1;
                let fenced = state.holds(holder, epoch) && state.alive(&expiries, now);
                match fenced.then(|| write(index, state)).flatten() {
                    Some(fenced) => {
                        writes.push(fenced.write);
                        made.push((index, fenced.answer, fenced.record, fenced.run));
                    }
                    None if from_known => again.push(index),
                    None => {}
                }
            }
            if !writes.is_empty() {
                let written = batch::write(client, Vec::new(), writes)
                    .await
                    .map_err(failed(operation))?;
                for ((index, answer, record, run), revision) in made.into_iter().zip(written) {
                    let key = keys[index].0;
                    let Some(revision) = revision else {
                        self.known.forget(key);
                        if from_known {
                            again.push(index);
                        }
                        continue;
                    };
                    let run = run.map(|(seq, run)| RunSeen { seq, revision, run });
                    self.known.wrote(key, revision, record, run);
                    answers.push((index, answer));
                }
            }
            again.sort_unstable();
            pending = if from_known { again } else { Vec::new() };
            may_know = false;
        }
        answers.sort_unstable_by_key(|(index, _)| *index);
        Ok(answers.into_iter().map(|(_, answer)| answer).collect())
    }

    /// Applies an operator command to `key`'s record, retrying if a write came in between.
    async fn command(
        &self,
        key: &str,
        by: &str,
        operation: &'static str,
        apply: fn(&mut Record, &str, i64),
    ) -> Result<ScheduleRecord, StoreError> {
        let key = args::name("lease key", key)?;
        let by = args::name("operator name", by)?;
        let token = command_token(operation, by);
        self.bounded(operation, async {
            let mut client = self.client(operation).await?;
            loop {
                let (found, _) = batch::read(
                    &mut client,
                    Vec::new(),
                    vec![vec![
                        get(self.layout.schedule(key)),
                        get_newest(self.layout.runs(key), 1),
                    ]],
                )
                .await
                .map_err(failed(operation))?;
                let mut gets = found.into_iter().next().unwrap_or_default().into_iter();
                let record_kv = gets.next().and_then(|mut kvs| kvs.pop());
                let Some(record_kv) = record_kv else {
                    return Err(StoreError::UnknownKey {
                        key: key.to_owned(),
                    });
                };
                let mut record =
                    layout::read_record(&self.tables.schedules, key, record_kv.value())?;
                let last_run = gets
                    .next()
                    .and_then(|mut kvs| kvs.pop())
                    .map(|run| layout::read_run(&self.tables.runs, key, run.value()))
                    .transpose()?;
                let now = now_ms();
                apply(&mut record, by, now);
                let write = Guarded::default()
                    .unchanged(self.layout.schedule(key), record_kv.mod_revision())
                    .write(put(self.layout.schedule(key), layout::record_json(&record)))
                    .write(put(self.layout.command(key), token.as_str()));
                let written = batch::write(&mut client, Vec::new(), vec![write])
                    .await
                    .map_err(failed(operation))?;
                // A write whose connection failed is sent again (see `batch::sent`); if its
                // first send reached etcd, the second finds the record changed by it. Applying
                // the command again would then repeat it: a trigger the leader has served
                // since would run twice.
                let written = matches!(written.first(), Some(Some(_)))
                    || self
                        .command_written(&client, key, &token, record_kv.mod_revision())
                        .await
                        .map_err(failed(operation))?;
                if written {
                    // Its holder's next fenced write reads the record anew.
                    self.known.forget(key);
                    return Ok(record.to_public(key, now, last_run));
                }
            }
        })
        .await
    }

    /// Whether `key`'s command key was set to `token` after revision `since`: walks back over
    /// the command key's writes since then, which only operator commands make, so there are
    /// few (one read when there are none).
    async fn command_written(
        &self,
        client: &Client,
        key: &str,
        token: &str,
        since: i64,
    ) -> Result<bool, etcd_client::Error> {
        let mut options = GetOptions::new();
        loop {
            let answer = batch::get(client, self.layout.command(key), options).await?;
            let Some(kv) = answer.kvs().first() else {
                return Ok(false);
            };
            if kv.mod_revision() <= since {
                return Ok(false);
            }
            if kv.value() == token.as_bytes() {
                return Ok(true);
            }
            options = GetOptions::new().with_revision(kv.mod_revision() - 1);
        }
    }

    /// The members in `kvs`, read under `scope`, sorted by name.
    fn members_of(&self, scope: &str, kvs: &[KeyValue]) -> Result<Vec<Member>, StoreError> {
        let start = self.layout.members(scope);
        let mut members = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let Some(member) = Layout::name_after(&start, kv.key()) else {
                continue;
            };
            let expires_at_ms = layout::read_ms(kv.value()).ok_or_else(|| {
                StoreError::corrupted(
                    &self.tables.members,
                    scope,
                    format!("member `{member}` has no expiry"),
                )
            })?;
            members.push(Member {
                scope: scope.to_owned(),
                member,
                expires_at_ms,
            });
        }
        members.sort_by(|a, b| a.member.cmp(&b.member));
        Ok(members)
    }
}

/// The etcd leases the markers of `states` ride on.
fn riding_on<'a>(states: impl IntoIterator<Item = &'a KeyState>) -> Vec<i64> {
    states
        .into_iter()
        .filter_map(|state| state.held.as_ref().map(KeyValue::lease))
        .collect()
}

/// When a key whose marker is gone was freed: its release, or the last expiry its holder asked.
fn freed_at(row: &LeaseRow, expiries: &HashMap<i64, i64>) -> i64 {
    row.freed.unwrap_or_else(|| {
        row.expires
            .max(expiries.get(&row.lease).copied().unwrap_or(0))
    })
}

/// The kvs of the `index`th response of a plain (not nested) transaction.
fn kvs_of(responses: &[TxnOpResponse], index: usize) -> Vec<KeyValue> {
    match responses.get(index) {
        Some(TxnOpResponse::Get(get)) => get.kvs().to_vec(),
        _ => Vec::new(),
    }
}

#[async_trait]
impl LeaseStore for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    /// Checks that the cluster is reachable and has a leader, and sweeps expiry records an
    /// hour past: etcd needs no tables.
    async fn initialise(&self) -> Result<(), StoreError> {
        self.bounded("initialise", async {
            let mut client = self.client("initialise").await?;
            let expiries = batch::get(
                &client,
                self.layout.expiries(),
                GetOptions::new().with_prefix(),
            )
            .await
            .map_err(failed("initialise"))?;
            let hour_ago = now_ms().saturating_sub(3_600_000);
            let stale: Vec<Guarded> = expiries
                .kvs()
                .iter()
                .filter(|kv| layout::read_ms(kv.value()).is_none_or(|ms| ms < hour_ago))
                .map(|kv| {
                    Guarded::default()
                        .unchanged(kv.key().to_vec(), kv.mod_revision())
                        .write(TxnOp::delete(kv.key().to_vec(), None))
                })
                .collect();
            if !stale.is_empty() {
                batch::write(&mut client, Vec::new(), stale)
                    .await
                    .map_err(failed("initialise"))?;
            }
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
        let acquired = self
            .try_acquire_with_records(holder, keys, ttl, free_for)
            .await?;
        Ok(acquired.leases)
    }

    /// The keys' records are read beside their leases, in the same flat transaction of gets:
    /// a new leader learns when its key's next run is due without a round trip of its own, and
    /// its first fenced write (the start) goes out from what it read, in one round trip. A record
    /// that cannot be decoded is left out, for [`LeaseStore::schedules`] to report.
    async fn try_acquire_with_records(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Acquired, StoreError> {
        let (holder, keys, ttl, free_for) = args::acquire(holder, keys, ttl, free_for)?;
        if keys.is_empty() {
            return Ok(Acquired::default());
        }
        self.bounded("try_acquire", async {
            let mut client = self.client("try_acquire").await?;
            let (now, call) = (now_ms(), Instant::now());
            // The holder's etcd lease is made ready beside the read (its countdown restarted,
            // or a lease granted if it has none or it lapsed), so a key found free costs one
            // more round trip, the write, not two: a follower taking over from a release is
            // that much sooner. A follower that loses pays one keep-alive per try, which etcd's
            // leader answers from memory. The countdown restarts before the keys are attached,
            // so they live at least the ttl from the call.
            let mut lease_client = client.clone();
            let items = keys
                .iter()
                .map(|key| [self.lease_gets(key), self.record_gets(key)].concat())
                .collect();
            let (read, lease) = tokio::join!(
                self.read_with_expiries(&mut client, "try_acquire", Vec::new(), items, &[]),
                self.node_leases
                    .refresh(&mut lease_client, holder, ttl, call),
            );
            let (found, mut expiries, revision) = read?;
            // Each key's lease now; its record's answers are decoded only if the key is won.
            let (mut states, mut record_gets) = (Vec::new(), Vec::new());
            for (key, gets) in keys.iter().zip(found) {
                let mut gets = gets.into_iter();
                states.push(self.key_state(key, &mut gets));
                record_gets.push(gets);
            }
            if let Some(corrupt) = states.iter_mut().find_map(|state| state.corrupt.take()) {
                return Err(corrupt);
            }
            let waiting: Vec<i64> = states
                .iter()
                .filter_map(|state| match (&state.held, &state.row) {
                    (None, Some(row)) if free_for > 0 && row.holder != holder => Some(row.lease),
                    _ => None,
                })
                .collect();
            self.add_expiries(&mut client, "try_acquire", waiting, &mut expiries)
                .await?;
            let free: Vec<(&str, &KeyState, _)> = keys
                .iter()
                .zip(&states)
                .zip(record_gets)
                .filter(|((_, state), _)| match (&state.held, &state.row) {
                    (Some(held), _) => held.value() == holder.as_bytes(),
                    (None, None) => true,
                    (None, Some(row)) => {
                        row.holder == holder
                            || now.saturating_sub(freed_at(row, &expiries)) >= free_for
                    }
                })
                .map(|((key, state), gets)| (*key, state, gets))
                .collect();
            if free.is_empty() {
                // Losing writes nothing.
                return Ok(Acquired::default());
            }
            // The writes' guards make sure nothing changed since the read.
            let lease = lease.map_err(failed("try_acquire"))?;
            let expires = now.saturating_add(ttl);
            let (mut won, mut writes) = (Vec::new(), Vec::new());
            for (key, state, record_gets) in free {
                let row = LeaseRow {
                    holder: holder.to_owned(),
                    epoch: state.row.as_ref().map_or(revision, |row| row.epoch + 1),
                    lease,
                    expires,
                    freed: None,
                };
                writes.push(
                    self.lease_guard(key, state)
                        .write(put(self.layout.row(key), row.to_json()))
                        .write(put_on(lease, self.layout.held(key), holder)),
                );
                won.push((row.lease(key, expires), row, record_gets));
            }
            let always = vec![self.record_expiry(lease, expires)];
            let written = batch::write(&mut client, always, writes)
                .await
                .map_err(self.failed_on(lease, "try_acquire"))?;
            self.known.expiry(lease, expires);
            let mut acquired = Acquired::default();
            for ((won, row, mut record_gets), revision) in won.into_iter().zip(written) {
                let Some(revision) = revision else {
                    continue;
                };
                self.known
                    .leased(&won.key, LeaseSeen::written(holder, revision, row));
                if let Ok((seen, public)) = self.record_state(&won.key, &mut record_gets, now) {
                    self.known.record_read(&won.key, seen);
                    acquired.records.extend(public);
                }
                acquired.leases.push(won);
            }
            Ok(acquired)
        })
        .await
    }

    async fn renew(
        &self,
        holder: &str,
        leases: &[LeaseRef],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        let ttl = args::ttl_ms(ttl)?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded("renew", async {
            let mut client = self.client("renew").await?;
            let (now, call) = (now_ms(), Instant::now());
            let lease = self
                .node_leases
                .refresh(&mut client, holder, ttl, call)
                .await
                .map_err(failed("renew"))?;
            let expires = now.saturating_add(ttl);
            let keys: Vec<&str> = leases.iter().map(|(key, _)| *key).collect();
            // The expiry is recorded after the reads, which see the one asked before.
            let always = vec![self.record_expiry(lease, expires)];
            let mut known = self.node_leases.of(holder);
            known.push(lease);
            let mut read = self
                .read_leases(&mut client, "renew", always, &keys, &known)
                .await?;
            self.known.expiry(lease, expires);
            // Keys this store did not put on its leases (taken through another handle).
            let riding = riding_on(&read.states);
            self.add_expiries(&mut client, "renew", riding, &mut read.expiries)
                .await?;
            let (mut renewed, mut moved, mut moves) = (Vec::new(), Vec::new(), Vec::new());
            for ((key, epoch), state) in leases.iter().zip(&read.states) {
                let (Some(held), Some(row)) = (&state.held, &state.row) else {
                    self.known.forget(key);
                    continue;
                };
                if !state.holds(holder, *epoch) || !state.alive(&read.expiries, now) {
                    self.known.forget(key);
                    continue;
                }
                if held.lease() == lease {
                    // The keep-alive renewed it; what the store knows of it still holds.
                    renewed.push(row.lease(key, expires));
                    continue;
                }
                // Moved below: rare (a ttl changed), so simply read again before the next
                // fenced write.
                self.known.forget(key);
                // Taken with another ttl: move it onto the lease of this one.
                let row = LeaseRow {
                    lease,
                    expires,
                    ..row.clone()
                };
                moves.push(
                    self.lease_guard(key, state)
                        .write(put(self.layout.row(key), row.to_json()))
                        .write(put_on(lease, self.layout.held(key), holder)),
                );
                moved.push(row.lease(key, expires));
            }
            if !moves.is_empty() {
                let written = batch::write(&mut client, Vec::new(), moves)
                    .await
                    .map_err(self.failed_on(lease, "renew"))?;
                renewed.extend(
                    moved
                        .into_iter()
                        .zip(written)
                        .filter_map(|(lease, revision)| revision.and(Some(lease))),
                );
                renewed.sort_by(|a, b| a.key.cmp(&b.key));
            }
            Ok(renewed)
        })
        .await
    }

    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        if leases.is_empty() {
            return Ok(());
        }
        self.bounded("release", async {
            let mut client = self.client("release").await?;
            let now = now_ms();
            // A key whose lease the store knows is released in one round trip; one it does not
            // know, or whose guards fail (it changed since), is read first.
            let keys: Vec<&str> = leases.iter().map(|(key, _)| *key).collect();
            let (mut known, mut unknown, mut writes) = (Vec::new(), Vec::new(), Vec::new());
            for ((key, epoch), seen) in leases.iter().zip(self.known.take(&keys)) {
                match seen.filter(|lease| lease.holds(holder, *epoch)) {
                    Some(lease) => {
                        writes.push(self.release_write(
                            key,
                            (lease.held_revision, lease.row_revision),
                            &lease.row,
                            now,
                        ));
                        known.push((*key, *epoch));
                    }
                    None => unknown.push((*key, *epoch)),
                }
            }
            if !writes.is_empty() {
                let written = batch::write(&mut client, Vec::new(), writes)
                    .await
                    .map_err(failed("release"))?;
                let failed = known.into_iter().zip(written);
                unknown
                    .extend(failed.filter_map(|(key, revision)| revision.is_none().then_some(key)));
            }
            if unknown.is_empty() {
                return Ok(());
            }
            let keys: Vec<&str> = unknown.iter().map(|(key, _)| *key).collect();
            let read = self
                .read_leases(&mut client, "release", Vec::new(), &keys, &[])
                .await?;
            let mut writes = Vec::new();
            for ((key, epoch), state) in unknown.iter().zip(&read.states) {
                let Some(row) = state.row.as_ref().filter(|_| state.holds(holder, *epoch)) else {
                    continue;
                };
                let revisions = (
                    batch::revision(state.held.as_ref()),
                    batch::revision(state.row_kv.as_ref()),
                );
                writes.push(self.release_write(key, revisions, row, now));
            }
            if !writes.is_empty() {
                batch::write(&mut client, Vec::new(), writes)
                    .await
                    .map_err(failed("release"))?;
            }
            Ok(())
        })
        .await
    }

    async fn heartbeat(
        &self,
        scope: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        let scope = args::name("membership scope", scope)?;
        let member = args::name("member", member)?;
        let ttl = args::ttl_ms(ttl)?;
        self.bounded("heartbeat", async {
            let mut client = self.client("heartbeat").await?;
            let (now, call) = (now_ms(), Instant::now());
            let lease = self
                .node_leases
                .refresh(&mut client, member, ttl, call)
                .await
                .map_err(failed("heartbeat"))?;
            let expires = now.saturating_add(ttl).to_string();
            let answer = batch::txn(
                &client,
                Txn::new().and_then([
                    put_on(lease, self.layout.member(scope, member), expires),
                    get_prefix(self.layout.members(scope)),
                ]),
            )
            .await
            .map_err(self.failed_on(lease, "heartbeat"))?;
            let kvs = kvs_of(&answer.op_responses(), 1);
            self.members_of(scope, &kvs)
        })
        .await
    }

    async fn members(&self, scope: &str) -> Result<Vec<Member>, StoreError> {
        let scope = args::name("membership scope", scope)?;
        self.bounded("members", async {
            let client = self.client("members").await?;
            let answer = batch::get(
                &client,
                self.layout.members(scope),
                GetOptions::new().with_prefix(),
            )
            .await
            .map_err(failed("members"))?;
            self.members_of(scope, answer.kvs())
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaseStatus>, StoreError> {
        self.bounded("list", async {
            let mut client = self.client("list").await?;
            let answer = batch::txn(
                &client,
                Txn::new().and_then([
                    get_prefix(self.layout.row(prefix)),
                    get_prefix(self.layout.held(prefix)),
                ]),
            )
            .await
            .map_err(failed("list"))?;
            let responses = answer.op_responses();
            let (rows_start, held_start) = (self.layout.row(""), self.layout.held(""));
            let held: BTreeMap<String, KeyValue> = kvs_of(&responses, 1)
                .into_iter()
                .filter_map(|kv| Some((Layout::name_after(&held_start, kv.key())?, kv)))
                .collect();
            let mut expiries = HashMap::new();
            let riding = held.values().map(KeyValue::lease);
            self.add_expiries(&mut client, "list", riding, &mut expiries)
                .await?;
            let now = now_ms();
            let mut listed = Vec::new();
            for kv in kvs_of(&responses, 0) {
                let Some(key) = Layout::name_after(&rows_start, kv.key()) else {
                    continue;
                };
                let row = LeaseRow::read(&self.tables.leases, &key, kv.value())?;
                let (expires, remaining) = match held.get(&key) {
                    Some(marker) => {
                        let expires = row
                            .expires
                            .max(expiries.get(&marker.lease()).copied().unwrap_or(0));
                        // etcd still holds it: held, however little the recorded time says.
                        let remaining = args::remaining(expires, now).max(Duration::from_millis(1));
                        (expires, remaining)
                    }
                    None => (row.freed.unwrap_or(row.expires), Duration::ZERO),
                };
                listed.push(LeaseStatus {
                    lease: row.lease(&key, expires),
                    remaining,
                });
            }
            Ok(listed)
        })
        .await
    }

    async fn schedules(&self, keys: &[String]) -> Result<Vec<ScheduleRecord>, StoreError> {
        let keys = args::keys(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.into_iter().map(str::to_owned).collect();
        self.bounded("schedules", async {
            let mut client = self.client("schedules").await?;
            self.read_schedules(&mut client, &keys).await
        })
        .await
    }

    async fn list_schedules(&self, prefix: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.bounded("schedules", async {
            let mut client = self.client("schedules").await?;
            let answer = batch::get(
                &client,
                self.layout.schedule(prefix),
                GetOptions::new().with_prefix().with_keys_only(),
            )
            .await
            .map_err(failed("schedules"))?;
            let start = self.layout.schedule("");
            let keys: Vec<String> = answer
                .kvs()
                .iter()
                .filter_map(|kv| Layout::name_after(&start, kv.key()))
                .collect();
            self.read_schedules(&mut client, &keys).await
        })
        .await
    }

    async fn plan(&self, holder: &str, plans: &[Plan]) -> Result<Vec<String>, StoreError> {
        let holder = args::name("holder", holder)?;
        let plans = args::plans(plans)?;
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded("plan", async {
            let mut client = self.client("plan").await?;
            let keys: Vec<(&str, i64, Option<i64>)> = plans
                .iter()
                .map(|plan| (plan.key, plan.epoch, None))
                .collect();
            let now = now_ms();
            self.fenced_writes(&mut client, "plan", holder, &keys, now, |index, state| {
                let plan = &plans[index];
                let mut record = state.record.record.clone().unwrap_or_default();
                if plan.only_if_unset && record.next_due.is_some() {
                    return None;
                }
                record.set_due(plan.due, now);
                let write = self.fence(plan.key, state).write(put(
                    self.layout.schedule(plan.key),
                    layout::record_json(&record),
                ));
                Some(FencedWrite {
                    answer: plan.key.to_owned(),
                    write,
                    record,
                    run: None,
                })
            })
            .await
        })
        .await
    }

    async fn start_runs(
        &self,
        holder: &str,
        starts: &[RunStart],
    ) -> Result<Vec<StartedRun>, StoreError> {
        let holder = args::name("holder", holder)?;
        let starts = args::starts(starts)?;
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded("start_runs", async {
            let mut client = self.client("start_runs").await?;
            let keys: Vec<(&str, i64, Option<i64>)> = starts
                .iter()
                .map(|start| (start.key, start.epoch, None))
                .collect();
            let now = now_ms();
            self.fenced_writes(
                &mut client,
                "start_runs",
                holder,
                &keys,
                now,
                |index, state| {
                    let start = &starts[index];
                    let mut record = state.record.record.clone().unwrap_or_default();
                    let seq = record.start(start.due, start.triggered, start.history_limit, now)?;
                    let run = start.run(holder, seq, now);
                    // The history keeps runs oldest_kept..=seq: delete the ones before.
                    let trim = TxnOp::delete(
                        self.layout.runs(start.key),
                        Some(
                            DeleteOptions::new()
                                .with_range(self.layout.run(start.key, record.oldest_kept())),
                        ),
                    );
                    let write = self
                        .fence(start.key, state)
                        .write(put(
                            self.layout.schedule(start.key),
                            layout::record_json(&record),
                        ))
                        .write(put(self.layout.run(start.key, seq), layout::run_json(&run)))
                        .write(trim);
                    Some(FencedWrite {
                        answer: StartedRun {
                            key: start.key.to_owned(),
                            seq,
                            started_ms: now,
                        },
                        write,
                        record,
                        run: Some((seq, run)),
                    })
                },
            )
            .await
        })
        .await
    }

    async fn end_runs(&self, holder: &str, ends: &[RunEnd]) -> Result<Vec<String>, StoreError> {
        let holder = args::name("holder", holder)?;
        let ends = args::ends(ends)?;
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded("end_runs", async {
            let mut client = self.client("end_runs").await?;
            let keys: Vec<(&str, i64, Option<i64>)> = ends
                .iter()
                .map(|end| (end.key, end.epoch, Some(end.seq)))
                .collect();
            let now = now_ms();
            self.fenced_writes(
                &mut client,
                "end_runs",
                holder,
                &keys,
                now,
                |index, state| {
                    let end = &ends[index];
                    let mut record = state.record.record.clone()?;
                    record.set_due(end.due, now);
                    let mut write = self.fence(end.key, state).write(put(
                        self.layout.schedule(end.key),
                        layout::record_json(&record),
                    ));
                    let mut ended_run = None;
                    if let Some(seen) = state
                        .run
                        .as_ref()
                        .filter(|seen| seen.run.epoch as i64 == end.epoch)
                    {
                        let mut run = seen.run.clone();
                        // Never before its start, even if this node's clock is behind.
                        run.ended_ms.get_or_insert(now.max(run.started_ms));
                        run.outcome = Some(end.outcome);
                        run.attempts = u32::try_from(end.attempts).unwrap_or(u32::MAX);
                        run.error.clone_from(&end.error);
                        let run_key = self.layout.run(end.key, seen.seq);
                        write = write
                            .unchanged(run_key.clone(), seen.revision)
                            .write(put(run_key, layout::run_json(&run)));
                        ended_run = Some((seen.seq, run));
                    }
                    Some(FencedWrite {
                        answer: end.key.to_owned(),
                        write,
                        record,
                        run: ended_run,
                    })
                },
            )
            .await
        })
        .await
    }

    async fn pause(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, "pause", |record, by, now| record.pause(by, now))
            .await
    }

    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, "resume", |record, _, _| record.resume())
            .await
    }

    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, "trigger", |record, by, now| {
            record.trigger(by, now)
        })
        .await
    }

    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let key = args::name("lease key", key)?;
        let limit = args::history_limit(limit)?;
        self.bounded("history", async {
            let client = self.client("history").await?;
            let answer = batch::txn(
                &client,
                Txn::new().and_then([
                    get(self.layout.schedule(key)),
                    get_newest(self.layout.runs(key), limit),
                ]),
            )
            .await
            .map_err(failed("history"))?;
            let responses = answer.op_responses();
            let Some(record) = kvs_of(&responses, 0).pop() else {
                return Err(StoreError::UnknownKey {
                    key: key.to_owned(),
                });
            };
            layout::read_record(&self.tables.schedules, key, record.value())?;
            kvs_of(&responses, 1)
                .iter()
                .map(|run| layout::read_run(&self.tables.runs, key, run.value()))
                .collect()
        })
        .await
    }

    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        self.listener.subscribe_spawning(|sender, stop| {
            let connect = listen::Connect {
                endpoints: self.endpoints.clone(),
                options: self.connect_options.clone(),
            };
            listen::listen(connect, self.layout.clone(), sender, stop)
        })
    }
}
