//! Property: whatever rows are in the lease tables — written by hand, by an older version, or
//! corrupted — every store call returns `Ok` or an error naming the offending key; none panics.
//! Rows are written with raw SQL into a real SQLite file and, when `LOOPJOB_TEST_POSTGRES_URL`
//! is set, a PostgreSQL database. (`cargo fuzz` needs a nightly toolchain; see
//! docs/RELIABILITY.md.)

#![cfg(all(feature = "sqlite", feature = "postgres"))]

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::time::Duration;

use loopjob::store::{LeaseRef, LeaseStore, StoreError, StoreOptions, open_with};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// A value for an INTEGER column: usually an integer (edge values included); on SQLite, whose
/// columns take any type, sometimes text or a real.
#[derive(Debug, Clone)]
enum Int {
    Whole(i64),
    Text(String),
    Real(f64),
}

#[derive(Debug, Clone)]
struct RawRow {
    key: String,
    holder: String,
    epoch: Int,
    expires_at: Int,
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec!["job", "job#0", "job#1", "job@g", "job#members"])
            .prop_map(str::to_owned),
        ".{0,12}",
    ]
}

fn int(sqlite: bool) -> BoxedStrategy<Int> {
    let edges = proptest::sample::select(vec![0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1_000]);
    let ints = prop_oneof![any::<i64>(), edges].prop_map(Int::Whole);
    if sqlite {
        prop_oneof![
            8 => ints,
            1 => ".{0,6}".prop_map(Int::Text),
            1 => any::<f64>().prop_map(Int::Real),
        ]
        .boxed()
    } else {
        ints.boxed()
    }
}

fn rows(sqlite: bool) -> impl Strategy<Value = Vec<RawRow>> {
    let row = (
        key(),
        prop_oneof![Just(String::new()), ".{0,8}"],
        int(sqlite),
        int(sqlite),
    )
        .prop_map(|(key, holder, epoch, expires_at)| RawRow {
            key,
            holder,
            epoch,
            expires_at,
        });
    prop::collection::vec(row, 1..5)
}

