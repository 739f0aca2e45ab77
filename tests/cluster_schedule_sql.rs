//! The cluster schedule on real databases: hosts sharing one SQLite file, one PostgreSQL
//! database or one MySQL database keep one grid across a restart of every host, do not repeat
//! `initial_delay`, and obey a pause given from a store URL, also after a restart; a guarded
//! cron job runs each occurrence once, by the database's clock, through a handover. The
//! databases keep time, so these tests run in real time, with waits bounded.

#[cfg(any(feature = "postgres", feature = "mysql"))]
#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::cluster::ClusterControl;
use loopjob::store::{LeaseStore, RunRecord, RunResult, StoreOptions, open_with};
use loopjob::{Host, HostHandle, LeaderMode, Leadership, NodeIdentity, Schedule, ShutdownReport};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);
/// The margin a due time read from the store is waited with (a tenth of the ttl), and some
/// room for a loaded machine.
const EPSILON: Duration = Duration::from_millis(250);

struct Node {
    handle: HostHandle,
    task: JoinHandle<ShutdownReport>,
}

fn start(
    name: &'static str,
    store: Arc<dyn LeaseStore>,
    runs: &Arc<Mutex<Vec<(&'static str, Instant)>>>,
) -> Node {
    let every = Schedule::every(INTERVAL).initial_delay(3 * INTERVAL);
    start_with(name, store, every, runs)
}

/// A host named `name` running the global job `tick` on `schedule`.
fn start_with(
    name: &'static str,
    store: Arc<dyn LeaseStore>,
    schedule: Schedule,
    runs: &Arc<Mutex<Vec<(&'static str, Instant)>>>,
) -> Node {
    let runs = runs.clone();
    let host = Host::builder()
        .node(NodeIdentity::new(name, "g"))
        .store(store)
        .shutdown_grace(Duration::from_secs(1))
        .job_fn("tick", schedule, move |_ctx| {
            runs.lock().unwrap().push((name, Instant::now()));
            async { Ok(()) }
        })
        .leadership(
            "tick",
            Leadership::new(LeaderMode::Global)
                .lease_ttl(TTL)
                .with_renew_every(Duration::from_millis(400))
                .retry_every(RETRY),
        )
        .build()
        .expect("valid host");
    Node {
        handle: host.handle(),
        task: tokio::spawn(host.run_until(std::future::pending())),
    }
}

impl Node {
    async fn stop(self) {
        self.handle.shutdown();
        self.task.await.unwrap();
    }
}

async fn one_grid_through_restarts_and_a_durable_pause(url: &str, prefix: &str) {
    let open = || open_with(url, StoreOptions::default().table_prefix(prefix)).unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();

    // The first run ever waits the initial delay (3 s); then every second.
    let a = start("a", open(), &runs);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    a.stop().await;
    // A restart: the new host runs at the grid's next point (5 s), not 3 s after it started.
    let b_started = Instant::now() - t0;
    let b = start("b", open(), &runs);
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let starts: Vec<(&str, Duration)> = runs
        .lock()
        .unwrap()
        .iter()
        .map(|(node, at)| (*node, *at - t0))
        .collect();
    assert!(starts.len() >= 3, "{starts:?}");
    let first = starts[0].1;
    assert!(
        first >= 3 * INTERVAL && first <= 3 * INTERVAL + Duration::from_secs(1),
        "the first run waited the initial delay: {starts:?}"
    );
    let (_, first_b) = starts.iter().find(|(node, _)| *node == "b").expect("b ran");
    assert!(
        *first_b < b_started + 2 * INTERVAL,
        "no second initial delay: b started at {b_started:?}; {starts:?}"
    );
    // No period is lost through the restart. (That runs are an interval apart is checked on
    // the grid points in the history below: on a loaded machine one late start makes the next
    // gap between local start instants short, although both runs kept to the grid.)
    for pair in starts.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap <= INTERVAL + TTL + RETRY + EPSILON,
            "runs {pair:?}: all {starts:?}"
        );
    }

    // Paused from a tool: no run starts after a retry period, and a restart does not undo it.
    let control = ClusterControl::new(open()).operator("ops");
    let paused = control.pause("tick").await.unwrap();
    assert!(paused.paused);
    let paused_at = Instant::now();
    b.stop().await;
    let c = start("c", open(), &runs);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late: Vec<_> = runs
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at > paused_at + RETRY + EPSILON)
        .map(|(node, at)| (*node, *at - t0))
        .collect();
    assert!(late.is_empty(), "runs after the pause: {late:?}");

    control.resume("tick").await.unwrap();
    let resumed_at = Instant::now();
    tokio::time::sleep(INTERVAL + RETRY + Duration::from_millis(500)).await;
    c.stop().await;
    assert!(
        runs.lock().unwrap().iter().any(|(_, at)| *at > resumed_at),
        "runs again after resume"
    );

    let history = without_unrun_starts(control.history("tick", 100).await.unwrap());
    let ran = runs.lock().unwrap().len();
    assert_eq!(
        history.len(),
        ran,
        "every run is in the history: {history:?}"
    );
    assert!(
        history
            .iter()
            .all(|run| run.outcome == Some(RunResult::Succeeded))
    );
    assert!(history.windows(2).all(|w| w[0].seq > w[1].seq));
    // One grid: the points the runs were scheduled for are at least an interval apart (the
    // history is newest first), and no run started before its point, by the store's clock.
    for pair in history.windows(2) {
        assert!(
            pair[0].scheduled_ms - pair[1].scheduled_ms >= INTERVAL.as_millis() as i64,
            "runs scheduled closer than the interval: {pair:?}"
        );
    }
    assert!(history.iter().all(|run| run.started_ms >= run.scheduled_ms));
}

