//! Settings: loading and merging files and the environment, every rule, the all-at-once
//! report, did-you-mean, and how the host applies them.

use std::time::Duration;

use loopjob::settings::{HostSettings, Origin};
use loopjob::{BuildProblem, Host, LeaderMode, Leadership, Schedule, Settings, SettingsProblem};

const SEC: Duration = Duration::from_secs(1);

fn load(toml: &str, env: &[(&str, &str)]) -> Settings {
    Settings::loader()
        .toml("app.toml", toml)
        .env_vars(env.iter().copied())
        .load()
        .expect("the sources parse")
}

/// The problems `build()` reports for jobs `cleanup` (every 1h in code) and `report`.
fn build_problems(settings: Settings) -> Vec<SettingsProblem> {
    let noop = |_| async { Ok(()) };
    let error = Host::builder()
        .settings(settings)
        .job_fn("cleanup", Schedule::every(3600 * SEC), noop)
        .job_fn("report", Schedule::every(60 * SEC), noop)
        .build()
        .expect_err("the settings are wrong");
    error
        .problems()
        .iter()
        .filter_map(|problem| match problem {
            BuildProblem::Settings(problem) => Some(problem.clone()),
            _ => None,
        })
        .collect()
}

fn at_line(line: usize) -> Origin {
    Origin::File {
        path: "app.toml".into(),
        line: Some(line),
    }
}

fn code() -> Schedule {
    Schedule::every(3600 * SEC)
}

