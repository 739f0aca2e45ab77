//! Settings sections and names: the spelling rule for names, a job's custom section,
//! environment variables that are never read, standalone electors' sections, a job's options
//! with every problem at once, and builder settings for jobs that are not registered.

#[path = "support/settings.rs"]
mod support;

use std::time::Duration;

use loopjob::{BuildProblem, Host, Leadership, Schedule};
use validator::Validate;

use support::{SEC, build_problems, line_of, load};

/// A job registered explicitly that reads a section of another name, and spells its leader
/// mode in capitals.
#[derive(loopjob::LoopJob)]
#[loopjob(section = "cleanup_v2", leader = "Global", lease_ttl = "9s")]
struct Cleanup;

impl Cleanup {
    async fn execute(&self, _ctx: &loopjob::JobContext) -> Result<(), loopjob::JobError> {
        Ok(())
    }
}

#[test]
fn leader_names_are_read_in_any_case_by_the_attribute_and_by_settings() {
    use loopjob::{LeaderMode, LoopJob};
    assert_eq!(Cleanup.leadership().mode, LeaderMode::Global);
    for spelling in ["Global", "GLOBAL", " global "] {
        let settings = load(&format!("[jobs.cleanup]\nleader = \"{spelling}\"\n"), &[]);
        let job = settings
            .job("cleanup", &Schedule::every(SEC), &Leadership::default())
            .unwrap();
        assert_eq!(job.leadership.mode, LeaderMode::Global, "{spelling}");
    }
    let settings = load("[jobs.cleanup]\nleader = \"Globl\"\n", &[]);
    let error = settings
        .job("cleanup", &Schedule::every(SEC), &Leadership::default())
        .unwrap_err();
    assert!(
        error.to_string().contains("did you mean \"global\"?"),
        "{error}"
    );
}

#[test]
fn a_custom_section_works_for_a_job_registered_explicitly() {
    use loopjob::LoopJob;
    assert_eq!(Cleanup.section(), "cleanup_v2");
    // The attribute gives no interval: the section must, and it is read.
    let store = std::sync::Arc::new(loopjob::store::MemoryStore::new());
    let host = Host::builder()
        .settings(load("[jobs.cleanup_v2]\ninterval = \"5s\"\n", &[]))
        .job(Cleanup)
        .store(store.clone())
        .build()
        .expect("the section gives the interval");
    assert_eq!(host.settings_warnings(), []);
    assert_eq!(host.handle().job_names(), ["cleanup"]);

    // Its problems are reported at that section, at their line.
    let error = Host::builder()
        .settings(load(
            "[jobs.cleanup_v2]\ninterval = \"5s\"\nlease_ttl = \"1ms\"\n",
            &[],
        ))
        .job(Cleanup)
        .store(store)
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("app.toml:3: [jobs.cleanup_v2] lease_ttl: is 1ms, shorter than"),
        "{error}"
    );
}

