//! The `loopjob` command, run as a built binary against a store that a real host writes: on
//! SQLite always, on PostgreSQL, MySQL and Redis when `LOOPJOB_TEST_POSTGRES_URL`,
//! `LOOPJOB_TEST_MYSQL_URL` and `LOOPJOB_TEST_REDIS_URL` are set. Each command's table
//! and `--json`, its exit code, a pause and a trigger obeyed by the running host, an unknown
//! job, and the errors of a wrong command line or store URL (never showing a password).
//!
//! The databases keep time, so these tests run in real time, with waits bounded.
#![cfg(all(feature = "cli", feature = "sqlite"))]

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/sqlite_file.rs"]
mod sqlite_file;
#[path = "support/test_prefix.rs"]
mod test_prefix;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use loopjob::cluster::ClusterControl;
use loopjob::store::{LeaseStore, RunResult, StoreOptions, open_with};
use loopjob::{Host, HostHandle, LeaderMode, Leadership, NodeIdentity, Schedule, ShutdownReport};
use serde_json::Value;
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_loopjob");
/// How long a test waits for a host to do what it was asked.
const PATIENCE: Duration = Duration::from_secs(20);

/// The command with `args`, without the environment variables it reads; its output.
async fn loopjob(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("LOOPJOB_STORE_URL")
        .env_remove("LOOPJOB_TABLE_PREFIX")
        .env_remove("LOOPJOB_OPERATOR")
        .output()
        .await
        .expect("the loopjob binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit code `code`, or a failure showing what the command printed.
fn expect_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// The command on one store, as an operator named `tester`.
struct Cli {
    url: String,
    prefix: String,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "--store",
            &self.url,
            "--table-prefix",
            &self.prefix,
            "--operator",
            "tester",
        ];
        all.extend_from_slice(args);
        loopjob(&all).await
    }

    /// Runs `args` with `--json`, expects exit 0, and parses what it printed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.run(&all).await;
        expect_code(&output, 0);
        serde_json::from_slice(&output.stdout).expect("JSON on stdout")
    }

    /// Runs `args` for people, expects exit 0, and returns the table.
    async fn table(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        expect_code(&output, 0);
        stdout(&output)
    }
}

/// A host on the store with two guarded jobs that run only when triggered: `report` (global)
/// and `sync` (partitioned in two, so its node is a member in the store).
struct Node {
    handle: HostHandle,
    task: JoinHandle<ShutdownReport>,
}

fn start_node(store: Arc<dyn LeaseStore>) -> Node {
    let hourly =
        || Schedule::every(Duration::from_secs(3600)).initial_delay(Duration::from_secs(3600));
    let quick = |mode| {
        Leadership::new(mode)
            .lease_ttl(Duration::from_secs(10))
            .retry_every(Duration::from_millis(200))
    };
    let host = Host::builder()
        .node(NodeIdentity::new("cli-node", "g"))
        .store(store)
        .shutdown_grace(Duration::from_secs(1))
        .job_fn("report", hourly(), |_ctx| async { Ok(()) })
        .leadership("report", quick(LeaderMode::Global))
        .job_fn("sync", hourly(), |_ctx| async { Ok(()) })
        .leadership("sync", quick(LeaderMode::Partitioned).partitions(2))
        .build()
        .expect("a valid host");
    Node {
        handle: host.handle(),
        task: tokio::spawn(host.run_until(std::future::pending())),
    }
}

impl Node {
    async fn stop(self) {
        self.handle.shutdown();
        self.task.await.expect("the host stops");
    }
}

/// Waits until `check` holds, for at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until both jobs' records are written and `sync`'s node is a member.
async fn records_written(control: &ClusterControl) {
    eventually("the host writes its jobs' records", || async {
        control.status().await.is_ok_and(|status| {
            let members = status.members.get("sync").map_or(0, Vec::len);
            let sync_keys = status.jobs.get("sync").map_or(0, |view| view.records.len());
            status.jobs.contains_key("report") && sync_keys == 2 && members == 1
        })
    })
    .await;
}

/// Waits until the store holds the successful end of `runs` runs of `report`.
async fn ran(control: &ClusterControl, runs: usize) {
    eventually(&format!("report ran {runs} times"), || async {
        control.history("report", 10).await.is_ok_and(|history| {
            let succeeded = history
                .iter()
                .filter(|run| run.outcome == Some(RunResult::Succeeded));
            succeeded.count() >= runs
        })
    })
    .await;
}