#[test]
fn later_files_override_earlier_ones_and_the_environment_overrides_files() {
    let settings = Settings::loader()
        .toml(
            "base.toml",
            "[jobs.cleanup]\ninterval = \"1m\"\nretries = 2\njitter = \"1s\"\n",
        )
        .toml("prod.toml", "[jobs.cleanup]\ninterval = \"2m\"\n")
        .env_vars([("LOOPJOB__JOBS__CLEANUP__JITTER", "3s"), ("UNRELATED", "x")])
        .load()
        .unwrap();
    let job = settings
        .job("cleanup", &code(), &Leadership::default())
        .unwrap();
    assert_eq!(
        job.schedule.interval(),
        Some(120 * SEC),
        "prod.toml over base.toml"
    );
    assert_eq!(
        job.schedule.retries, 2,
        "base.toml where prod.toml is silent"
    );
    assert_eq!(job.schedule.jitter, 3 * SEC, "the environment over both");
    assert_eq!(
        job.schedule.initial_delay,
        Duration::ZERO,
        "the code where no source speaks"
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = Settings::load("config/does-not-exist.toml").unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(
        problem.origin,
        Origin::File {
            path: "config/does-not-exist.toml".into(),
            line: None
        }
    );
    assert!(
        problem.message.starts_with("cannot read the settings file"),
        "{problem}"
    );
}

#[test]
fn invalid_toml_is_reported_with_its_line() {
    let error =
        Settings::from_toml_str("[jobs.cleanup]\ninterval = \"1m\"\nretries = = 3\n").unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(
        problem.origin,
        Origin::File {
            path: "<string>".into(),
            line: Some(3)
        }
    );
    assert!(problem.message.starts_with("invalid TOML"), "{problem}");
}

#[test]
fn malformed_environment_names_are_errors() {
    let error = Settings::loader()
        .env_vars([
            ("LOOPJOB__JOBS__CLEANUP", "1m"),
            ("LOOPJOB__JOBS____INTERVAL", "1m"),
        ])
        .load()
        .unwrap_err();
    let vars: Vec<_> = error
        .problems()
        .iter()
        .map(|p| p.origin.to_string())
        .collect();
    assert_eq!(
        vars,
        [
            "environment variable LOOPJOB__JOBS__CLEANUP",
            "environment variable LOOPJOB__JOBS____INTERVAL",
        ]
    );
}

#[test]
fn every_schedule_key_is_read() {
    let settings = load(
        r#"
        [jobs.cleanup]
        interval = "1h 30m"
        initial_delay = "250ms"
        mode = "fixed_delay"
        skip_if_running = false
        max_overlap = 2
        missed_ticks = "delay"
        catch_up = "skip"
        jitter = "2s"
        align = true
        timeout = "10m"
        cancel_grace = "1s"
        retries = 3
        retry_backoff = "5s"
        enabled = false
        "#,
        &[],
    );
    let expected = Schedule::every(5400 * SEC)
        .initial_delay(Duration::from_millis(250))
        .mode(loopjob::ScheduleMode::FixedDelay)
        .skip_if_running(false)
        .max_overlap(2)
        .missed_ticks(loopjob::MissedTicks::Delay)
        .catch_up(loopjob::CatchUp::Skip)
        .jitter(2 * SEC)
        .align(true)
        .timeout(600 * SEC)
        .cancel_grace(SEC)
        .retries(3)
        .retry_backoff(5 * SEC)
        .enabled(false);
    let job = settings
        .job("cleanup", &code(), &Leadership::default())
        .unwrap();
    assert_eq!(job.schedule, expected);
    // `timeout = "none"` removes a timeout the code sets.
    let settings = load("[jobs.cleanup]\ntimeout = \"none\"\n", &[]);
    let job = settings
        .job("cleanup", &code().timeout(SEC), &Leadership::default())
        .unwrap();
    assert_eq!(job.schedule.timeout, None);
}

#[test]
fn every_leadership_key_is_read_and_renew_every_follows_the_ttl() {
    let settings = load(
        "[jobs.cleanup]\nleader = \"partitioned\"\nlease_ttl = \"30s\"\nretry_every = \"1s\"\npriority = 2\npartitions = 8\n",
        &[],
    );
    let job = settings
        .job("cleanup", &code(), &Leadership::default())
        .unwrap();
    let leadership = job.leadership;
    assert_eq!(leadership.mode, LeaderMode::Partitioned);
    assert_eq!(leadership.lease_ttl, 30 * SEC);
    assert_eq!(
        leadership.renew_every(),
        10 * SEC,
        "a third of the ttl unless set"
    );
    assert_eq!(leadership.retry_every, SEC);
    assert_eq!(leadership.priority, 2);
    assert_eq!(leadership.partitions, 8);
}

#[test]
fn environment_values_are_typed_from_their_strings() {
    let settings = load(
        "",
        &[
            ("LOOPJOB__JOBS__CLEANUP__SKIP_IF_RUNNING", "false"),
            ("LOOPJOB__JOBS__CLEANUP__MAX_OVERLAP", "3"),
            ("LOOPJOB__JOBS__CLEANUP__LEADER", "global"),
        ],
    );
    let job = settings
        .job("cleanup", &code(), &Leadership::default())
        .unwrap();
    assert!(!job.schedule.skip_if_running);
    assert_eq!(job.schedule.max_overlap, 3);
    assert_eq!(job.leadership.mode, LeaderMode::Global);
}

/// Each case: a section, the key at fault and words its message must hold.
#[test]
fn every_rule_is_checked_and_reported_at_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("interval = \"0s\"", "interval", "must be more than zero"),
        ("interval = 10", "interval", "write \"10s\""),
        (
            "interval = \"10 parsecs\"",
            "interval",
            "found \"10 parsecs\"",
        ),
        ("max_overlap = 0", "max_overlap", "at least 1"),
        ("max_overlap = -1", "max_overlap", "whole number"),
        ("timeout = \"0s\"", "timeout", "more than zero"),
        (
            "mode = \"fixed\"",
            "mode",
            "one of \"fixed_rate\", \"fixed_delay\"",
        ),
        (
            "missed_ticks = \"burst\"",
            "missed_ticks",
            "\"skip\", \"delay\"",
        ),
        (
            "skip_if_running = \"maybe\"",
            "skip_if_running",
            "expected true or false, found \"maybe\"",
        ),
        (
            "retries = 2\nretry_backoff = \"2h\"",
            "retry_backoff",
            "not shorter than interval",
        ),
        (
            "interval = \"1s\"\nretries = 1",
            "interval",
            "`retry_backoff` is 1s, not shorter than interval",
        ),
        (
            "leader = \"everyone\"",
            "leader",
            "\"none\", \"cluster\", \"global\", \"partitioned\"",
        ),
        ("partitions = 0", "partitions", "at least 1"),
        ("lease_ttl = \"0s\"", "lease_ttl", "more than zero"),
        (
            "lease_ttl = \"3s\"\nrenew_every = \"3s\"",
            "renew_every",
            "shorter than lease_ttl (3s)",
        ),
        (
            "lease_ttl = \"3s\"",
            "lease_ttl",
            "`renew_every` must be shorter than lease_ttl",
        ),
        ("retry_every = \"0s\"", "retry_every", "more than zero"),
        ("priority = \"high\"", "priority", "whole number"),
    ];
    for (body, key, words) in cases {
        let settings = load(&format!("[jobs.cleanup]\n{body}\n"), &[]);
        let leadership = Leadership::default().with_renew_every(5 * SEC);
        let problems = settings.job("cleanup", &code(), &leadership).unwrap_err();
        let problems = problems.problems();
        assert_eq!(problems.len(), 1, "{body}: {problems:?}");
        assert_eq!(problems[0].key, *key, "{body}");
        assert_eq!(problems[0].section, "jobs.cleanup", "{body}");
        assert!(
            problems[0].message.contains(words),
            "{body}: {}",
            problems[0]
        );
        assert!(
            matches!(
                problems[0].origin,
                Origin::File {
                    line: Some(2..),
                    ..
                }
            ),
            "{body}"
        );
    }
}

