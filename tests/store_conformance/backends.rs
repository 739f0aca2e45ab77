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
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            }
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
