//! The baseline for a graceful handover on PostgreSQL: the same round trips done by hand with
//! plain SQL, no library, in the same run as loopjob's trials.
//!
//! A loopjob handover on PostgreSQL is: the leader's release (one statement that notifies),
//! the follower's listener hearing of it, its acquisition (one statement), its read of the
//! key's record (one), and the run's start (a transaction of six round trips: `BEGIN`, a read
//! fenced by the lease, the record, the run, the history's trim, `COMMIT`). This does the same
//! with the simplest statements that keep each step's effect: tables of one key each, no batch,
//! no retry, no clock conversion. What loopjob's handover takes beyond this is the library's;
//! what this takes is the machine's and the database's floor.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::GIVE_UP;

/// The store's clock in milliseconds, as loopjob's statements read it.
const NOW_MS: &str = "floor(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// Two processes' connections to one PostgreSQL: the leader's pool, and the follower's pool and
/// listener, whose task takes over every key released on the channel.
pub struct RawHandover {
    leader: PgPool,
    follower_task: JoinHandle<()>,
    taken_over: mpsc::UnboundedReceiver<(String, Steps)>,
    leases: String,
    schedules: String,
    runs: String,
    channel: String,
}

impl RawHandover {
    /// Creates the tables (named with `prefix`), opens both sides' connections and starts the
    /// follower listening.
    pub async fn set_up(url: &str, prefix: &str) -> Self {
        let leases = format!("\"{prefix}raw_leases\"");
        let schedules = format!("\"{prefix}raw_schedules\"");
        let runs = format!("\"{prefix}raw_runs\"");
        let channel = format!("{prefix}raw");
        let pool = |connections| {
            PgPoolOptions::new()
                .max_connections(connections)
                .min_connections(connections)
                .connect(url)
        };
        let leader = pool(1).await.expect("the raw baseline's leader connects");
        for table in [
            format!(
                "CREATE TABLE {leases} (lease_key TEXT PRIMARY KEY, holder TEXT NOT NULL, \
                 epoch BIGINT NOT NULL, expires_at BIGINT NOT NULL)"
            ),
            format!(
                "CREATE TABLE {schedules} (lease_key TEXT PRIMARY KEY, next_due BIGINT NOT NULL, \
                 last_seq BIGINT NOT NULL)"
            ),
            format!(
                "CREATE TABLE {runs} (lease_key TEXT NOT NULL, seq BIGINT NOT NULL, \
                 holder TEXT NOT NULL, epoch BIGINT NOT NULL, PRIMARY KEY (lease_key, seq))"
            ),
        ] {
            sqlx::query(&table)
                .execute(&leader)
                .await
                .expect("the raw baseline's tables");
        }
        let follower = pool(2).await.expect("the raw baseline's follower connects");
        let mut listener = PgListener::connect_with(&follower)
            .await
            .expect("the raw baseline's listener");
        listener
            .listen(&channel)
            .await
            .expect("the raw baseline listens");
        let (taken_over_tx, taken_over) = mpsc::unbounded_channel();
        let statements = Statements {
            acquire: format!(
                "UPDATE {leases} SET holder = 'follower', epoch = epoch + 1, \
                 expires_at = {NOW_MS} + 1000 WHERE lease_key = $1 AND expires_at <= {NOW_MS} \
                 RETURNING epoch"
            ),
            read: format!("SELECT next_due, last_seq FROM {schedules} WHERE lease_key = $1"),
            fenced_read: format!(
                "SELECT s.last_seq FROM {schedules} s JOIN {leases} l USING (lease_key) \
                 WHERE s.lease_key = $1 AND l.holder = 'follower' AND l.epoch = $2 \
                 FOR UPDATE OF s"
            ),
            record: format!(
                "UPDATE {schedules} SET last_seq = last_seq + 1, next_due = {NOW_MS} + 10 \
                 WHERE lease_key = $1"
            ),
            run: format!(
                "INSERT INTO {runs} (lease_key, seq, holder, epoch) VALUES ($1, $2, 'follower', $3)"
            ),
            trim: format!("DELETE FROM {runs} WHERE lease_key = $1 AND seq <= $2 - 20"),
        };
        let follower_task = tokio::spawn(async move {
            while let Ok(notification) = listener.recv().await {
                let heard = Instant::now();
                let key = notification.payload().to_owned();
                let steps = statements.take_over(&follower, &key, heard).await;
                if taken_over_tx.send((key, steps)).is_err() {
                    return;
                }
            }
        });
        RawHandover {
            leader,
            follower_task,
            taken_over,
            leases,
            schedules,
            runs,
            channel,
        }
    }

