//! The database URLs of the tests that need PostgreSQL, MySQL or Redis, and a visible skip
//! without one.

use std::io::Write;

/// The URL in the environment variable `var`, or `None` after printing a `SKIPPED` line that
/// names `what` was skipped and how to run it.
///
/// libtest captures what a passing test prints with `print!`/`eprint!`, so a skip written that
/// way would show as a plain "ok". The line is written to the process's stderr handle itself,
/// which the harness does not capture: it appears in `cargo test`'s output.
///
/// Under CI (`CI` set, as `.ci/run` runs), an unset URL fails the test instead: CI sets both
/// URLs, and a test that then skipped would hide a broken setup. A URL that is set but whose
/// database is unreachable fails the test that uses it, in CI or not.
#[allow(dead_code)] // each test file uses what it needs
pub fn database_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set in CI: {what} cannot be skipped there")
        }
        _ => {
            let line = format!("SKIPPED {what}: set {var} to run it\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}
