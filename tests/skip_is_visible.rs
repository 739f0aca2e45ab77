//! A test that skips for want of a database URL says so in `cargo test`'s output, although
//! libtest captures what passing tests print, and CI does not let it skip.

#[path = "support/database_url.rs"]
mod database_url;

use std::process::Command;

const PROBE: &str = "LOOPJOB_SKIP_PROBE";
const VAR: &str = "LOOPJOB_TEST_SKIP_PROBE_URL";

/// Run by the tests below in a child process: skips, as a database test does without its URL.
#[test]
fn probe_skips_without_a_url() {
    if std::env::var_os(PROBE).is_none() {
        return;
    }
    assert!(database_url::database_url(VAR, "the skip probe").is_none());
}

/// This test binary, running only the probe, with `env` set (and without a URL).
fn run_probe(env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", "probe_skips_without_a_url", "--test-threads=1"])
        .env(PROBE, "1")
        .env_remove(VAR)
        .env_remove("CI");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the test binary runs")
}

#[test]
fn a_skip_prints_a_line_the_harness_does_not_capture() {
    let output = run_probe(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("SKIPPED the skip probe: set {VAR} to run it")),
        "stderr: {stderr}"
    );
}

#[test]
fn under_ci_a_missing_url_fails_the_test() {
    let output = run_probe(&[("CI", "true")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{VAR} is not set in CI")),
        "stdout: {stdout}"
    );
}
