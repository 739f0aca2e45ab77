//! One conformance suite for every lease store: the same cases, unchanged, against memory,
//! SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! PostgreSQL and MySQL run when `LOOPJOB_TEST_POSTGRES_URL` / `LOOPJOB_TEST_MYSQL_URL` are set
//! (`.ci/run` sets both) and say plainly that they were skipped otherwise. Each case uses its own
//! table prefix, so cases run concurrently and never see each other's rows.

mod backends;
#[path = "../support/database_url.rs"]
mod database_url;
mod schedule;
mod suite;

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
