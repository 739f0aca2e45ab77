//! Leadership across several hosts sharing one store, under tokio's paused clock: the memory
//! store keeps time by tokio's clock, so expiry, renewal and takeover happen at exact instants.

#[path = "support/faulty_store.rs"]
mod faulty_store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faulty_store::FaultyStore;
use loopjob::store::{LeaseStore, MemoryStore};
use loopjob::{
    BuildProblem, HeldLease, Host, HostHandle, JobContext, JobError, LeaderElector, LeaderMode,
    LeaderState, Leadership, LoopJob, LostReason, NodeIdentity, Schedule, ShutdownReport,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

const SEC: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_secs(1);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// What happened, as offsets from the test's start.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Run {
        node: &'static str,
        leases: Vec<(String, u64)>,
        start: Duration,
        end: Duration,
        cancelled: bool,
    },
    Acquired {
        node: &'static str,
        key: String,
        epoch: u64,
        at: Duration,
    },
    Lost {
        node: &'static str,
        key: String,
        epoch: u64,
        at: Duration,
        reason: LostReason,
    },
    /// The node shut down: it released what it held (after its last hook ran).
    Stopped { node: &'static str, at: Duration },
}

/// One run, from the journal.
#[derive(Debug, Clone)]
struct RunRecord {
    node: &'static str,
    leases: Vec<(String, u64)>,
    start: Duration,
    end: Duration,
    cancelled: bool,
}

#[derive(Clone)]
struct Journal {
    t0: Instant,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Journal {
    fn new() -> Self {
        Journal {
            t0: Instant::now(),
            entries: Arc::default(),
        }
    }
    fn now(&self) -> Duration {
        Instant::now() - self.t0
    }
    fn push(&self, entry: Entry) {
        self.entries.lock().unwrap().push(entry);
    }
    fn runs(&self) -> Vec<RunRecord> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Entry::Run {
                    node,
                    leases,
                    start,
                    end,
                    cancelled,
                } => Some(RunRecord {
                    node,
                    leases: leases.clone(),
                    start: *start,
                    end: *end,
                    cancelled: *cancelled,
                }),
                _ => None,
            })
            .collect()
    }

    fn acquisitions(&self, key: &str) -> Vec<(&'static str, u64, Duration)> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Entry::Acquired {
                    node,
                    key: k,
                    epoch,
                    at,
                } if k == key => Some((*node, *epoch, *at)),
                _ => None,
            })
            .collect()
    }
    /// Every interval during which a node held a key: (key, node, epoch, from, until).
    fn holdings(&self) -> Vec<(String, &'static str, u64, Duration, Duration)> {
        let entries = self.entries.lock().unwrap().clone();
        let mut open: BTreeMap<(String, &'static str, u64), Duration> = BTreeMap::new();
        let mut closed = Vec::new();
        for entry in entries {
            match entry {
                Entry::Acquired {
                    node,
                    key,
                    epoch,
                    at,
                } => {
                    open.insert((key, node, epoch), at);
                }
                Entry::Lost {
                    node,
                    key,
                    epoch,
                    at,
                    ..
                } => {
                    if let Some(from) = open.remove(&(key.clone(), node, epoch)) {
                        closed.push((key, node, epoch, from, at));
                    }
                }
                Entry::Stopped { node: stopped, at } => {
                    let ended: Vec<_> = open.keys().filter(|k| k.1 == stopped).cloned().collect();
                    for (key, node, epoch) in ended {
                        let from = open.remove(&(key.clone(), node, epoch)).unwrap_or(at);
                        closed.push((key, node, epoch, from, at));
                    }
                }
                Entry::Run { .. } => {}
            }
        }
        let now = self.now();
        closed.extend(
            open.into_iter()
                .map(|((key, node, epoch), from)| (key, node, epoch, from, now)),
        );
        closed
    }
}

/// A guarded job that records its runs and its leadership events.
#[derive(Clone)]
struct Probe {
    node: &'static str,
    leadership: Leadership,
    work: Duration,
    journal: Journal,
}

