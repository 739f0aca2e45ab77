//! The Redis lease store: every method is one server-side Lua script, so one round trip, and
//! atomic on the server.
//!
//! What a user relies on (the keys, why epochs survive a restart without persistence, what a
//! failover can and cannot guarantee) is documented on [`RedisStore`], where rustdoc shows it.
//! The scripts are `*.lua` beside this file (`scripts.rs` lists them), each starting with the
//! helpers in `lib.lua`; `reply.rs` reads their replies, `listen.rs` turns pub/sub messages
//! into release notices, and `checks.rs` checks the URL and the key prefix.

mod checks;
mod listen;
mod reply;
mod scripts;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation, Value};
use tokio::sync::OnceCell;

use super::notify::Listener;
use super::open::redact;
use super::record::Due;
use super::{
    Lease, LeaseRef, LeaseStatus, LeaseStore, Member, Plan, ReleaseNotifications, RunEnd,
    RunRecord, RunStart, ScheduleRecord, StartedRun, StoreError, StoreOptions, args,
};

/// A lease store on a Redis server (`redis://[user:password@]host:6379/DB`, or `rediss://` for
/// TLS where the `redis` crate is built with it), for services whose shared infrastructure is
/// Redis.
///
/// Each method is one Lua script run atomically on the server, with expiry by the server's
/// clock; releases and operator commands are pushed by pub/sub.
///
/// # Keys
///
/// All keys start with [`StoreOptions::table_prefix`] (default `loopjob_`, shown as `P`):
///
/// ```text
/// P lease:KEY        hash   holder, epoch, expires (ms by the server's clock)
/// P leases           zset   every lease key (score 0), for list() by prefix
/// P members:SCOPE    zset   member → expiry in ms; swept by heartbeats, expires an hour after its last member
/// P schedule:KEY     hash   format, anchor, next_due, last_seq, history_limit, paused_*, trigger_*
/// P schedules        zset   every key with a schedule record, for list_schedules()
/// P runs:KEY         list   the key's newest runs (JSON), trimmed to history_limit at each start
/// P notices          pub/sub channel: `released:KEY`, `commanded:KEY`
/// ```
///
/// Expiry is decided inside the scripts by the server's clock (`redis.call('TIME')`), never a
/// client's; lease hashes carry no `PEXPIRE`, because a lease row must outlive its expiry to
/// keep its epoch. The store needs a single Redis server (with or without replicas), not Redis
/// Cluster: its scripts touch keys they compute from the prefix.
///
/// # Epochs survive a restart without persistence
///
/// A key's first epoch is the server's time in milliseconds times 1,000; each acquisition
/// after that adds one. If the server restarts without persistence (or its keys are flushed),
/// a key acquired again starts at the new time times 1,000, which is above every epoch the key
/// had before, as long as the key was acquired fewer than 1,000 times per millisecond on
/// average since its row was created (each acquisition is a round trip: in practice far fewer)
/// and the server's clock did not step back. Epochs stay below 2^53 (exact in Lua's numbers)
/// until the year 2255.
///
/// # What a failover can and cannot guarantee
///
/// Redis replicates asynchronously. If the primary fails and a replica is promoted, writes the
/// primary acknowledged but had not yet sent are lost: a lease just acquired or renewed may be
/// missing or older on the new primary, so another replica can acquire it while its previous
/// holder still believes it holds it, for up to the lease ttl. Mutual exclusion is therefore
/// not guaranteed across a failover (Redis's own documentation says the same of single-instance
/// and Redlock-style locks). What still holds: the new epoch is computed from the promoted
/// server's clock, so if its clock is not behind the old primary's, the new holder's epoch is
/// greater than the old one's, and a downstream system that compares fencing tokens rejects the
/// old holder's writes. `WAIT` is not used: it narrows the window but cannot close it. For
/// exclusion that survives a failover, use PostgreSQL, MySQL, or etcd.
///
/// ```no_run
/// # async fn demo() -> Result<(), loopjob::store::StoreError> {
/// let store = loopjob::store::open("redis://127.0.0.1:6379/0")?;
/// store.initialise().await?;
/// # Ok(())
/// # }
/// ```
pub struct RedisStore {
    client: redis::Client,
    url: String,
    prefix: String,
    timeout: Duration,
    connection: OnceCell<ConnectionManager>,
    listener: Listener,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How the connection manager reconnects after it lost its connection, for stores whose calls
/// give up after `timeout`: each attempt gives up after `timeout` too, and attempts come at most
/// a fifth of it apart (at least 50 ms, at most 1 s).
///
/// The `redis` crate's defaults (0.32) wait for an attempt with no time limit, and wait a second,
/// then a minute, between attempts (its factor multiplies the delay); a node whose connection
/// was cut for a couple of seconds then could not reach the store for a minute or more, every
/// call timing out (found by the chaos suite; `tests/store_outage.rs`). The delay is capped
/// so that either reading of the factor gives short delays.
fn reconnect(timeout: Duration) -> ConnectionManagerConfig {
    let max_delay = (timeout / 5).clamp(Duration::from_millis(50), Duration::from_secs(1));
    ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_factor(2)
        .set_max_delay(u64::try_from(max_delay.as_millis()).unwrap_or(1_000))
}

impl RedisStore {
    /// A store on the server at `url`, connecting on its first call (call
    /// [`LeaseStore::initialise`] to find out whether the server is reachable).
    ///
    /// A URL the `redis` crate cannot parse, or a key prefix that is empty, longer than 64
    /// bytes or holds characters other than letters, digits, `_`, `-`, `.` and `:`, is
    /// [`StoreError::InvalidInput`]; the message shows the URL with its password as `***`.
    pub fn connect_lazy(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let prefix = checks::key_prefix(options.get_table_prefix())?;
        let client = checks::client(url)?;
        Ok(RedisStore {
            client,
            url: redact(url),
            prefix: prefix.to_owned(),
            timeout: options.get_operation_timeout(),
            connection: OnceCell::new(),
            listener: Listener::default(),
        })
    }

