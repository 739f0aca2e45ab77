//! Helpers shared by the settings tests: load TOML and variables, build a host on them, and
//! read where a problem is.

#![allow(dead_code)] // each test binary uses some of them

use std::time::Duration;

use loopjob::settings::Origin;
use loopjob::{BuildProblem, Host, Schedule, Settings, SettingsProblem};

pub const SEC: Duration = Duration::from_secs(1);

/// Settings from TOML text loaded as `app.toml`, then the variables.
pub fn load(toml: &str, env: &[(&str, &str)]) -> Settings {
    Settings::loader()
        .toml("app.toml", toml)
        .env_vars(env.iter().copied())
        .load()
        .expect("the sources parse")
}

/// The problems `build()` reports for a job `cleanup` (every 1h in code); each must be a
/// settings problem.
pub fn build_problems(settings: Settings) -> Vec<SettingsProblem> {
    let error = Host::builder()
        .settings(settings)
        .job_fn("cleanup", Schedule::every(3600 * SEC), |_| async { Ok(()) })
        .build()
        .expect_err("the settings are wrong");
    error
        .problems()
        .iter()
        .map(|problem| match problem {
            BuildProblem::Settings(problem) => problem.clone(),
            other => panic!("not a settings problem: {other}"),
        })
        .collect()
}

/// The line of a problem in a file, if it has one.
pub fn line_of(problem: &SettingsProblem) -> Option<usize> {
    match problem.origin {
        Origin::File { line, .. } => line,
        _ => None,
    }
}