impl LoopJob for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    fn schedule(&self) -> Schedule {
        Schedule::every(SEC).cancel_grace(ms(100))
    }
    fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }
    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        let start = self.journal.now();
        let held: Vec<&HeldLease> = match ctx.lease() {
            Some(lease) => vec![lease],
            None => ctx.partitions().iter().collect(),
        };
        let guarded = self.leadership.mode != LeaderMode::None;
        assert_eq!(
            !held.is_empty(),
            guarded,
            "a guarded run holds a lease, another none"
        );
        let leases = held
            .iter()
            .map(|l| (l.key().to_owned(), l.epoch()))
            .collect();
        let cancelled = tokio::select! {
            _ = tokio::time::sleep(self.work) => false,
            _ = ctx.cancelled() => true,
        };
        let end = self.journal.now();
        self.journal.push(Entry::Run {
            node: self.node,
            leases,
            start,
            end,
            cancelled,
        });
        Ok(())
    }
    async fn on_acquired(&self, lease: &HeldLease) {
        let at = self.journal.now();
        self.journal.push(Entry::Acquired {
            node: self.node,
            key: lease.key().into(),
            epoch: lease.epoch(),
            at,
        });
    }
    async fn on_lost(&self, lease: &HeldLease, reason: &LostReason) {
        let at = self.journal.now();
        self.journal.push(Entry::Lost {
            node: self.node,
            key: lease.key().into(),
            epoch: lease.epoch(),
            at,
            reason: reason.clone(),
        });
    }
}

fn leadership(mode: LeaderMode) -> Leadership {
    Leadership::new(mode)
        .lease_ttl(TTL)
        .with_renew_every(SEC)
        .retry_every(RETRY)
}

struct Node {
    name: &'static str,
    journal: Journal,
    handle: HostHandle,
    task: JoinHandle<ShutdownReport>,
}

impl Node {
    fn start(name: &'static str, group: &str, store: Arc<dyn LeaseStore>, probe: Probe) -> Node {
        let host = Host::builder()
            .node(NodeIdentity::new(name, group))
            .store(store)
            .shutdown_grace(SEC)
            .job(Probe {
                node: name,
                ..probe.clone()
            })
            .build()
            .expect("valid host");
        let handle = host.handle();
        let task = tokio::spawn(host.run_until(std::future::pending()));
        Node {
            name,
            journal: probe.journal,
            handle,
            task,
        }
    }

    async fn stop(self) -> ShutdownReport {
        self.handle.shutdown();
        let report = self.task.await.unwrap();
        let at = self.journal.now();
        self.journal.push(Entry::Stopped {
            node: self.name,
            at,
        });
        report
    }

    /// Dies without a word: no release, no grace.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    fn held(&self) -> usize {
        self.handle
            .status("probe")
            .and_then(|s| s.leadership)
            .map_or(0, |l| l.leases.len())
    }
}

/// Starts node `a`, then node `b` a moment later, so that `a` wins the lease and `b` follows.
async fn leader_and_follower(
    a_store: Arc<dyn LeaseStore>,
    b_store: Arc<dyn LeaseStore>,
    probe: Probe,
) -> (Node, Node) {
    let a = Node::start("a", "default", a_store, probe.clone());
    tokio::time::sleep(ms(10)).await;
    let b = Node::start("b", "default", b_store, probe);
    (a, b)
}

fn probe(mode: LeaderMode, journal: &Journal) -> Probe {
    Probe {
        node: "",
        leadership: leadership(mode),
        work: ms(200),
        journal: journal.clone(),
    }
}

