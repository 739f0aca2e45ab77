//! Chaos suite: node processes running guarded jobs on the cluster schedule against a real
//! store (private PostgreSQL, MariaDB and Redis servers, a private three-member etcd cluster,
//! a shared SQLite file), while the harness kills, freezes, cuts off, partitions and slows
//! them, takes the store away or restarts it, skews their clocks, and pauses, resumes and
//! triggers their jobs as an operator would; then a checker proves DESIGN's P1–P8 from a
//! fenced journal, the nodes' lines and the store's rows and history. See docs/RELIABILITY.md.
//!
//! ```text
//! cargo test --all-features --test chaos -- --nocapture          # bounded: every fault once per backend
//! LOOPJOB_SOAK=30 cargo test --all-features --test chaos          # 30 minutes per backend
//! LOOPJOB_CHAOS_SEED=1234 cargo test --all-features --test chaos  # replay a seed's fault plan
//! ```
//!
//! Needs `LOOPJOB_TEST_POSTGRES_URL` (the fenced journal lives in that PostgreSQL server for
//! every run), and for the MySQL, Redis and etcd runs `LOOPJOB_TEST_MYSQL_URL`,
//! `LOOPJOB_TEST_REDIS_URL` and `LOOPJOB_TEST_ETCD_URL`. Every run but SQLite's starts a
//! private server (or etcd cluster) of its own, which it restarts; the variable says the store
//! is meant to be tested here. A test whose variables are unset prints that it was skipped.
//! Node processes are this test binary, re-executed to run only the ignored `chaos_node` test.
//! Each store is one file in `backend/`.

#![cfg(all(
    feature = "postgres",
    feature = "sqlite",
    feature = "mysql",
    feature = "redis"
))]

mod backend;
mod checker;
mod clock;
#[path = "../support/database_url.rs"]
mod database_url;
mod faults;
mod harness;
mod journal;
mod lines;
mod netns;
mod node;
mod operator;
#[path = "../support/proxy.rs"]
mod proxy;
mod schedule;
mod skew;
#[path = "../support/sqlite_file.rs"]
mod sqlite_file;
mod stalls;

use std::sync::Arc;
use std::time::Duration;

use loopjob::cluster::ClusterControl;
use loopjob::store::{LeaseStore, RunRecord, StoreOptions, open_with};

use crate::backend::Backend;
use crate::checker::Evidence;
use crate::clock::{StoreTime, mono_ns, ms};
use crate::harness::Cluster;
use crate::journal::Journal;
use crate::node::{HISTORY, PARTITIONS};
use crate::operator::{Command, Source};