/// `history` without the starts a host ended unrun as it stopped (a stop that fell while a
/// start was on its way: cancelled, no attempt), after checking that another run was for each
/// one's point (docs/RELIABILITY.md, item 20).
fn without_unrun_starts(history: Vec<RunRecord>) -> Vec<RunRecord> {
    let (unrun, ran): (Vec<_>, Vec<_>) = history.into_iter().partition(RunRecord::ended_unrun);
    for start in &unrun {
        assert!(
            ran.iter().any(|run| run.scheduled_ms == start.scheduled_ms),
            "a start ended unrun, and its point never run: {start:?}; {ran:?}"
        );
    }
    ran
}

/// A guarded cron job, every two seconds by the database's clock, on one host and then, after
/// a graceful handover, on another: each occurrence runs once, none is skipped.
#[cfg(feature = "cron")]
async fn each_cron_occurrence_once_through_a_handover(url: &str, prefix: &str) {
    let open = || open_with(url, StoreOptions::default().table_prefix(prefix)).unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let every_two_seconds = Schedule::cron("*/2 * * * * *");
    let a = start_with("a", open(), every_two_seconds.clone(), &runs);
    tokio::time::sleep(Duration::from_millis(5000)).await;
    a.stop().await;
    let b = start_with("b", open(), every_two_seconds, &runs);
    tokio::time::sleep(Duration::from_millis(5000)).await;
    b.stop().await;

    let mut history = ClusterControl::new(open())
        .history("tick", 100)
        .await
        .unwrap();
    history.reverse();
    let history = without_unrun_starts(history);
    let ran = runs.lock().unwrap().len();
    assert_eq!(
        history.len(),
        ran,
        "every run is in the history: {history:?}"
    );
    let holders: Vec<&str> = history.iter().map(|run| &run.holder[..1]).collect();
    assert!(
        holders.contains(&"a") && holders.contains(&"b"),
        "{history:?}"
    );
    let occurrences: Vec<i64> = history.iter().map(|run| run.scheduled_ms).collect();
    assert!(
        occurrences.iter().all(|ms| ms % 2000 == 0),
        "occurrences: {occurrences:?}"
    );
    assert!(
        occurrences.windows(2).all(|pair| pair[1] - pair[0] == 2000),
        "each occurrence once, none skipped: {occurrences:?}"
    );
}

#[cfg(all(feature = "sqlite", feature = "cron"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_each_cron_occurrence_once_through_a_handover() {
    let path = std::env::temp_dir().join(format!("loopjob-cron-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    each_cron_occurrence_once_through_a_handover(&url, "cc_").await;
    sqlite_file::remove(&path);
}

#[cfg(all(feature = "postgres", feature = "cron"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_each_cron_occurrence_once_through_a_handover() {
    let what = "a guarded cron job on PostgreSQL";
    let Some(url) = database_url::database_url("LOOPJOB_TEST_POSTGRES_URL", what) else {
        return;
    };
    let prefix = test_prefix::run_prefix(&url, "cs_pgcron").await;
    each_cron_occurrence_once_through_a_handover(&url, &prefix).await;
    test_prefix::drop_prefix(&url, &prefix).await;
}

/// The test on a shared server: on a prefix of its own, dropped when it passed (a failed or
/// crashed run's tables are swept by a later run, see `support/test_prefix.rs`).
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn on_shared_server(url: &str, tag: &str) {
    let prefix = test_prefix::run_prefix(url, tag).await;
    one_grid_through_restarts_and_a_durable_pause(url, &prefix).await;
    test_prefix::drop_prefix(url, &prefix).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_grid_through_restarts_and_a_durable_pause() {
    let path = std::env::temp_dir().join(format!("loopjob-cluster-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    one_grid_through_restarts_and_a_durable_pause(&url, "cs_").await;
    sqlite_file::remove(&path);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_grid_through_restarts_and_a_durable_pause() {
    let what = "the cluster schedule on PostgreSQL";
    let Some(url) = database_url::database_url("LOOPJOB_TEST_POSTGRES_URL", what) else {
        return;
    };
    on_shared_server(&url, "cs_pg").await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_one_grid_through_restarts_and_a_durable_pause() {
    let what = "the cluster schedule on MySQL";
    let Some(url) = database_url::database_url("LOOPJOB_TEST_MYSQL_URL", what) else {
        return;
    };
    on_shared_server(&url, "cs_my").await;
}
