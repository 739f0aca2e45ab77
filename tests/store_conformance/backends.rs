//! How the suite reaches each backend: open a store on a table prefix, write corrupted rows,
//! and clean up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use loopjob::store::{LeaseStore, MemoryStore, StoreOptions};

/// How a test row is broken.
#[derive(Debug, Clone, Copy)]
pub enum Corruption {
    NullHolder,
    NegativeEpoch,
}

/// How a test schedule record is broken.
#[derive(Debug, Clone, Copy)]
pub enum RecordCorruption {
    /// The record has a format from the future.
    NewerFormat,
    /// The record's last run has an outcome no version knows.
    UnknownOutcome,
    /// The record's last run has a negative epoch.
    NegativeRunEpoch,
    /// The record's last run ended before it started.
    EndedBeforeStart,
}

impl RecordCorruption {
    /// The rows to insert, as SQL value lists for `schedules (lease_key, format, last_seq,
    /// history_limit)` and, if any, `runs (lease_key, seq, holder, epoch, scheduled, started,
    /// ended, outcome, attempts, error, triggered)`.
    #[allow(dead_code)] // Unused when no SQL feature is on.
    pub fn rows(self, key: &str) -> (String, Option<String>) {
        match self {
            RecordCorruption::NewerFormat => (format!("('{key}', 99, 0, 100)"), None),
            RecordCorruption::UnknownOutcome => (
                format!("('{key}', 1, 1, 100)"),
                Some(format!(
                    "('{key}', 1, 'h', 1, 0, 0, 5, 'exploded', 1, NULL, FALSE)"
                )),
            ),
            RecordCorruption::NegativeRunEpoch => (
                format!("('{key}', 1, 1, 100)"),
                Some(format!(
                    "('{key}', 1, 'h', -5, 0, 0, NULL, NULL, 0, NULL, FALSE)"
                )),
            ),
            RecordCorruption::EndedBeforeStart => (
                format!("('{key}', 1, 1, 100)"),
                Some(format!(
                    "('{key}', 1, 'h', 1, 0, 5, 4, 'failed', 1, NULL, FALSE)"
                )),
            ),
        }
    }
}

/// The statements that write `rows` under `prefix`, quoting table names with `quote`.
#[allow(dead_code)] // Unused when no SQL feature is on.
pub fn corrupt_schedule_sql(
    prefix: &str,
    quote: char,
    rows: &[(&str, RecordCorruption)],
) -> Vec<String> {
    let mut sql = Vec::new();
    for (key, how) in rows {
        let (record, run) = how.rows(key);
        sql.push(format!(
            "INSERT INTO {quote}{prefix}schedules{quote} \
             (lease_key, format, last_seq, history_limit) VALUES {record}"
        ));
        if let Some(run) = run {
            sql.push(format!(
                "INSERT INTO {quote}{prefix}runs{quote} (lease_key, seq, holder, epoch, \
                 scheduled, started, ended, outcome, attempts, error, triggered) VALUES {run}"
            ));
        }
    }
    sql
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The URL of the shared server the backend runs on, whose old test tables are swept
    /// (`support/test_prefix.rs`); none for memory and SQLite's file of this process.
    fn server_url(&self) -> Option<&str> {
        None
    }

    /// A store on the tables under `prefix`. Each call is a new handle (another replica),
    /// except for memory, where replicas share one store.
    async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore>;

    /// Loosens the schema and writes the given corrupted rows (after `initialise`); false where
    /// the backend cannot hold such rows at all.
    async fn corrupt(&self, prefix: &str, rows: &[(&str, Corruption)]) -> bool;

    /// Writes bad schedule records (after `initialise`); false where the backend cannot hold
    /// such rows at all.
    async fn corrupt_schedules(&self, prefix: &str, rows: &[(&str, RecordCorruption)]) -> bool;

    /// Creates the tables of the previous schema (leases and members only, before the cluster
    /// schedule), with a lease `old` held by `a` at epoch 5; false where nothing persists.
    async fn previous_schema(&self, prefix: &str) -> bool;

    /// Drops the tables under `prefix`.
    async fn drop_tables(&self, prefix: &str);
}

