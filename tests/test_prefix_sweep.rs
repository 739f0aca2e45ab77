//! The sweep of test tables and keys that crashed runs left on the shared servers
//! (`support/test_prefix.rs`): a prefix older than the cutoff is dropped, a younger one (a run
//! that may still be going) and a name without the mark are left alone.
#![cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::time::{Duration, SystemTime};

use loopjob::store::{StoreOptions, open_with};

/// A store under `prefix` with one lease taken, so that its tables or keys exist.
async fn leave_behind(url: &str, prefix: &str) {
    let store = open_with(url, StoreOptions::default().table_prefix(prefix)).expect("open");
    store.initialise().await.expect("initialise");
    store
        .try_acquire("a", &["k".to_owned()], Duration::from_secs(60))
        .await
        .expect("acquire");
}

/// Whether anything is left under `prefix`: a store on it lists the lease.
async fn left(url: &str, prefix: &str) -> bool {
    let store = open_with(url, StoreOptions::default().table_prefix(prefix)).expect("open");
    // Listing tables that were dropped fails on SQL servers, and finds nothing on Redis.
    store.list("").await.is_ok_and(|leases| !leases.is_empty())
}

async fn old_prefixes_are_swept_and_young_ones_kept(url: &str, backend: &str) {
    let now = SystemTime::now();
    let old = test_prefix::prefix_at(
        now - Duration::from_secs(2 * 3600),
        &format!("sw_{backend}"),
    );
    let young = test_prefix::prefix_at(now - Duration::from_secs(60), &format!("sw_{backend}"));
    leave_behind(url, &old).await;
    leave_behind(url, &young).await;

    let swept = test_prefix::sweep(url, now - test_prefix::SWEEP_AFTER)
        .await
        .expect("the sweep runs");
    assert!(swept >= 1, "{swept}");
    assert!(!left(url, &old).await, "{old} was swept");
    assert!(
        left(url, &young).await,
        "{young} is kept: its run may still be going"
    );

    test_prefix::drop_prefix(url, &young).await;
    assert!(!left(url, &young).await, "{young} was dropped");
}

#[test]
fn only_marked_names_older_than_the_cutoff_are_stale() {
    let now = SystemTime::now();
    let old = test_prefix::prefix_at(now - Duration::from_secs(7200), "x");
    let young = test_prefix::prefix_at(now, "x");
    let cutoff = now - test_prefix::SWEEP_AFTER;
    assert!(test_prefix::is_stale(&format!("{old}leases"), cutoff));
    assert!(!test_prefix::is_stale(&format!("{young}leases"), cutoff));
    for other in [
        "loopjob_leases",
        "chaos_1_leases",
        "ljtest_leases",
        "ljtestx1_leases",
    ] {
        assert!(!test_prefix::is_stale(other, cutoff), "{other}");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres() {
    if let Some(url) = database_url::database_url("LOOPJOB_TEST_POSTGRES_URL", "postgres sweep") {
        old_prefixes_are_swept_and_young_ones_kept(&url, "pg").await;
    }
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql() {
    if let Some(url) = database_url::database_url("LOOPJOB_TEST_MYSQL_URL", "mysql sweep") {
        old_prefixes_are_swept_and_young_ones_kept(&url, "my").await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis() {
    if let Some(url) = database_url::database_url("LOOPJOB_TEST_REDIS_URL", "redis sweep") {
        old_prefixes_are_swept_and_young_ones_kept(&url, "redis").await;
    }
}