#[test]
fn environment_variables_that_can_never_match_are_warnings_naming_them() {
    let settings = load(
        "[jobs.cleanup]\ninterval = \"1m\"\n",
        &[
            ("loopjob__jobs__cleanup__interval", "5s"),
            ("LOOPJOB_JOBS_CLEANUP_INTERVAL", "5s"),
            ("LOOPJOB_STORE", "memory"),
            ("Loopjob__Store", "memory"),
            // Not ours, or ours and fine: no warning.
            ("LOOPJOB_TEST_POSTGRES_URL", "postgres://db/x"),
            ("LOOPJOBS", "x"),
            ("LOOPJOB__JOBS__CLENAUP__INTERVAL", "5s"),
            ("LOOPJOB__JOBS__CLENAUP__RETRY__MAX", "5"),
        ],
    );
    let shown: Vec<String> = settings
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "environment variable LOOPJOB_JOBS_CLEANUP_INTERVAL: this variable is not read: \
             loopjob's names separate their parts with `__`, as in LOOPJOB__JOBS__<JOB>__<KEY> \
             or LOOPJOB__<KEY>",
            "environment variable LOOPJOB_STORE: this variable is not read: loopjob's names \
             separate their parts with `__`, as in LOOPJOB__JOBS__<JOB>__<KEY> or \
             LOOPJOB__STORE",
            "environment variable Loopjob__Store: this variable is not read: loopjob's names are \
             in capitals; write LOOPJOB__STORE",
            "environment variable loopjob__jobs__cleanup__interval: this variable is not read: \
             loopjob's names are in capitals; write LOOPJOB__JOBS__CLEANUP__INTERVAL",
        ]
    );
    // The variables are not applied, and the host keeps the warnings with its own: a variable
    // for a job that is not registered is named, not blamed on a file.
    let job = settings
        .job("cleanup", &Schedule::every(SEC), &Leadership::default())
        .unwrap();
    assert_eq!(job.schedule.interval(), Some(60 * SEC));
    let host = Host::builder()
        .settings(settings)
        .job_fn("cleanup", Schedule::every(SEC), |_| async { Ok(()) })
        .build()
        .unwrap();
    let warnings = host.settings_warnings();
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
    let unread: Vec<String> = warnings[4..].iter().map(ToString::to_string).collect();
    assert_eq!(
        unread,
        [
            "environment variable LOOPJOB__JOBS__CLENAUP__INTERVAL: [jobs.clenaup]: no \
             registered job reads this section; did you mean `cleanup`?",
            "environment variable LOOPJOB__JOBS__CLENAUP__RETRY__MAX: [jobs.clenaup]: no \
             registered job reads this section; did you mean `cleanup`?",
        ]
    );

    // A section in a file and a variable for it: both named.
    let host = Host::builder()
        .settings(load(
            "[jobs.old_job]\ninterval = \"1m\"\n",
            &[("LOOPJOB__JOBS__OLD_JOB__JITTER", "1s")],
        ))
        .job_fn("cleanup", Schedule::every(SEC), |_| async { Ok(()) })
        .build()
        .unwrap();
    let origins: Vec<String> = host
        .settings_warnings()
        .iter()
        .map(|warning| warning.origin.to_string())
        .collect();
    assert_eq!(
        origins,
        [
            "app.toml:1",
            "environment variable LOOPJOB__JOBS__OLD_JOB__JITTER"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_standalone_elector_takes_its_timing_from_settings() {
    use loopjob::{LeaderElector, NodeIdentity};
    let settings = load(
        "[loopjob]\nstore = \"memory\"\n\
         [loopjob.leaders.orders]\nlease_ttl = \"40s\"\npriority = 2\n",
        &[("LOOPJOB__LEADERS__ORDERS__RETRY_EVERY", "4s")],
    );
    let leadership = settings.leader("orders").unwrap();
    assert_eq!(leadership.lease_ttl, 40 * SEC);
    assert_eq!(leadership.renew_every(), 40 * SEC / 3);
    assert_eq!(leadership.retry_every, 4 * SEC);
    assert_eq!(leadership.priority, 2);
    // No section: the defaults.
    assert_eq!(
        settings.leader("other").unwrap(),
        Leadership::new(loopjob::LeaderMode::Global)
    );

    let store = std::sync::Arc::new(loopjob::store::MemoryStore::new());
    let node = NodeIdentity::new("web-1", "eu");
    let elector = LeaderElector::from_settings(store, "orders", &settings, &node).unwrap();
    let started = tokio::time::Instant::now();
    let lease = elector
        .run_while_leader(|lease, _token| async move { lease })
        .await;
    // Priority 2 waits 2 · retry_every before its first try; the deadline follows the ttl
    // less its safety margin (a tenth).
    let waited = lease.deadline() - started;
    assert!(
        waited >= 8 * SEC + 36 * SEC && waited <= 8 * SEC + 40 * SEC,
        "{waited:?}"
    );
    elector.shutdown().await;
}

#[test]
fn leader_sections_are_checked_with_the_host_every_problem_at_its_line() {
    let toml = "[loopjob.leaders.orders]\n\
                lease_ttl = \"3ms\"\n\
                leader = \"global\"\n\
                [loopjob.leaders.cache]\n\
                renew_every = \"1h\"\n";
    let settings = load(toml, &[]);
    let error = settings.leader("orders").unwrap_err();
    let found: Vec<_> = error
        .problems()
        .iter()
        .map(|p| (line_of(p), p.key.as_str()))
        .collect();
    // A key that is not read is reported before the rules are checked.
    assert_eq!(found, [(Some(3), "leader")], "{error}");
    assert!(error.to_string().contains("unknown key"), "{error}");

    let problems = build_problems(load(toml, &[]));
    let found: Vec<_> = problems
        .iter()
        .map(|p| (line_of(p), p.section.as_str(), p.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (Some(3), "loopjob.leaders.orders", "leader"),
            (Some(5), "loopjob.leaders.cache", "renew_every"),
        ],
        "{problems:#?}"
    );
    assert!(
        problems[1]
            .message
            .contains("must be shorter than lease_ttl (15s)"),
        "{}",
        problems[1]
    );
    let settings = load("[loopjob.leaders.orders]\nlease_ttl = \"3ms\"\n", &[]);
    let error = settings.leader("orders").unwrap_err();
    assert!(
        error.to_string().contains(
            "app.toml:2: [loopjob.leaders.orders] lease_ttl: is 3ms, shorter than the least \
             allowed, 1s"
        ),
        "{error}"
    );
}

#[derive(Debug, serde::Deserialize, Validate)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PurgeOptions {
    #[validate(range(min = 1))]
    batch: u32,
    #[validate(range(min = 1, max = 10))]
    workers: u32,
    #[serde(with = "loopjob::settings::duration")]
    keep_for: Duration,
    table: String,
    #[serde(default)]
    #[validate(nested)]
    retry: Retry,
}

#[derive(Debug, Default, serde::Deserialize, Validate)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Retry {
    #[validate(range(max = 5))]
    max: u32,
}

/// `(line, key)` of every problem, in order.
fn lines_and_keys(error: &loopjob::SettingsError) -> Vec<(Option<usize>, String)> {
    error
        .problems()
        .iter()
        .map(|p| (line_of(p), p.key.clone()))
        .collect()
}