    /// Runs `script` with the prefix as its first argument and `args` after it, within the
    /// operation timeout, connecting first if needed; answers the reply's fields after `ok`.
    async fn call(
        &self,
        operation: &'static str,
        script: &Script,
        key: &str,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> Result<Vec<Value>, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix);
        args(&mut invocation);
        let backend = |error: redis::RedisError| StoreError::Backend {
            operation,
            source: Box::new(error),
        };
        let reply = tokio::time::timeout(self.timeout, async {
            let connection = self
                .connection
                .get_or_try_init(|| {
                    self.client
                        .get_connection_manager_with_config(reconnect(self.timeout))
                })
                .await
                .map_err(backend)?;
            let mut connection = connection.clone();
            invocation
                .invoke_async::<Value>(&mut connection)
                .await
                .map_err(backend)
        })
        .await
        .map_err(|_| StoreError::Timeout {
            operation,
            timeout: self.timeout,
        })??;
        reply::fields(reply, key)
    }

    /// The schedule records of `keys`, or of every key under a prefix.
    async fn read_schedules(
        &self,
        mode: &'static str,
        names: &[&str],
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let fields = self
            .call("schedules", &scripts::SCHEDULES, "", |call| {
                call.arg(mode);
                for name in names {
                    call.arg(*name);
                }
            })
            .await?;
        reply::records(&fields)
    }

    async fn command(
        &self,
        key: &str,
        by: &str,
        command: &'static str,
    ) -> Result<ScheduleRecord, StoreError> {
        let key = args::name("lease key", key)?;
        let by = args::name("operator name", by)?;
        let fields = self
            .call(command, &scripts::COMMAND, key, |call| {
                call.arg(key).arg(by).arg(command);
            })
            .await?;
        reply::records(&fields)?
            .pop()
            .ok_or_else(|| StoreError::corrupted("schedules", key, "the script answered no record"))
    }

    async fn members_of(
        &self,
        operation: &'static str,
        scope: &str,
        member: &str,
        ttl_ms: i64,
    ) -> Result<Vec<Member>, StoreError> {
        let fields = self
            .call(operation, &scripts::MEMBERS, scope, |call| {
                call.arg(scope).arg(member).arg(ttl_ms);
            })
            .await?;
        let mut members = Vec::with_capacity(fields.len() / 2);
        for row in fields.chunks_exact(2) {
            let name = reply::text(&row[0]).unwrap_or_default();
            let expires_at_ms = reply::int(&row[1]).ok_or_else(|| {
                StoreError::corrupted("members", scope, format!("member `{name}` has no expiry"))
            })?;
            members.push(Member {
                scope: scope.to_owned(),
                member: name,
                expires_at_ms,
            });
        }
        members.sort_by(|a, b| a.member.cmp(&b.member));
        Ok(members)
    }
}

/// A next due time as three script arguments: kind, a, b.
fn due_args(call: &mut ScriptInvocation<'_>, due: Due) {
    match due {
        Due::Unchanged => call.arg("u").arg(0).arg(0),
        Due::At(at) => call.arg("at").arg(at).arg(0),
        Due::After(delay) => call.arg("after").arg(delay).arg(0),
        Due::OnGrid { anchor, interval } => call.arg("grid").arg(anchor).arg(interval),
    };
}

/// The keys of a reply that lists keys.
fn key_list(fields: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = fields.iter().filter_map(reply::text).collect();
    keys.sort();
    keys
}

