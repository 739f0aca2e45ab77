//! The fenced journal: the downstream system the jobs write to, the way a real one would use
//! the fencing token. A write for a key is accepted only if its epoch is at least the highest
//! epoch the journal has seen for that key; rejected writes are recorded too.
//!
//! It lives in PostgreSQL, reached directly (never through a node's proxy: the journal stands
//! for another system, not the lease store), in two tables per chaos run:
//!
//! ```text
//! {name}_hwm     (lease_key PK, epoch, seq)   per key: highest epoch seen, writes so far
//! {name}_journal (seq PK, lease_key, node, job, run_id, epoch, start_ns, end_ns,
//!                 cancelled, key_seq, accepted)
//! ```
//!
//! One statement does the fenced write: the upsert on `{name}_hwm` takes the key's row lock,
//! raises the high-water epoch, and numbers the write (`key_seq`), so writes of one key are
//! totally ordered by `key_seq` and `accepted` is decided under that lock. The statement
//! commits on the server without another round trip, so a writer frozen by SIGSTOP right
//! after sending it holds no lock.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

/// One run's write for one key.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub node: String,
    pub job: String,
    pub run_id: u64,
    pub epoch: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Whether the run's token was cancelled when the run ended.
    pub cancelled: bool,
}

/// A write as the journal recorded it.
#[derive(Debug, Clone)]
pub struct Written {
    pub entry: Entry,
    /// The write's place among the writes of its key.
    pub key_seq: u64,
    pub accepted: bool,
}

/// A handle on one chaos run's journal tables.
#[derive(Clone)]
pub struct Journal {
    pool: PgPool,
    hwm: String,
    journal: String,
}

impl Journal {
    /// Connects to the journal named `name` (letters, digits, `_`) in the database at `url`.
    pub async fn connect(url: &str, name: &str) -> Result<Journal, sqlx::Error> {
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Journal {
            pool,
            hwm: format!("{name}_hwm"),
            journal: format!("{name}_journal"),
        })
    }

    /// Creates the tables (dropping any left by a run with the same name).
    pub async fn create(&self) -> Result<(), sqlx::Error> {
        self.drop_tables().await?;
        let sql = format!(
            "CREATE TABLE {hwm} (lease_key TEXT PRIMARY KEY, epoch BIGINT NOT NULL, \
             seq BIGINT NOT NULL); \
             CREATE TABLE {journal} (seq BIGSERIAL PRIMARY KEY, lease_key TEXT NOT NULL, \
             node TEXT NOT NULL, job TEXT NOT NULL, run_id BIGINT NOT NULL, epoch BIGINT NOT NULL, \
             start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, cancelled BOOLEAN NOT NULL, \
             key_seq BIGINT NOT NULL, accepted BOOLEAN NOT NULL)",
            hwm = self.hwm,
            journal = self.journal
        );
        self.pool.execute(sql.as_str()).await?;
        Ok(())
    }

    pub async fn drop_tables(&self) -> Result<(), sqlx::Error> {
        let sql = format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}",
            self.hwm, self.journal
        );
        self.pool.execute(sql.as_str()).await?;
        Ok(())
    }

    /// The fenced write: accepted iff `entry.epoch` is at least the key's high-water epoch.
    pub async fn write(&self, entry: &Entry) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "WITH hw AS ( \
               INSERT INTO {hwm} AS h (lease_key, epoch, seq) VALUES ($1, $2, 1) \
               ON CONFLICT (lease_key) DO UPDATE \
                 SET epoch = GREATEST(h.epoch, EXCLUDED.epoch), seq = h.seq + 1 \
               RETURNING epoch, seq) \
             INSERT INTO {journal} (lease_key, node, job, run_id, epoch, start_ns, end_ns, \
               cancelled, key_seq, accepted) \
             SELECT $1, $3, $4, $5, $2, $6, $7, $8, hw.seq, hw.epoch = $2 FROM hw \
             RETURNING accepted",
            hwm = self.hwm,
            journal = self.journal
        );
        let row = sqlx::query(&sql)
            .bind(&entry.key)
            .bind(entry.epoch as i64)
            .bind(&entry.node)
            .bind(&entry.job)
            .bind(entry.run_id as i64)
            .bind(entry.start_ns as i64)
            .bind(entry.end_ns as i64)
            .bind(entry.cancelled)
            .fetch_one(&self.pool)
            .await?;
        row.try_get::<bool, _>(0)
    }

    /// Every write, in the order of the journal's sequence.
    pub async fn rows(&self) -> Result<Vec<Written>, sqlx::Error> {
        let sql = format!(
            "SELECT lease_key, node, job, run_id, epoch, start_ns, end_ns, cancelled, key_seq, \
             accepted FROM {} ORDER BY seq",
            self.journal
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(Written {
                    entry: Entry {
                        key: row.try_get(0)?,
                        node: row.try_get(1)?,
                        job: row.try_get(2)?,
                        run_id: row.try_get::<i64, _>(3)? as u64,
                        epoch: row.try_get::<i64, _>(4)? as u64,
                        start_ns: row.try_get::<i64, _>(5)? as u64,
                        end_ns: row.try_get::<i64, _>(6)? as u64,
                        cancelled: row.try_get(7)?,
                    },
                    key_seq: row.try_get::<i64, _>(8)? as u64,
                    accepted: row.try_get(9)?,
                })
            })
            .collect()
    }
}
