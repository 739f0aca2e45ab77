//! Bad input at build time: clear errors naming the job and the field, before anything runs.

use std::time::Duration;

use loopjob::{BuildProblem, Host, Schedule};

fn noop() -> impl Fn(loopjob::JobContext) -> std::future::Ready<Result<(), loopjob::JobError>> {
    |_ctx| std::future::ready(Ok(()))
}

#[test]
fn every_schedule_problem_is_reported_at_once_naming_job_and_field() {
    let error = Host::builder()
        .job_fn("zero_interval", Schedule::every(Duration::ZERO), noop())
        .job_fn(
            "no_overlap",
            Schedule::every(Duration::from_secs(1))
                .skip_if_running(false)
                .max_overlap(0),
            noop(),
        )
        .job_fn(
            "slow_retry",
            Schedule::every(Duration::from_secs(10))
                .retries(2)
                .retry_backoff(Duration::from_secs(30)),
            noop(),
        )
        .build()
        .unwrap_err();

    let found: Vec<_> = error
        .problems()
        .iter()
        .map(|problem| match problem {
            BuildProblem::InvalidSchedule { job, problem, .. } => (job.as_str(), problem.field),
            other => panic!("unexpected problem: {other}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            ("zero_interval", "interval"),
            ("no_overlap", "max_overlap"),
            ("slow_retry", "retry_backoff")
        ]
    );
    let message = error.to_string();
    assert!(message.starts_with("cannot start: 3 problems"), "{message}");
    assert!(
        message.contains("job `slow_retry` (registered at tests/build.rs:"),
        "{message}"
    );
    assert!(
        message.contains("`retry_backoff`: is 30s, not shorter than interval 10s"),
        "{message}"
    );
}

#[test]
fn two_jobs_with_one_name_are_an_error_naming_both_registrations() {
    let first_line = line!() + 2;
    let error = Host::builder()
        .job_fn("twin", Schedule::every(Duration::from_secs(1)), noop())
        .job_fn("twin", Schedule::every(Duration::from_secs(1)), noop())
        .build()
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "two jobs are named `twin`, registered at tests/build.rs:{first_line}:"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("and at tests/build.rs:{}:", first_line + 1)),
        "{message}"
    );
}

#[test]
fn an_empty_name_is_an_error() {
    let error = Host::builder()
        .job_fn(" ", Schedule::every(Duration::from_secs(1)), noop())
        .build()
        .unwrap_err();
    assert!(matches!(error.problems(), [BuildProblem::EmptyName { .. }]));
}

#[test]
fn a_valid_host_builds_without_a_runtime() {
    let host = Host::builder()
        .job_fn("fine", Schedule::every(Duration::from_secs(1)), noop())
        .build()
        .unwrap();
    assert_eq!(host.handle().job_names(), ["fine"]);
}

#[test]
fn duplicates_registered_from_one_line_are_found_too() {
    let mut builder = Host::builder();
    for name in ["a", "b", "a"] {
        builder = builder.job_fn(name, Schedule::every(Duration::from_secs(1)), noop());
    }
    let error = builder.build().unwrap_err();
    assert!(
        matches!(error.problems(), [BuildProblem::DuplicateName { name, .. }] if name == "a"),
        "{error}"
    );
}

/// A year as humantime reads it, far past every bound.
fn ages() -> Duration {
    humantime::parse_duration("500000000000y").unwrap()
}

#[test]
fn durations_past_their_bound_are_refused_naming_key_value_and_bound() {
    use loopjob::limits::{MAX_GRACE, MAX_SCHEDULE_DURATION};
    let huge = ages();
    let error = Host::builder()
        .job_fn("interval", Schedule::every(huge), noop())
        .job_fn(
            "others",
            Schedule::every(Duration::from_secs(60))
                .initial_delay(huge)
                .timeout(huge)
                .cancel_grace(huge)
                .retry_backoff(huge),
            noop(),
        )
        .shutdown_grace(huge)
        .build()
        .unwrap_err();
    let mut found: Vec<(&str, &str)> = error
        .problems()
        .iter()
        .map(|problem| match problem {
            BuildProblem::InvalidSchedule { job, problem, .. } => (job.as_str(), problem.field),
            BuildProblem::InvalidHostSetting { problem } => ("host", problem.field),
            other => panic!("unexpected problem: {other}"),
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("host", "shutdown_grace"),
            ("interval", "interval"),
            ("others", "cancel_grace"),
            ("others", "initial_delay"),
            ("others", "retry_backoff"),
            ("others", "timeout"),
        ]
    );
    let message = error.to_string();
    let value = humantime::format_duration(huge).to_string();
    assert!(
        message.contains(&format!(
            "`interval`: is {value}, longer than the most allowed, 366days \
             (loopjob::limits::MAX_SCHEDULE_DURATION)"
        )),
        "{message}"
    );
    assert!(
        message.contains("host setting `shutdown_grace`: is "),
        "{message}"
    );
    assert!(message.contains("allowed, 1day (loopjob::limits::MAX_GRACE)"));
    // The bounds themselves are allowed.
    Host::builder()
        .job_fn(
            "at_the_bound",
            Schedule::every(MAX_SCHEDULE_DURATION)
                .initial_delay(MAX_SCHEDULE_DURATION)
                .timeout(MAX_SCHEDULE_DURATION)
                .cancel_grace(MAX_GRACE),
            noop(),
        )
        .shutdown_grace(MAX_GRACE)
        .build()
        .expect("the bounds are allowed");
}

