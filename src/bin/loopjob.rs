//! `loopjob`: see and steer the guarded jobs of a cluster from its lease store, without a
//! running host. A thin command line over [`loopjob::cluster::ClusterControl`]; its `--json`
//! output is the schema in [`loopjob::cluster::json`].

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use comfy_table::{Table, presets};
use loopjob::cluster::json::StoreLease;
use loopjob::cluster::json::{ClusterJob, ClusterPage, CommandDone, MembersPage, Run, RunsPage};
use loopjob::cluster::{ClusterControl, ClusterError, job_of_key};
use loopjob::store::{StoreError, StoreOptions};

/// The exit code of a command that worked.
const EXIT_OK: u8 = 0;
/// The exit code when the store could not be reached, read or written.
const EXIT_FAILED: u8 = 1;
/// The exit code of a wrong command line (clap's own) or a malformed store URL.
const EXIT_USAGE: u8 = 2;
/// The exit code when no guarded job of that name has records in the store.
const EXIT_UNKNOWN_JOB: u8 = 3;

const AFTER_HELP: &str = "\
JOB is a job's name, as the hosts register it: a command acts on all of its lease keys (each \
group's `JOB@GROUP` for leader = \"cluster\", each partition's `JOB#P` for \"partitioned\"). \
Only guarded jobs have records in the store; a job with leader = \"none\" is steered per \
process through its host.

Exit codes:
  0  done
  1  the store could not be reached, read or written
  2  the command line is wrong, or the store URL is malformed
  3  no guarded job of that name has records in the store

Example:
  loopjob --store sqlite://jobs.db status
  LOOPJOB_STORE_URL=postgres://app@db/app loopjob pause send_invoices --json";

/// See and steer the guarded jobs of a loopjob cluster from its lease store, without a host.
#[derive(Debug, Parser)]
#[command(name = "loopjob", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    /// Prints JSON for scripts (the schema of loopjob::cluster::json) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the store is and how to reach it.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The lease store's URL, as the hosts' `store` setting gives it (sqlite://PATH,
    /// postgres://USER:PASSWORD@HOST/DB, mysql://…, redis://HOST:6379/N).
    #[arg(
        long = "store",
        env = "LOOPJOB_STORE_URL",
        global = true,
        hide_env_values = true
    )]
    url: Option<String>,
    /// The prefix of the store's tables (or Redis keys), as the hosts' settings give it.
    #[arg(
        long,
        env = "LOOPJOB_TABLE_PREFIX",
        global = true,
        hide_env_values = true,
        default_value = "loopjob_"
    )]
    table_prefix: String,
    /// The longest one store call may take, such as `5s` or `500ms`.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Who gives the command, as pause and trigger marks show it [default: $USER].
    #[arg(long, env = "LOOPJOB_OPERATOR", global = true, hide_env_values = true)]
    operator: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every guarded job (paused, next due, last run, leader) and every lease.
    Status,
    /// A job's newest runs on any node, newest first.
    History {
        /// The job's name.
        job: String,
        /// How many runs to show, from 1 to 1000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Pauses a job cluster-wide: no scheduled run starts on any node until it is resumed.
    Pause {
        /// The job's name.
        job: String,
    },
    /// Resumes a paused job cluster-wide.
    Resume {
        /// The job's name.
        job: String,
    },
    /// Asks whichever node leads the job for one run, even while it is paused.
    Trigger {
        /// The job's name.
        job: String,
    },
    /// The live members of the partitioned jobs (the only jobs whose nodes announce themselves).
    Members,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let done = match runtime {
        Ok(runtime) => runtime.block_on(run(&cli)),
        Err(error) => Err(Failure::Other(format!(
            "cannot start a Tokio runtime: {error}"
        ))),
    };
    match done {
        Ok(output) => {
            // A closed pipe (`loopjob history x | head`) is not an error worth a message.
            let _ = std::io::stdout().write_all(output.as_bytes());
            ExitCode::from(EXIT_OK)
        }
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "loopjob: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Why a command failed; its Display is what the user reads.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(
        "no store URL: give --store URL or set LOOPJOB_STORE_URL (such as sqlite://jobs.db or \
         postgres://USER:PASSWORD@HOST/DB)"
    )]
    NoStore,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Other(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::NoStore => EXIT_USAGE,
            Failure::Cluster(ClusterError::UnknownJob { .. }) => EXIT_UNKNOWN_JOB,
            Failure::Cluster(ClusterError::Store(
                StoreError::UnsupportedUrl { .. } | StoreError::InvalidInput { .. },
            )) => EXIT_USAGE,
            Failure::Cluster(_) | Failure::Other(_) => EXIT_FAILED,
        }
    }
}

