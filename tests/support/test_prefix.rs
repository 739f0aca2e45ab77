//! Table and key prefixes for tests on shared servers (PostgreSQL, MySQL, Redis), and the sweep
//! of those that crashed runs left behind.
//!
//! A prefix names its creation time and process: `ljtest<unix seconds>_<pid>_<tag>_`. A test
//! drops its own tables when it passes; a test that fails (to leave them for inspection) or a
//! run that crashes leaves them, and the first prefix a test process asks for on a server
//! sweeps that server of every `ljtest…` table, schema, database or key older than
//! [`SWEEP_AFTER`]. Prefixes younger than that belong to runs that may still be going (other
//! worktrees share the servers), so they are left alone.
//!
//! Call [`run_prefix`] where a test makes its prefix, and [`drop_prefix`] when it passed; both
//! need the crate's feature for the server's backend (without it, they only name the prefix).
#![allow(dead_code)] // each test target uses a different part

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What every prefix starts with, and the sweep looks for.
pub const MARK: &str = "ljtest";

/// How old a prefix must be before a sweep drops it: longer than any test run.
pub const SWEEP_AFTER: Duration = Duration::from_secs(3600);

/// A prefix for this process's test `tag` on the server at `url`, after sweeping that server
/// of old prefixes (once per server per process). Sweep errors are reported on stderr and never
/// fail the test.
pub async fn run_prefix(url: &str, tag: &str) -> String {
    sweep_once(url).await;
    prefix_at(SystemTime::now(), tag)
}

/// The prefix for `tag` created at `at` by this process.
pub fn prefix_at(at: SystemTime, tag: &str) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    format!("{MARK}{secs}_{}_{tag}_", std::process::id())
}

/// Whether `name` (a table, schema, database or key) carries a prefix created before `cutoff`.
/// Names without the mark, or whose time does not parse, are never old: they are not ours.
pub fn is_stale(name: &str, cutoff: SystemTime) -> bool {
    let Some(rest) = name.strip_prefix(MARK) else {
        return false;
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(secs) = digits.parse::<u64>() else {
        return false;
    };
    UNIX_EPOCH + Duration::from_secs(secs) < cutoff
}

/// Drops every table, schema, database or key under `prefix` on the server at `url`: the end
/// of a test that passed. Errors are reported on stderr and never fail the test.
pub async fn drop_prefix(url: &str, prefix: &str) {
    if let Err(error) = remove(url, &|name| name.starts_with(prefix)).await {
        let line = format!("dropping the test's tables under {prefix} failed: {error}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// Drops every `ljtest…` table, schema, database or key on the server at `url` created before
/// `cutoff`; returns how many.
pub async fn sweep(url: &str, cutoff: SystemTime) -> Removed {
    remove(url, &|name| is_stale(name, cutoff)).await
}

async fn sweep_once(url: &str) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SWEPT: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let first = SWEPT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert(url.to_owned());
    if !first {
        return;
    }
    let cutoff = SystemTime::now() - SWEEP_AFTER;
    let line = match sweep(url, cutoff).await {
        Ok(0) => return,
        Ok(count) => format!("swept {count} test tables or keys left by runs over an hour old\n"),
        Err(error) => format!("sweeping old test tables failed (the test goes on): {error}\n"),
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Drops the `ljtest…` tables, schemas, databases or keys on the server at `url` whose names
/// `chosen` picks; returns how many.
async fn remove(url: &str, chosen: &(dyn Fn(&str) -> bool + Sync)) -> Removed {
    let _ = chosen; // unused without a server backend's feature
    match url.split_once("://").map(|(scheme, _)| scheme) {
        #[cfg(feature = "postgres")]
        Some("postgres" | "postgresql") => postgres::remove(url, chosen).await,
        #[cfg(feature = "mysql")]
        Some("mysql" | "mariadb") => mysql::remove(url, chosen).await,
        #[cfg(feature = "redis")]
        Some("redis" | "rediss") => redis::remove(url, chosen).await,
        _ => Ok(0),
    }
}

pub type Removed = Result<usize, Box<dyn std::error::Error + Send + Sync>>;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sqlx::{Connection, PgConnection};

    pub(super) async fn remove(url: &str, chosen: &(dyn Fn(&str) -> bool + Sync)) -> Removed {
        let mut db = PgConnection::connect(url).await?;
        let pattern = format!("{MARK}%");
        let schemas: Vec<(String,)> =
            sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
                .bind(&pattern)
                .fetch_all(&mut db)
                .await?;
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT schemaname::text, tablename::text FROM pg_tables WHERE tablename LIKE $1",
        )
        .bind(&pattern)
        .fetch_all(&mut db)
        .await?;
        let mut count = 0;
        for (schema,) in schemas.iter().filter(|(s,)| chosen(s)) {
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            sqlx::query(&sql).execute(&mut db).await?;
            count += 1;
        }
        for (schema, table) in tables.iter().filter(|(_, t)| chosen(t)) {
            let sql = format!("DROP TABLE IF EXISTS \"{schema}\".\"{table}\" CASCADE");
            sqlx::query(&sql).execute(&mut db).await?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use sqlx::{Connection, MySqlConnection};

    pub(super) async fn remove(url: &str, chosen: &(dyn Fn(&str) -> bool + Sync)) -> Removed {
        let mut db = MySqlConnection::connect(url).await?;
        let pattern = format!("{MARK}%");
        let databases: Vec<(String,)> = sqlx::query_as(
            "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata \
             WHERE schema_name LIKE ?",
        )
        .bind(&pattern)
        .fetch_all(&mut db)
        .await?;
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(table_schema AS CHAR), CAST(table_name AS CHAR) \
             FROM information_schema.tables WHERE table_name LIKE ?",
        )
        .bind(&pattern)
        .fetch_all(&mut db)
        .await?;
        let mut count = 0;
        for (database,) in databases.iter().filter(|(d,)| chosen(d)) {
            let sql = format!("DROP DATABASE IF EXISTS `{database}`");
            sqlx::query(&sql).execute(&mut db).await?;
            count += 1;
        }
        for (database, table) in tables.iter().filter(|(_, t)| chosen(t)) {
            let sql = format!("DROP TABLE IF EXISTS `{database}`.`{table}`");
            sqlx::query(&sql).execute(&mut db).await?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    pub(super) async fn remove(url: &str, chosen: &(dyn Fn(&str) -> bool + Sync)) -> Removed {
        let client = ::redis::Client::open(url)?;
        let mut db = client.get_multiplexed_async_connection().await?;
        // KEYS is fine on a test database; the test keys are few.
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{MARK}*"))
            .query_async(&mut db)
            .await?;
        let stale: Vec<&String> = keys.iter().filter(|k| chosen(k)).collect();
        for chunk in stale.chunks(500) {
            let () = ::redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut db)
                .await?;
        }
        Ok(stale.len())
    }
}
