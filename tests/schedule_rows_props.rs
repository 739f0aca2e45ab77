//! Property: whatever rows are in the schedule tables — written by hand, by a newer version, or
//! corrupted — every schedule call returns `Ok` or an error naming the row's key (`Corrupted`,
//! `NewerRecord`, `UnknownKey`); none panics. Rows are written with raw SQL into a real SQLite
//! file, whose columns take a value of any type.
//!
//! Then hosts over hand-edited rows (`hosts_over_hand_edited_rows`, on SQLite always and on
//! PostgreSQL / MySQL when their URLs are set): two hosts run a guarded job per bad row beside a
//! healthy one. No host panics, no key runs on both at once, a row the store cannot read is
//! reported by a warning naming its key while every other key goes on, and a row the host can
//! repair (a due time absurdly far ahead) is repaired with a warning.

#![cfg(feature = "sqlite")]

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::time::Duration;

use loopjob::store::{
    LeaseStore, NextDue, Plan, RunEnd, RunResult, RunStart, StoreError, StoreOptions, open_with,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// A value for a column: usually an integer (edge values included), sometimes NULL, text or a
/// real, as SQLite allows in any column.
#[derive(Debug, Clone)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Real(f64),
}

fn value() -> impl Strategy<Value = Value> {
    let edges = proptest::sample::select(vec![0, 1, 2, -1, 99, i64::MAX, i64::MIN]);
    prop_oneof![
        6 => prop_oneof![any::<i64>(), edges].prop_map(Value::Int),
        1 => Just(Value::Null),
        1 => prop_oneof![
            Just("succeeded".to_owned()),
            Just("exploded".to_owned()),
            ".{0,6}"
        ]
        .prop_map(Value::Text),
        1 => any::<f64>().prop_map(Value::Real),
    ]
}

/// A key's record row (10 columns) and its run rows (11 columns each).
#[derive(Debug, Clone)]
struct Rows {
    record: Vec<Value>,
    runs: Vec<Vec<Value>>,
}

fn rows() -> impl Strategy<Value = Rows> {
    // Mostly this build's format, so that the rest of the record is read too.
    let format = prop_oneof![3 => Just(Value::Int(1)), 1 => value()];
    (
        format,
        prop::collection::vec(value(), 8),
        prop::collection::vec(prop::collection::vec(value(), 10), 0..3),
    )
        .prop_map(|(format, rest, runs)| Rows {
            record: std::iter::once(format).chain(rest).collect(),
            runs,
        })
}

fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    value: &'q Value,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    match value {
        Value::Null => query.bind(None::<i64>),
        Value::Int(v) => query.bind(*v),
        Value::Text(v) => query.bind(v.as_str()),
        Value::Real(v) => query.bind(*v),
    }
}

/// Replaces the tables' rows with `rows` for key `job`.
async fn reset(pool: &sqlx::SqlitePool, rows: &Rows) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM \"sp_schedules\"")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM \"sp_runs\"").execute(pool).await?;
    let sql = "INSERT INTO \"sp_schedules\" VALUES ('job', ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut query = sqlx::query(sql);
    for value in &rows.record {
        query = bind(query, value);
    }
    query.execute(pool).await?;
    for run in &rows.runs {
        let sql = "INSERT OR REPLACE INTO \"sp_runs\" VALUES ('job', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let mut query = sqlx::query(sql);
        for value in run {
            query = bind(query, value);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// `Ok`, or an error that names the key `job`.
fn check<T>(call: &str, result: Result<T, StoreError>) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => Ok(()),
        Err(
            StoreError::Corrupted { key, .. }
            | StoreError::NewerRecord { key, .. }
            | StoreError::UnknownKey { key },
        ) => {
            prop_assert_eq!(key, "job", "{}", call);
            Ok(())
        }
        Err(error) => Err(TestCaseError::fail(format!(
            "{call}: an error that names no key: {error}"
        ))),
    }
}

