//! A clean shutdown tells one story about the leases it gives back, and partitioned jobs stay
//! cheap at the largest size allowed. Under tokio's paused clock, on the memory store.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::settings::MAX_PARTITIONS;
use loopjob::store::{LeaseStore, MemoryStore};
use loopjob::{
    HeldLease, Host, JobContext, JobError, LeaderMode, Leadership, LoopJob, LostReason,
    NodeIdentity, Schedule,
};

const SEC: Duration = Duration::from_secs(1);

/// What a job's hooks saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Hook {
    Acquired(String),
    Lost(String, LostReason),
    Stopped,
}

#[derive(Clone)]
struct Hooked {
    leadership: Leadership,
    hooks: Arc<Mutex<Vec<Hook>>>,
    /// Whether `on_acquired` panics after recording itself.
    acquired_panics: bool,
}

impl LoopJob for Hooked {
    fn name(&self) -> &str {
        "hooked"
    }
    fn schedule(&self) -> Schedule {
        Schedule::every(SEC)
    }
    fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
    async fn on_acquired(&self, lease: &HeldLease) {
        self.hooks
            .lock()
            .unwrap()
            .push(Hook::Acquired(lease.key().into()));
        if self.acquired_panics {
            panic!("deliberate panic in on_acquired");
        }
    }
    async fn on_lost(&self, lease: &HeldLease, reason: &LostReason) {
        assert!(!lease.is_held(), "a lease reported lost is not held");
        self.hooks
            .lock()
            .unwrap()
            .push(Hook::Lost(lease.key().into(), reason.clone()));
    }
    async fn on_stopped(&self) {
        self.hooks.lock().unwrap().push(Hook::Stopped);
    }
}

/// A job under `leadership`, and the list its hooks write to.
fn hooked(leadership: Leadership, acquired_panics: bool) -> (Hooked, Arc<Mutex<Vec<Hook>>>) {
    let hooks = Arc::new(Mutex::new(Vec::new()));
    let job = Hooked {
        leadership,
        hooks: hooks.clone(),
        acquired_panics,
    };
    (job, hooks)
}

/// What the hooks of a global job see when it wins its lease and its host stops cleanly.
fn won_then_released() -> [Hook; 3] {
    [
        Hook::Acquired("hooked".into()),
        Hook::Lost("hooked".into(), LostReason::Released),
        Hook::Stopped,
    ]
}

fn host(store: Arc<dyn LeaseStore>, node: &str, job: Hooked) -> Host {
    Host::builder()
        .node(NodeIdentity::new(node, "default"))
        .store(store)
        .shutdown_grace(SEC)
        .job(job)
        .build()
        .expect("valid host")
}

/// The tests of this file run one at a time: a subscriber set for one thread does not see
/// every event while other threads register the same callsites.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The log lines written while `f` runs, at every level.
async fn logged<T>(f: impl std::future::Future<Output = T>) -> (T, Vec<String>) {
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let output = f.await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    (output, text.lines().map(str::to_owned).collect())
}

fn count(lines: &[String], level: &str, message: &str) -> usize {
    lines
        .iter()
        .filter(|line| line.contains(level) && line.contains(message))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_clean_shutdown_calls_on_lost_with_released_before_on_stopped_and_logs_no_warning() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let store = Arc::new(MemoryStore::new());
    let (job, hooks) = hooked(Leadership::new(LeaderMode::Global), false);
    let ((report, taken_over), lines) = logged(async {
        let host = host(store.clone(), "a", job);
        let report = host.run_until(tokio::time::sleep(5 * SEC)).await;
        // Given back to the store: another candidate takes it at once.
        let won = store
            .try_acquire("b", &["hooked".to_owned()], 15 * SEC)
            .await
            .unwrap();
        (report, won.len())
    })
    .await;
    assert_eq!(*hooks.lock().unwrap(), won_then_released());
    let leadership = report.job("hooked").unwrap().status.leadership.clone();
    let leadership = leadership.expect("a guarded job reports its leadership");
    assert_eq!((leadership.acquired, leadership.lost), (1, 1));
    assert!(leadership.leases.is_empty(), "nothing held after shutdown");
    assert_eq!(taken_over, 1);
    assert_eq!(count(&lines, "WARN", ""), 0, "{lines:#?}");
    assert_eq!(count(&lines, "INFO", "leases released"), 1, "{lines:#?}");
}

