//! One conformance suite for every lease store: the same cases, unchanged, against memory,
//! SQLite, PostgreSQL, MySQL/MariaDB and Redis (and etcd, in `tests/store_conformance_etcd.rs`,
//! which runs the same modules in a test binary of its own).
//!
//! PostgreSQL, MySQL and Redis run when `LOOPJOB_TEST_POSTGRES_URL` / `LOOPJOB_TEST_MYSQL_URL` /
//! `LOOPJOB_TEST_REDIS_URL` are set (`.ci/run` sets all three) and say plainly that they were
//! skipped otherwise. Each case uses its own table prefix, so cases run concurrently and never
//! see each other's rows.

mod backends;
#[path = "../support/database_url.rs"]
mod database_url;
mod schedule;
#[path = "../support/sqlite_file.rs"]
mod sqlite_file;
mod suite;
#[path = "../support/test_prefix.rs"]
mod test_prefix;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory() {
    suite::run(backends::Memory::default()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    suite::run(backends::Sqlite::new()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    match backends::Postgres::from_env() {
        Some(backend) => suite::run(backend).await,
        None => drop(database_url::database_url(
            "LOOPJOB_TEST_POSTGRES_URL",
            "postgres conformance",
        )),
    }
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql() {
    match backends::MySql::from_env() {
        Some(backend) => suite::run(backend).await,
        None => drop(database_url::database_url(
            "LOOPJOB_TEST_MYSQL_URL",
            "mysql conformance",
        )),
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis() {
    match backends::Redis::from_env() {
        Some(backend) => suite::run(backend).await,
        None => drop(database_url::database_url(
            "LOOPJOB_TEST_REDIS_URL",
            "redis conformance",
        )),
    }
}
