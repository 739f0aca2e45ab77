//! Lease stores during an outage: with the database cut off or silent, every call returns a
//! `StoreError` within a bounded time, and the store works again once the database is back.
//!
//! PostgreSQL, MySQL and Redis are reached through a TCP proxy that can cut or stall
//! connections (the real servers are never stopped); SQLite's outage is another process
//! holding the write lock.

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::sync::Arc;
use std::time::{Duration, Instant};

use loopjob::store::{LeaseRef, LeaseStore, StoreError, StoreOptions};

/// The operation timeout the stores under test use.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How much later than the timeout a failing call may return (scheduling on a busy machine).
const SLACK: Duration = Duration::from_millis(1500);
const TTL: Duration = Duration::from_secs(60);

fn options(prefix: &str) -> StoreOptions {
    StoreOptions::default()
        .table_prefix(prefix)
        .operation_timeout(TIMEOUT)
        .max_connections(4)
}

/// Every store method once, concurrently; returns each one's name, outcome and duration.
async fn every_call(
    store: &dyn LeaseStore,
    lease: &LeaseRef,
) -> Vec<(&'static str, Result<(), StoreError>, Duration)> {
    let keys = [lease.key.clone(), "other".to_owned()];
    let calls: Vec<(&'static str, futures_like::BoxFuture<'_>)> = vec![
        ("initialise", Box::pin(store.initialise())),
        (
            "try_acquire",
            Box::pin(async { store.try_acquire("b", &keys, TTL).await.map(drop) }),
        ),
        (
            "renew",
            Box::pin(async {
                store
                    .renew("a", std::slice::from_ref(lease), TTL)
                    .await
                    .map(drop)
            }),
        ),
        (
            "release",
            Box::pin(store.release("nobody", std::slice::from_ref(lease))),
        ),
        (
            "heartbeat",
            Box::pin(async { store.heartbeat("scope", "a", TTL).await.map(drop) }),
        ),
        (
            "members",
            Box::pin(async { store.members("scope").await.map(drop) }),
        ),
        ("list", Box::pin(async { store.list("").await.map(drop) })),
    ];
    let mut tasks = Vec::new();
    for (name, call) in calls {
        tasks.push(timed(name, call));
    }
    futures_like::join_all(tasks).await
}

async fn timed(
    name: &'static str,
    call: futures_like::BoxFuture<'_>,
) -> (&'static str, Result<(), StoreError>, Duration) {
    let started = Instant::now();
    let outcome = call.await;
    (name, outcome, started.elapsed())
}

/// A tiny stand-in for `futures::future::join_all`, to need no extra dependency.
mod futures_like {
    use std::future::Future;
    use std::pin::Pin;

    pub type BoxFuture<'a> =
        Pin<Box<dyn Future<Output = Result<(), loopjob::store::StoreError>> + Send + 'a>>;

    pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
        let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    match future.as_mut().poll(cx) {
                        std::task::Poll::Ready(value) => *output = Some(value),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        outputs
            .into_iter()
            .map(|output| output.expect("joined"))
            .collect()
    }
}

fn assert_all_fail_in_time(
    backend: &str,
    mode: &str,
    results: &[(&str, Result<(), StoreError>, Duration)],
) {
    for (name, outcome, took) in results {
        match outcome {
            Err(error) => assert!(error.is_transient(), "{backend} {mode} {name}: {error}"),
            Ok(()) => panic!("{backend} {mode}: {name} succeeded with the database unreachable"),
        }
        assert!(
            *took <= TIMEOUT + SLACK,
            "{backend} {mode}: {name} took {took:?}"
        );
    }
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    eprintln!(
        "{backend} {mode}: all {} calls failed, slowest after {slowest:?}",
        results.len()
    );
}

