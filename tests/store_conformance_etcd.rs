//! The store conformance suite (`tests/store_conformance/`), unchanged, against etcd: in a test
//! binary of its own, so that its cases do not run beside the five other backends' on the same
//! cores. etcd's members share the machine with the tests, and every etcd write is a raft
//! commit on three of them: run beside 130 other concurrent cases on two cores, the contention
//! case's 300 ms leases were outlived by single calls.
//!
//! Runs when `LOOPJOB_TEST_ETCD_URL` is set (`.ci/run` starts a three-member cluster and sets
//! it) and says plainly that it was skipped otherwise.
// The shared modules serve every backend; this binary uses only etcd's.
#![allow(dead_code, unused_imports)]

#[path = "store_conformance/backends.rs"]
mod backends;
#[path = "support/database_url.rs"]
mod database_url;
#[path = "store_conformance/schedule.rs"]
mod schedule;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "store_conformance/suite.rs"]
mod suite;
#[path = "support/test_prefix.rs"]
mod test_prefix;

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd() {
    match backends::Etcd::from_env() {
        Some(backend) => suite::run(backend).await,
        None => drop(database_url::database_url(
            "LOOPJOB_TEST_ETCD_URL",
            "etcd conformance",
        )),
    }
}