#[test]
fn sqlite_schedule_rows_never_panic_and_errors_name_the_key() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("schedule-props-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (store, pool) = runtime.block_on(async {
        let store = open_with(&url, StoreOptions::default().table_prefix("sp_")).expect("open");
        store.initialise().await.expect("initialise");
        // SQLite cannot drop NOT NULL: rebuild the schedule tables without constraints, as a
        // careless hand-made migration might.
        let pool = sqlx::SqlitePool::connect(&url).await.expect("raw pool");
        sqlx::raw_sql(
            "DROP TABLE \"sp_schedules\"; DROP TABLE \"sp_runs\"; \
             CREATE TABLE \"sp_schedules\" (lease_key TEXT PRIMARY KEY, format, anchor, \
             next_due, last_seq, history_limit, paused_by, paused_at, trigger_by, trigger_at); \
             CREATE TABLE \"sp_runs\" (lease_key, seq, holder, epoch, scheduled, started, ended, \
             outcome, attempts, error, triggered, PRIMARY KEY (lease_key, seq))",
        )
        .execute(&pool)
        .await
        .expect("loosen the tables");
        (store, pool)
    });
    let store: &dyn LeaseStore = &*store;
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let key = vec!["job".to_owned()];
    runner
        .run(&rows(), |rows| {
            runtime.block_on(async {
                reset(&pool, &rows).await.expect("write the raw rows");
                let ttl = Duration::from_secs(5);
                let lease = store.try_acquire("me", &key, ttl).await.expect("acquire");
                let epoch = lease[0].epoch;
                check("schedules", store.schedules(&key).await)?;
                check("list_schedules", store.list_schedules("").await)?;
                check("history", store.history("job", 10).await)?;
                check("pause", store.pause("job", "ops").await)?;
                check("trigger", store.trigger("job", "ops").await)?;
                check("resume", store.resume("job", "ops").await)?;
                let plan = Plan {
                    key: "job".to_owned(),
                    epoch,
                    next_due: NextDue::OnGrid {
                        anchor_ms: 0,
                        interval: Duration::from_secs(1),
                    },
                    only_if_unset: false,
                };
                check("plan", store.plan("me", &[plan]).await)?;
                let start = RunStart {
                    key: "job".to_owned(),
                    epoch,
                    scheduled_ms: 0,
                    next_due: NextDue::After(Duration::from_secs(1)),
                    triggered: true,
                    history_limit: 2,
                };
                check("start_runs", store.start_runs("me", &[start]).await)?;
                for seq in [0, 1, 2] {
                    let end = RunEnd {
                        key: "job".to_owned(),
                        epoch,
                        seq,
                        outcome: RunResult::Failed,
                        attempts: 1,
                        error: None,
                        next_due: NextDue::Unchanged,
                    };
                    check("end_runs", store.end_runs("me", &[end]).await)?;
                }
                Ok(())
            })
        })
        .unwrap();
    sqlite_file::remove(&path);
}

// --- Hosts over hand-edited rows ------------------------------------------------------------

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use loopjob::{Host, LeaderMode, Leadership, NodeIdentity, Schedule, ShutdownReport};