/// A leadership hook that panics is logged; the job keeps running and its later hooks are
/// still called, in order.
#[tokio::test(start_paused = true)]
async fn a_panicking_leadership_hook_is_logged_and_the_job_and_its_later_hooks_go_on() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let store = Arc::new(MemoryStore::new());
    let (job, hooks) = hooked(Leadership::new(LeaderMode::Global), true);
    let (report, lines) = logged(async {
        let host = host(store.clone(), "a", job);
        host.run_until(tokio::time::sleep(5 * SEC)).await
    })
    .await;
    assert_eq!(*hooks.lock().unwrap(), won_then_released());
    let status = &report.job("hooked").unwrap().status;
    assert!(
        status.counters.succeeded >= 4,
        "the job ran every second after its hook panicked: {:?}",
        status.counters
    );
    let panicked: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("ERROR") && line.contains("leadership hook panicked"))
        .collect();
    assert_eq!(panicked.len(), 1, "{lines:#?}");
    assert!(
        panicked[0].contains("deliberate panic in on_acquired"),
        "{lines:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_largest_partitioned_job_is_acquired_at_once_logged_once_and_released_at_shutdown() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let store = Arc::new(MemoryStore::new());
    let (job, hooks) = hooked(
        Leadership::new(LeaderMode::Partitioned).partitions(MAX_PARTITIONS),
        false,
    );
    let ((held_at, report, taken_over), lines) = logged(async {
        let host = host(store.clone(), "a", job);
        let handle = host.handle();
        let t0 = tokio::time::Instant::now();
        let running = tokio::spawn(host.run_until(std::future::pending()));
        handle
            .wait_for("hooked", |s| {
                s.leadership
                    .as_ref()
                    .is_some_and(|l| l.leases.len() == MAX_PARTITIONS as usize)
            })
            .await
            .unwrap();
        let held_at = t0.elapsed();
        let stop = tokio::time::Instant::now();
        handle.shutdown();
        let report = running.await.unwrap();
        assert_eq!(
            stop.elapsed(),
            Duration::ZERO,
            "shutdown waits for no timer"
        );
        let keys: Vec<String> = (0..MAX_PARTITIONS).map(|p| format!("hooked#{p}")).collect();
        let won = store.try_acquire("b", &keys, 15 * SEC).await.unwrap();
        (held_at, report, won.len())
    })
    .await;
    assert_eq!(
        held_at,
        Duration::ZERO,
        "every partition in the first batch"
    );
    assert_eq!(
        taken_over, MAX_PARTITIONS as usize,
        "all released at shutdown"
    );
    let leadership = report
        .job("hooked")
        .unwrap()
        .status
        .leadership
        .clone()
        .unwrap();
    assert_eq!(leadership.acquired, u64::from(MAX_PARTITIONS));
    assert_eq!(leadership.lost, u64::from(MAX_PARTITIONS));
    let hooks = hooks.lock().unwrap();
    let released = hooks
        .iter()
        .filter(|h| matches!(h, Hook::Lost(_, LostReason::Released)))
        .count();
    assert_eq!(released, MAX_PARTITIONS as usize);
    assert_eq!(hooks.last(), Some(&Hook::Stopped));
    // One line per batch, not one per partition.
    assert_eq!(
        count(&lines, "INFO", "leases acquired"),
        1,
        "{}",
        lines.len()
    );
    assert_eq!(
        count(&lines, "INFO", "leases released"),
        1,
        "{}",
        lines.len()
    );
    assert_eq!(count(&lines, "WARN", ""), 0);
    assert!(lines.len() < 50, "{} lines logged", lines.len());
}