#[test]
fn leadership_timing_has_sane_lower_and_upper_bounds() {
    use loopjob::{LeaderMode, Leadership};
    let problems = |leadership: Leadership| -> Vec<(&'static str, String)> {
        match leadership.validate() {
            Ok(()) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| (p.field, p.message)).collect(),
        }
    };
    let ms = Duration::from_millis;
    let global = || Leadership::new(LeaderMode::Global);

    // The example: a 3ms lease polled every nanosecond.
    let found = problems(
        global()
            .lease_ttl(ms(3))
            .retry_every(Duration::from_nanos(1)),
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "lease_ttl");
    assert!(
        found[0].1.contains(
            "is 3ms, shorter than the least allowed, 1s (loopjob::limits::MIN_LEASE_TTL)"
        ),
        "{found:?}"
    );
    assert_eq!(found[1].0, "retry_every");
    assert!(
        found[1]
            .1
            .contains("is 1ns, shorter than the least allowed, 10ms"),
        "{found:?}"
    );

    // Polling more than 100 times per ttl.
    let found = problems(
        global()
            .lease_ttl(Duration::from_secs(60))
            .with_renew_every(ms(500)),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "renew_every");
    assert!(
        found[0]
            .1
            .contains("shorter than the least allowed, 600ms (lease_ttl / 100"),
        "{found:?}"
    );

    // Upper bounds.
    let found = problems(global().lease_ttl(ages()));
    assert_eq!(found[0].0, "lease_ttl");
    assert!(
        found[0]
            .1
            .contains("allowed, 1day (loopjob::limits::MAX_LEASE_TTL)")
    );
    let found = problems(global().retry_every(ages()).priority(5000));
    let fields: Vec<_> = found.iter().map(|(field, _)| *field).collect();
    assert_eq!(fields, ["retry_every", "priority"], "{found:?}");
    assert!(
        found[0]
            .1
            .contains("allowed, 1h (loopjob::limits::MAX_RETRY_EVERY)")
    );
    assert!(
        found[1]
            .1
            .contains("is 5000, more than the most allowed, 1000")
    );

    // The edges are allowed.
    assert_eq!(
        problems(
            global()
                .lease_ttl(loopjob::limits::MIN_LEASE_TTL)
                .with_renew_every(ms(10))
                .retry_every(ms(10))
                .priority(1000)
        ),
        []
    );
    // And the host refuses them at build time, like the schedule's.
    let error = Host::builder()
        .job_fn("flood", Schedule::every(Duration::from_secs(1)), noop())
        .leadership("flood", global().lease_ttl(ms(3)))
        .store(std::sync::Arc::new(loopjob::store::MemoryStore::new()))
        .build()
        .unwrap_err();
    assert!(
        matches!(error.problems(), [BuildProblem::InvalidLeadership { job, problem, .. }]
            if job == "flood" && problem.field == "lease_ttl"),
        "{error}"
    );
}

#[test]
fn a_leadership_for_a_job_that_is_not_registered_is_an_error_with_a_suggestion() {
    use loopjob::{LeaderMode, Leadership};
    let error = Host::builder()
        .job_fn(
            "nightly_report",
            Schedule::every(Duration::from_secs(60)),
            noop(),
        )
        .leadership("nightly_reprot", Leadership::new(LeaderMode::Global))
        .leadership("something_else", Leadership::new(LeaderMode::Global))
        .store(std::sync::Arc::new(loopjob::store::MemoryStore::new()))
        .build()
        .unwrap_err();
    let found: Vec<_> = error
        .problems()
        .iter()
        .map(|problem| match problem {
            BuildProblem::UnknownJob {
                job, suggestion, ..
            } => (job.as_str(), suggestion.as_deref()),
            other => panic!("unexpected problem: {other}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            ("nightly_reprot", Some("nightly_report")),
            ("something_else", None)
        ]
    );
    let message = error.to_string();
    assert!(
        message.contains(
            "leadership is set for job `nightly_reprot`, which is not registered: did you mean \
             `nightly_report`?"
        ),
        "{message}"
    );
    assert!(
        message
            .contains("`something_else`, which is not registered: register it, or check the name"),
        "{message}"
    );
}