/// Options with a short operation timeout and small pools, for tests.
#[allow(dead_code)] // Unused when no SQL feature is on.
pub fn test_options(prefix: &str) -> StoreOptions {
    StoreOptions::default()
        .table_prefix(prefix)
        .operation_timeout(Duration::from_secs(10))
        .max_connections(4)
}

#[derive(Default)]
pub struct Memory {
    stores: Mutex<HashMap<String, Arc<MemoryStore>>>,
}

#[async_trait]
impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore> {
        let mut stores = self.stores.lock().unwrap();
        stores.entry(prefix.to_owned()).or_default().clone()
    }

    async fn corrupt(&self, _prefix: &str, _rows: &[(&str, Corruption)]) -> bool {
        // Its rows are typed Rust values: a NULL holder or a negative epoch cannot exist.
        false
    }

    async fn corrupt_schedules(&self, _prefix: &str, _rows: &[(&str, RecordCorruption)]) -> bool {
        // Its records are typed Rust values of this build's format.
        false
    }

    async fn previous_schema(&self, _prefix: &str) -> bool {
        false
    }

    async fn drop_tables(&self, prefix: &str) {
        self.stores.lock().unwrap().remove(prefix);
    }
}

#[cfg(feature = "sqlite")]
pub use self::sqlite::Sqlite;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use loopjob::store::SqliteStore;

    pub struct Sqlite {
        url: String,
        path: std::path::PathBuf,
    }

    impl Sqlite {
        pub fn new() -> Self {
            let path =
                std::env::temp_dir().join(format!("loopjob-conformance-{}.db", std::process::id()));
            Sqlite {
                url: format!("sqlite://{}", path.display()),
                path,
            }
        }
    }

    impl Drop for Sqlite {
        fn drop(&mut self) {
            crate::sqlite_file::remove(&self.path);
        }
    }

    #[async_trait]
    impl Backend for Sqlite {
        fn name(&self) -> &'static str {
            "sqlite"
        }

        async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore> {
            Arc::new(SqliteStore::connect_lazy(&self.url, test_options(prefix)).unwrap())
        }

        async fn corrupt(&self, prefix: &str, rows: &[(&str, Corruption)]) -> bool {
            let store = SqliteStore::connect_lazy(&self.url, test_options(prefix)).unwrap();
            // SQLite cannot drop NOT NULL: rebuild the table without it, as a careless
            // hand-made migration might.
            let rebuild = format!(
                "DROP TABLE \"{prefix}leases\"; CREATE TABLE \"{prefix}leases\" \
                 (lease_key TEXT PRIMARY KEY, holder TEXT, epoch INTEGER, expires_at INTEGER)"
            );
            sqlx::raw_sql(&rebuild).execute(store.pool()).await.unwrap();
            for (key, how) in rows {
                let (holder, epoch) = match how {
                    Corruption::NullHolder => (None, 3),
                    Corruption::NegativeEpoch => (Some("someone"), -5),
                };
                sqlx::query(&format!(
                    "INSERT INTO \"{prefix}leases\" VALUES (?, ?, ?, 0)"
                ))
                .bind(*key)
                .bind(holder)
                .bind(epoch)
                .execute(store.pool())
                .await
                .unwrap();
            }
            true
        }

        async fn corrupt_schedules(&self, prefix: &str, rows: &[(&str, RecordCorruption)]) -> bool {
            let store = SqliteStore::connect_lazy(&self.url, test_options(prefix)).unwrap();
            for sql in corrupt_schedule_sql(prefix, '"', rows) {
                sqlx::raw_sql(&sql).execute(store.pool()).await.unwrap();
            }
            true
        }

        async fn previous_schema(&self, prefix: &str) -> bool {
            let store = SqliteStore::connect_lazy(&self.url, test_options(prefix)).unwrap();
            let sql = format!(
                "CREATE TABLE \"{prefix}leases\" (lease_key TEXT NOT NULL PRIMARY KEY, \
                 holder TEXT NOT NULL, epoch INTEGER NOT NULL, expires_at INTEGER NOT NULL) \
                 WITHOUT ROWID; \
                 CREATE TABLE \"{prefix}members\" (scope TEXT NOT NULL, member TEXT NOT NULL, \
                 expires_at INTEGER NOT NULL, PRIMARY KEY (scope, member)) WITHOUT ROWID; \
                 INSERT INTO \"{prefix}leases\" VALUES ('old', 'a', 5, 0)"
            );
            sqlx::raw_sql(&sql).execute(store.pool()).await.unwrap();
            true
        }

        async fn drop_tables(&self, prefix: &str) {
            let store = SqliteStore::connect_lazy(&self.url, test_options(prefix)).unwrap();
            let sql = ["leases", "members", "schedules", "runs"]
                .map(|table| format!("DROP TABLE IF EXISTS \"{prefix}{table}\";"))
                .concat();
            let _ = sqlx::raw_sql(&sql).execute(store.pool()).await;
        }
    }
}

