//! What only the Redis store must show: epochs keep growing after the server loses its keys (a
//! restart without persistence), the scripts are loaded again after the server forgets them,
//! bad data, bad URLs, a read-only server and a user that may not run scripts are clear errors,
//! and a URL's password never shows.
//!
//! The tests on the shared server run when `LOOPJOB_TEST_REDIS_URL` is set (`.ci/run` sets it)
//! and say plainly that they were skipped otherwise; each uses its own key prefix. The restart
//! and read-only tests start a private `redis-server` (persistence off) on a free port, and say
//! so when `redis-server` is not installed.
#![cfg(feature = "redis")]

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::time::{Duration, Instant};

use loopjob::store::{LeaseStore, RedisStore, StoreError, StoreOptions, open_with};

const LONG: Duration = Duration::from_secs(60);

fn url() -> Option<String> {
    database_url::database_url("LOOPJOB_TEST_REDIS_URL", "redis store tests")
}

/// The test's own key prefix; the first sweeps keys older runs left (`support/test_prefix.rs`).
async fn prefix(url: &str, test: &str) -> String {
    test_prefix::run_prefix(url, &format!("ljr_{test}")).await
}

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Deletes every key under `prefix`: what a restart without persistence (or `FLUSHALL`) does to
/// this store, without touching other tests' keys on the shared server.
async fn lose_keys(url: &str, prefix: &str) {
    let mut admin = admin(url).await;
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

fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect_lazy(url, StoreOptions::default().table_prefix(prefix)).unwrap()
}

#[tokio::test]
async fn epochs_keep_growing_after_the_server_loses_its_keys() {
    let Some(url) = url() else { return };
    let prefix = prefix(&url, "restart").await;
    let store = store(&url, &prefix);
    store.initialise().await.unwrap();
    let keys = ["k".to_owned()];
    // Many acquisitions, each adding one, then the server forgets everything.
    let mut last = 0;
    for _ in 0..50 {
        let lease = store.try_acquire("a", &keys, LONG).await.unwrap().remove(0);
        assert!(lease.epoch > last);
        last = lease.epoch;
    }
    lose_keys(&url, &prefix).await;
    assert!(
        store.list("").await.unwrap().is_empty(),
        "the keys are gone"
    );
    // Also the scripts: the store loads them again.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<redis::Value>(&mut admin(&url).await)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;

    let after = store.try_acquire("b", &keys, LONG).await.unwrap().remove(0);
    assert!(
        after.epoch > last,
        "epoch {} after the loss is not above {last}",
        after.epoch
    );
    lose_keys(&url, &prefix).await;
}