/// Every command against the store at `url`, with tables under `prefix`.
async fn every_command(url: &str, prefix: &str) {
    let open = || open_with(url, StoreOptions::default().table_prefix(prefix)).unwrap();
    let node = start_node(open());
    let control = ClusterControl::new(open());
    records_written(&control).await;
    node.handle.trigger("report").await.expect("a trigger");
    ran(&control, 1).await;
    let cli = Cli {
        url: url.to_owned(),
        prefix: prefix.to_owned(),
    };

    // status: the jobs with their state, last run and leader, then the leases.
    let table = cli.table(&["status"]).await;
    let header = table.lines().next().expect("a header");
    for column in [
        "JOB", "STATE", "NEXT DUE", "LAST RUN", "OUTCOME", "LEADER", "EPOCH",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let report = table
        .lines()
        .find(|line| line.trim_start().starts_with("report "))
        .expect("a row for report");
    assert!(report.contains("active"), "{table}");
    assert!(report.contains("succeeded (triggered)"), "{table}");
    assert!(report.contains("cli-node/"), "{table}");
    assert!(
        report.contains(" ago)") && report.contains("(in "),
        "{table}"
    );
    assert!(
        table.contains("LEASE") && table.contains("sync#1"),
        "{table}"
    );

    let page = cli.json(&["status"]).await;
    assert_eq!(page["store"], url.split(':').next().unwrap());
    assert!(page["now_ms"].as_u64().expect("now_ms") > 1_600_000_000_000);
    let jobs = page["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{page}");
    let report = &jobs[0];
    assert_eq!(report["name"], "report");
    assert_eq!(report["paused"], false);
    assert_eq!(report["last_run"]["outcome"], "succeeded");
    assert_eq!(report["last_run"]["triggered"], true);
    assert!(report["next_due_ms"].is_i64(), "{report}");
    assert_eq!(report["keys"][0]["key"], "report");
    assert_eq!(jobs[1]["name"], "sync");
    assert_eq!(jobs[1]["keys"].as_array().unwrap().len(), 2);
    let lease = page["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|lease| lease["key"] == "report")
        .expect("report's lease");
    assert_eq!(lease["job"], "report");
    assert_eq!(lease["held"], true);
    assert!(lease["epoch"].as_u64().unwrap() >= 1);
    assert!(lease["holder"].as_str().unwrap().starts_with("cli-node/"));
    assert_eq!(page["members"][0]["job"], "sync");

    // history
    let table = cli.table(&["history", "report"]).await;
    assert!(table.lines().next().unwrap().contains("STARTED"), "{table}");
    assert!(table.contains("succeeded (triggered)"), "{table}");
    let runs = cli.json(&["history", "report", "--limit", "5"]).await;
    assert_eq!(runs["job"], "report");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs["runs"][0]["outcome"], "succeeded");
    assert_eq!(runs["runs"][0]["key"], "report");

    // pause, seen in status, with the operator's name; a trigger still runs it once.
    let paused = cli.table(&["pause", "report"]).await;
    assert!(
        paused.starts_with("paused `report` cluster-wide"),
        "{paused}"
    );
    let page = cli.json(&["status"]).await;
    assert_eq!(page["jobs"][0]["paused"], true, "{page}");
    assert_eq!(page["jobs"][0]["keys"][0]["paused"]["by"], "tester");
    let table = cli.table(&["status"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("report ") && l.contains("paused")),
        "{table}"
    );

    let done = cli.json(&["trigger", "report"]).await;
    assert_eq!(done["action"], "trigger");
    assert_eq!(done["job"]["name"], "report");
    assert_eq!(done["job"]["triggered"], true);
    ran(&control, 2).await;
    let runs = cli.json(&["history", "report"]).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");

    let done = cli.json(&["resume", "report"]).await;
    assert_eq!(done["action"], "resume");
    assert_eq!(done["job"]["paused"], false);
    assert_eq!(cli.json(&["status"]).await["jobs"][0]["paused"], false);

    // members: the partitioned job's node.
    let table = cli.table(&["members"]).await;
    assert!(table.lines().next().unwrap().contains("MEMBER"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("sync") && l.contains("cli-node/")),
        "{table}"
    );
    let members = cli.json(&["members"]).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1, "{members}");
    assert_eq!(members["members"][0]["job"], "sync");

    // An unknown job: its own exit code, and the jobs that exist.
    for command in ["pause", "resume", "trigger", "history"] {
        let output = cli.run(&[command, "nightly"]).await;
        expect_code(&output, 3);
        let error = stderr(&output);
        assert!(
            error.contains("`nightly`") && error.contains("report, sync"),
            "{error}"
        );
        assert!(stdout(&output).is_empty());
    }
    node.stop().await;
}