/// The chaos tests share the host's two cores and the databases: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NODES: usize = 4;
/// The bounded run's nominal length per backend, when `LOOPJOB_SOAK` is unset: the clock
/// jumps are spread over it. A run goes on until every fault kind and every operator command
/// was given once (about 30 s on PostgreSQL, less on the backends with fewer kinds), so this
/// is only a floor.
const CI_RUN: Duration = Duration::from_secs(24);
/// The longest the nodes get to take every key before the first fault (they take them in well
/// under a second).
const FIRST_OWNERS: Duration = Duration::from_secs(4);
/// The longest a fault and the wait after it take; no fault starts later than this before the
/// run's end.
const LONGEST_SLOT: Duration = Duration::from_millis(8500);
/// The guarded jobs every node runs (see `node.rs`).
const JOBS: [&str; 3] = ["global", "cluster", "part"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres() {
    let Some(journal) = postgres_url() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let name = format!("chaos-{}", std::process::id());
    chaos(Arc::new(backend::Postgres::start(&name).await), &journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sqlite() {
    let Some(journal) = postgres_url() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let name = format!("chaos-{}", std::process::id());
    chaos(Arc::new(backend::Sqlite::new(&name)), &journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_mysql() {
    let Some(journal) = postgres_url() else {
        return;
    };
    // The run starts a private MariaDB server of its own; the variable says MySQL is meant to
    // be tested here.
    if database_url::database_url("LOOPJOB_TEST_MYSQL_URL", "the MySQL chaos run").is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let name = format!("chaos-{}", std::process::id());
    chaos(Arc::new(backend::MySql::start(&name).await), &journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_redis() {
    let Some(journal) = postgres_url() else {
        return;
    };
    if database_url::database_url("LOOPJOB_TEST_REDIS_URL", "the Redis chaos run").is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let name = format!("chaos-{}", std::process::id());
    chaos(Arc::new(backend::Redis::start(&name).await), &journal).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_etcd() {
    let Some(journal) = postgres_url() else {
        return;
    };
    // The run starts a private cluster of its own; the variable says etcd is meant to be
    // tested here (and installed).
    if database_url::database_url("LOOPJOB_TEST_ETCD_URL", "the etcd chaos run").is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let name = format!("chaos-{}", std::process::id());
    chaos(Arc::new(backend::Etcd::start(&name).await), &journal).await;
}

/// A node process (started by the harness with its configuration in the environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a node process of the chaos tests; the harness runs it"]
async fn chaos_node() {
    node::run().await;
}

fn postgres_url() -> Option<String> {
    database_url::database_url("LOOPJOB_TEST_POSTGRES_URL", "the chaos suite")
}

/// How long the run lasts at least, and how long its faults last.
fn run_length() -> (Duration, faults::Pace) {
    match std::env::var("LOOPJOB_SOAK") {
        Ok(minutes) => {
            let minutes: f64 = minutes
                .parse()
                .expect("LOOPJOB_SOAK is a number of minutes, such as 30 or 0.5");
            (Duration::from_secs_f64(minutes * 60.0), faults::Pace::Soak)
        }
        Err(_) => (CI_RUN, faults::Pace::Bounded),
    }
}

fn seed() -> u64 {
    match std::env::var("LOOPJOB_CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("LOOPJOB_CHAOS_SEED is a u64"),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        }
    }
}

/// Every key's history, read now.
async fn read_history(store: &dyn LeaseStore, keys: &[String]) -> Vec<RunRecord> {
    let mut runs = Vec::new();
    for key in keys {
        match store.history(key, HISTORY).await {
            Ok(list) => runs.extend(list),
            Err(error) => eprintln!("chaos: reading {key}'s history failed: {error}"),
        }
    }
    runs
}

/// Whether every kind of fault was injected and every operator command given from a node and
/// from the store URL.
fn covered(kinds: &[faults::Kind], faults: &[faults::Fault], events: &[operator::Event]) -> bool {
    let commands = [Command::Pause, Command::Resume, Command::Trigger];
    kinds
        .iter()
        .all(|kind| faults.iter().any(|f| f.kind == *kind))
        && commands.iter().all(|command| {
            [true, false].iter().all(|from_store| {
                events
                    .iter()
                    .any(|e| e.command == *command && (e.by == "store") == *from_store)
            })
        })
}

/// The job a lease key belongs to.
fn job_of(key: &str) -> &'static str {
    JOBS.into_iter()
        .find(|job| {
            key == *job
                || key.starts_with(&format!("{job}@"))
                || key.starts_with(&format!("{job}#"))
        })
        .unwrap_or("global")
}

async fn chaos(backend: Arc<dyn Backend>, journal_url: &str) {
    crate::backend::sweep_scratch();
    let seed = seed();
    let label = backend.label();
    eprintln!("chaos {label}: seed {seed} (replay with LOOPJOB_CHAOS_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let name = format!("chaos_{}_{}", std::process::id(), &label[..2]);
    let log_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
    std::fs::create_dir_all(&log_dir).expect("create the log directory");

    let journal = Journal::connect(journal_url, &name)
        .await
        .expect("connect to the journal database");
    journal.create().await.expect("create the journal tables");
    let prefix = format!("{name}_");
    let store = open_with(
        &backend.url(),
        StoreOptions::default().table_prefix(prefix.clone()),
    )
    .expect("open the store");
    store.initialise().await.expect("create the lease tables");
    let control = ClusterControl::new(store.clone()).operator("chaos-harness");
    let store_time = StoreTime::now();
    let mut expected_keys = vec![
        "global".to_owned(),
        "cluster@a".to_owned(),
        "cluster@b".to_owned(),
    ];
    expected_keys.extend((0..PARTITIONS).map(|p| format!("part#{p}")));

    let mut cluster = Cluster::new(
        backend.clone(),
        prefix.clone(),
        journal_url.to_owned(),
        name.clone(),
        log_dir.clone(),
    )
    .await;
    for i in 0..NODES {
        cluster.start_node(if i % 2 == 0 { "a" } else { "b" }).await;
    }
    let began = mono_ns();
    let (length, pace) = run_length();
    let until = began + length.as_nanos() as u64;
    // The jumping node's wall clock steps at a quarter, a half and three quarters of the run.
    let clock_jumps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let jumping = cluster.skew.clone().zip(
        cluster
            .nodes
            .values()
            .find(|node| node.clock == skew::NodeClock::Jumping)
            .map(|node| node.name.clone()),
    );
    let jumper = jumping.map(|(skew, node)| {
        let quarter = (until - began) / 4;
        let at = [1, 2, 3].map(|k| began + k * quarter);
        skew.jumps(node, at, clock_jumps.clone())
    });
    let stall_probe = stalls::StallProbe::start(store.clone());
    let first_owners = tokio::time::Instant::now() + FIRST_OWNERS;
    while cluster.seen().owners.len() < expected_keys.len()
        && tokio::time::Instant::now() < first_owners
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then one interval, so that every job is running on its grid when the faults begin.
    tokio::time::sleep(node::INTERVAL).await;

    // A partition needs the network namespace, which a host may not allow (`netns.rs`).
    let kinds: Vec<faults::Kind> = backend
        .kinds()
        .iter()
        .copied()
        .filter(|kind| *kind != faults::Kind::Partition || cluster.netns.is_some())
        .collect();
    let mut plan = Vec::new();
    let mut faults = Vec::new();
    let mut events = Vec::new();
    let mut history = Vec::new();
    // Every fault comes with an operator's command: a pause around it (always around a kill, so
    // that a pause meets a restart; never around a fault that makes the store forget), resumed
    // halfway through the wait after it, or else a trigger there; as many of each as the
    // kills allow (a tie is drawn), so that a bounded run covers both soon.
    let (mut pauses, mut triggers) = (0usize, 0usize);
    let mut pause_from = if rng.bool() {
        Source::Node
    } else {
        Source::Store
    };
    let mut trigger_from = pause_from.other();
    // Until the time is up, and in any case until every kind of fault and every command from
    // each source was given once (a loaded host makes slots longer).
    while mono_ns() + LONGEST_SLOT.as_nanos() as u64 <= until || !covered(&kinds, &faults, &events)
    {
        if plan.is_empty() {
            // Every kind once per round, in a seeded order.
            plan = kinds.clone();
            rng.shuffle(&mut plan);
        }
        let kind = *plan.last().expect("refilled above");
        let target = if kind.is_store_wide() {
            None
        } else {
            match faults::target(&cluster, kind, &mut rng) {
                Some(target) => Some(target),
                None => {
                    eprintln!("chaos {label}: no leader to hit with {kind}; waiting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        };
        plan.pop();
        let job = match &target {
            Some((_, key)) => job_of(key),
            None => JOBS[rng.usize(..JOBS.len())],
        };
        let pause = match kind {
            faults::Kind::Kill => true,
            _ if backend.forgets_on(kind) => false,
            _ if pauses == triggers => rng.bool(),
            _ => pauses < triggers,
        };
        if pause {
            pauses += 1;
        } else {
            triggers += 1;
        }
        let give = async |cluster: &mut Cluster,
                          command,
                          job,
                          source,
                          group: Option<&str>,
                          rng: &mut fastrand::Rng| {
            let event = operator::give(
                cluster, &control, store_time, command, job, source, group, rng,
            )
            .await;
            eprintln!(
                "chaos {label}: {:>7.1} s {} {} by {}{}",
                ms(began, event.sent) / 1e3,
                event.command,
                event.job,
                event.by,
                event
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            event
        };
        if pause {
            events.push(
                give(
                    &mut cluster,
                    Command::Pause,
                    job,
                    pause_from,
                    None,
                    &mut rng,
                )
                .await,
            );
        }
        if backend.forgets_on(kind) {
            history.extend(read_history(store.as_ref(), &expected_keys).await);
        }
        let fault = faults::inject(
            &mut cluster,
            kind,
            target.map(|(node, _)| node),
            pace,
            &mut rng,
        )
        .await;
        eprintln!(
            "chaos {label}: {:>7.1} s {} {:?} for {:.0} ms, holding {:?}",
            ms(began, fault.start) / 1e3,
            fault.kind,
            fault.node,
            ms(fault.start, fault.end),
            fault.held
        );
        let settle = fault.settle(&mut rng);
        faults.push(fault);
        tokio::time::sleep(settle / 2).await;
        if pause {
            // A node's resume of the cluster job reaches its own group's key only: after a pause
            // from the store (both groups' keys), a node of each group resumes its own.
            let resume_from = pause_from.other();
            let groups: &[Option<&str>] = match (resume_from, job) {
                (Source::Node, "cluster") => &[Some("a"), Some("b")],
                _ => &[None],
            };
            for &group in groups {
                let event = give(
                    &mut cluster,
                    Command::Resume,
                    job,
                    resume_from,
                    group,
                    &mut rng,
                );
                events.push(event.await);
            }
            pause_from = pause_from.other();
        } else {
            let job = JOBS[rng.usize(..JOBS.len())];
            let event = give(
                &mut cluster,
                Command::Trigger,
                job,
                trigger_from,
                None,
                &mut rng,
            );
            events.push(event.await);
            trigger_from = trigger_from.other();
        }
        tokio::time::sleep(settle / 2).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    if let Some(jumper) = jumper {
        jumper.abort();
    }
    let owners_at_end = cluster.seen().owners.clone();
    let observed_until = mono_ns();
    let stalls = stall_probe.stop();
    let seen = cluster.seen.clone();
    let outcomes = cluster.shutdown(Duration::from_secs(10)).await;
    let run_secs = ms(began, mono_ns()) / 1e3;
    let (lines, bad_lines) = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.lines.clone(), seen.bad_lines.clone())
    };
    let journal_rows = journal.rows().await.expect("read the journal");
    let store_rows = store.list("").await.map_err(|e| e.to_string());
    history.extend(read_history(store.as_ref(), &expected_keys).await);
    history.sort_by_key(|r| (r.key.clone(), r.epoch, r.seq, r.started_ms));
    history.dedup_by_key(|r| (r.key.clone(), r.epoch, r.seq, r.started_ms));

    let report = checker::check(&Evidence {
        backend: label,
        seed,
        run_secs,
        journal: journal_rows,
        lines,
        bad_lines,
        faults,
        kinds,
        events,
        history,
        stalls,
        clock_jumps: std::mem::take(&mut *clock_jumps.lock().unwrap_or_else(|p| p.into_inner())),
        store_time,
        observed_until,
        outcomes,
        store_rows,
        owners_at_end,
        expected_keys,
    });
    let report_path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{label}.txt"));
    let _ = std::fs::write(&report_path, &report.text);
    eprintln!("{}", report.text);
    eprintln!(
        "chaos {label}: report in {}, node logs in {}",
        report_path.display(),
        log_dir.display()
    );
    assert!(
        report.violations.is_empty(),
        "chaos {label} (seed {seed}, replay with LOOPJOB_CHAOS_SEED={seed}): {} violations; \
         tables {name}_* kept for inspection\n{}",
        report.violations.len(),
        report.text
    );
    let _ = journal.drop_tables().await;
    backend.clean_up(&prefix).await;
    let _ = std::fs::remove_dir_all(&log_dir);
}
