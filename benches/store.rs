//! Lease store benchmark: acquire, renew and release cost per backend, renew cost per lease for
//! batches of 1, 100 and 1000, a membership heartbeat, and the cluster schedule's `start_runs`
//! / `end_runs` for batches of 1, 100 and 1000 keys with the SQL statements each sends, beside
//! a raw sqlx `SELECT 1` round trip measured in the same run.
//!
//! `cargo bench --all-features --bench store`. PostgreSQL and MySQL run when
//! `LOOPJOB_TEST_POSTGRES_URL` / `LOOPJOB_TEST_MYSQL_URL` are set, and are skipped otherwise.
//! One client, calls in sequence: the figures are latencies, and throughput is their inverse.
//! `LOOPJOB_BENCH_SECONDS` sets the time per measurement (default 1).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loopjob::store::{
    Lease, LeaseRef, LeaseStore, NextDue, RunEnd, RunResult, RunStart, StoreOptions,
};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// SQL statements sent so far: sqlx logs each one as an event with target `sqlx::query`.
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Counts sqlx's statement events, and nothing else.
struct CountStatements;

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The statements `call` sends.
async fn statements<T>(call: impl Future<Output = T>) -> (T, u64) {
    let before = STATEMENTS.load(Ordering::SeqCst);
    let out = call.await;
    (out, STATEMENTS.load(Ordering::SeqCst) - before)
}

const TTL: Duration = Duration::from_secs(300);

struct Measured {
    name: String,
    calls: u64,
    per_call: Duration,
    leases_per_call: u64,
    /// SQL statements one call sends, where counted.
    statements: Option<u64>,
}

/// Runs `call` repeatedly for the measurement time; `call` returns the time to count (so a
/// setup step inside it can be left out).
async fn measure<F, Fut>(name: impl Into<String>, leases_per_call: u64, mut call: F) -> Measured
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    let budget = Duration::from_secs_f64(
        std::env::var("LOOPJOB_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    );
    // Warm up: connections, statement caches.
    for _ in 0..5 {
        call().await;
    }
    let started = Instant::now();
    let mut counted = Duration::ZERO;
    let mut calls = 0;
    while started.elapsed() < budget || calls < 10 {
        counted += call().await;
        calls += 1;
    }
    Measured {
        name: name.into(),
        calls,
        per_call: counted / u32::try_from(calls).unwrap_or(u32::MAX),
        leases_per_call,
        statements: None,
    }
}

async fn timed<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = call.await;
    (out, started.elapsed())
}

async fn bench_store(store: Arc<dyn LeaseStore>, baseline: Option<Measured>) -> Vec<Measured> {
    store.initialise().await.expect("initialise");
    let mut results: Vec<Measured> = baseline.into_iter().collect();
    let key = vec!["bench".to_owned()];

    results.push(
        measure("acquire, win (own key, epoch bump)", 1, || async {
            let (won, took) = timed(store.try_acquire("a", &key, TTL)).await;
            assert_eq!(won.expect("acquire").len(), 1);
            took
        })
        .await,
    );
    results.push(
        measure("acquire, lose (held by another)", 1, || async {
            let (won, took) = timed(store.try_acquire("b", &key, TTL)).await;
            assert!(won.expect("acquire").is_empty());
            took
        })
        .await,
    );
    results.push(
        measure("release (then re-acquire, untimed)", 1, || async {
            let lease = store.try_acquire("a", &key, TTL).await.expect("acquire");
            let refs: Vec<LeaseRef> = lease.iter().map(Lease::to_ref).collect();
            let (released, took) = timed(store.release("a", &refs)).await;
            released.expect("release");
            took
        })
        .await,
    );
    for size in [1u64, 100, 1000] {
        let keys: Vec<String> = (0..size).map(|i| format!("renew{size}/{i}")).collect();
        let won = store
            .try_acquire("a", &keys, TTL)
            .await
            .expect("acquire batch");
        assert_eq!(won.len() as u64, size);
        let refs: Vec<LeaseRef> = won.iter().map(Lease::to_ref).collect();
        results.push(
            measure(format!("renew, batch of {size}"), size, || async {
                let (renewed, took) = timed(store.renew("a", &refs, TTL)).await;
                assert_eq!(renewed.expect("renew").len() as u64, size);
                took
            })
            .await,
        );
    }
    // A partitioned job's membership: each node's heartbeat, with three members live.
    for other in ["m2", "m3"] {
        store
            .heartbeat("bench", other, TTL)
            .await
            .expect("heartbeat");
    }
    let heartbeat = || async {
        let members = store
            .heartbeat("bench", "m1", TTL)
            .await
            .expect("heartbeat");
        assert_eq!(members.len(), 3);
    };
    let mut beat = measure("heartbeat (3 members live)", 1, || async {
        timed(heartbeat()).await.1
    })
    .await;
    beat.statements = Some(statements(heartbeat()).await.1);
    results.push(beat);
    results.extend(bench_schedule(&store).await);
    results
}