/// Starts `a` and waits until it leads, then starts `b` beside it.
async fn leader_and_candidate(
    store: &Arc<MemoryStore>,
) -> (loopjob::LeaderElector, loopjob::LeaderElector) {
    let timing = Leadership::new(LeaderMode::Global)
        .lease_ttl(15 * SEC)
        .retry_every(2 * SEC);
    let a = loopjob::LeaderElector::start(
        store.clone(),
        "consumer",
        timing.clone(),
        &NodeIdentity::new("a", "g"),
    )
    .expect("valid lease timing");
    a.watch().wait_for(|s| s.lease().is_some()).await.unwrap();
    let b = loopjob::LeaderElector::start(
        store.clone(),
        "consumer",
        timing,
        &NodeIdentity::new("b", "g"),
    )
    .expect("valid lease timing");
    (a, b)
}

/// How long after now `elector` becomes the leader, with the epoch it gets.
async fn elected_after(elector: &loopjob::LeaderElector) -> (Duration, u64) {
    let start = tokio::time::Instant::now();
    let mut watch = elector.watch();
    let elected = tokio::time::timeout(60 * SEC, watch.wait_for(|s| s.lease().is_some()));
    let state = elected
        .await
        .expect("elected within a minute")
        .unwrap()
        .clone();
    (start.elapsed(), state.lease().unwrap().epoch())
}

#[tokio::test(start_paused = true)]
async fn a_dropped_elector_releases_its_lease_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let store = Arc::new(MemoryStore::new());
    let (a, b) = leader_and_candidate(&store).await;
    // Renewals go on while it lives: b waits well past the ttl.
    tokio::time::sleep(60 * SEC).await;
    assert!(b.state().lease().is_none(), "a still leads while it lives");
    drop(a);
    assert_eq!(elected_after(&b).await, (Duration::ZERO, 2));
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_run_while_leader_future_releases_the_lease_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let store = Arc::new(MemoryStore::new());
    let (a, b) = leader_and_candidate(&store).await;
    let work = a.run_while_leader(|_lease, token| async move { token.cancelled().await });
    // The caller gives up on the work (a timeout, a select! on shutdown): the future is dropped.
    assert!(tokio::time::timeout(60 * SEC, work).await.is_err());
    assert!(b.state().lease().is_none(), "a led for the whole minute");
    assert_eq!(elected_after(&b).await, (Duration::ZERO, 2));
    // The elector `a` is still alive, but no longer competes.
    tokio::time::sleep(60 * SEC).await;
    assert!(a.state().lease().is_none());
    assert_eq!(b.state().lease().map(HeldLease::epoch), Some(2));
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_acquired_lease_gives_its_expiry_on_the_wall_clock_beside_its_deadline() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let store = Arc::new(MemoryStore::new());
    let ttl = 15 * SEC;
    let mut elector = loopjob::LeaderElector::start(
        store,
        "consumer",
        Leadership::new(LeaderMode::Global).lease_ttl(ttl),
        &NodeIdentity::new("a", "g"),
    )
    .expect("valid lease timing");
    let mut events = elector.events().unwrap();
    let sent = tokio::time::Instant::now();
    let Some(loopjob::LeadershipEvent::Acquired(lease)) = events.recv().await else {
        panic!("the first event is the acquisition");
    };
    // The deadline is the send instant + ttl - 10% (the paused clock did not move).
    assert_eq!(lease.deadline(), sent + ttl - ttl / 10);
    let left = lease.deadline() - tokio::time::Instant::now();
    let before = std::time::SystemTime::now();
    let expires_at = lease.expires_at();
    let after = std::time::SystemTime::now();
    assert!(before + left <= expires_at && expires_at <= after + left);
    assert!(format!("{lease:?}").contains("expires_at"));
    elector.shutdown().await;
}