#[test]
fn options_report_every_problem_at_once_each_at_its_line() {
    // A value of the wrong type does not hide the checks of the other keys, nor the fields
    // that are missing.
    let settings = load(
        "[jobs.purge]\n\
         interval = \"1m\"\n\
         batch = \"many\"\n\
         workers = 40\n\
         [jobs.purge.retry]\n\
         max = 9\n",
        &[],
    );
    let error = settings.options::<PurgeOptions>("purge").unwrap_err();
    assert_eq!(
        lines_and_keys(&error),
        [
            (Some(3), "batch".to_owned()),
            (Some(1), "keep_for".to_owned()),
            (Some(1), "table".to_owned()),
            (Some(6), "retry.max".to_owned()),
            (Some(4), "workers".to_owned()),
        ],
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("app.toml:3: [jobs.purge] batch: expected an integer, found string \"many\""),
        "{text}"
    );
    assert!(
        text.contains("[jobs.purge] keep_for: missing: the job's options need `keep_for`"),
        "{text}"
    );
    assert!(
        text.contains("app.toml:4: [jobs.purge] workers: expected to pass the `range` check"),
        "{text}"
    );

    // Unknown keys, at their own lines, nested ones too, beside the checks of the same nested
    // table; and the placeholder of a missing field is never checked.
    let settings = load(
        "[jobs.purge]\n\
         batch = 0\n\
         btach = 2\n\
         [jobs.purge.retry]\n\
         max = 9\n\
         maxx = 2\n",
        &[],
    );
    let error = settings.options::<PurgeOptions>("purge").unwrap_err();
    assert_eq!(
        lines_and_keys(&error),
        [
            (Some(3), "btach".to_owned()),
            (Some(6), "retry.maxx".to_owned()),
            (Some(1), "workers".to_owned()),
            (Some(1), "keep_for".to_owned()),
            (Some(1), "table".to_owned()),
            (Some(2), "batch".to_owned()),
            (Some(5), "retry.max".to_owned()),
        ],
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("app.toml:3: [jobs.purge] btach: unknown key; did you mean `batch`?"),
        "{text}"
    );
    assert!(
        text.contains("app.toml:6: [jobs.purge] retry.maxx: unknown key; did you mean `max`?"),
        "{text}"
    );

    // A field missing in a nested table, at the table's line, with the rest checked.
    let settings = load(
        "[jobs.purge]\nbatch = 5\nworkers = 0\nkeep_for = \"1h\"\ntable = \"t\"\n\
         [jobs.purge.retry]\n",
        &[],
    );
    let error = settings.options::<PurgeOptions>("purge").unwrap_err();
    assert_eq!(
        lines_and_keys(&error),
        [
            (Some(6), "retry.max".to_owned()),
            (Some(3), "workers".to_owned())
        ],
        "{error}"
    );

    // All right: the options read.
    let settings = load(
        "[jobs.purge]\nbatch = 5\nworkers = 2\nkeep_for = \"1h\"\ntable = \"events\"\n",
        &[],
    );
    let options = settings.options::<PurgeOptions>("purge").unwrap();
    assert_eq!(options.keep_for, 3600 * SEC);
}

/// Discovered (only where a test calls `discover`).
#[derive(loopjob::LoopJob)]
#[loopjob(interval = "1m", discover)]
struct Audit;

impl Audit {
    async fn execute(&self, _ctx: &loopjob::JobContext) -> Result<(), loopjob::JobError> {
        Ok(())
    }
}

#[test]
fn a_leadership_on_the_builder_for_a_discovered_job_says_where_to_set_it() {
    use loopjob::{LeaderMode, Leadership};
    let error = Host::builder()
        .discover()
        .leadership("audit", Leadership::new(LeaderMode::Global))
        .leadership("audti", Leadership::new(LeaderMode::Global))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error.problems(),
            [
                BuildProblem::DiscoveredJob { job, .. },
                BuildProblem::UnknownJob { suggestion: Some(suggested), .. },
            ] if job == "audit" && suggested == "audit"
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("which is discovered: set it in the job's #[loopjob(...)] attribute"),
        "{error}"
    );
}

/// Options of any keys, each a count.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
struct Counts(#[allow(dead_code)] std::collections::HashMap<String, u32>);

impl Validate for Counts {
    fn validate(&self) -> Result<(), validator::ValidationErrors> {
        Ok(())
    }
}

#[test]
fn a_section_with_a_thousand_bad_options_is_reported_in_part() {
    let mut toml = String::from("[jobs.tally]\n");
    for index in 0..1000 {
        toml.push_str(&format!("k{index} = \"not a number\"\n"));
    }
    let settings = load(&toml, &[]);
    let error = settings.options::<Counts>("tally").unwrap_err();
    // At most a hundred rounds of reading: the first hundred problems, each at its line.
    assert_eq!(error.problems().len(), 100);
    assert!(error.problems().iter().all(|p| line_of(p).is_some()));
    assert!(
        error.problems()[0]
            .message
            .contains("found string \"not a number\""),
        "{}",
        error.problems()[0]
    );
}