#[cfg(feature = "postgres")]
pub use self::postgres::Postgres;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use loopjob::store::PostgresStore;

    pub struct Postgres {
        url: String,
    }

    impl Postgres {
        pub fn from_env() -> Option<Self> {
            let url = std::env::var("LOOPJOB_TEST_POSTGRES_URL").ok()?;
            Some(Postgres { url })
        }

        async fn admin(&self, prefix: &str, sql: &str) {
            let store = PostgresStore::connect_lazy(&self.url, test_options(prefix)).unwrap();
            sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
            store.pool().close().await;
        }
    }

    #[async_trait]
    impl Backend for Postgres {
        fn name(&self) -> &'static str {
            "postgres"
        }
        fn server_url(&self) -> Option<&str> {
            Some(&self.url)
        }

        async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore> {
            Arc::new(PostgresStore::connect_lazy(&self.url, test_options(prefix)).unwrap())
        }

        async fn corrupt(&self, prefix: &str, rows: &[(&str, Corruption)]) -> bool {
            let mut sql =
                format!("ALTER TABLE \"{prefix}leases\" ALTER COLUMN holder DROP NOT NULL;");
            for (key, how) in rows {
                let (holder, epoch) = match how {
                    Corruption::NullHolder => ("NULL", 3),
                    Corruption::NegativeEpoch => ("'someone'", -5),
                };
                sql.push_str(&format!(
                    "INSERT INTO \"{prefix}leases\" VALUES ('{key}', {holder}, {epoch}, 0);"
                ));
            }
            self.admin(prefix, &sql).await;
            true
        }

        async fn corrupt_schedules(&self, prefix: &str, rows: &[(&str, RecordCorruption)]) -> bool {
            let sql = corrupt_schedule_sql(prefix, '"', rows).join(";");
            self.admin(prefix, &sql).await;
            true
        }

        async fn previous_schema(&self, prefix: &str) -> bool {
            let sql = format!(
                "CREATE TABLE \"{prefix}leases\" (lease_key TEXT COLLATE \"C\" NOT NULL \
                 PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL, \
                 expires_at BIGINT NOT NULL) WITH (fillfactor = 50); \
                 CREATE TABLE \"{prefix}members\" (scope TEXT COLLATE \"C\" NOT NULL, \
                 member TEXT COLLATE \"C\" NOT NULL, expires_at BIGINT NOT NULL, \
                 PRIMARY KEY (scope, member)) WITH (fillfactor = 50); \
                 INSERT INTO \"{prefix}leases\" VALUES ('old', 'a', 5, 0)"
            );
            self.admin(prefix, &sql).await;
            true
        }

        async fn drop_tables(&self, prefix: &str) {
            let sql = format!(
                "DROP TABLE IF EXISTS \"{prefix}leases\", \"{prefix}members\", \
                 \"{prefix}schedules\", \"{prefix}runs\""
            );
            self.admin(prefix, &sql).await;
        }
    }
}