/// Runs of one key never overlap in time, and its epochs never decrease.
fn assert_runs_exclusive(journal: &Journal) {
    let mut by_key: BTreeMap<String, Vec<(Duration, Duration, u64, &'static str)>> =
        BTreeMap::new();
    for RunRecord {
        node,
        leases,
        start,
        end,
        ..
    } in journal.runs()
    {
        for (key, epoch) in leases {
            by_key
                .entry(key)
                .or_default()
                .push((start, end, epoch, node));
        }
    }
    for (key, mut runs) in by_key {
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "runs of {key} overlap: {:?} and {:?}",
                pair[0],
                pair[1]
            );
            assert!(
                pair[0].2 <= pair[1].2,
                "epochs of {key} went back: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn exactly_one_node_runs_a_global_job() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            Node::start(
                name,
                "default",
                store.clone(),
                probe(LeaderMode::Global, &journal),
            )
        })
        .collect();
    sleep_until(journal.t0 + 20 * SEC).await;
    let mut not_leader = 0;
    for node in nodes {
        not_leader += node
            .stop()
            .await
            .job("probe")
            .unwrap()
            .status
            .counters
            .not_leader;
    }
    let runs = journal.runs();
    let runners: Vec<_> = runs
        .iter()
        .map(|r| r.node)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(runners.len(), 1, "runs came from {runners:?}");
    assert!(
        runs.len() >= 19,
        "the leader ran every tick: {} runs",
        runs.len()
    );
    assert_eq!(
        not_leader, 0,
        "followers have no ticks of their own: the key's record times the job"
    );
    assert!(
        runs.iter().all(|r| r.leases == [("probe".to_owned(), 1)]),
        "one lease, epoch 1, all along"
    );
    assert_runs_exclusive(&journal);
}

#[tokio::test(start_paused = true)]
async fn cluster_mode_runs_one_node_per_group() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let nodes: Vec<Node> = [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")]
        .into_iter()
        .map(|(name, group)| {
            Node::start(
                name,
                group,
                store.clone(),
                probe(LeaderMode::Cluster, &journal),
            )
        })
        .collect();
    sleep_until(journal.t0 + 10 * SEC).await;
    for node in nodes {
        node.stop().await;
    }
    let mut runners: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for RunRecord { node, leases, .. } in journal.runs() {
        runners.entry(leases[0].0.clone()).or_default().insert(node);
    }
    assert_eq!(runners.keys().collect::<Vec<_>>(), ["probe@a", "probe@b"]);
    assert_eq!(runners["probe@a"].len(), 1, "{runners:?}");
    assert_eq!(runners["probe@b"].len(), 1, "{runners:?}");
    assert!(runners["probe@a"].iter().all(|n| n.starts_with('a')));
    assert!(runners["probe@b"].iter().all(|n| n.starts_with('b')));
    assert_runs_exclusive(&journal);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_within_ttl_plus_retry() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let (a, b) = leader_and_follower(
        store.clone(),
        store.clone(),
        probe(LeaderMode::Global, &journal),
    )
    .await;
    sleep_until(journal.t0 + 5 * SEC + ms(500)).await;
    assert_eq!(a.held(), 1);
    let crashed_at = journal.now();
    a.crash().await;
    sleep_until(journal.t0 + 15 * SEC).await;
    b.stop().await;

    let acquisitions = journal.acquisitions("probe");
    assert_eq!(acquisitions[0].0, "a");
    let (node, epoch, at) = acquisitions[1];
    assert_eq!(
        (node, epoch),
        ("b", 2),
        "the follower took over with the next epoch"
    );
    let takeover = at - crashed_at;
    assert!(takeover <= TTL + RETRY, "takeover after {takeover:?}");
    assert_runs_exclusive(&journal);
}

#[tokio::test(start_paused = true)]
async fn a_graceful_shutdown_hands_over_at_once_by_notification() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let (a, b) = leader_and_follower(
        store.clone(),
        store.clone(),
        probe(LeaderMode::Global, &journal),
    )
    .await;
    sleep_until(journal.t0 + 5 * SEC + ms(500)).await;
    a.stop().await;
    let released_at = journal.now();
    sleep_until(journal.t0 + 8 * SEC).await;
    b.stop().await;
    let (node, epoch, at) = journal.acquisitions("probe")[1];
    assert_eq!(
        (node, epoch, at),
        ("b", 2, released_at),
        "taken over in the same instant"
    );
    assert_runs_exclusive(&journal);
}

