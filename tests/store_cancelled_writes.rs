//! A schedule write cut off by its caller at any point (its timeout, a shutdown) leaves nothing
//! behind on the store's pooled connections: the next calls on the same connection commit, and
//! the next schedule write opens its transaction normally.
//!
//! On MySQL a write cut off inside its `START TRANSACTION` once left the connection in a
//! transaction the pool did not know of: every later schedule write on it failed with error
//! 1568, and renewals ran inside it, uncommitted, holding their locks (found by the chaos
//! suite). On SQLite a write cut off inside its `BEGIN IMMEDIATE` left the connection holding
//! the database's write lock: every other connection's write then waited out its timeout, and
//! a graceful handover stalled for good (found by the leases bench, whose leader drops the run
//! start in flight when it shuts down). The pool here has one connection, so every call after a
//! cut uses that connection.

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::sync::Arc;
use std::time::Duration;

use loopjob::store::{Lease, LeaseStore, NextDue, RunStart};
#[cfg(any(feature = "mysql", feature = "sqlite"))]
use loopjob::store::{StoreOptions, open_with};

const SHORT_TTL: Duration = Duration::from_secs(20);
const LONG_TTL: Duration = Duration::from_secs(600);

/// Initialises `store`, takes the key `cut` for the holder `a`, and answers the lease with a
/// start of a run under it.
async fn leased_start(store: &dyn LeaseStore) -> (Lease, RunStart) {
    store.initialise().await.unwrap();
    let lease = store
        .try_acquire("a", &["cut".to_owned()], SHORT_TTL)
        .await
        .unwrap()
        .pop()
        .expect("the key is free");
    let start = RunStart {
        key: lease.key.clone(),
        epoch: lease.epoch,
        scheduled_ms: 1_000_000,
        next_due: NextDue::After(Duration::from_secs(3600)),
        triggered: false,
        history_limit: 100,
    };
    (lease, start)
}

/// Cuts `store`'s schedule writes off after 0, 0.2, 0.4 … ms (somewhere in their begin, their
/// statements or their commit); after each, a renewal on the same (only) connection must be
/// committed, as `observer` (another pool on the same database) sees.
async fn cut_off_writes_leave_no_transaction_behind(
    store: Arc<dyn LeaseStore>,
    observer: Arc<dyn LeaseStore>,
) {
    let (lease, start) = leased_start(&*store).await;
    let key = lease.key.clone();

    for step in 0..60u64 {
        let cut_after = Duration::from_micros(200 * step);
        let _ = tokio::time::timeout(
            cut_after,
            store.start_runs("a", std::slice::from_ref(&start)),
        )
        .await;

        let ttl = if step % 2 == 0 { LONG_TTL } else { SHORT_TTL };
        let renewed = store.renew("a", &[lease.to_ref()], ttl).await.unwrap();
        assert_eq!(
            renewed.len(),
            1,
            "still held after a write cut at {cut_after:?}"
        );
        let seen = observer.list("").await.unwrap();
        let remaining = seen
            .iter()
            .find(|status| status.lease.key == key)
            .expect("the lease row")
            .remaining;
        assert!(
            remaining > ttl - Duration::from_secs(10),
            "a renewal after a write cut at {cut_after:?} is committed: another connection \
             sees {remaining:?} left of a {ttl:?} lease"
        );
    }

    // And schedule writes work on that connection again.
    store
        .start_runs("a", &[start])
        .await
        .expect("a schedule write after the cuts");
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_schedule_write_cut_off_anywhere_leaves_no_transaction_behind() {
    let what = "cut-off schedule writes on MySQL";
    let Some(url) = database_url::database_url("LOOPJOB_TEST_MYSQL_URL", what) else {
        return;
    };
    let prefix = test_prefix::run_prefix(&url, "cutoff").await;
    let options = || StoreOptions::default().table_prefix(prefix.clone());
    let store = open_with(&url, options().max_connections(1)).unwrap();
    let observer = open_with(&url, options()).unwrap();
    cut_off_writes_leave_no_transaction_behind(store, observer).await;
    test_prefix::drop_prefix(&url, &prefix).await;
}

/// A fresh SQLite database named after `name`: its path and URL, a store of one connection on
/// it, and an observer (another pool). Their timeout is short: a write lock left behind makes
/// the other writes wait for it, and the test then fails in seconds rather than hanging.
#[cfg(feature = "sqlite")]
fn sqlite_pair(
    name: &str,
) -> (
    std::path::PathBuf,
    String,
    Arc<dyn LeaseStore>,
    Arc<dyn LeaseStore>,
) {
    let path = std::env::temp_dir().join(format!("loopjob-{name}-{}.db", std::process::id()));
    sqlite_file::remove(&path);
    let url = format!("sqlite://{}", path.display());
    let options = || StoreOptions::default().operation_timeout(Duration::from_secs(2));
    let store = open_with(&url, options().max_connections(1)).unwrap();
    let observer = open_with(&url, options()).unwrap();
    (path, url, store, observer)
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_schedule_write_cut_off_anywhere_leaves_no_transaction_behind() {
    let (path, _, store, observer) = sqlite_pair("cutoff");
    cut_off_writes_leave_no_transaction_behind(store, observer).await;
    sqlite_file::remove(&path);
}

/// A write cut off while its `BEGIN IMMEDIATE` waits for another connection's write lock
/// (a leader shutting down while a follower acquires): once that lock is free, the cut write
/// must not hold it, and the next calls on the same connection commit.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_schedule_write_cut_off_while_waiting_for_the_lock_leaves_no_lock_behind() {
    use sqlx::Connection;

    let (path, url, store, observer) = sqlite_pair("cutlock");
    let (lease, start) = leased_start(&*store).await;

    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        store.start_runs("a", std::slice::from_ref(&start)),
    )
    .await;
    assert!(cut.is_err(), "the write waited for the lock: {cut:?}");
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();

    let renewed = store.renew("a", &[lease.to_ref()], LONG_TTL).await.unwrap();
    assert_eq!(renewed.len(), 1);
    let remaining = observer.list("").await.unwrap()[0].remaining;
    assert!(
        remaining > LONG_TTL - Duration::from_secs(10),
        "the renewal after the cut write is committed: another connection sees {remaining:?}"
    );
    observer
        .start_runs("a", &[start])
        .await
        .expect("another connection writes: no lock was left behind");
    sqlite_file::remove(&path);
}