/// `start_runs` and `end_runs` of batches of 1, 100 and 1000 keys a holder holds.
async fn bench_schedule(store: &Arc<dyn LeaseStore>) -> Vec<Measured> {
    let mut results = Vec::new();
    for size in [1u64, 100, 1000] {
        let keys: Vec<String> = (0..size).map(|i| format!("runs{size}/{i}")).collect();
        let held = store.try_acquire("a", &keys, TTL).await.expect("acquire");
        let starts: Vec<RunStart> = held
            .iter()
            .map(|lease| RunStart {
                key: lease.key.clone(),
                epoch: lease.epoch,
                scheduled_ms: 0,
                next_due: NextDue::After(Duration::from_secs(60)),
                triggered: false,
                history_limit: 100,
            })
            .collect();
        let start = || async {
            let started = store.start_runs("a", &starts).await.expect("start_runs");
            assert_eq!(started.len() as u64, size);
            started
        };
        let ends = |started: Vec<loopjob::store::StartedRun>| -> Vec<RunEnd> {
            started
                .into_iter()
                .zip(&held)
                .map(|(run, lease)| RunEnd {
                    key: run.key,
                    epoch: lease.epoch,
                    seq: run.seq,
                    outcome: RunResult::Succeeded,
                    attempts: 1,
                    error: None,
                    next_due: NextDue::Unchanged,
                })
                .collect()
        };
        let mut started = measure(format!("start_runs, batch of {size}"), size, || async {
            timed(start()).await.1
        })
        .await;
        started.statements = Some(statements(start()).await.1);
        let mut ended = measure(format!("end_runs, batch of {size}"), size, || async {
            let to_end = ends(start().await);
            let (ended, took) = timed(store.end_runs("a", &to_end)).await;
            assert_eq!(ended.expect("end_runs").len() as u64, size);
            took
        })
        .await;
        let to_end = ends(start().await);
        ended.statements = Some(statements(store.end_runs("a", &to_end)).await.1);
        results.extend([started, ended]);
    }
    results
}

fn report(backend: &str, results: &[Measured]) {
    let baseline = results
        .iter()
        .find(|m| m.name.starts_with("SELECT 1"))
        .map(|m| m.per_call);
    println!("\n### {backend}\n");
    println!("| operation | calls | µs/call | calls/s | µs/lease | × SELECT 1 | statements |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for m in results {
        let us = m.per_call.as_secs_f64() * 1e6;
        let ratio = baseline.map_or("–".to_owned(), |b| {
            format!("{:.1}", m.per_call.as_secs_f64() / b.as_secs_f64())
        });
        let statements = m.statements.map_or("–".to_owned(), |n| n.to_string());
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.1} | {} | {} |",
            m.name,
            m.calls,
            us,
            1e6 / us,
            us / m.leases_per_call as f64,
            ratio,
            statements
        );
    }
}

fn options() -> StoreOptions {
    StoreOptions::default().table_prefix(format!("ljbench{}_", std::process::id()))
}

#[tokio::main]
async fn main() {
    let subscriber = tracing_subscriber::registry().with(CountStatements);
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    println!("Lease store benchmark: one client, sequential calls, ttl {TTL:?}.");

    let memory = loopjob::store::open("memory").expect("memory");
    report("memory", &bench_store(memory, None).await);

    #[cfg(feature = "sqlite")]
    {
        let path = std::env::temp_dir().join(format!("loopjob-bench-{}.db", std::process::id()));
        let url = format!("sqlite://{}", path.display());
        let store = loopjob::store::SqliteStore::connect_lazy(&url, options()).expect("sqlite");
        let pool = store.pool().clone();
        let mut baseline = measure("SELECT 1 (raw sqlx)", 1, || async {
            timed(sqlx::query("SELECT 1").execute(&pool)).await.1
        })
        .await;
        baseline.statements = Some(statements(sqlx::query("SELECT 1").execute(&pool)).await.1);
        report(
            "sqlite (WAL, synchronous=FULL)",
            &bench_store(Arc::new(store), Some(baseline)).await,
        );
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[cfg(feature = "postgres")]
    match std::env::var("LOOPJOB_TEST_POSTGRES_URL") {
        Ok(url) => {
            let store = loopjob::store::PostgresStore::connect_lazy(&url, options()).expect("pg");
            let pool = store.pool().clone();
            let mut baseline = measure("SELECT 1 (raw sqlx)", 1, || async {
                timed(sqlx::query("SELECT 1").execute(&pool)).await.1
            })
            .await;
            baseline.statements = Some(statements(sqlx::query("SELECT 1").execute(&pool)).await.1);
            report(
                "postgres",
                &bench_store(Arc::new(store), Some(baseline)).await,
            );
            let prefix = options().get_table_prefix().to_owned();
            let drop = format!(
                "DROP TABLE \"{prefix}leases\", \"{prefix}members\", \"{prefix}schedules\", \
                 \"{prefix}runs\""
            );
            let _ = sqlx::raw_sql(&drop).execute(&pool).await;
        }
        Err(_) => println!("\npostgres: SKIPPED (set LOOPJOB_TEST_POSTGRES_URL)"),
    }

    #[cfg(feature = "mysql")]
    match std::env::var("LOOPJOB_TEST_MYSQL_URL") {
        Ok(url) => {
            let store = loopjob::store::MySqlStore::connect_lazy(&url, options()).expect("mysql");
            let pool = store.pool().clone();
            let mut baseline = measure("SELECT 1 (raw sqlx)", 1, || async {
                timed(sqlx::query("SELECT 1").execute(&pool)).await.1
            })
            .await;
            baseline.statements = Some(statements(sqlx::query("SELECT 1").execute(&pool)).await.1);
            report("mysql", &bench_store(Arc::new(store), Some(baseline)).await);
            let prefix = options().get_table_prefix().to_owned();
            let drop = format!(
                "DROP TABLE `{prefix}leases`, `{prefix}members`, `{prefix}schedules`, \
                 `{prefix}runs`"
            );
            let _ = sqlx::raw_sql(&drop).execute(&pool).await;
        }
        Err(_) => println!("\nmysql: SKIPPED (set LOOPJOB_TEST_MYSQL_URL)"),
    }
}
