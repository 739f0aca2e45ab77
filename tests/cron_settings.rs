//! Cron schedules from settings and from the derive attribute: the keys, their rules, and the
//! messages for bad input.
#![cfg(feature = "cron")]

use std::time::Duration;

use loopjob::{CatchUp, Leadership, LoopJob, Schedule, Settings, SettingsProblem};

fn job(toml: &str, code: &Schedule) -> Result<Schedule, Vec<SettingsProblem>> {
    let settings = Settings::from_toml_str(toml).expect("the TOML parses");
    settings
        .job("nightly", code, &Leadership::default())
        .map(|job| job.schedule)
        .map_err(|error| error.problems().to_vec())
}

fn keys_and_messages(problems: &[SettingsProblem]) -> Vec<(String, String)> {
    problems
        .iter()
        .map(|problem| (problem.key.clone(), problem.message.clone()))
        .collect()
}

const HOURLY: Duration = Duration::from_secs(3600);

#[test]
fn cron_and_timezone_are_read() {
    let schedule = job(
        "[jobs.nightly]\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\ncatch_up = \"skip\"\n",
        &Schedule::every(HOURLY),
    )
    .unwrap();
    let expected = Schedule::cron("30 2 * * *")
        .timezone("Europe/Berlin")
        .catch_up(CatchUp::Skip);
    assert_eq!(schedule, expected);
}

#[test]
fn settings_replace_the_cadence_of_the_code_and_keep_its_zone() {
    let code = Schedule::cron("0 3 * * *").timezone("America/New_York");
    // `cron` alone keeps the zone the code gave.
    let schedule = job("[jobs.nightly]\ncron = \"0 4 * * *\"\n", &code).unwrap();
    assert_eq!(
        schedule,
        Schedule::cron("0 4 * * *").timezone("America/New_York")
    );
    // `timezone` alone moves the code's expression.
    let schedule = job("[jobs.nightly]\ntimezone = \"Asia/Kathmandu\"\n", &code).unwrap();
    assert_eq!(
        schedule,
        Schedule::cron("0 3 * * *").timezone("Asia/Kathmandu")
    );
    // `interval` turns it into an interval job.
    let schedule = job("[jobs.nightly]\ninterval = \"1h\"\n", &code).unwrap();
    assert_eq!(schedule, Schedule::every(HOURLY));
}

#[test]
fn cron_and_interval_together_is_an_error_naming_both() {
    let problems = job(
        "[jobs.nightly]\ncron = \"30 2 * * *\"\ninterval = \"1h\"\n",
        &Schedule::every(HOURLY),
    )
    .unwrap_err();
    let found = keys_and_messages(&problems);
    let mut keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["cron", "interval"], "{found:?}");
    for (_, message) in &found {
        assert!(
            message.contains("`cron` and `interval` are exclusive"),
            "{found:?}"
        );
    }
}

#[test]
fn bad_expressions_and_zones_are_reported_at_their_keys() {
    let problems = job(
        "[jobs.nightly]\ncron = \"61 2 * * *\"\ntimezone = \"Europe/Berln\"\n",
        &Schedule::every(HOURLY),
    )
    .unwrap_err();
    assert_eq!(
        keys_and_messages(&problems),
        [
            (
                "cron".to_owned(),
                "minute: 61 is out of range 0–59".to_owned()
            ),
            (
                "timezone".to_owned(),
                "`Europe/Berln` is not a known time zone; did you mean `Europe/Berlin`?".to_owned()
            ),
        ]
    );
    let problems = job(
        "[jobs.nightly]\ncron = \"0 0 30 2 *\"\n",
        &Schedule::every(HOURLY),
    )
    .unwrap_err();
    assert!(problems[0].message.contains("never fires"), "{problems:?}");
    let problems = job("[jobs.nightly]\ncron = 5\n", &Schedule::every(HOURLY)).unwrap_err();
    assert_eq!(problems[0].message, "expected a string, found the number 5");
}

#[test]
fn a_timezone_needs_a_cron_expression() {
    let problems = job(
        "[jobs.nightly]\ntimezone = \"Europe/Berlin\"\n",
        &Schedule::every(HOURLY),
    )
    .unwrap_err();
    assert_eq!(problems[0].key, "timezone");
    assert!(
        problems[0]
            .message
            .contains("applies to a cron schedule only"),
        "{problems:?}"
    );
}

#[test]
fn keys_that_only_mean_something_on_an_interval_are_blamed_on_cron() {
    let code = Schedule::every(HOURLY).jitter(Duration::from_secs(120));
    let problems = job("[jobs.nightly]\ncron = \"* * * * *\"\n", &code).unwrap_err();
    assert_eq!(problems[0].key, "cron");
    assert!(
        problems[0]
            .message
            .contains("`jitter` is 2m, not shorter than 1m"),
        "{problems:?}"
    );
}

#[derive(LoopJob)]
#[loopjob(
    cron = "0 30 2 * * *",
    timezone = "Europe/Berlin",
    catch_up = "skip",
    retries = 1
)]
struct Nightly;

impl Nightly {
    async fn execute(&self, _ctx: &loopjob::JobContext) -> Result<(), loopjob::JobError> {
        Ok(())
    }
}

#[test]
fn the_derive_attribute_takes_cron_timezone_and_catch_up() {
    let expected = Schedule::cron("0 30 2 * * *")
        .timezone("Europe/Berlin")
        .catch_up(CatchUp::Skip)
        .retries(1);
    assert_eq!(Nightly.schedule(), expected);
    assert!(Nightly.schedule().validate().is_ok());
}