/// Runs the command; returns what to print.
async fn run(cli: &Cli) -> Result<String, Failure> {
    let control = open(&cli.store)?;
    let json = cli.json;
    match &cli.command {
        Command::Status => {
            let status = control.status().await?;
            let page = ClusterPage::new(control.backend(), status, SystemTime::now());
            Ok(match json {
                true => to_json(&page),
                false => status_tables(&page),
            })
        }
        Command::History { job, limit } => {
            let runs = control.history(job, *limit).await?;
            let page = RunsPage {
                job: job.clone(),
                runs: runs.into_iter().map(Run::from).collect(),
            };
            Ok(match json {
                true => to_json(&page),
                false => history_table(&page),
            })
        }
        Command::Pause { job } => Steer::Pause.run(&control, job, json).await,
        Command::Resume { job } => Steer::Resume.run(&control, job, json).await,
        Command::Trigger { job } => Steer::Trigger.run(&control, job, json).await,
        Command::Members => {
            let page = MembersPage::new(control.members().await?);
            Ok(match json {
                true => to_json(&page),
                false => members_table(&page),
            })
        }
    }
}

/// Opens the store the arguments name.
fn open(args: &StoreArgs) -> Result<ClusterControl, Failure> {
    let url = args.url.as_deref().filter(|url| !url.trim().is_empty());
    let url = url.ok_or(Failure::NoStore)?;
    check_sqlite_file(url)?;
    let options = StoreOptions::default()
        .table_prefix(args.table_prefix.clone())
        .operation_timeout(args.timeout)
        .max_connections(2);
    let operator = args
        .operator
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "loopjob-cli".to_owned());
    Ok(ClusterControl::open_with(url, options)?.operator(operator))
}

/// An SQLite store names a file the hosts created: opening a mistyped path would create an
/// empty database instead of reporting it.
fn check_sqlite_file(url: &str) -> Result<(), Failure> {
    let Some(rest) = url.trim().strip_prefix("sqlite:") else {
        return Ok(());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || std::path::Path::new(path).exists() {
        return Ok(());
    }
    Err(Failure::Other(format!(
        "no SQLite database at `{path}`: give the file the hosts use"
    )))
}

fn to_json(value: &impl serde::Serialize) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(text) => text + "\n",
        // Serialising these plain structs cannot fail; say so rather than panic if it ever did.
        Err(error) => format!("{{\"error\": \"cannot serialise the answer: {error}\"}}\n"),
    }
}

/// An operator's command on a job's records.
#[derive(Debug, Clone, Copy)]
enum Steer {
    Pause,
    Resume,
    Trigger,
}

impl Steer {
    /// Writes the command to the job's records; prints what it did.
    async fn run(self, control: &ClusterControl, job: &str, json: bool) -> Result<String, Failure> {
        let (action, done, obeys, view) = match self {
            Steer::Pause => ("pause", "paused", "obeys", control.pause(job).await?),
            Steer::Resume => ("resume", "resumed", "obeys", control.resume(job).await?),
            Steer::Trigger => (
                "trigger",
                "triggered",
                "runs it once",
                control.trigger(job).await?,
            ),
        };
        let job = ClusterJob::new(job.to_owned(), view);
        if json {
            return Ok(to_json(&CommandDone { action, job }));
        }
        let keys = job.keys.len();
        Ok(format!(
            "{done} `{name}` cluster-wide ({keys} key{s}): whichever node leads it {obeys} \
             within one retry period (at once where the store notifies)\n",
            name = job.name,
            s = if keys == 1 { "" } else { "s" },
        ))
    }
}

/// The jobs table and the leases table.
fn status_tables(page: &ClusterPage) -> String {
    let now = now_of(&page.jobs);
    let mut out = String::new();
    if page.jobs.is_empty() {
        out.push_str(
            "no guarded job has records in this store yet: a guarded job has one once a node \
             has held its lease\n",
        );
    } else {
        out.push_str(&jobs_table(&page.jobs, &page.leases, now));
    }
    if !page.leases.is_empty() {
        let mut table = table(&["LEASE", "HOLDER", "EPOCH", "EXPIRES"]);
        for lease in &page.leases {
            let expires = match lease.held {
                true => format!(
                    "in {}",
                    human_ms(i64::try_from(lease.remaining_ms).unwrap_or(i64::MAX))
                ),
                false => "expired".to_owned(),
            };
            table.add_row(vec![
                lease.key.clone(),
                lease.holder.clone(),
                lease.epoch.to_string(),
                expires,
            ]);
        }
        out.push('\n');
        out.push_str(&render(&table));
    }
    out
}

/// The store's clock as the newest record read shows it; the local clock without records.
fn now_of(jobs: &[ClusterJob]) -> i64 {
    jobs.iter()
        .flat_map(|job| job.keys.iter().map(|key| key.read_at_ms))
        .max()
        .unwrap_or_else(local_now_ms)
}

