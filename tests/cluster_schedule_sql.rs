//! The cluster schedule on real databases: hosts sharing one SQLite file, one PostgreSQL
//! database or one MySQL database keep one grid across a restart of every host, do not repeat
//! `initial_delay`, and obey a pause given from a store URL, also after a restart. The
//! databases keep time, so these tests run in real time, with waits bounded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::cluster::ClusterControl;
use loopjob::store::{LeaseStore, RunResult, StoreOptions, open_with};
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
    let runs = runs.clone();
    let host = Host::builder()
        .node(NodeIdentity::new(name, "g"))
        .store(store)
        .shutdown_grace(Duration::from_secs(1))
        .job_fn(
            "tick",
            Schedule::every(INTERVAL).initial_delay(3 * INTERVAL),
            move |_ctx| {
                runs.lock().unwrap().push((name, Instant::now()));
                async { Ok(()) }
            },
        )
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
    for pair in starts.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap + EPSILON >= INTERVAL && gap <= INTERVAL + TTL + RETRY + EPSILON,
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

    let history = control.history("tick", 100).await.unwrap();
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
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn unique_prefix(backend: &str) -> String {
    format!("cs_{backend}_{}_", std::process::id())
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_grid_through_restarts_and_a_durable_pause() {
    let path = std::env::temp_dir().join(format!("loopjob-cluster-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    one_grid_through_restarts_and_a_durable_pause(&url, "cs_").await;
    let _ = std::fs::remove_file(&path);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_grid_through_restarts_and_a_durable_pause() {
    let Ok(url) = std::env::var("LOOPJOB_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: set LOOPJOB_TEST_POSTGRES_URL to run the cluster schedule on PostgreSQL"
        );
        return;
    };
    one_grid_through_restarts_and_a_durable_pause(&url, &unique_prefix("pg")).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_one_grid_through_restarts_and_a_durable_pause() {
    let Ok(url) = std::env::var("LOOPJOB_TEST_MYSQL_URL") else {
        eprintln!("skipped: set LOOPJOB_TEST_MYSQL_URL to run the cluster schedule on MySQL");
        return;
    };
    one_grid_through_restarts_and_a_durable_pause(&url, &unique_prefix("my")).await;
}