/// [`every_command`] on a server that other runs share, under a prefix of this run's own
/// (`support/test_prefix.rs`), dropped when the test passes: what an earlier run left (whose
/// process had the same id) is never read as this run's.
async fn every_command_on_a_server(url: &str) {
    let prefix = test_prefix::run_prefix(url, "cli").await;
    every_command(url, &prefix).await;
    test_prefix::drop_prefix(url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_sqlite() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("loopjob-cli-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    every_command(&format!("sqlite://{}", path.display()), "loopjob_").await;
    sqlite_file::remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_postgres() {
    let what = "the loopjob command on PostgreSQL";
    let Some(url) = database_url::database_url("LOOPJOB_TEST_POSTGRES_URL", what) else {
        return;
    };
    every_command_on_a_server(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_mysql() {
    let what = "the loopjob command on MySQL";
    let Some(url) = database_url::database_url("LOOPJOB_TEST_MYSQL_URL", what) else {
        return;
    };
    every_command_on_a_server(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_redis() {
    let what = "the loopjob command on Redis";
    let Some(url) = database_url::database_url("LOOPJOB_TEST_REDIS_URL", what) else {
        return;
    };
    every_command_on_a_server(&url).await;
}

#[tokio::test]
async fn without_a_store_url_it_is_a_usage_error_naming_the_option_and_the_variable() {
    let output = loopjob(&["status"]).await;
    expect_code(&output, 2);
    let error = stderr(&output);
    assert!(
        error.contains("--store") && error.contains("LOOPJOB_STORE_URL"),
        "{error}"
    );
}

#[tokio::test]
async fn a_wrong_command_line_is_clap_s_usage_error() {
    for args in [
        &["history"][..],
        &["frobnicate"],
        &["history", "x", "--limit", "0"],
    ] {
        let output = loopjob(args).await;
        expect_code(&output, 2);
        let error = stderr(&output);
        assert!(
            error.starts_with("error: ") && error.contains("--help"),
            "{args:?}: {error}"
        );
    }
}

#[tokio::test]
async fn store_url_errors_never_show_the_password() {
    // A scheme no store has: a usage error.
    let output = loopjob(&["--store", "zookeeper://app:s3cret-pw@db/x", "status"]).await;
    expect_code(&output, 2);
    let error = stderr(&output);
    assert!(error.contains("zookeeper://app:***@db/x"), "{error}");
    // A server that is not there: the store's error, within the timeout.
    #[cfg(feature = "postgres")]
    {
        let url = "postgres://app:s3cret-pw@127.0.0.1:1/x";
        let output = loopjob(&["--store", url, "--timeout", "2s", "members"]).await;
        expect_code(&output, 1);
        let error = stderr(&output);
        assert!(error.starts_with("loopjob: "), "{error}");
        assert!(!error.contains("s3cret-pw"), "{error}");
    }
    assert!(!error.contains("s3cret-pw"), "{error}");
}

#[tokio::test]
async fn a_missing_sqlite_file_is_reported_not_created() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("loopjob-cli-missing-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let output = loopjob(&["--store", &url, "status"]).await;
    expect_code(&output, 1);
    assert!(
        stderr(&output).contains("no SQLite database at"),
        "{}",
        stderr(&output)
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn help_lists_the_commands_and_the_exit_codes() {
    let output = loopjob(&["--help"]).await;
    expect_code(&output, 0);
    let help = stdout(&output);
    for text in [
        "status",
        "history",
        "pause",
        "resume",
        "trigger",
        "members",
        "--json",
        "--store",
        "LOOPJOB_STORE_URL",
        "Exit codes",
        "3  no guarded job",
    ] {
        assert!(help.contains(text), "{text}: {help}");
    }
}
