//! A table prefix that names a schema (`schema.prefix_`): `initialise` creates the schema on
//! PostgreSQL and the database on MySQL, and says what to do on SQLite, where it must be
//! attached. Needs LOOPJOB_TEST_POSTGRES_URL / LOOPJOB_TEST_MYSQL_URL for the servers.

#![cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]

#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::time::Duration;

use loopjob::store::{StoreError, StoreOptions, open_with};

#[cfg(any(feature = "postgres", feature = "mysql"))]
#[path = "support/test_prefix.rs"]
mod test_prefix;

/// A schema name no other test or run uses, marked so that a later run sweeps it if this one
/// crashes before dropping it (`support/test_prefix.rs`).
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn unique_schema(url: &str, backend: &str) -> String {
    let prefix = test_prefix::run_prefix(url, &format!("schema_{backend}")).await;
    prefix.trim_end_matches('_').to_owned()
}

/// `initialise` on a fresh schema, then a lease taken in it, seen by a second store.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn initialise_creates_the_schema(url: &str, schema: &str) {
    let options = StoreOptions::default().table_prefix(format!("{schema}.lt_"));
    let store = open_with(url, options.clone()).expect("the URL opens");
    store
        .initialise()
        .await
        .expect("initialise creates the schema and its tables");
    // Twice is fine: everything is IF NOT EXISTS.
    open_with(url, options).unwrap().initialise().await.unwrap();
    let won = store
        .try_acquire("node-a", &["job".to_owned()], Duration::from_secs(5))
        .await
        .expect("the tables in the schema work");
    assert_eq!(won.len(), 1);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_initialise_creates_the_schema_of_the_prefix() {
    let Ok(url) = std::env::var("LOOPJOB_TEST_POSTGRES_URL") else {
        eprintln!("skipped: set LOOPJOB_TEST_POSTGRES_URL to run schema tests on PostgreSQL");
        return;
    };
    let schema = unique_schema(&url, "pg").await;
    initialise_creates_the_schema(&url, &schema).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_initialise_creates_the_database_of_the_prefix() {
    let Ok(url) = std::env::var("LOOPJOB_TEST_MYSQL_URL") else {
        eprintln!("skipped: set LOOPJOB_TEST_MYSQL_URL to run schema tests on MySQL");
        return;
    };
    let schema = unique_schema(&url, "my").await;
    initialise_creates_the_schema(&url, &schema).await;
    let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP DATABASE `{schema}`"))
        .execute(&pool)
        .await
        .unwrap();
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_says_that_the_schema_must_be_attached() {
    let options = StoreOptions::default().table_prefix("reports.lt_");
    let store = open_with("sqlite::memory:", options).unwrap();
    match store.initialise().await {
        Err(StoreError::InvalidInput { what, problem }) => {
            assert_eq!(what, "table prefix");
            assert!(
                problem.contains("`reports.lt_` names the schema `reports`, but no database"),
                "{problem}"
            );
            assert!(problem.contains("ATTACH DATABASE"), "{problem}");
        }
        other => panic!("expected a clear error, got {other:?}"),
    }
    // `main` is always there.
    let store = open_with(
        "sqlite::memory:",
        StoreOptions::default().table_prefix("main.lt_"),
    )
    .unwrap();
    store.initialise().await.expect("main is attached");
}