/// Retries `try_acquire` until the store answers again; returns how long that took.
async fn recovers(store: &dyn LeaseStore, lease: &LeaseRef) -> Duration {
    let started = Instant::now();
    loop {
        match store.renew("a", std::slice::from_ref(lease), TTL).await {
            Ok(renewed) => {
                // The lease taken before the outage is intact.
                assert_eq!(renewed.len(), 1, "the lease survived the outage");
                return started.elapsed();
            }
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "no recovery: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Cuts, then stalls, the connection to a networked database, checking bounds and recovery.
#[allow(dead_code)] // Unused without the postgres and mysql features.
async fn network_outage(backend: &str, url: &str) {
    let prefix = test_prefix::run_prefix(url, &format!("ljo_{backend}")).await;
    let proxy = proxy::Proxy::start(proxy::upstream_of(url)).await;
    let store: Arc<dyn LeaseStore> =
        loopjob::store::open_with(&proxy.rewrite(url), options(&prefix)).unwrap();
    store.initialise().await.unwrap();
    let lease = store
        .try_acquire("a", &["outage".to_owned()], TTL)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .to_ref();
    let notices = store.release_notifications();

    // Connections that broke while they sat idle in an SQL store's pool (a restarted server,
    // a proxy's idle timeout): a pooled connection idle for a second or more is pinged before
    // a call takes it, so the next call goes out on a new one and succeeds. (Redis keeps one
    // multiplexed connection, which reconnects after the call that finds it broken.)
    if backend != "redis" {
        proxy.set(proxy::Mode::Cut);
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.set(proxy::Mode::Forward);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let renewed = store.renew("a", std::slice::from_ref(&lease), TTL).await;
        assert_eq!(
            renewed.map(|leases| leases.len()).ok(),
            Some(1),
            "{backend}: the first call after idle connections broke"
        );
    }

    for mode in [proxy::Mode::Cut, proxy::Mode::Stall] {
        proxy.set(mode);
        let results = every_call(&*store, &lease).await;
        assert_all_fail_in_time(backend, &format!("{mode:?}"), &results);
        proxy.set(proxy::Mode::Forward);
        let took = recovers(&*store, &lease).await;
        eprintln!("{backend}: recovered from {mode:?} in {took:?}");
        for (name, outcome, _) in every_call(&*store, &lease).await {
            outcome.unwrap_or_else(|error| panic!("{backend} after {mode:?}: {name}: {error}"));
        }
    }

    // A cut of a few seconds with calls failing throughout, so that the store's reconnection
    // attempts meet it: the store reconnects by itself once it ends.
    proxy.set(proxy::Mode::Cut);
    let cut_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < cut_until {
        let _ = every_call(&*store, &lease).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.set(proxy::Mode::Forward);
    let took = recovers(&*store, &lease).await;
    eprintln!("{backend}: recovered from a 3 s cut in {took:?}");

    // The release listener reconnects too.
    if let Some(mut notices) = notices {
        let heard = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let won = store.try_acquire("n", &["notified".to_owned()], TTL).await;
                if let Ok(Some(lease)) = won.map(|mut won| won.pop()) {
                    let _ = store.release("n", &[lease.to_ref()]).await;
                }
                let next = tokio::time::timeout(Duration::from_millis(500), notices.recv()).await;
                if let Ok(Some(loopjob::store::ReleaseNotice::Released(key))) = next {
                    return key;
                }
            }
        })
        .await
        .expect("release notices resume after the outage");
        assert_eq!(heard, "notified");
    }
    // A failed test leaves its tables for inspection; a later run sweeps them.
    test_prefix::drop_prefix(url, &prefix).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage() {
    if let Some(url) = database_url::database_url("LOOPJOB_TEST_POSTGRES_URL", "postgres outage") {
        network_outage("postgres", &url).await;
    }
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_outage() {
    if let Some(url) = database_url::database_url("LOOPJOB_TEST_MYSQL_URL", "mysql outage") {
        network_outage("mysql", &url).await;
    }
}

/// Redis through the proxy. Its connection manager did not reconnect for a minute or more
/// after a cut of a few seconds (the `redis` crate's reconnection delays), and a chaos node
/// never reached the store again.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage() {
    if let Some(url) = database_url::database_url("LOOPJOB_TEST_REDIS_URL", "redis outage") {
        network_outage("redis", &url).await;
    }
}

/// Another process holding SQLite's write lock: writes fail within the bound, reads still
/// work (WAL), and everything works once the lock is let go.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_held_elsewhere() {
    use sqlx::Connection;

    let path = std::env::temp_dir().join(format!("loopjob-outage-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let store = loopjob::store::open_with(&url, options("ljo_")).unwrap();
    store.initialise().await.unwrap();
    let lease = store
        .try_acquire("a", &["outage".to_owned()], TTL)
        .await
        .unwrap()[0]
        .to_ref();

    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    for (name, outcome, took) in every_call(&*store, &lease).await {
        assert!(
            took <= TIMEOUT + SLACK,
            "sqlite locked: {name} took {took:?}"
        );
        let writes = ["try_acquire", "renew", "heartbeat"];
        if writes.contains(&name) {
            let error = outcome.expect_err(name);
            assert!(error.is_transient(), "{name}: {error}");
        }
    }
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    recovers(&*store, &lease).await;
    for (name, outcome, _) in every_call(&*store, &lease).await {
        outcome.unwrap_or_else(|error| panic!("sqlite after the lock: {name}: {error}"));
    }
    drop(other);
    sqlite_file::remove(&path);
}
