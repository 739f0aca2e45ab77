//! `#[derive(LoopJob)]`: what the attribute gives, settings over it, and discovery building
//! jobs from their options and the builder's resources.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loopjob::{
    BuildProblem, Host, JobContext, JobError, LoopJob, Schedule, ScheduleMode, Settings,
    SettingsProblem,
};
use serde::Deserialize;
use validator::Validate;

const SEC: Duration = Duration::from_secs(1);

/// A resource shared through the builder (the test keeps a clone of the inner `Arc`).
#[derive(Default)]
struct Counter(Arc<AtomicU64>);

#[derive(Debug, Deserialize, Validate)]
struct TallyOptions {
    #[validate(range(min = 1))]
    step: u64,
}

/// Discovered: reads `[jobs.tallies]`, takes the `Counter` resource.
#[derive(LoopJob)]
#[loopjob(
    options = TallyOptions,
    section = "tallies",
    interval = "1h",
    initial_delay = "1s",
    leader = "cluster",
    discover
)]
struct Tally {
    counter: Arc<Counter>,
    options: TallyOptions,
    runs: AtomicU64,
}

impl Tally {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.counter
            .0
            .fetch_add(self.options.step, Ordering::SeqCst);
        Ok(())
    }
}

/// Not discovered; named explicitly; a unit struct.
#[derive(LoopJob)]
#[loopjob(
    name = "nightly",
    interval = "24h",
    retries = 2,
    retry_backoff = "1m",
    mode = "fixed_delay"
)]
struct NightlyReport;

impl NightlyReport {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[test]
fn the_attribute_gives_the_name_and_schedule() {
    let job = NightlyReport;
    assert_eq!(job.name(), "nightly");
    let expected = Schedule::every(24 * 3600 * SEC)
        .retries(2)
        .retry_backoff(60 * SEC)
        .mode(ScheduleMode::FixedDelay);
    assert_eq!(job.schedule(), expected);

    let tally = Tally {
        counter: Arc::default(),
        options: TallyOptions { step: 1 },
        runs: AtomicU64::new(0),
    };
    assert_eq!(tally.name(), "tally", "snake_case of the type");
    assert_eq!(
        tally.schedule(),
        Schedule::every(3600 * SEC).initial_delay(SEC)
    );
}

/// Runs a host with the discovered jobs for `run_for` of paused time; returns the counter.
async fn run_discovered(settings: Settings, run_for: Duration) -> u64 {
    let counter = Counter::default();
    let total = counter.0.clone();
    let host = Host::builder()
        .settings(settings)
        .discover()
        .store(Arc::new(loopjob::store::MemoryStore::new()))
        .resource(counter)
        .build()
        .expect("the discovered job builds");
    assert_eq!(host.handle().job_names(), ["tally"]);
    host.run_until(tokio::time::sleep(run_for)).await;
    total.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn config_overrides_the_attribute_and_the_environment_overrides_config() {
    let toml = "[jobs.tallies]\ninterval = \"10s\"\nstep = 2\n";
    // Code: first tick at 1s, then every hour. Config: every 10s → ticks at 1s and 11s (a
    // guarded job's run waits its due time plus a tenth of the wait: 1.1s and 12s).
    let config_only = Settings::loader().toml("app.toml", toml).load().unwrap();
    assert_eq!(
        run_discovered(config_only, Duration::from_millis(13_500)).await,
        2 * 2
    );
    // The environment: every 5s, steps of 3 → ticks at 1s, 6s and 11s (and 16s, after the end).
    let with_env = Settings::loader()
        .toml("app.toml", toml)
        .env_vars([
            ("LOOPJOB__JOBS__TALLIES__INTERVAL", "5s"),
            ("LOOPJOB__JOBS__TALLIES__STEP", "3"),
        ])
        .load()
        .unwrap();
    assert_eq!(
        run_discovered(with_env, Duration::from_millis(13_500)).await,
        3 * 3
    );
}

fn settings_problems(builder: loopjob::HostBuilder) -> Vec<SettingsProblem> {
    let error = builder.build().expect_err("the build fails");
    error
        .problems()
        .iter()
        .filter_map(|problem| match problem {
            BuildProblem::Settings(problem) => Some(problem.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn discovery_reports_missing_resources_options_and_schedule_problems_together() {
    let settings = Settings::from_toml_str("[jobs.tallies]\ninterval = 10\n").unwrap();
    let problems = settings_problems(Host::builder().settings(settings).discover());
    let found: Vec<_> = problems
        .iter()
        .map(|p| (p.section.as_str(), p.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [("jobs.tallies", "step"), ("jobs.tallies", "interval")],
        "{problems:#?}"
    );
    assert!(problems[0].message.contains("missing"), "{}", problems[0]);

    let settings = Settings::from_toml_str("[jobs.tallies]\nstep = 1\n").unwrap();
    let problems = settings_problems(Host::builder().settings(settings).discover());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "counter");
    assert!(
        problems[0]
            .message
            .contains("needs a `derive::Counter` resource"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_discovered_job_without_its_required_options_is_a_clear_error() {
    let problems = settings_problems(Host::builder().discover().resource(Counter::default()));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "step");
    assert!(
        problems[0].message.contains("add a [jobs.tallies] section"),
        "{}",
        problems[0]
    );
}

#[test]
fn an_explicit_registration_wins_over_discovery() {
    let tally = Tally {
        counter: Arc::default(),
        options: TallyOptions { step: 1 },
        runs: AtomicU64::new(0),
    };
    // Tally is `leader = "cluster"`, explicitly registered or not: it needs a store.
    let host = Host::builder()
        .store(Arc::new(loopjob::store::MemoryStore::new()))
        .job(tally)
        .discover()
        .build()
        .expect("no duplicate");
    assert_eq!(host.handle().job_names(), ["tally"]);
}

/// Registered explicitly (not discovered): the leadership keys still reach the job.
#[derive(LoopJob)]
#[loopjob(
    interval = "30s",
    leader = "partitioned",
    partitions = 4,
    lease_ttl = "9s",
    catch_up = "skip",
    history = 500
)]
struct Sharded;

impl Sharded {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[test]
fn leadership_keys_work_without_discovery() {
    let leadership = Sharded.leadership();
    assert_eq!(leadership.mode, loopjob::LeaderMode::Partitioned);
    assert_eq!(leadership.partitions, 4);
    assert_eq!(leadership.lease_ttl, 9 * SEC);
    assert_eq!(leadership.renew_every(), 3 * SEC);
    assert_eq!(Sharded.schedule().interval(), Some(30 * SEC));
    assert_eq!(Sharded.schedule().catch_up, loopjob::CatchUp::Skip);
    assert_eq!(leadership.history, 500);
    // A guarded job needs a store: the builder says so, naming the job.
    let error = Host::builder().job(Sharded).build().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("job `sharded` has leader = Partitioned"),
        "{error}"
    );
}