#[tokio::test]
async fn corrupted_hashes_are_errors_naming_the_key() {
    let Some(url) = url() else { return };
    let prefix = prefix(&url, "corrupt").await;
    let store = store(&url, &prefix);
    let mut admin = admin(&url).await;
    redis::cmd("HSET")
        .arg(format!("{prefix}lease:bad"))
        .arg("holder")
        .arg("x")
        .arg("epoch")
        .arg("1")
        .arg("expires")
        .arg("soon")
        .query_async::<redis::Value>(&mut admin)
        .await
        .unwrap();
    redis::cmd("HSET")
        .arg(format!("{prefix}schedule:odd"))
        .arg("format")
        .arg("1")
        .arg("last_seq")
        .arg("1")
        .arg("next_due")
        .arg("tomorrow")
        .query_async::<redis::Value>(&mut admin)
        .await
        .unwrap();
    redis::cmd("RPUSH")
        .arg(format!("{prefix}runs:odd"))
        .arg("not json")
        .query_async::<redis::Value>(&mut admin)
        .await
        .unwrap();
    match store.try_acquire("a", &["bad".to_owned()], LONG).await {
        Err(StoreError::Corrupted { key, problem, .. }) => {
            assert_eq!(key, "bad");
            assert!(problem.contains("soon"), "{problem}");
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    match store.schedules(&["odd".to_owned()]).await {
        Err(StoreError::Corrupted { key, .. }) => assert_eq!(key, "odd"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    match store.history("odd", 5).await {
        Err(StoreError::Corrupted { key, .. }) => assert_eq!(key, "odd"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    lose_keys(&url, &prefix).await;
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_within_the_timeout() {
    let options = StoreOptions::default().operation_timeout(Duration::from_millis(500));
    let store = open_with("redis://:s3cret@127.0.0.1:1/0", options).unwrap();
    let started = Instant::now();
    let err = store.initialise().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    assert!(err.is_transient(), "{err}");
    let shown = format!("{err} {err:?} {store:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_named() {
    let err = open_with("redis://:s3cret@host/notanumber", StoreOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::InvalidInput { .. }), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    let err = open_with(
        "redis://127.0.0.1/0",
        StoreOptions::default().table_prefix("has space"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has space"), "{err}");
}

/// A private Redis server on a free loopback port, without persistence, killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one, or `None` (saying so) where `redis-server` is not installed.
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = PrivateRedis { port, child: None };
        if !server.spawn() {
            eprintln!("SKIPPED redis restart test: `redis-server` is not on PATH");
            return None;
        }
        Some(server)
    }

    fn spawn(&mut self) -> bool {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Kills the server (nothing is saved) and starts it again, empty.
    fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server restarts");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_persistence_keeps_epochs_growing_and_the_store_working() {
    let Some(mut server) = PrivateRedis::start() else {
        return;
    };
    let options = StoreOptions::default().operation_timeout(Duration::from_secs(2));
    let store = open_with(&server.url(), options).unwrap();
    store.initialise().await.unwrap();
    let mut notices = store.release_notifications().expect("redis pushes notices");
    // The listener's first subscription says that notices before it were not heard.
    let subscribed = tokio::time::timeout(Duration::from_secs(10), notices.recv()).await;
    assert_eq!(subscribed, Ok(Some(loopjob::store::ReleaseNotice::Missed)));
    let keys = ["k".to_owned()];
    let before = store.try_acquire("a", &keys, LONG).await.unwrap().remove(0);

    server.restart();
    // The same store reconnects by itself (its first call after the restart may fail), loads
    // its scripts again, and issues a greater epoch on the empty server.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        match store.try_acquire("b", &keys, LONG).await {
            Ok(mut won) => break won.remove(0),
            Err(error) => {
                assert!(error.is_transient(), "{error}");
                assert!(Instant::now() < deadline, "no reconnection: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(after.holder, "b");
    assert!(
        after.epoch > before.epoch,
        "epoch {} after the restart is not above {}",
        after.epoch,
        before.epoch
    );
    // The listener subscribes again and says again that notices may have been missed.
    let missed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if notices.recv().await == Some(loopjob::store::ReleaseNotice::Missed) {
                return;
            }
        }
    })
    .await;
    assert!(missed.is_ok(), "no Missed notice after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_or_script_refusing_server_is_a_clear_error() {
    let Some(server) = PrivateRedis::start() else {
        return;
    };
    let options = StoreOptions::default().operation_timeout(Duration::from_secs(2));
    let store = open_with(&server.url(), options).unwrap();
    store.initialise().await.unwrap();
    let keys = ["k".to_owned()];
    let mut admin = admin(&server.url()).await;

    // A replica (of a primary that is not there) refuses writes.
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(1)
        .query_async::<redis::Value>(&mut admin)
        .await
        .unwrap();
    let err = store.try_acquire("a", &keys, LONG).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("read only"), "{err}");
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async::<redis::Value>(&mut admin)
        .await
        .unwrap();
    assert_eq!(store.try_acquire("a", &keys, LONG).await.unwrap().len(), 1);

    // A user that may not run scripts.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("jobs")
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-@scripting")
        .query_async::<redis::Value>(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://jobs:pw@127.0.0.1:{}/0", server.port);
    let refused = open_with(&url, StoreOptions::default()).unwrap();
    let err = refused.initialise().await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("NOPERM") || message.contains("permission"),
        "{message}"
    );
    assert!(!message.contains(":pw@"), "{message}");
}
