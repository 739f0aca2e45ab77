//! Chaos suite: node processes running guarded jobs against a real PostgreSQL and a shared
//! SQLite file, while the harness kills, freezes, cuts off and slows them, and takes the
//! database away; then a checker proves DESIGN's P1–P5 from a fenced journal, the nodes' lines
//! and the store's rows. See docs/RELIABILITY.md.
//!
//! ```text
//! cargo test --all-features --test chaos -- --nocapture          # bounded: ~1 min per backend
//! LOOPJOB_SOAK=30 cargo test --all-features --test chaos          # 30 minutes per backend
//! LOOPJOB_CHAOS_SEED=1234 cargo test --all-features --test chaos  # replay a seed's fault plan
//! ```
//!
//! Needs `LOOPJOB_TEST_POSTGRES_URL` (the fenced journal lives in PostgreSQL for both runs);
//! without it both tests print that they were skipped. Node processes are this test binary,
//! re-executed to run only the ignored `chaos_node` test.

#![cfg(all(feature = "postgres", feature = "sqlite"))]

mod checker;
mod clock;
#[path = "../support/database_url.rs"]
mod database_url;
mod faults;
mod harness;
mod journal;
mod lines;
mod node;
#[path = "../support/proxy.rs"]
mod proxy;

use std::time::Duration;

use loopjob::store::{StoreOptions, open_with};

use crate::checker::Evidence;
use crate::clock::{mono_ns, ms};
use crate::faults::Kind;
use crate::harness::{Backend, Cluster};
use crate::journal::Journal;
use crate::node::{PARTITIONS, RETRY_EVERY, TTL};

/// The chaos tests share the host's two cores and the database: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NODES: usize = 4;
/// The bounded run's length per backend, when `LOOPJOB_SOAK` is unset.
const CI_RUN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres() {
    let Some(pg) = postgres_url() else { return };
    let _serial = SERIAL.lock().await;
    chaos(Backend::Postgres(pg.clone()), &pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sqlite() {
    let Some(pg) = postgres_url() else { return };
    let _serial = SERIAL.lock().await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chaos-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    chaos(Backend::Sqlite(path), &pg).await;
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

fn run_length() -> Duration {
    match std::env::var("LOOPJOB_SOAK") {
        Ok(minutes) => {
            let minutes: f64 = minutes
                .parse()
                .expect("LOOPJOB_SOAK is a number of minutes, such as 30 or 0.5");
            Duration::from_secs_f64(minutes * 60.0)
        }
        Err(_) => CI_RUN,
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

async fn chaos(backend: Backend, journal_url: &str) {
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
        &backend.direct_url(),
        StoreOptions::default().table_prefix(prefix.clone()),
    )
    .expect("open the store");
    store.initialise().await.expect("create the lease tables");

    let mut cluster = Cluster::new(
        backend.clone(),
        prefix.clone(),
        journal_url.to_owned(),
        name.clone(),
        log_dir.clone(),
    );
    for i in 0..NODES {
        cluster.start_node(if i % 2 == 0 { "a" } else { "b" }).await;
    }
    let began = mono_ns();
    let length = run_length();
    let until = began + length.as_nanos() as u64;
    // Room after the last fault for its takeover, and before the first for elections.
    let recovery = TTL + RETRY_EVERY + Duration::from_millis(1500);
    let longest_fault = Duration::from_secs(5);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let kinds = Kind::for_backend(&backend);
    let mut plan: Vec<Kind> = Vec::new();
    let mut faults = Vec::new();
    while mono_ns() + (longest_fault + recovery).as_nanos() as u64 <= until {
        if plan.is_empty() {
            // Every kind once per round, in a seeded order.
            plan = kinds.to_vec();
            rng.shuffle(&mut plan);
        }
        let kind = plan.pop().expect("refilled above");
        match faults::inject(&mut cluster, kind, &mut rng).await {
            Some(fault) => {
                eprintln!(
                    "chaos {label}: {:>7.1} s {} {:?} for {:.0} ms, holding {:?}",
                    ms(began, fault.start) / 1e3,
                    fault.kind,
                    fault.node,
                    ms(fault.start, fault.end),
                    fault.held
                );
                faults.push(fault);
            }
            None => eprintln!("chaos {label}: no leader to hit with {kind}; next"),
        }
        let gap = recovery + Duration::from_millis(rng.u64(0..=1000));
        tokio::time::sleep(gap).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let owners_at_end = cluster.seen().owners.clone();
    let seen = cluster.seen.clone();
    let outcomes = cluster.shutdown(Duration::from_secs(10)).await;
    let run_secs = ms(began, mono_ns()) / 1e3;
    let (lines, bad_lines) = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.lines.clone(), seen.bad_lines.clone())
    };
    let journal_rows = journal.rows().await.expect("read the journal");
    let store_rows = store.list("").await.map_err(|e| e.to_string());
    let mut expected_keys = vec![
        "global".to_owned(),
        "cluster@a".to_owned(),
        "cluster@b".to_owned(),
    ];
    expected_keys.extend((0..PARTITIONS).map(|p| format!("part#{p}")));

    let report = checker::check(&Evidence {
        backend: label,
        seed,
        run_secs,
        journal: journal_rows,
        lines,
        bad_lines,
        faults,
        kinds,
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
    match &backend {
        Backend::Postgres(_) => drop(journal.drop_lease_tables(&prefix).await),
        Backend::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&log_dir);
}