#[test]
fn host_section_is_read_and_checked() {
    let settings = load(
        "[loopjob]\nnode_id = \"web-1\"\nstore = \"postgres://db/app\"\nshutdown_grace = \"45s\"\n",
        &[("LOOPJOB__GROUP", "eu-west")],
    );
    let mut expected = HostSettings::default();
    expected.node_id = Some("web-1".into());
    expected.group = Some("eu-west".into());
    expected.store = Some("postgres://db/app".into());
    expected.shutdown_grace = Some(45 * SEC);
    assert_eq!(settings.host().unwrap(), expected);

    let settings = load(
        "[loopjob]\nstore = \"zookeeper://cache\"\nnode_id = \"\"\nshutdown = \"1s\"\n",
        &[],
    );
    let error = settings.host().unwrap_err();
    let keys: Vec<_> = error
        .problems()
        .iter()
        .map(|p| (p.key.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0].0, "node_id");
    assert_eq!(
        keys[1],
        ("shutdown", "unknown key; did you mean `shutdown_grace`?")
    );
    assert!(
        keys[2].1.contains("found \"zookeeper://cache\""),
        "{}",
        keys[2].1
    );
}

#[test]
fn five_mistakes_give_five_precise_messages() {
    let settings = load(
        r#"[loopjob]
shutdown_grace = 30

[jobs.cleanup]
intreval = "10s"
max_overlap = 0
leader = "clustr"

[jobs.report]
partitions = 0
"#,
        &[],
    );
    let problems = build_problems(settings);
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "app.toml:2: [loopjob] shutdown_grace: expected a duration such as \"10s\", \"1m 30s\" or \"250ms\", found the number 30 without a unit; write \"30s\" for seconds",
            "app.toml:5: [jobs.cleanup] intreval: unknown key; did you mean `interval`?",
            "app.toml:6: [jobs.cleanup] max_overlap: must be at least 1 (set skip_if_running = true to never overlap); found the number 0",
            "app.toml:7: [jobs.cleanup] leader: expected one of \"none\", \"cluster\", \"global\", \"partitioned\", found \"clustr\"; did you mean \"cluster\"?",
            "app.toml:10: [jobs.report] partitions: must be at least 1, e.g. 16; found the number 0",
        ]
    );
    assert_eq!(problems[1].origin, at_line(5));
}

#[test]
fn values_from_the_environment_name_their_variable() {
    let settings = load(
        "[jobs.cleanup]\ninterval = \"1m\"\n",
        &[("LOOPJOB__JOBS__CLEANUP__INTERVAL", "90")],
    );
    let problems = build_problems(settings);
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].origin,
        Origin::Env {
            var: "LOOPJOB__JOBS__CLEANUP__INTERVAL".into()
        }
    );
    assert!(
        problems[0].message.contains("write \"90s\""),
        "{}",
        problems[0]
    );
}

#[test]
fn unknown_top_level_sections_are_errors_with_a_suggestion() {
    let problems = build_problems(load("[job.cleanup]\ninterval = \"1m\"\n", &[]));
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "job");
    assert_eq!(problems[0].message, "unknown key; did you mean `jobs`?");
}