    /// One handover of a fresh key: the leader holds it, then releases it; returns each step's
    /// time from the release's sending.
    pub async fn trial(&mut self, index: usize) -> RawTrial {
        let key = format!("raw_{index}");
        let leases = &self.leases;
        sqlx::query(&format!(
            "INSERT INTO {leases} VALUES ($1, 'leader', 1, {NOW_MS} + 1000)"
        ))
        .bind(&key)
        .execute(&self.leader)
        .await
        .expect("the raw leader holds");
        sqlx::query(&format!(
            "INSERT INTO {} VALUES ($1, {NOW_MS}, 0)",
            self.schedules
        ))
        .bind(&key)
        .execute(&self.leader)
        .await
        .expect("the raw key's record");

        let released_at = Instant::now();
        // As loopjob's release, its commit does not wait for the disk.
        sqlx::query(&format!(
            "WITH released AS (UPDATE {leases} SET expires_at = {NOW_MS} \
             WHERE lease_key = $1 AND holder = 'leader' \
             AND set_config('synchronous_commit', 'off', true) = 'off' RETURNING lease_key) \
             SELECT count(pg_notify($2, lease_key)) FROM released"
        ))
        .bind(&key)
        .bind(&self.channel)
        .execute(&self.leader)
        .await
        .expect("the raw leader releases");
        let released = released_at.elapsed();
        let (taken, steps) = timeout(GIVE_UP, self.taken_over.recv())
            .await
            .expect("the raw follower took over within 30 s")
            .expect("the raw follower is listening");
        assert_eq!(taken, key, "the raw follower took over another key");
        RawTrial {
            released,
            heard: steps.heard - released_at,
            acquired: steps.acquired - released_at,
            read: steps.read - released_at,
            started: steps.started - released_at,
        }
    }

    /// Stops the follower and drops the tables.
    pub async fn clean_up(self) {
        self.follower_task.abort();
        for table in [&self.runs, &self.schedules, &self.leases] {
            let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                .execute(&self.leader)
                .await;
        }
    }
}

/// One raw handover's steps, each from the release's sending.
pub struct RawTrial {
    /// The release answered.
    pub released: Duration,
    /// The follower's listener heard of it.
    pub heard: Duration,
    /// The acquisition answered.
    pub acquired: Duration,
    /// The record read answered.
    pub read: Duration,
    /// The start committed: the handover's end.
    pub started: Duration,
}

/// When each of the follower's steps ended.
struct Steps {
    heard: Instant,
    acquired: Instant,
    read: Instant,
    started: Instant,
}

/// The follower's statements, in the order of a takeover.
struct Statements {
    acquire: String,
    read: String,
    fenced_read: String,
    record: String,
    run: String,
    trim: String,
}

impl Statements {
    /// Acquires `key`, reads its record, and starts its run, one round trip a statement.
    async fn take_over(&self, pool: &PgPool, key: &str, heard: Instant) -> Steps {
        let (epoch,): (i64,) = sqlx::query_as(&self.acquire)
            .bind(key)
            .fetch_one(pool)
            .await
            .expect("the raw follower acquires");
        let acquired = Instant::now();
        let _: (i64, i64) = sqlx::query_as(&self.read)
            .bind(key)
            .fetch_one(pool)
            .await
            .expect("the raw follower reads the record");
        let read = Instant::now();
        let mut start = pool.begin().await.expect("the raw start begins");
        let (last_seq,): (i64,) = sqlx::query_as(&self.fenced_read)
            .bind(key)
            .bind(epoch)
            .fetch_one(&mut *start)
            .await
            .expect("the raw start's fenced read");
        let seq = last_seq + 1;
        sqlx::query(&self.record)
            .bind(key)
            .execute(&mut *start)
            .await
            .expect("the raw start's record");
        sqlx::query(&self.run)
            .bind(key)
            .bind(seq)
            .bind(epoch)
            .execute(&mut *start)
            .await
            .expect("the raw start's run");
        sqlx::query(&self.trim)
            .bind(key)
            .bind(seq)
            .execute(&mut *start)
            .await
            .expect("the raw start's trim");
        start.commit().await.expect("the raw start commits");
        Steps {
            heard,
            acquired,
            read,
            started: Instant::now(),
        }
    }
}
