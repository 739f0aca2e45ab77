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