#[test]
fn a_section_for_an_unregistered_job_is_a_warning() {
    let settings = load("[jobs.clenaup]\ninterval = \"1m\"\n", &[]);
    let host = Host::builder()
        .settings(settings)
        .job_fn("cleanup", code(), |_| async { Ok(()) })
        .build()
        .expect("a stray section does not stop the host");
    let warnings = host.settings_warnings();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].section, "jobs.clenaup");
    assert_eq!(warnings[0].origin, at_line(1));
    assert!(
        warnings[0].message.contains("did you mean `cleanup`?"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_registered_job_without_a_section_runs_on_its_code_values() {
    let settings = load("[jobs.report]\ninterval = \"1m\"\n", &[]);
    let job = settings
        .job("cleanup", &code().retries(1), &Leadership::default())
        .unwrap();
    assert_eq!(job.schedule, code().retries(1));
    assert_eq!(job.leadership, Leadership::default());
}

#[test]
fn the_host_section_sets_the_node_and_shutdown_grace() {
    let settings = load("[loopjob]\nnode_id = \"web-7\"\ngroup = \"eu\"\n", &[]);
    let host = Host::builder().settings(settings).build().unwrap();
    assert_eq!(host.handle().node().to_string(), "web-7@eu");
}

mod options {
    use super::*;
    use serde::Deserialize;
    use validator::Validate;

    #[derive(Debug, Deserialize, Validate)]
    struct Purge {
        #[validate(range(min = 1, max = 1000))]
        batch: u32,
        #[serde(default)]
        dry_run: bool,
        #[validate(nested)]
        target: Target,
    }

    #[derive(Debug, Deserialize, Validate)]
    struct Target {
        #[validate(length(min = 1))]
        table: String,
    }

    #[test]
    fn options_are_read_beside_the_schedule_keys_and_validated() {
        let settings = load(
            "[jobs.purge]\ninterval = \"1m\"\nbatch = 50\n[jobs.purge.target]\ntable = \"tokens\"\n",
            &[("LOOPJOB__JOBS__PURGE__DRY_RUN", "true")],
        );
        let options: Purge = settings.options("purge").unwrap();
        assert_eq!(options.batch, 50);
        assert!(options.dry_run, "from the environment, as a string");
        assert_eq!(options.target.table, "tokens");
    }

    #[test]
    fn nested_validation_errors_name_the_nested_key_and_line() {
        let settings = load(
            "[jobs.purge]\nbatch = 5000\n[jobs.purge.target]\ntable = \"\"\n",
            &[],
        );
        let error = settings.options::<Purge>("purge").unwrap_err();
        let found: Vec<_> = error
            .problems()
            .iter()
            .map(|p| (p.key.as_str(), p.origin.clone()))
            .collect();
        assert_eq!(found, [("batch", at_line(2)), ("target.table", at_line(4))]);
        assert!(
            error.problems()[0].message.contains("found 5000"),
            "{}",
            error
        );
        assert!(
            error.problems()[0].message.contains("max = 1000"),
            "{}",
            error
        );
    }

    #[test]
    fn wrong_types_and_missing_options_are_located() {
        let settings = load(
            "[jobs.purge]\nbatch = \"many\"\n[jobs.purge.target]\ntable = \"t\"\n",
            &[],
        );
        let problem = &settings.options::<Purge>("purge").unwrap_err().problems()[0].clone();
        assert_eq!(
            (problem.key.as_str(), problem.origin.clone()),
            ("batch", at_line(2))
        );
        assert!(problem.message.contains("many"), "{problem}");

        let settings = load("[jobs.other]\n", &[]);
        let problem = &settings.options::<Purge>("purge").unwrap_err().problems()[0].clone();
        assert_eq!(problem.key, "batch");
        assert_eq!(problem.origin, Origin::Code);
        assert!(
            problem.message.contains("add a [jobs.purge] section"),
            "{problem}"
        );
    }

    #[derive(Debug, Deserialize, Validate)]
    struct KeepAlive {
        #[serde(with = "loopjob::settings::duration")]
        change_state_after: Duration,
    }

    #[test]
    fn durations_in_options_take_humantime_and_refuse_bare_numbers() {
        let settings = load(
            "",
            &[("LOOPJOB__JOBS__KEEP_ALIVE__CHANGE_STATE_AFTER", "1h 30m")],
        );
        let options: KeepAlive = settings.options("keep_alive").unwrap();
        assert_eq!(options.change_state_after, 5400 * SEC);

        let settings = load("[jobs.keep_alive]\nchange_state_after = 15\n", &[]);
        let error = settings.options::<KeepAlive>("keep_alive").unwrap_err();
        let problem = &error.problems()[0];
        assert_eq!(
            (problem.key.as_str(), problem.origin.clone()),
            ("change_state_after", at_line(2))
        );
        assert!(problem.message.contains("write \"15s\""), "{problem}");
    }

    #[test]
    fn option_keys_read_through_options_are_known_to_the_host() {
        let settings = load(
            "[jobs.purge]\ninterval = \"1m\"\nbatch = 5\nbacth = 6\n[jobs.purge.target]\ntable = \"t\"\n",
            &[],
        );
        let _options: Purge = settings.options("purge").unwrap();
        let error = Host::builder()
            .settings(settings)
            .job_fn("purge", code(), |_| async { Ok(()) })
            .build()
            .unwrap_err();
        let messages: Vec<String> = error.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            ["app.toml:4: [jobs.purge] bacth: unknown key; did you mean `batch`?"]
        );
    }
}
