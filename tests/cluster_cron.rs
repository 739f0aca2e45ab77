//! A guarded cron job on the cluster schedule: its key's record keeps the next occurrence,
//! computed on the store's clock, so that a crash, a graceful handover or a restart of every
//! host neither repeats nor skips an occurrence, and its pause and triggers are cluster-wide.
//! Several hosts share one memory store whose clock reads midnight, 1 January 2026, when the
//! test begins, and runs with tokio's paused clock: every occurrence below is exact, and a
//! run's start is exact to the conversion's margin.
#![cfg(feature = "cron")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use loopjob::cluster::ClusterControl;
use loopjob::store::{LeaseStore, MemoryStore, RunRecord};
use loopjob::{
    CatchUp, Host, HostHandle, JobState, LeaderMode, Leadership, NodeIdentity, Schedule,
    ShutdownReport, Triggered,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

const SEC: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_secs(1);
/// How late a run may start after its occurrence: a due time read from the store is waited
/// with a margin of a tenth of the wait, at most a tenth of the lease ttl (and the store's
/// clock counts whole milliseconds).
const EPSILON: Duration = Duration::from_millis(301);
/// The store's clock when a test begins.
const MIDNIGHT: &str = "2026-01-01T00:00:00Z";

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn every_ten_seconds() -> Schedule {
    Schedule::cron("*/10 * * * * *")
}

fn global() -> Leadership {
    Leadership::new(LeaderMode::Global)
        .lease_ttl(TTL)
        .with_renew_every(SEC)
        .retry_every(RETRY)
}

/// Hosts sharing one store, and the runs of their job `beat`: which node, and when (since the
/// test began, which is also the store's time since midnight).
struct Cluster {
    store: Arc<dyn LeaseStore>,
    t0: Instant,
    runs: Arc<Mutex<Vec<(&'static str, Duration)>>>,
}

struct Node {
    handle: HostHandle,
    task: JoinHandle<ShutdownReport>,
}

impl Cluster {
    fn new() -> Self {
        let midnight: Timestamp = MIDNIGHT.parse().expect("a timestamp");
        Cluster {
            store: Arc::new(MemoryStore::starting_at(SystemTime::from(midnight))),
            t0: Instant::now(),
            runs: Arc::default(),
        }
    }

    /// A host named `name` running the global job `beat` on `schedule`.
    fn start(&self, name: &'static str, schedule: Schedule) -> Node {
        let (runs, t0) = (self.runs.clone(), self.t0);
        let host = Host::builder()
            .node(NodeIdentity::new(name, "default"))
            .store(self.store.clone())
            .shutdown_grace(SEC)
            .job_fn("beat", schedule, move |_ctx| {
                runs.lock().unwrap().push((name, Instant::now() - t0));
                async { Ok(()) }
            })
            .leadership("beat", global())
            .build()
            .expect("valid host");
        let handle = host.handle();
        let task = tokio::spawn(host.run_until(std::future::pending()));
        Node { handle, task }
    }

    async fn until(&self, at: Duration) {
        sleep_until(self.t0 + at).await;
    }

    fn runs(&self) -> Vec<(&'static str, Duration)> {
        self.runs.lock().unwrap().clone()
    }

    fn starts(&self) -> Vec<Duration> {
        self.runs().into_iter().map(|(_, at)| at).collect()
    }

    /// The key's history, oldest first.
    async fn history(&self) -> Vec<RunRecord> {
        let mut history = ClusterControl::new(self.store.clone())
            .history("beat", 100)
            .await
            .expect("a history");
        history.reverse();
        history
    }

    /// The occurrence each run of the history was for, as `HH:MM:SS`, and the node that ran
    /// it; checks that every run in the journal is in the history, and no other.
    async fn occurrences(&self) -> Vec<(String, String)> {
        let history = self.history().await;
        let runs = self.runs();
        assert_eq!(history.len(), runs.len(), "{history:?}\n{runs:?}");
        history
            .iter()
            .map(|run| {
                let node = run.holder.split('/').next().unwrap_or_default().to_owned();
                (node, time_of_day(run.scheduled_ms))
            })
            .collect()
    }
}

impl Node {
    async fn stop(self) -> ShutdownReport {
        self.handle.shutdown();
        self.task.await.unwrap()
    }

    /// Dies without a word: no release, no grace.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A store time as `HH:MM:SS` in UTC.
fn time_of_day(ms: i64) -> String {
    let at = Timestamp::from_millisecond(ms).expect("a store time");
    at.strftime("%H:%M:%S").to_string()
}

/// Each run started at its occurrence (seconds after midnight), or at most the margin after
/// it.
fn assert_on_time(starts: &[Duration], occurrences: &[u32]) {
    assert_eq!(starts.len(), occurrences.len(), "{starts:?}");
    for (start, occurrence) in starts.iter().zip(occurrences) {
        let occurrence = *occurrence * SEC;
        assert!(
            *start >= occurrence && *start <= occurrence + EPSILON,
            "{start:?} is not on {occurrence:?}: {starts:?}"
        );
    }
}

/// `(node, occurrence)` pairs, written short.
fn ran(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(node, at)| ((*node).to_owned(), (*at).to_owned()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn each_occurrence_runs_once_through_a_crash_a_handover_and_a_restart_of_every_host() {
    let cluster = Cluster::new();
    let a = cluster.start("a", every_ten_seconds());
    tokio::time::sleep(ms(10)).await;
    let b = cluster.start("b", every_ten_seconds());
    // The leader dies just before 00:00:40: the follower takes the lease when it expires,
    // finds 00:00:40 passed unrun, and runs it once at once.
    cluster.until(39 * SEC + ms(500)).await;
    a.crash().await;
    cluster.until(45 * SEC).await;
    let c = cluster.start("c", every_ten_seconds());
    // A graceful handover: b releases, c takes over at once and waits for 00:01:10.
    cluster.until(61 * SEC).await;
    b.stop().await;
    cluster.until(75 * SEC).await;
    c.stop().await;
    // A deploy: every host restarted. The new leader runs 00:01:20, neither at once nor later.
    cluster.until(78 * SEC).await;
    let (d, e) = (
        cluster.start("d", every_ten_seconds()),
        cluster.start("e", every_ten_seconds()),
    );
    cluster.until(100 * SEC + ms(500)).await;
    let _ = (d.stop().await, e.stop().await);

    let occurrences = cluster.occurrences().await;
    assert_eq!(
        occurrences[..8],
        ran(&[
            ("a", "00:00:00"),
            ("a", "00:00:10"),
            ("a", "00:00:20"),
            ("a", "00:00:30"),
            ("b", "00:00:40"),
            ("b", "00:00:50"),
            ("b", "00:01:00"),
            ("c", "00:01:10"),
        ]),
    );
    let after_the_deploy: Vec<&str> = occurrences[8..].iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(after_the_deploy, ["00:01:20", "00:01:30", "00:01:40"]);
    assert!(
        occurrences[8..]
            .iter()
            .all(|(node, _)| node == "d" || node == "e"),
        "{occurrences:?}"
    );
    let starts = cluster.starts();
    // 00:00:40 ran late (the crashed leader's lease had to expire), every other on time.
    assert!(
        starts[4] > 40 * SEC && starts[4] <= 40 * SEC + TTL + RETRY,
        "{starts:?}"
    );
    assert_on_time(&starts[..4], &[0, 10, 20, 30]);
    assert_on_time(&starts[5..], &[50, 60, 70, 80, 90, 100]);
}

/// Runs at 00:00:00, 00:00:10 and 00:00:20 on one host, which stops at 25 s; another starts at
/// 47 s, with 00:00:30 and 00:00:40 unrun. Returns the occurrences run and when they started.
async fn restart_after_an_outage(catch_up: CatchUp) -> (Vec<String>, Vec<Duration>) {
    let cluster = Cluster::new();
    let schedule = every_ten_seconds().catch_up(catch_up);
    let a = cluster.start("a", schedule.clone());
    cluster.until(25 * SEC).await;
    a.stop().await;
    cluster.until(47 * SEC).await;
    let b = cluster.start("b", schedule);
    cluster.until(65 * SEC).await;
    b.stop().await;
    let occurrences = cluster.occurrences().await;
    let times = occurrences.into_iter().map(|(_, at)| at).collect();
    (times, cluster.starts())
}

#[tokio::test(start_paused = true)]
async fn catch_up_once_runs_the_latest_missed_occurrence_once_at_once() {
    let (occurrences, starts) = restart_after_an_outage(CatchUp::Once).await;
    // 00:00:30 and 00:00:40 were missed: one run, for the latest, then the schedule goes on.
    assert_eq!(
        occurrences,
        [
            "00:00:00", "00:00:10", "00:00:20", "00:00:40", "00:00:50", "00:01:00"
        ]
    );
    assert_eq!(starts[3], 47 * SEC, "at once: {starts:?}");
    assert_on_time(&starts[4..], &[50, 60]);
}

#[tokio::test(start_paused = true)]
async fn catch_up_skip_waits_for_the_next_occurrence() {
    let (occurrences, starts) = restart_after_an_outage(CatchUp::Skip).await;
    assert_eq!(
        occurrences,
        ["00:00:00", "00:00:10", "00:00:20", "00:00:50", "00:01:00"]
    );
    assert_on_time(&starts, &[0, 10, 20, 50, 60]);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_applies_to_the_first_run_ever_not_to_each_restart() {
    let cluster = Cluster::new();
    // The first run ever is the first occurrence at or after the store's now plus 25 s.
    let delayed = every_ten_seconds().initial_delay(25 * SEC);
    let a = cluster.start("a", delayed.clone());
    cluster.until(37 * SEC).await;
    a.stop().await;
    cluster.until(38 * SEC).await;
    let b = cluster.start("b", delayed);
    cluster.until(55 * SEC).await;
    b.stop().await;

    assert_eq!(
        cluster.occurrences().await,
        ran(&[("a", "00:00:30"), ("b", "00:00:40"), ("b", "00:00:50")])
    );
    assert_on_time(&cluster.starts(), &[30, 40, 50]);
}

#[tokio::test(start_paused = true)]
async fn a_due_time_written_for_an_interval_is_rounded_up_to_the_next_occurrence() {
    let cluster = Cluster::new();
    // Every 7 s: runs at 0, 7 and 14 s, and leaves 21 s as the next due time.
    let a = cluster.start("a", Schedule::every(7 * SEC));
    cluster.until(15 * SEC).await;
    a.stop().await;
    // Deployed again as a cron job: 21 s is no occurrence; the next one at or after it is 30 s.
    cluster.until(16 * SEC).await;
    let b = cluster.start("b", every_ten_seconds());
    cluster.until(45 * SEC).await;
    b.stop().await;

    assert_eq!(
        cluster.occurrences().await,
        ran(&[
            ("a", "00:00:00"),
            ("a", "00:00:07"),
            ("a", "00:00:14"),
            ("b", "00:00:30"),
            ("b", "00:00:40"),
        ])
    );
    assert_on_time(&cluster.starts()[3..], &[30, 40]);
}

#[tokio::test(start_paused = true)]
async fn a_pause_from_a_follower_stops_the_leader_and_survives_a_restart_of_every_host() {
    let cluster = Cluster::new();
    let every_second = Schedule::cron("* * * * * *");
    let a = cluster.start("a", every_second.clone());
    tokio::time::sleep(ms(10)).await;
    let b = cluster.start("b", every_second.clone());
    cluster.until(5 * SEC + ms(500)).await;
    b.handle.pause("beat").await.unwrap();
    cluster.until(8 * SEC).await;
    let leader = a.handle.status("beat").unwrap();
    assert_eq!(leader.state, JobState::Paused, "{leader:?}");
    let view = leader.cluster.expect("the leader shows the cluster view");
    assert_eq!(view.records[0].paused.as_ref().unwrap().by, "b");
    let _ = (a.stop().await, b.stop().await);

    // Every host restarted: the pause holds.
    let (c, d) = (
        cluster.start("c", every_second.clone()),
        cluster.start("d", every_second),
    );
    cluster.until(20 * SEC + ms(500)).await;
    assert!(c.handle.schedule("beat").await.unwrap().paused);
    // Resumed from a tool, without a host: the leader runs again within a retry period, from
    // the next occurrence; those that fell due while paused are not run.
    ClusterControl::new(cluster.store.clone())
        .operator("ops")
        .resume("beat")
        .await
        .unwrap();
    cluster.until(23 * SEC + ms(500)).await;
    let _ = (c.stop().await, d.stop().await);

    let occurrences: Vec<String> = cluster
        .occurrences()
        .await
        .into_iter()
        .map(|(_, at)| at)
        .collect();
    assert_eq!(
        occurrences[..6],
        [
            "00:00:00", "00:00:01", "00:00:02", "00:00:03", "00:00:04", "00:00:05"
        ]
    );
    let resumed = &occurrences[6..];
    assert!(
        !resumed.is_empty()
            && resumed[0].as_str() >= "00:00:21"
            && resumed[0].as_str() <= "00:00:22",
        "{occurrences:?}"
    );
    assert!(
        resumed.last().is_some_and(|last| last == "00:00:23"),
        "{occurrences:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trigger_from_a_follower_runs_once_on_the_leader() {
    let cluster = Cluster::new();
    let hourly = Schedule::cron("0 * * * *");
    let a = cluster.start("a", hourly.clone());
    tokio::time::sleep(ms(10)).await;
    let b = cluster.start("b", hourly);
    cluster.until(5 * SEC).await;
    assert_eq!(b.handle.trigger("beat").await, Ok(Triggered::Requested));
    cluster.until(60 * SEC).await;
    let _ = (a.stop().await, b.stop().await);

    // Midnight is an occurrence, run at once; the trigger runs once more, and the schedule
    // still waits for 01:00.
    assert_eq!(cluster.runs(), [("a", Duration::ZERO), ("a", 5 * SEC)]);
    let history = cluster.history().await;
    assert!(!history[0].triggered && history[1].triggered, "{history:?}");
}