#[cfg(feature = "mysql")]
pub use self::mysql::MySql;

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use loopjob::store::MySqlStore;

    pub struct MySql {
        url: String,
    }

    impl MySql {
        pub fn from_env() -> Option<Self> {
            let url = std::env::var("LOOPJOB_TEST_MYSQL_URL").ok()?;
            Some(MySql { url })
        }

        async fn admin(&self, prefix: &str, statements: &[String]) {
            let store = MySqlStore::connect_lazy(&self.url, test_options(prefix)).unwrap();
            for sql in statements {
                sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
            }
            store.pool().close().await;
        }
    }

    #[async_trait]
    impl Backend for MySql {
        fn name(&self) -> &'static str {
            "mysql"
        }
        fn server_url(&self) -> Option<&str> {
            Some(&self.url)
        }

        async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore> {
            Arc::new(MySqlStore::connect_lazy(&self.url, test_options(prefix)).unwrap())
        }

        async fn corrupt(&self, prefix: &str, rows: &[(&str, Corruption)]) -> bool {
            let mut sql = vec![format!(
                "ALTER TABLE `{prefix}leases` MODIFY holder VARBINARY(255) NULL"
            )];
            for (key, how) in rows {
                let (holder, epoch) = match how {
                    Corruption::NullHolder => ("NULL", 3),
                    Corruption::NegativeEpoch => ("'someone'", -5),
                };
                sql.push(format!(
                    "INSERT INTO `{prefix}leases` VALUES ('{key}', {holder}, {epoch}, 0)"
                ));
            }
            self.admin(prefix, &sql).await;
            true
        }

        async fn corrupt_schedules(&self, prefix: &str, rows: &[(&str, RecordCorruption)]) -> bool {
            self.admin(prefix, &corrupt_schedule_sql(prefix, '`', rows))
                .await;
            true
        }

        async fn previous_schema(&self, prefix: &str) -> bool {
            let sql = [
                format!(
                    "CREATE TABLE `{prefix}leases` (lease_key VARBINARY(255) NOT NULL PRIMARY \
                     KEY, holder VARBINARY(255) NOT NULL, epoch BIGINT NOT NULL, \
                     expires_at BIGINT NOT NULL) ENGINE = InnoDB"
                ),
                format!(
                    "CREATE TABLE `{prefix}members` (scope VARBINARY(255) NOT NULL, \
                     member VARBINARY(255) NOT NULL, expires_at BIGINT NOT NULL, \
                     PRIMARY KEY (scope, member)) ENGINE = InnoDB"
                ),
                format!("INSERT INTO `{prefix}leases` VALUES ('old', 'a', 5, 0)"),
            ];
            self.admin(prefix, &sql).await;
            true
        }

        async fn drop_tables(&self, prefix: &str) {
            let sql = format!(
                "DROP TABLE IF EXISTS `{prefix}leases`, `{prefix}members`, \
                 `{prefix}schedules`, `{prefix}runs`"
            );
            self.admin(prefix, &[sql]).await;
        }
    }
}

