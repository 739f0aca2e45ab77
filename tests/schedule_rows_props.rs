//! Property: whatever rows are in the schedule tables — written by hand, by a newer version, or
//! corrupted — every schedule call returns `Ok` or an error naming the row's key (`Corrupted`,
//! `NewerRecord`, `UnknownKey`); none panics. Rows are written with raw SQL into a real SQLite
//! file, whose columns take a value of any type.

#![cfg(feature = "sqlite")]

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
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