#[tokio::test(start_paused = true)]
async fn without_notifications_a_follower_takes_over_on_its_next_retry() {
    let memory = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let (a, b) = leader_and_follower(
        FaultyStore::new(memory.clone(), false),
        FaultyStore::new(memory.clone(), false),
        probe(LeaderMode::Global, &journal),
    )
    .await;
    sleep_until(journal.t0 + 5 * SEC + ms(500)).await;
    a.stop().await;
    let released_at = journal.now();
    sleep_until(journal.t0 + 8 * SEC).await;
    b.stop().await;
    let (node, _, at) = journal.acquisitions("probe")[1];
    assert_eq!(node, "b");
    assert!(at - released_at <= RETRY, "took {:?}", at - released_at);
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_leader_stops_its_run_before_the_store_lets_anyone_else_in() {
    let memory = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let a_store = FaultyStore::new(memory.clone(), true);
    let long = |journal: &Journal| Probe {
        work: 60 * SEC,
        ..probe(LeaderMode::Global, journal)
    };
    let (a, b) = leader_and_follower(a_store.clone(), memory.clone(), long(&journal)).await;
    sleep_until(journal.t0 + 2 * SEC + ms(500)).await;
    let cut_at = journal.now();
    a_store.cut(true);
    sleep_until(journal.t0 + 10 * SEC).await;
    a_store.cut(false);
    let _ = (a.stop().await, b.stop().await);

    let runs = journal.runs();
    let a_run = runs.iter().find(|r| r.node == "a").expect("a ran");
    assert!(a_run.cancelled, "a's run was cancelled");
    // a's last renew was sent at 2 s (renewals at 0, 1, 2): its local deadline is
    // 2 s + 3 s − 0.3 s = 4.7 s, and the store lets the lease go at 5 s at the earliest.
    assert_eq!(
        a_run.end,
        4 * SEC + ms(700),
        "cancelled at the local deadline"
    );
    let (node, epoch, taken_at) = journal.acquisitions("probe")[1];
    assert_eq!((node, epoch), ("b", 2));
    assert!(
        taken_at >= 5 * SEC,
        "the store's expiry passed first: {taken_at:?}"
    );
    assert!(a_run.end < taken_at);
    assert!(taken_at - cut_at <= TTL + RETRY);
    let lost = journal.entries.lock().unwrap().iter().any(|e| {
        matches!(
            e,
            Entry::Lost {
                node: "a",
                reason: LostReason::DeadlinePassed,
                ..
            }
        )
    });
    assert!(lost, "a reported the loss with its reason");
    assert_runs_exclusive(&journal);
}

#[tokio::test(start_paused = true)]
async fn partitions_balance_as_members_come_and_go_and_are_never_held_twice() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let partitioned = Probe {
        leadership: leadership(LeaderMode::Partitioned).partitions(6),
        ..probe(LeaderMode::None, &journal)
    };
    let a = Node::start("a", "default", store.clone(), partitioned.clone());
    sleep_until(journal.t0 + 5 * SEC).await;
    assert_eq!(a.held(), 6, "alone, a holds every partition");

    let b = Node::start("b", "default", store.clone(), partitioned.clone());
    sleep_until(journal.t0 + 15 * SEC).await;
    assert_eq!((a.held(), b.held()), (3, 3));

    let c = Node::start("c", "default", store.clone(), partitioned.clone());
    sleep_until(journal.t0 + 25 * SEC).await;
    assert_eq!((a.held(), b.held(), c.held()), (2, 2, 2));

    c.stop().await;
    sleep_until(journal.t0 + 35 * SEC).await;
    assert_eq!((a.held(), b.held()), (3, 3));
    let _ = (a.stop().await, b.stop().await);

    // No partition was ever held by two nodes at once.
    let mut holdings = journal.holdings();
    holdings.sort_by(|x, y| (&x.0, x.3).cmp(&(&y.0, y.3)));
    for pair in holdings.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert!(
                pair[0].4 <= pair[1].3,
                "{} held twice: {:?} and {:?}",
                pair[0].0,
                pair[0],
                pair[1]
            );
            assert!(
                pair[0].2 < pair[1].2,
                "epochs increase: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    assert_runs_exclusive(&journal);
}

#[tokio::test(start_paused = true)]
async fn jobs_without_a_leader_never_touch_the_store() {
    let store = FaultyStore::new(Arc::new(MemoryStore::new()), true);
    let journal = Journal::new();
    let node = Node::start(
        "a",
        "default",
        store.clone(),
        probe(LeaderMode::None, &journal),
    );
    sleep_until(journal.t0 + 10 * SEC).await;
    node.stop().await;
    assert_eq!(store.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(journal.runs().len() >= 10);
}

#[tokio::test(start_paused = true)]
async fn one_renew_statement_per_period_whatever_the_number_of_jobs() {
    let store = FaultyStore::new(Arc::new(MemoryStore::new()), true);
    let journal = Journal::new();
    let mut builder = Host::builder()
        .node(NodeIdentity::new("a", "g"))
        .store(store.clone());
    for index in 0..50 {
        let name = format!("job_{index}");
        builder = builder
            .job_fn(name.clone(), Schedule::every(SEC), |_ctx| async { Ok(()) })
            .leadership(&name, leadership(LeaderMode::Global));
    }
    let host = builder.build().unwrap();
    let handle = host.handle();
    let task = tokio::spawn(host.run_until(std::future::pending()));
    sleep_until(journal.t0 + 10 * SEC + ms(500)).await;
    handle.shutdown();
    task.await.unwrap();
    // Renewals at 1, 2, …, 10 s: one statement each for all fifty leases.
    assert_eq!(store.renews.load(std::sync::atomic::Ordering::SeqCst), 10);
    assert_eq!(
        store.acquires.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "all fifty won in one statement"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_down_at_start_delays_guarded_jobs_until_it_returns() {
    let store = FaultyStore::new(Arc::new(MemoryStore::new()), true);
    store.cut(true);
    let journal = Journal::new();
    let node = Node::start(
        "a",
        "default",
        store.clone(),
        probe(LeaderMode::Global, &journal),
    );
    sleep_until(journal.t0 + 10 * SEC).await;
    assert!(journal.runs().is_empty(), "no run without the lease");
    store.cut(false);
    sleep_until(journal.t0 + 40 * SEC).await;
    node.stop().await;
    let first = journal.runs()[0].start;
    // Backoff: retries at 1, 3, 7, 15 s after start; the store is back at 10 s.
    assert!(
        first >= 10 * SEC && first <= 17 * SEC,
        "first run at {first:?}"
    );
}

#[test]
fn bad_leadership_settings_are_errors_naming_job_and_key() {
    let noop = |_ctx| async { Ok(()) };
    let error = Host::builder()
        .store(Arc::new(MemoryStore::new()))
        .job_fn("parts", Schedule::every(SEC), noop)
        .leadership(
            "parts",
            Leadership::new(LeaderMode::Partitioned).partitions(0),
        )
        .job_fn("ttl", Schedule::every(SEC), noop)
        .leadership(
            "ttl",
            Leadership::new(LeaderMode::Global)
                .lease_ttl(SEC)
                .with_renew_every(SEC),
        )
        .job_fn("retry", Schedule::every(SEC), noop)
        .leadership(
            "retry",
            Leadership::new(LeaderMode::Cluster).retry_every(Duration::ZERO),
        )
        .build()
        .unwrap_err();
    let found: Vec<_> = error
        .problems()
        .iter()
        .map(|p| match p {
            BuildProblem::InvalidLeadership { job, problem, .. } => (job.as_str(), problem.field),
            other => panic!("unexpected: {other}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            ("parts", "partitions"),
            ("ttl", "renew_every"),
            ("retry", "retry_every")
        ]
    );

    let error = Host::builder()
        .job_fn("lonely", Schedule::every(SEC), noop)
        .leadership("lonely", Leadership::new(LeaderMode::Global))
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("job `lonely` has leader = Global but the host has no lease store"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_standalone_elector_runs_work_only_while_leading() {
    let store = Arc::new(MemoryStore::new());
    let timing = leadership(LeaderMode::Global);
    let a = LeaderElector::start(
        store.clone(),
        "consumer",
        timing.clone(),
        &NodeIdentity::new("a", "g"),
    );
    let mut a_state = a.watch();
    a_state
        .wait_for(|s| matches!(s, LeaderState::Leader(_)))
        .await
        .unwrap();
    let mut b = LeaderElector::start(
        store.clone(),
        "consumer",
        timing,
        &NodeIdentity::new("b", "g"),
    );
    let mut b_events = b.events().unwrap();
    assert!(b.events().is_none(), "events can be taken once");

    let t0 = Instant::now();
    let b_work = tokio::spawn(async move {
        b.run_while_leader(|lease, _token| async move { (lease.epoch(), Instant::now()) })
            .await
    });
    tokio::time::sleep(10 * SEC).await;
    assert!(!b_work.is_finished(), "b does not run while a leads");
    assert_eq!(a.state().lease().map(HeldLease::epoch), Some(1));
    a.shutdown().await;
    let (epoch, started) = b_work.await.unwrap();
    assert_eq!(epoch, 2);
    assert_eq!(started - t0, 10 * SEC, "b took over the moment a released");
    assert!(matches!(
        b_events.recv().await,
        Some(loopjob::LeadershipEvent::Acquired(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_highest_priority_live_candidate_wins() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let with_priority = |priority| Probe {
        leadership: leadership(LeaderMode::Global).priority(priority),
        ..probe(LeaderMode::None, &journal)
    };
    // Started together: priority 0 wins although 2 and 1 start first.
    let low = Node::start("low", "default", store.clone(), with_priority(2));
    let middle = Node::start("middle", "default", store.clone(), with_priority(1));
    let high = Node::start("high", "default", store.clone(), with_priority(0));
    sleep_until(journal.t0 + 5 * SEC).await;
    assert_eq!((high.held(), middle.held(), low.held()), (1, 0, 0));

    // When it dies, the lease frees at its expiry; priority 1 competes one retry period after
    // that, priority 2 only after two: the middle one wins.
    high.crash().await;
    sleep_until(journal.t0 + 15 * SEC).await;
    assert_eq!((middle.held(), low.held()), (1, 0));
    let _ = (middle.stop().await, low.stop().await);
    let winners: Vec<_> = journal.acquisitions("probe").iter().map(|a| a.0).collect();
    assert_eq!(winners, ["high", "middle"]);
}

#[tokio::test(start_paused = true)]
async fn a_dead_members_partitions_are_owned_again_within_ttl_plus_retry() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let partitioned = Probe {
        leadership: leadership(LeaderMode::Partitioned).partitions(4),
        ..probe(LeaderMode::None, &journal)
    };
    let a = Node::start("a", "default", store.clone(), partitioned.clone());
    let b = Node::start("b", "default", store.clone(), partitioned.clone());
    sleep_until(journal.t0 + 10 * SEC).await;
    assert_eq!((a.held(), b.held()), (2, 2));
    let died_at = journal.now();
    b.crash().await;
    sleep_until(journal.t0 + 20 * SEC).await;
    assert_eq!(a.held(), 4, "a took over b's partitions");
    a.stop().await;
    let taken_over: Vec<Duration> = journal
        .holdings()
        .iter()
        .filter(|h| h.1 == "a" && h.3 > died_at)
        .map(|h| h.3 - died_at)
        .collect();
    assert_eq!(taken_over.len(), 2, "{taken_over:?}");
    assert!(
        taken_over.iter().all(|t| *t <= TTL + RETRY),
        "{taken_over:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trigger_on_a_follower_runs_at_once_on_the_leader() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new();
    let (leader, follower) =
        leader_and_follower(store.clone(), store, probe(LeaderMode::Global, &journal)).await;
    sleep_until(journal.t0 + 3 * SEC + ms(500)).await;
    assert_eq!(
        follower.handle.trigger("probe").await,
        Ok(loopjob::Triggered::Requested)
    );
    sleep_until(journal.t0 + 3 * SEC + ms(600)).await;
    let _ = (leader.stop().await, follower.stop().await);
    let runs = journal.runs();
    assert!(runs.iter().all(|run| run.node == "a"), "{runs:?}");
    // The store told the leader of the command: it ran in the same instant.
    let triggered: Vec<_> = runs
        .iter()
        .filter(|r| r.start == 3 * SEC + ms(500))
        .collect();
    assert_eq!(triggered.len(), 1, "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn run_while_leader_cancels_the_task_on_loss_and_runs_it_again_when_reelected() {
    let memory = Arc::new(MemoryStore::new());
    let line = FaultyStore::new(memory.clone(), true);
    let timing = leadership(LeaderMode::Global);
    let elector = LeaderElector::start(
        line.clone(),
        "consumer",
        timing,
        &NodeIdentity::new("a", "g"),
    );
    let t0 = Instant::now();
    let started: Arc<Mutex<Vec<(u64, Duration)>>> = Arc::default();
    let cancelled_at: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let work = {
        let (started, cancelled_at) = (started.clone(), cancelled_at.clone());
        tokio::spawn(async move {
            elector
                .run_while_leader(|lease, token| {
                    let (started, cancelled_at) = (started.clone(), cancelled_at.clone());
                    async move {
                        started
                            .lock()
                            .unwrap()
                            .push((lease.epoch(), Instant::now() - t0));
                        if lease.epoch() == 1 {
                            // The first term ends by losing the lease.
                            token.cancelled().await;
                            cancelled_at.lock().unwrap().push(Instant::now() - t0);
                            return "abandoned";
                        }
                        "finished"
                    }
                })
                .await
        })
    };
    sleep_until(t0 + 2 * SEC + ms(500)).await;
    line.cut(true); // renewals fail from here on
    sleep_until(t0 + 10 * SEC).await;
    line.cut(false);
    assert_eq!(
        work.await.unwrap(),
        "finished",
        "the output of the lost term is discarded"
    );
    let started = started.lock().unwrap().clone();
    assert_eq!(started.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2]);
    // Last renewal sent at 2 s: the token is cancelled at its local deadline, 2 s + 2.7 s.
    assert_eq!(*cancelled_at.lock().unwrap(), [4 * SEC + ms(700)]);
    assert!(
        started[1].1 >= 10 * SEC,
        "re-elected only once the store answers again"
    );
}

#[tokio::test(start_paused = true)]
async fn the_store_and_leader_mode_can_come_from_settings() {
    let settings = loopjob::Settings::from_toml_str(
        "[loopjob]\nstore = \"memory\"\n\n[jobs.report]\nleader = \"global\"\n",
    )
    .unwrap();
    let host = Host::builder()
        .settings(settings)
        .job_fn("report", Schedule::every(SEC), |ctx| async move {
            assert_eq!(ctx.fencing_token(), Some(1));
            Ok(())
        })
        .build()
        .expect("the store opened from its URL");
    let report = host.run_until(tokio::time::sleep(5 * SEC + ms(500))).await;
    let status = &report.job("report").unwrap().status;
    assert!(status.counters.succeeded >= 5, "{status:?}");
    assert_eq!(status.leadership.as_ref().map(|l| l.acquired), Some(1));
}