/// Raw access to the two backends' tables.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn reset(&self, prefix: &str, rows: &[RawRow]) -> Result<(), sqlx::Error> {
        match self {
            Raw::Sqlite(pool) => {
                sqlx::query(&format!("DELETE FROM \"{prefix}leases\""))
                    .execute(pool)
                    .await?;
                sqlx::query(&format!("DELETE FROM \"{prefix}members\""))
                    .execute(pool)
                    .await?;
                for row in rows {
                    let sql =
                        format!("INSERT OR REPLACE INTO \"{prefix}leases\" VALUES (?, ?, ?, ?)");
                    let mut query = sqlx::query(&sql).bind(&row.key).bind(&row.holder);
                    for value in [&row.epoch, &row.expires_at] {
                        query = match value {
                            Int::Whole(v) => query.bind(*v),
                            Int::Text(v) => query.bind(v.clone()),
                            Int::Real(v) => query.bind(*v),
                        };
                    }
                    query.execute(pool).await?;
                    let sql =
                        format!("INSERT OR REPLACE INTO \"{prefix}members\" VALUES (?, ?, ?)");
                    let mut query = sqlx::query(&sql).bind("job#members").bind(&row.holder);
                    query = match &row.expires_at {
                        Int::Whole(v) => query.bind(*v),
                        Int::Text(v) => query.bind(v.clone()),
                        Int::Real(v) => query.bind(*v),
                    };
                    query.execute(pool).await?;
                }
            }
            Raw::Postgres(pool) => {
                sqlx::query(&format!("TRUNCATE \"{prefix}leases\", \"{prefix}members\""))
                    .execute(pool)
                    .await?;
                for row in rows {
                    let int = |v: &Int| match v {
                        Int::Whole(v) => *v,
                        _ => unreachable!("PostgreSQL columns are typed"),
                    };
                    let sql = format!(
                        "INSERT INTO \"{prefix}leases\" VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (lease_key) DO UPDATE SET holder = $2, epoch = $3, expires_at = $4"
                    );
                    // PostgreSQL text cannot hold NUL; the driver would refuse the bind.
                    let key = row.key.replace('\0', "");
                    let holder = row.holder.replace('\0', "");
                    sqlx::query(&sql)
                        .bind(&key)
                        .bind(&holder)
                        .bind(int(&row.epoch))
                        .bind(int(&row.expires_at))
                        .execute(pool)
                        .await?;
                    let sql = format!(
                        "INSERT INTO \"{prefix}members\" VALUES ('job#members', $1, $2) \
                         ON CONFLICT (scope, member) DO UPDATE SET expires_at = $2"
                    );
                    sqlx::query(&sql)
                        .bind(&holder)
                        .bind(int(&row.expires_at))
                        .execute(pool)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// `Ok`, or an error that names one of the rows' keys.
fn check<T>(
    call: &str,
    result: Result<T, StoreError>,
    rows: &[RawRow],
) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => Ok(()),
        Err(StoreError::Corrupted { key, .. }) => {
            // A lease row is named by its key, a member row (written with the row's holder as
            // its member) by its member.
            prop_assert!(
                rows.iter().any(|r| [&r.key, &r.holder]
                    .iter()
                    .any(|name| **name == key || name.replace('\0', "") == key)),
                "{call}: Corrupted names `{key}`, not one of the rows' keys or members"
            );
            Ok(())
        }
        // The keys asked for come from the rows; an empty one is refused as an argument.
        Err(StoreError::InvalidInput { .. })
            if rows.iter().any(|r| r.key.replace('\0', "").is_empty()) =>
        {
            Ok(())
        }
        Err(error) => Err(TestCaseError::fail(format!(
            "{call}: an error that names no key: {error}"
        ))),
    }
}

fn run(
    runtime: &tokio::runtime::Runtime,
    store: &dyn LeaseStore,
    raw: &Raw,
    prefix: &str,
    sqlite: bool,
    cases: u32,
) {
    runtime.block_on(store.initialise()).expect("initialise");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (rows(sqlite), any::<u64>());
    runner
        .run(&strategy, |(rows, epoch)| {
            runtime.block_on(async {
                raw.reset(prefix, &rows).await.expect("write the raw rows");
                let ttl = Duration::from_secs(5);
                let keys: Vec<String> = rows.iter().map(|r| r.key.replace('\0', "")).collect();
                let refs: Vec<LeaseRef> = keys.iter().map(|k| LeaseRef::new(k, epoch)).collect();
                check(
                    "try_acquire",
                    store.try_acquire("me", &keys, ttl).await,
                    &rows,
                )?;
                check("renew", store.renew("me", &refs, ttl).await, &rows)?;
                check("release", store.release("me", &refs).await, &rows)?;
                check("list", store.list("").await, &rows)?;
                check("list(job)", store.list("job").await, &rows)?;
                check(
                    "heartbeat",
                    store.heartbeat("job#members", "me", ttl).await,
                    &rows,
                )?;
                check("members", store.members("job#members").await, &rows)?;
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn sqlite_rows_never_panic_and_errors_name_the_key() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rows-props-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (store, raw) = runtime.block_on(async {
        let store = open_with(&url, StoreOptions::default().table_prefix("rp_")).expect("open");
        store.initialise().await.expect("initialise");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("raw pool");
        (store, Raw::Sqlite(pool))
    });
    run(&runtime, &*store, &raw, "rp_", true, 200);
    sqlite_file::remove(&path);
}

#[test]
fn postgres_rows_never_panic_and_errors_name_the_key() {
    let Some(url) =
        database_url::database_url("LOOPJOB_TEST_POSTGRES_URL", "PostgreSQL row properties")
    else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let prefix = runtime.block_on(test_prefix::run_prefix(&url, "rp"));
    let (store, raw) = runtime.block_on(async {
        let store =
            open_with(&url, StoreOptions::default().table_prefix(prefix.clone())).expect("open");
        store.initialise().await.expect("initialise");
        let pool = sqlx::PgPool::connect(&url).await.expect("raw pool");
        (store, Raw::Postgres(pool))
    });
    run(&runtime, &*store, &raw, &prefix, false, 100);
    runtime.block_on(test_prefix::drop_prefix(&url, &prefix));
}

/// A mistyped SQLite row (text in an INTEGER column) is refused as `Corrupted` naming its key.
#[test]
fn sqlite_mistyped_row_names_its_key() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rows-mistyped-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = open_with(&url, StoreOptions::default().table_prefix("rp_")).expect("open");
        store.initialise().await.expect("initialise");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("raw pool");
        sqlx::query("INSERT INTO \"rp_leases\" VALUES ('job', 'h', 0, '')")
            .execute(&pool)
            .await
            .expect("insert");
        let error = store
            .try_acquire("me", &["job".to_owned()], Duration::from_secs(5))
            .await
            .expect_err("a row whose expires_at is text cannot be taken over");
        assert!(
            matches!(&error, StoreError::Corrupted { key, .. } if key == "job"),
            "{error}"
        );
    });
    sqlite_file::remove(&path);
}