fn jobs_table(jobs: &[ClusterJob], leases: &[StoreLease], now: i64) -> String {
    let mut table = table(&[
        "JOB", "STATE", "NEXT DUE", "LAST RUN", "OUTCOME", "DURATION", "LEADER", "EPOCH",
    ]);
    for job in jobs {
        let paused_keys = job.keys.iter().filter(|key| key.paused.is_some()).count();
        let mut state = match paused_keys {
            0 => "active".to_owned(),
            n if n == job.keys.len() => "paused".to_owned(),
            n => format!("paused on {n} of {} keys", job.keys.len()),
        };
        if job.triggered {
            state.push_str(", triggered");
        }
        let held: Vec<_> = leases
            .iter()
            .filter(|lease| lease.held && job_of_key(&lease.key) == job.name)
            .collect();
        let mut holders: Vec<&str> = held.iter().map(|lease| lease.holder.as_str()).collect();
        holders.sort_unstable();
        holders.dedup();
        let run = job.last_run.as_ref();
        table.add_row(vec![
            job.name.clone(),
            state,
            job.next_due_ms.map_or("-".to_owned(), |due| when(due, now)),
            run.map_or("-".to_owned(), |run| when(run.started_ms, now)),
            run.map_or("-".to_owned(), outcome),
            run.and_then(|run| run.duration_ms)
                .map_or("-".to_owned(), human_ms),
            if holders.is_empty() {
                "-".to_owned()
            } else {
                holders.join(", ")
            },
            held.iter()
                .map(|lease| lease.epoch)
                .max()
                .map_or("-".to_owned(), |epoch| epoch.to_string()),
        ]);
    }
    render(&table)
}

fn history_table(page: &RunsPage) -> String {
    if page.runs.is_empty() {
        return format!("`{}` has no runs yet\n", page.job);
    }
    let now = local_now_ms();
    let mut table = table(&[
        "STARTED", "KEY", "HOLDER", "EPOCH", "OUTCOME", "DURATION", "ATTEMPTS", "ERROR",
    ]);
    for run in &page.runs {
        table.add_row(vec![
            when(run.started_ms, now),
            run.key.clone(),
            run.holder.clone(),
            run.epoch.to_string(),
            outcome(run),
            run.duration_ms.map_or("-".to_owned(), human_ms),
            run.attempts.to_string(),
            run.error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    render(&table)
}

fn members_table(page: &MembersPage) -> String {
    if page.members.is_empty() {
        return "no live members: nodes announce themselves only for partitioned jobs\n".to_owned();
    }
    let now = local_now_ms();
    let mut table = table(&["JOB", "MEMBER", "EXPIRES"]);
    for member in &page.members {
        table.add_row(vec![
            member.job.clone(),
            member.member.clone(),
            when(member.expires_ms, now),
        ]);
    }
    render(&table)
}

/// A table of aligned columns without borders.
fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.to_vec());
    table
}

/// The table's lines, without the padding after the last column.
fn render(table: &Table) -> String {
    table
        .lines()
        .map(|line| line.trim_end().to_owned() + "\n")
        .collect()
}

/// A run's outcome, `running` while it has none, and `(triggered)` for an operator's.
fn outcome(run: &Run) -> String {
    let outcome = run.outcome.unwrap_or("running");
    match run.triggered {
        true => format!("{outcome} (triggered)"),
        false => outcome.to_owned(),
    }
}

/// `2026-12-02 08:30:00Z (in 4m 12s)` or `(... ago)`, measured from `now` (all Unix ms).
fn when(at_ms: i64, now_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    let mut stamp = String::new();
    // humantime refuses years past 9999, which only a corrupted record could hold.
    if write!(stamp, "{}", humantime::format_rfc3339_seconds(at)).is_err() {
        stamp = format!("{at_ms} ms after 1970");
    }
    let stamp = stamp.replacen('T', " ", 1);
    let relative = match at_ms.saturating_sub(now_ms) {
        ahead if ahead > 0 => format!("in {}", human_ms(ahead)),
        ago => format!("{} ago", human_ms(ago.saturating_neg())),
    };
    format!("{stamp} ({relative})")
}

/// A duration in milliseconds for people: `120ms`, `4s`, `3m 12s` (whole seconds from 1 s on).
fn human_ms(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let duration = match ms {
        0..1000 => Duration::from_millis(ms),
        _ => Duration::from_secs(ms / 1000),
    };
    humantime::format_duration(duration).to_string()
}

/// This machine's wall clock in Unix milliseconds.
fn local_now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_as_people_write_them() {
        let at = 1_796_200_791_000; // 2026-12-02 08:39:51 UTC
        assert_eq!(when(at, at - 252_345), "2026-12-02 08:39:51Z (in 4m 12s)");
        assert_eq!(when(at, at + 47), "2026-12-02 08:39:51Z (47ms ago)");
        assert_eq!(human_ms(120), "120ms");
        assert_eq!(human_ms(3_723_999), "1h 2m 3s");
        assert_eq!(human_ms(-5), "0s");
        // A corrupted record's time never panics.
        assert!(when(i64::MAX, i64::MIN).contains("after 1970"));
        assert!(when(i64::MIN, i64::MAX).contains(" ago)"));
    }
}