/// How each key's rows were edited, and what a host must make of them.
const EDITED: [(&str, Edit); 8] = [
    ("good", Edit::None),
    ("newer", Edit::NewerFormat),
    ("due_negative", Edit::NegativeDue),
    ("due_far", Edit::DueFarAhead),
    ("outcome", Edit::UnknownOutcome),
    ("ended_early", Edit::EndedBeforeStart),
    ("started_negative", Edit::NegativeStart),
    ("epoch_future", Edit::EpochsFromTheFuture),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Edit {
    None,
    NewerFormat,
    NegativeDue,
    DueFarAhead,
    UnknownOutcome,
    EndedBeforeStart,
    NegativeStart,
    EpochsFromTheFuture,
}

impl Edit {
    /// Whether the store reports the key's record unreadable, so that the key never runs.
    fn reported(self) -> bool {
        !matches!(
            self,
            Edit::None | Edit::DueFarAhead | Edit::EpochsFromTheFuture
        )
    }

    /// The rows, as SQL value lists for `schedules (lease_key, format, anchor, next_due,
    /// last_seq, history_limit)`, `runs (lease_key, seq, holder, epoch, scheduled, started,
    /// ended, outcome, attempts, error, triggered)` and `leases (lease_key, holder, epoch,
    /// expires_at)`.
    fn rows(self, key: &str) -> (Option<String>, Option<String>, Option<String>) {
        let record = |format: i64, due: &str, last_seq: i64| {
            Some(format!("('{key}', {format}, NULL, {due}, {last_seq}, 100)"))
        };
        let run = |epoch: i64, started: i64, ended: &str, outcome: &str| {
            Some(format!(
                "('{key}', 1, 'ghost', {epoch}, 0, {started}, {ended}, {outcome}, 1, NULL, FALSE)"
            ))
        };
        match self {
            Edit::None => (None, None, None),
            Edit::NewerFormat => (record(99, "NULL", 0), None, None),
            Edit::NegativeDue => (record(1, "-5", 0), None, None),
            // 9999-12-31: within the store's range, far beyond any schedule.
            Edit::DueFarAhead => (record(1, "253402300799000", 0), None, None),
            Edit::UnknownOutcome => (record(1, "NULL", 1), run(1, 10, "20", "'exploded'"), None),
            Edit::EndedBeforeStart => (
                record(1, "NULL", 1),
                run(1, 5_000, "4000", "'failed'"),
                None,
            ),
            Edit::NegativeStart => (record(1, "NULL", 1), run(1, -1_000, "NULL", "NULL"), None),
            Edit::EpochsFromTheFuture => (
                record(1, "NULL", 1),
                run(1_000_000_000_000_000, 10, "20", "'succeeded'"),
                Some(format!("('{key}', 'ghost', 1000000000000, 0)")),
            ),
        }
    }
}

/// The SQL that writes every key's edited rows under `prefix`, quoting names with `quote`.
fn edited_rows_sql(prefix: &str, quote: char) -> Vec<String> {
    let table = |name: &str| format!("{quote}{prefix}{name}{quote}");
    let mut sql = Vec::new();
    for (key, edit) in EDITED {
        let (record, run, lease) = edit.rows(key);
        if let Some(values) = record {
            sql.push(format!(
                "INSERT INTO {} (lease_key, format, anchor, next_due, last_seq, history_limit) \
                 VALUES {values}",
                table("schedules")
            ));
        }
        if let Some(values) = run {
            sql.push(format!(
                "INSERT INTO {} (lease_key, seq, holder, epoch, scheduled, started, ended, \
                 outcome, attempts, error, triggered) VALUES {values}",
                table("runs")
            ));
        }
        if let Some(values) = lease {
            sql.push(format!("INSERT INTO {} VALUES {values}", table("leases")));
        }
    }
    sql
}

/// Every log line the test binary writes, from every thread: the hosts' warnings.
fn log_lines() -> Vec<String> {
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static LINES: OnceLock<Lines> = OnceLock::new();
    let lines = LINES.get_or_init(|| {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        lines
    });
    let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
    text.lines().map(str::to_owned).collect()
}

/// One run of a key, on one node, in this process's monotonic clock.
type Runs =
    Arc<Mutex<BTreeMap<&'static str, Vec<(&'static str, std::time::Instant, std::time::Instant)>>>>;

fn host(url: &str, prefix: &str, node: &'static str, runs: &Runs) -> Host {
    let store = open_with(url, StoreOptions::default().table_prefix(prefix)).expect("open");
    let mut builder = Host::builder()
        .node(NodeIdentity::new(node, "default"))
        .store(store)
        .shutdown_grace(Duration::from_secs(5));
    for (key, _) in EDITED {
        let runs = runs.clone();
        builder = builder
            .job_fn(key, Schedule::every(Duration::from_secs(1)), move |_ctx| {
                let runs = runs.clone();
                async move {
                    let started = std::time::Instant::now();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let entry = (node, started, std::time::Instant::now());
                    runs.lock().unwrap().entry(key).or_default().push(entry);
                    Ok(())
                }
            })
            .leadership(
                key,
                Leadership::new(LeaderMode::Global)
                    .lease_ttl(Duration::from_secs(2))
                    .with_renew_every(Duration::from_millis(500))
                    .retry_every(Duration::from_millis(200)),
            );
    }
    builder.build().expect("valid host")
}

