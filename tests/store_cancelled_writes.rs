//! A schedule write cut off by its caller at any point (its timeout, a shutdown) leaves nothing
//! behind on the store's pooled connections: the next calls on the same connection commit, and
//! the next schedule write opens its transaction normally.
//!
//! On MySQL a write cut off inside its `START TRANSACTION` once left the connection in a
//! transaction the pool did not know of: every later schedule write on it failed with error
//! 1568, and renewals ran inside it, uncommitted, holding their locks (found by the chaos
//! suite). The pool here has one connection, so every call after a cut uses that connection.

#![cfg(feature = "mysql")]

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::time::Duration;

use loopjob::store::{NextDue, RunStart, StoreOptions, open_with};

const SHORT_TTL: Duration = Duration::from_secs(20);
const LONG_TTL: Duration = Duration::from_secs(600);

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
    store.initialise().await.unwrap();

    let key = "cut".to_owned();
    let lease = store
        .try_acquire("a", std::slice::from_ref(&key), SHORT_TTL)
        .await
        .unwrap()
        .pop()
        .expect("the key is free");
    let start = RunStart {
        key: key.clone(),
        epoch: lease.epoch,
        scheduled_ms: 1_000_000,
        next_due: NextDue::After(Duration::from_secs(3600)),
        triggered: false,
        history_limit: 100,
    };

    // Cut the write off after 0, 0.2, 0.4 … ms: somewhere in its begin, its statements or its
    // commit. After each, a renewal on the same (only) connection must be committed.
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
    test_prefix::drop_prefix(&url, &prefix).await;
}