#[cfg(feature = "redis")]
pub use self::redis_backend::Redis;

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use loopjob::store::RedisStore;

    pub struct Redis {
        url: String,
    }

    impl Redis {
        pub fn from_env() -> Option<Self> {
            let url = std::env::var("LOOPJOB_TEST_REDIS_URL").ok()?;
            Some(Redis { url })
        }

        async fn admin(&self) -> redis::aio::MultiplexedConnection {
            let client = redis::Client::open(self.url.as_str()).unwrap();
            client.get_multiplexed_async_connection().await.unwrap()
        }
    }

    /// A run as the Redis store keeps it: JSON of strings.
    fn run_json(epoch: &str, ended: Option<&str>, outcome: Option<&str>) -> String {
        let mut json = format!(
            "{{\"seq\":\"1\",\"holder\":\"h\",\"epoch\":\"{epoch}\",\"scheduled\":\"0\",\
             \"started\":\"0\",\"attempts\":\"1\",\"triggered\":false"
        );
        if let Some(ended) = ended {
            json.push_str(&format!(",\"ended\":\"{ended}\""));
        }
        if let Some(outcome) = outcome {
            json.push_str(&format!(",\"outcome\":\"{outcome}\""));
        }
        json.push('}');
        json
    }

    #[async_trait]
    impl Backend for Redis {
        fn name(&self) -> &'static str {
            "redis"
        }
        fn server_url(&self) -> Option<&str> {
            Some(&self.url)
        }

        async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore> {
            Arc::new(RedisStore::connect_lazy(&self.url, test_options(prefix)).unwrap())
        }

        async fn corrupt(&self, prefix: &str, rows: &[(&str, Corruption)]) -> bool {
            let mut admin = self.admin().await;
            for (key, how) in rows {
                let mut hash = redis::cmd("HSET");
                hash.arg(format!("{prefix}lease:{key}"));
                match how {
                    Corruption::NullHolder => hash.arg("epoch").arg(3),
                    Corruption::NegativeEpoch => {
                        hash.arg("holder").arg("someone").arg("epoch").arg(-5)
                    }
                };
                hash.arg("expires").arg(0);
                hash.query_async::<redis::Value>(&mut admin).await.unwrap();
                redis::cmd("ZADD")
                    .arg(format!("{prefix}leases"))
                    .arg(0)
                    .arg(*key)
                    .query_async::<redis::Value>(&mut admin)
                    .await
                    .unwrap();
            }
            true
        }

        async fn corrupt_schedules(&self, prefix: &str, rows: &[(&str, RecordCorruption)]) -> bool {
            let mut admin = self.admin().await;
            for (key, how) in rows {
                let (format, last_seq, run) = match how {
                    RecordCorruption::NewerFormat => (99, 0, None),
                    RecordCorruption::UnknownOutcome => {
                        (1, 1, Some(run_json("1", Some("5"), Some("exploded"))))
                    }
                    RecordCorruption::NegativeRunEpoch => (1, 1, Some(run_json("-5", None, None))),
                    // Its runs start at 0: an end before it is also before 1970.
                    RecordCorruption::EndedBeforeStart => {
                        (1, 1, Some(run_json("1", Some("-1"), Some("failed"))))
                    }
                };
                redis::cmd("HSET")
                    .arg(format!("{prefix}schedule:{key}"))
                    .arg("format")
                    .arg(format)
                    .arg("last_seq")
                    .arg(last_seq)
                    .arg("history_limit")
                    .arg(100)
                    .query_async::<redis::Value>(&mut admin)
                    .await
                    .unwrap();
                redis::cmd("ZADD")
                    .arg(format!("{prefix}schedules"))
                    .arg(0)
                    .arg(*key)
                    .query_async::<redis::Value>(&mut admin)
                    .await
                    .unwrap();
                if let Some(run) = run {
                    redis::cmd("RPUSH")
                        .arg(format!("{prefix}runs:{key}"))
                        .arg(run)
                        .query_async::<redis::Value>(&mut admin)
                        .await
                        .unwrap();
                }
            }
            true
        }

        async fn previous_schema(&self, _prefix: &str) -> bool {
            // Redis has no schema: there is nothing to migrate.
            false
        }

        async fn drop_tables(&self, prefix: &str) {
            let mut admin = self.admin().await;
            let names: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut admin)
                .await
                .unwrap();
            if !names.is_empty() {
                redis::cmd("DEL")
                    .arg(names)
                    .query_async::<redis::Value>(&mut admin)
                    .await
                    .unwrap();
            }
        }
    }
}