/// Two hosts over the edited rows under `prefix` at `url`, whose tables `write_rows` fills
/// (after the first store created them).
async fn hosts_over_hand_edited_rows<F, Fut>(url: &str, prefix: &str, write_rows: F)
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    log_lines(); // installs the subscriber that keeps them
    let quote = if url.starts_with("mysql") { '`' } else { '"' };
    let store = open_with(url, StoreOptions::default().table_prefix(prefix)).expect("open");
    store.initialise().await.expect("initialise");
    write_rows(edited_rows_sql(prefix, quote)).await;

    let runs: Runs = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let hosts: Vec<tokio::task::JoinHandle<ShutdownReport>> = ["a", "b"]
        .into_iter()
        .map(|node| {
            let host = host(url, prefix, node, &runs);
            let stop = stop.clone();
            tokio::spawn(async move { host.run_until(stop.cancelled_owned()).await })
        })
        .collect();
    // The keys that go on have each run twice (so the repaired one ran after its repair, and
    // every record was read at least once); a bound, not a timing: it only stops a hang.
    let goes_on = EDITED
        .iter()
        .filter(|(_, e)| !e.reported())
        .map(|(k, _)| *k);
    let goes_on: Vec<&str> = goes_on.collect();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ran = runs.lock().unwrap().clone();
            if goes_on
                .iter()
                .all(|key| ran.get(key).is_some_and(|r| r.len() >= 2))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let ran: Vec<_> = runs
            .lock()
            .unwrap()
            .iter()
            .map(|(k, r)| (*k, r.len()))
            .collect();
        panic!(
            "the keys {goes_on:?} did not go on: runs {ran:?}, log {:#?}",
            log_lines()
        )
    });
    stop.cancel();
    for host in hosts {
        let report = host.await.expect("no host panicked");
        for job in &report.jobs {
            assert_eq!(job.status.counters.panics, 0, "{}", job.name);
        }
    }

    let runs = runs.lock().unwrap().clone();
    let lines = log_lines();
    let warned = |key: &str, what: &str| {
        let field = format!("key={key} ");
        lines
            .iter()
            .any(|line| line.contains("WARN") && line.contains(&field) && line.contains(what))
    };
    for (key, edit) in EDITED {
        let key_runs = runs.get(key).cloned().unwrap_or_default();
        if edit.reported() {
            assert!(
                key_runs.is_empty(),
                "{key} ran over an unreadable record: {key_runs:?}"
            );
            assert!(
                warned(key, "cannot be read"),
                "no warning names {key}: {lines:#?}"
            );
        } else {
            assert!(key_runs.len() >= 2, "{key}: {key_runs:?}");
        }
        // No key ran on both hosts at once.
        for (i, a) in key_runs.iter().enumerate() {
            for b in &key_runs[i + 1..] {
                assert!(
                    a.0 == b.0 || a.2 <= b.1 || b.2 <= a.1,
                    "{key} ran on {} and {} at once",
                    a.0,
                    b.0
                );
            }
        }
    }
    assert!(warned("due_far", "further ahead"), "{lines:#?}");
    // The repaired key's next due time is back on its schedule, written by its runs.
    let record = store
        .schedules(&["due_far".to_owned()])
        .await
        .expect("readable")[0]
        .clone();
    let ahead = record.next_due_ms.expect("due") - record.read_at_ms;
    assert!(ahead <= 2_000, "due_far is still due {ahead} ms ahead");
    // The lease whose epoch came from the future was taken over above it.
    let leases = store.list("epoch_future").await.expect("list");
    assert!(
        !leases.is_empty() && leases.iter().all(|l| l.lease.epoch > 1_000_000_000_000),
        "{leases:?}"
    );
}

/// Hosts share the test binary's global subscriber: one test of them at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_hosts_over_hand_edited_rows() {
    let _one = ONE_AT_A_TIME.lock().await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("schedule-hosts-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let pool_url = url.clone();
    hosts_over_hand_edited_rows(&url, "sh_", |sql| async move {
        let pool = sqlx::SqlitePool::connect(&pool_url)
            .await
            .expect("raw pool");
        for statement in sql {
            sqlx::query(&statement)
                .execute(&pool)
                .await
                .expect(&statement);
        }
    })
    .await;
    sqlite_file::remove(&path);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hosts_over_hand_edited_rows() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(url) = database_url::database_url(
        "LOOPJOB_TEST_POSTGRES_URL",
        "PostgreSQL hosts over edited rows",
    ) else {
        return;
    };
    let prefix = test_prefix::run_prefix(&url, "sh_pg").await;
    let pool_url = url.clone();
    hosts_over_hand_edited_rows(&url, &prefix, |sql| async move {
        let pool = sqlx::PgPool::connect(&pool_url).await.expect("raw pool");
        for statement in sql {
            sqlx::query(&statement)
                .execute(&pool)
                .await
                .expect(&statement);
        }
    })
    .await;
    test_prefix::drop_prefix(&url, &prefix).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_hosts_over_hand_edited_rows() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(url) =
        database_url::database_url("LOOPJOB_TEST_MYSQL_URL", "MySQL hosts over edited rows")
    else {
        return;
    };
    let prefix = test_prefix::run_prefix(&url, "sh_my").await;
    let pool_url = url.clone();
    hosts_over_hand_edited_rows(&url, &prefix, |sql| async move {
        let pool = sqlx::MySqlPool::connect(&pool_url).await.expect("raw pool");
        for statement in sql {
            sqlx::query(&statement)
                .execute(&pool)
                .await
                .expect(&statement);
        }
    })
    .await;
    test_prefix::drop_prefix(&url, &prefix).await;
}