#[async_trait]
impl LeaseStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    /// Checks that the server is reachable and runs scripts: Redis needs no tables.
    async fn initialise(&self) -> Result<(), StoreError> {
        self.call("initialise", &scripts::LIST, "", |call| {
            // A prefix that no key has: reads nothing.
            call.arg("\u{7f}initialise");
        })
        .await
        .map(drop)
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
        let fields = self
            .call("try_acquire", &scripts::ACQUIRE, "", |call| {
                call.arg(holder).arg(ttl).arg(free_for);
                for key in &keys {
                    call.arg(*key);
                }
            })
            .await?;
        reply::leases(&fields, holder)
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
        let fields = self
            .call("renew", &scripts::RENEW, "", |call| {
                call.arg(holder).arg(ttl);
                for (key, epoch) in &leases {
                    call.arg(*key).arg(*epoch);
                }
            })
            .await?;
        reply::leases(&fields, holder)
    }

    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        if leases.is_empty() {
            return Ok(());
        }
        self.call("release", &scripts::RELEASE, "", |call| {
            call.arg(holder);
            for (key, epoch) in &leases {
                call.arg(*key).arg(*epoch);
            }
        })
        .await
        .map(drop)
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
        self.members_of("heartbeat", scope, member, ttl).await
    }

    async fn members(&self, scope: &str) -> Result<Vec<Member>, StoreError> {
        let scope = args::name("membership scope", scope)?;
        self.members_of("members", scope, "", 0).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaseStatus>, StoreError> {
        let fields = self
            .call("list", &scripts::LIST, prefix, |call| {
                call.arg(prefix);
            })
            .await?;
        let Some((now, rows)) = fields.split_first() else {
            return Ok(Vec::new());
        };
        let now = reply::int(now).unwrap_or(0);
        let mut listed = Vec::with_capacity(rows.len() / 4);
        for row in rows.chunks_exact(4) {
            let holder = reply::text(&row[1]).unwrap_or_default();
            let lease = reply::leases(&[row[0].clone(), row[2].clone(), row[3].clone()], &holder)?;
            for lease in lease {
                listed.push(LeaseStatus {
                    remaining: args::remaining(lease.expires_at_ms, now),
                    lease,
                });
            }
        }
        listed.sort_by(|a, b| a.lease.key.cmp(&b.lease.key));
        Ok(listed)
    }

    async fn schedules(&self, keys: &[String]) -> Result<Vec<ScheduleRecord>, StoreError> {
        let keys = args::keys(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.read_schedules("keys", &keys).await
    }

    async fn list_schedules(&self, prefix: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.read_schedules("prefix", &[prefix]).await
    }

    async fn plan(&self, holder: &str, plans: &[Plan]) -> Result<Vec<String>, StoreError> {
        let holder = args::name("holder", holder)?;
        let plans = args::plans(plans)?;
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let fields = self
            .call("plan", &scripts::PLAN, "", |call| {
                call.arg(holder);
                for plan in &plans {
                    call.arg(plan.key).arg(plan.epoch);
                    due_args(call, plan.due);
                    call.arg(u8::from(plan.only_if_unset));
                }
            })
            .await?;
        Ok(key_list(&fields))
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
        let fields = self
            .call("start_runs", &scripts::START_RUNS, "", |call| {
                call.arg(holder);
                for start in &starts {
                    call.arg(start.key).arg(start.epoch).arg(start.scheduled);
                    due_args(call, start.due);
                    call.arg(u8::from(start.triggered)).arg(start.history_limit);
                }
            })
            .await?;
        let mut started = Vec::with_capacity(fields.len() / 3);
        for row in fields.chunks_exact(3) {
            let key = reply::text(&row[0]).unwrap_or_default();
            let number = |value: &Value| {
                reply::int(value).ok_or_else(|| {
                    StoreError::corrupted("schedules", &key, "the started run has no number")
                })
            };
            started.push(StartedRun {
                seq: number(&row[1])?,
                started_ms: number(&row[2])?,
                key,
            });
        }
        started.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(started)
    }

    async fn end_runs(&self, holder: &str, ends: &[RunEnd]) -> Result<Vec<String>, StoreError> {
        let holder = args::name("holder", holder)?;
        let ends = args::ends(ends)?;
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        let fields = self
            .call("end_runs", &scripts::END_RUNS, "", |call| {
                call.arg(holder);
                for end in &ends {
                    call.arg(end.key)
                        .arg(end.epoch)
                        .arg(end.seq)
                        .arg(end.outcome.as_str())
                        .arg(end.attempts)
                        .arg(u8::from(end.error.is_some()))
                        .arg(end.error.as_deref().unwrap_or(""));
                    due_args(call, end.due);
                }
            })
            .await?;
        Ok(key_list(&fields))
    }

    async fn pause(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, "pause").await
    }

    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, "resume").await
    }

    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, "trigger").await
    }

    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let key = args::name("lease key", key)?;
        let limit = args::history_limit(limit)?;
        let fields = self
            .call("history", &scripts::HISTORY, key, |call| {
                call.arg(key).arg(limit);
            })
            .await?;
        let mut runs = Vec::with_capacity(fields.len() / reply::RUN_FIELDS);
        for row in fields.chunks_exact(reply::RUN_FIELDS) {
            runs.extend(reply::run(key, row)?);
        }
        Ok(runs)
    }

    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        self.listener.subscribe_spawning(|sender, stop| {
            let channel = format!("{}notices", self.prefix);
            listen::listen(self.client.clone(), channel, sender, stop)
        })
    }
}
