//! A holder frozen inside a schedule write does not keep its lease past the lease's expiry.
//!
//! A schedule write (a run's start or end, a plan) is a short transaction that locks the
//! caller's lease row, so that no other node can take the key before it commits. If the
//! holder's process freezes (SIGSTOP, a suspended VM) or its network goes silent in the middle
//! of one, the server hears nothing and, left to itself, keeps the transaction and its lock
//! until the connection ends: every other node's takeover then waits on the lock long after the
//! lease expired (the MySQL soak's item 15 in docs/RELIABILITY.md). The stores set a server-side
//! timeout on an idle transaction (PostgreSQL's `idle_in_transaction_session_timeout`,
//! MariaDB's `idle_transaction_timeout`) so the server ends it.
//!
//! These tests take the same lock through a connection of the holder's own pool, as a schedule
//! write does, and then freeze: they never send another statement while another store takes
//! the expired key. The databases keep time, so the tests run in real time, every wait bounded.

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::time::Duration;

use loopjob::store::{LeaseStore, StoreOptions};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(1);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the frozen transaction is held at most: well past the lease's expiry plus the
/// server's idle timeout (one operation timeout, in whole seconds on MariaDB).
const FROZEN_FOR: Duration = Duration::from_secs(10);

fn options(prefix: &str) -> StoreOptions {
    StoreOptions::default()
        .table_prefix(prefix)
        .operation_timeout(OPERATION_TIMEOUT)
}

/// Node `a` takes a key, then `freeze` opens a transaction holding a schedule write's lock on
/// its lease row and answers it; node `b` polls for the key (every 100 ms, as a follower
/// would) while that transaction is held, and must take it once the lease has expired.
async fn frozen_holder_loses_its_key<Frozen>(
    a: &dyn LeaseStore,
    b: &dyn LeaseStore,
    freeze: impl Future<Output = Frozen>,
) {
    let keys = ["k".to_owned()];
    let won = a.try_acquire("a", &keys, TTL).await.unwrap();
    let expires = Instant::now() + TTL;
    assert_eq!(won.len(), 1, "a takes the free key");
    let frozen = freeze.await;

    let give_up = Instant::now() + FROZEN_FOR;
    loop {
        match b.try_acquire("b", &keys, TTL).await {
            Ok(won) if !won.is_empty() => break,
            Ok(_) => {}
            // A takeover that waited on the lock until the server's lock timeout.
            Err(error) => eprintln!("b's takeover failed: {error}"),
        }
        assert!(
            Instant::now() < give_up,
            "node b never took the key while a transaction of its frozen holder was open \
             ({FROZEN_FOR:?}): the server kept the frozen transaction's lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = Instant::now().saturating_duration_since(expires);
    eprintln!("b took the key {late:?} after a's lease expired");
    drop(frozen);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ends_a_frozen_holders_transaction() {
    use loopjob::store::PostgresStore;

    let Some(url) = database_url::database_url(
        "LOOPJOB_TEST_POSTGRES_URL",
        "the frozen-transaction test on PostgreSQL",
    ) else {
        return;
    };
    let prefix = test_prefix::run_prefix(&url, "frozen_pg").await;
    let a = PostgresStore::connect_lazy(&url, options(&prefix)).unwrap();
    let b = PostgresStore::connect_lazy(&url, options(&prefix)).unwrap();
    a.initialise().await.unwrap();
    // The lock a schedule write takes on its lease row (see store/sql/postgres/schedule.rs).
    let lock = format!("SELECT 1 FROM \"{prefix}leases\" WHERE lease_key = 'k' FOR KEY SHARE");
    let freeze = async {
        let mut frozen = a.pool().begin().await.unwrap();
        sqlx::query(&lock).execute(&mut *frozen).await.unwrap();
        frozen
    };
    frozen_holder_loses_its_key(&a, &b, freeze).await;
    test_prefix::drop_prefix(&url, &prefix).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_ends_a_frozen_holders_transaction() {
    use loopjob::store::MySqlStore;

    let Some(url) = database_url::database_url(
        "LOOPJOB_TEST_MYSQL_URL",
        "the frozen-transaction test on MySQL",
    ) else {
        return;
    };
    let prefix = test_prefix::run_prefix(&url, "frozen_my").await;
    let a = MySqlStore::connect_lazy(&url, options(&prefix)).unwrap();
    let b = MySqlStore::connect_lazy(&url, options(&prefix)).unwrap();
    a.initialise().await.unwrap();
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(a.pool())
        .await
        .unwrap();
    if !version.contains("MariaDB") {
        // MySQL 8 has no timeout for an idle transaction alone (see MySqlStore's docs).
        eprintln!("SKIPPED the frozen-transaction test: {version} is not MariaDB");
        return;
    }
    // The lock a schedule write takes on its lease row (see store/sql/mysql/schedule.rs).
    let lock = format!("SELECT 1 FROM `{prefix}leases` WHERE lease_key = 'k' FOR UPDATE");
    let freeze = async {
        let mut frozen = a.pool().begin().await.unwrap();
        sqlx::query(&lock).execute(&mut *frozen).await.unwrap();
        frozen
    };
    frozen_holder_loses_its_key(&a, &b, freeze).await;
    test_prefix::drop_prefix(&url, &prefix).await;
}