// etcd runs in a test binary of its own (tests/store_conformance_etcd.rs): unused in this one.
#[cfg(feature = "etcd")]
#[allow(unused_imports)]
pub use self::etcd_backend::Etcd;

#[cfg(feature = "etcd")]
#[allow(dead_code)]
mod etcd_backend {
    use super::*;
    use etcd_client::{Client, DeleteOptions};
    use loopjob::store::EtcdStore;

    pub struct Etcd {
        url: String,
    }

    impl Etcd {
        pub fn from_env() -> Option<Self> {
            let url = std::env::var("LOOPJOB_TEST_ETCD_URL").ok()?;
            Some(Etcd { url })
        }

        async fn admin(&self) -> Client {
            let hosts = self.url.trim_start_matches("etcd://");
            let endpoints: Vec<String> = hosts.split(',').map(|h| format!("http://{h}")).collect();
            Client::connect(endpoints, None).await.unwrap()
        }

        async fn put(&self, key: String, value: &str) {
            self.admin().await.put(key, value, None).await.unwrap();
        }
    }

    /// A run as the etcd store keeps it (JSON).
    fn run_json(epoch: i64, ended: Option<i64>, outcome: Option<&str>) -> String {
        let mut json = format!(
            "{{\"seq\":1,\"holder\":\"h\",\"epoch\":{epoch},\"scheduled\":0,\
             \"started\":0,\"attempts\":1,\"triggered\":false"
        );
        if let Some(ended) = ended {
            json.push_str(&format!(",\"ended\":{ended}"));
        }
        if let Some(outcome) = outcome {
            json.push_str(&format!(",\"outcome\":\"{outcome}\""));
        }
        json.push('}');
        json
    }

    #[async_trait]
    impl Backend for Etcd {
        fn name(&self) -> &'static str {
            "etcd"
        }

        async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore> {
            Arc::new(EtcdStore::connect_lazy(&self.url, test_options(prefix)).unwrap())
        }

        async fn corrupt(&self, prefix: &str, rows: &[(&str, Corruption)]) -> bool {
            for (key, how) in rows {
                let row = match how {
                    Corruption::NullHolder => r#"{"epoch":3,"lease":0,"expires":0}"#,
                    Corruption::NegativeEpoch => {
                        r#"{"holder":"someone","epoch":-5,"lease":0,"expires":0}"#
                    }
                };
                self.put(format!("{prefix}lease/{key}"), row).await;
            }
            true
        }

        async fn corrupt_schedules(&self, prefix: &str, rows: &[(&str, RecordCorruption)]) -> bool {
            for (key, how) in rows {
                let (format, last_seq, run) = match how {
                    RecordCorruption::NewerFormat => (99, 0, None),
                    RecordCorruption::UnknownOutcome => {
                        (1, 1, Some(run_json(1, Some(5), Some("exploded"))))
                    }
                    RecordCorruption::NegativeRunEpoch => (1, 1, Some(run_json(-5, None, None))),
                    // Its runs start at 0: an end before it is also before 1970.
                    RecordCorruption::EndedBeforeStart => {
                        (1, 1, Some(run_json(1, Some(-1), Some("failed"))))
                    }
                };
                let record = format!(
                    "{{\"format\":{format},\"last_seq\":{last_seq},\"history_limit\":100}}"
                );
                self.put(format!("{prefix}schedule/{key}"), &record).await;
                if let Some(run) = run {
                    let name = format!("{prefix}runs/{:03}/{key}/{:020}", key.len(), 1);
                    self.put(name, &run).await;
                }
            }
            true
        }

        async fn previous_schema(&self, _prefix: &str) -> bool {
            // etcd has no schema: there is nothing to migrate.
            false
        }

        async fn drop_tables(&self, prefix: &str) {
            self.admin()
                .await
                .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                .await
                .unwrap();
        }
    }
}
