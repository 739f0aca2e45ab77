//! Leadership on real databases: failover and handover between hosts sharing one SQLite file,
//! one PostgreSQL database, one MySQL database, one Redis server and one etcd cluster. The
//! databases keep time, so these tests run in real time; they assert order and exclusivity,
//! and bound every wait so a failure is a clear error rather than a hang.

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::store::{LeaseStore, StoreOptions, open_with};
use loopjob::{
    Host, HostHandle, JobStatus, LeaderMode, Leadership, NodeIdentity, Schedule, ShutdownReport,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

const TTL: Duration = Duration::from_secs(2);

/// One run: which node, which epoch, when.
type Run = (&'static str, u64, Instant, Instant);

struct Node {
    handle: HostHandle,
    task: JoinHandle<ShutdownReport>,
}

fn start(name: &'static str, store: Arc<dyn LeaseStore>, runs: &Arc<Mutex<Vec<Run>>>) -> Node {
    let runs = runs.clone();
    let host = Host::builder()
        .node(NodeIdentity::new(name, "g"))
        .store(store)
        .shutdown_grace(Duration::from_secs(1))
        .job_fn(
            "fenced",
            Schedule::every(Duration::from_millis(50)),
            move |ctx| {
                let runs = runs.clone();
                async move {
                    let start = Instant::now();
                    let epoch = ctx
                        .fencing_token()
                        .expect("a global job's run holds its lease");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                        _ = ctx.cancelled() => {}
                    }
                    runs.lock()
                        .unwrap()
                        .push((name, epoch, start, Instant::now()));
                    Ok(())
                }
            },
        )
        .leadership(
            "fenced",
            Leadership::new(LeaderMode::Global)
                .lease_ttl(TTL)
                .with_renew_every(Duration::from_millis(400))
                .retry_every(Duration::from_millis(200)),
        )
        .build()
        .expect("valid host");
    let handle = host.handle();
    Node {
        handle,
        task: tokio::spawn(host.run_until(std::future::pending())),
    }
}

fn holds(status: &JobStatus) -> bool {
    status
        .leadership
        .as_ref()
        .is_some_and(|l| !l.leases.is_empty())
}

/// Waits (at most 15 s) until `node` holds the lease; returns how long that took. A node that
/// does not take over fails the test with what the store says of the lease, the node's status,
/// and how far the wall clock moved against the monotonic one (the SQLite store times leases
/// by the host's wall clock, so a clock stepped back delays a takeover).
async fn until_leading(node: &Node, store: &dyn LeaseStore) -> Duration {
    let started = Instant::now();
    let wall_started = std::time::SystemTime::now();
    if let Ok(waited) = timeout(
        Duration::from_secs(15),
        node.handle.wait_for("fenced", holds),
    )
    .await
    {
        waited.expect("the node's host runs the job");
        return started.elapsed();
    }
    let (wall, monotonic) = (wall_started.elapsed(), started.elapsed());
    panic!(
        "did not take over within 15 s\n\
         store's leases: {:?}\n\
         node's status: {:?}\n\
         wall clock moved {wall:?} while the monotonic clock moved {monotonic:?}",
        store.list("").await,
        node.handle.status("fenced").map(|s| s.leadership),
    );
}

async fn failover_and_handover(url: &str, prefix: &str) {
    let open = || open_with(url, StoreOptions::default().table_prefix(prefix)).unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));

    let observer = open();
    let a = start("a", open(), &runs);
    until_leading(&a, &*observer).await;
    let b = start("b", open(), &runs);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !holds(&b.handle.status("fenced").unwrap()),
        "b follows while a leads"
    );

    // Graceful: a releases on shutdown; b takes over well before the lease could have expired
    // (its last renewal was at most 400 ms before, so expiry is at least 1.6 s away).
    a.handle.shutdown();
    a.task.await.unwrap();
    let handover = until_leading(&b, &*observer).await;
    assert!(
        handover < TTL - Duration::from_millis(400),
        "handover took {handover:?}: the release did not work"
    );

    // Crash: b dies without releasing; a new node takes over once the lease expires.
    let c = start("c", open(), &runs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.task.abort();
    let _ = b.task.await;
    until_leading(&c, &*observer).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.handle.shutdown();
    c.task.await.unwrap();

    let mut runs = runs.lock().unwrap().clone();
    runs.sort_by_key(|run| run.2);
    let epochs: Vec<(&str, u64)> = runs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>();
    let mut leaders = epochs.clone();
    leaders.dedup();
    assert_eq!(
        leaders.iter().map(|l| l.0).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "leadership went a → b → c: {leaders:?}"
    );
    assert!(
        leaders.windows(2).all(|w| w[0].1 < w[1].1),
        "epochs strictly increase: {leaders:?}"
    );
    for pair in runs.windows(2) {
        assert!(
            pair[0].3 <= pair[1].2,
            "runs overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// The test on a shared server: on a prefix of its own, dropped when it passed (a failed or
/// crashed run's tables are swept by a later run, see `support/test_prefix.rs`).
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
async fn on_shared_server(url: &str, tag: &str) {
    let prefix = test_prefix::run_prefix(url, tag).await;
    failover_and_handover(url, &prefix).await;
    test_prefix::drop_prefix(url, &prefix).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failover_and_handover() {
    let path = std::env::temp_dir().join(format!("loopjob-leadership-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    failover_and_handover(&url, "lt_").await;
    sqlite_file::remove(&path);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_and_handover() {
    let Some(url) = database_url::database_url(
        "LOOPJOB_TEST_POSTGRES_URL",
        "leadership tests on PostgreSQL",
    ) else {
        return;
    };
    on_shared_server(&url, "lt_pg").await;
}

/// A PostgreSQL store's connections have planned a takeover's statements by the time
/// `initialise` returns, and keep every plan: a new leader's first run waits for no planning.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_plan_a_takeovers_statements_ahead() {
    let Some(url) = database_url::database_url(
        "LOOPJOB_TEST_POSTGRES_URL",
        "statement planning on PostgreSQL",
    ) else {
        return;
    };
    let prefix = test_prefix::run_prefix(&url, "lt_plan").await;
    let options = StoreOptions::default().table_prefix(prefix.clone());
    let store = loopjob::store::PostgresStore::connect_lazy(&url, options).unwrap();
    store.initialise().await.unwrap();
    // The release listener keeps one of the pool's connections (it says `Missed` once it
    // listens); a takeover's three back-to-back calls then find three more, planned, without
    // opening one on their way.
    let mut notices = store.release_notifications().unwrap();
    assert_eq!(
        notices.recv().await,
        Some(loopjob::store::ReleaseNotice::Missed)
    );
    let mut connections = Vec::new();
    for _ in 0..3 {
        connections.push(store.pool().acquire().await.unwrap());
    }
    assert_eq!(
        store.pool().size(),
        4,
        "a connection was opened for the calls"
    );
    for connection in &mut connections {
        let (mode, seqscan): (String, String) = sqlx::query_as(
            "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')",
        )
        .fetch_one(&mut **connection)
        .await
        .unwrap();
        assert_eq!(
            (mode.as_str(), seqscan.as_str()),
            ("force_generic_plan", "off")
        );
        let planned: Vec<String> = sqlx::query_scalar(
            "SELECT statement FROM pg_prepared_statements WHERE generic_plans > 0 \
             AND strpos(statement, $1) > 0",
        )
        .bind(&prefix)
        .fetch_all(&mut **connection)
        .await
        .unwrap();
        // The acquisition, the release, the record read, and the start's fenced read, record
        // and run writes, and history trim.
        assert_eq!(planned.len(), 7, "{planned:#?}");
        for statement in ["INSERT INTO", "pg_notify", "FOR UPDATE", "DELETE FROM"] {
            assert!(
                planned.iter().any(|sql| sql.contains(statement)),
                "no planned statement has {statement}: {planned:#?}"
            );
        }
    }
    drop(connections);
    test_prefix::drop_prefix(&url, &prefix).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_failover_and_handover() {
    let Some(url) =
        database_url::database_url("LOOPJOB_TEST_MYSQL_URL", "leadership tests on MySQL")
    else {
        return;
    };
    on_shared_server(&url, "lt_my").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failover_and_handover() {
    let Some(url) =
        database_url::database_url("LOOPJOB_TEST_REDIS_URL", "leadership tests on Redis")
    else {
        return;
    };
    on_shared_server(&url, "lt_redis").await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_failover_and_handover() {
    let Some(url) = database_url::database_url("LOOPJOB_TEST_ETCD_URL", "leadership tests on etcd")
    else {
        return;
    };
    let prefix = format!("lt_etcd_{}_", std::process::id());
    failover_and_handover(&url, &prefix).await;
    // etcd keeps no tables: remove the test's keys.
    let hosts = url.trim_start_matches("etcd://");
    let endpoints: Vec<String> = hosts.split(',').map(|h| format!("http://{h}")).collect();
    let mut admin = etcd_client::Client::connect(endpoints, None).await.unwrap();
    let every_key = etcd_client::DeleteOptions::new().with_prefix();
    admin.delete(prefix, Some(every_key)).await.unwrap();
}
