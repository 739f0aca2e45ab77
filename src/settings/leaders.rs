//! The lease timing of a standalone [`LeaderElector`](crate::LeaderElector), from its section
//! `[loopjob.leaders.<name>]`: the leadership keys of a job, without `leader` and `partitions`
//! (an elector competes for one key).

use super::error::{Origin, SettingsProblem, unknown_key_message};
use super::leadership::{LeaderMode, Leadership};
use super::section::Section;
use super::value::{count, describe, duration};

/// The keys of a `[loopjob.leaders.<name>]` section.
pub const LEADER_KEYS: [&str; 4] = ["lease_ttl", "renew_every", "retry_every", "priority"];

/// The leadership a section gives over the defaults ([`LeaderMode::Global`]), checked; every
/// problem at its key.
pub(crate) fn read(section: &Section<'_>) -> Result<Leadership, Vec<SettingsProblem>> {
    let mut problems = Vec::new();
    let mut leadership = Leadership::new(LeaderMode::Global);
    let problem = |key: &str, message: String| {
        SettingsProblem::new(section.origin(key), section.path(), key, message)
    };
    for key in section.keys() {
        let Some(value) = section.get(key) else {
            continue;
        };
        let result = match key {
            "lease_ttl" => duration(value).map(|v| leadership.lease_ttl = v),
            "renew_every" => duration(value).map(|v| leadership.renew_every = Some(v)),
            "retry_every" => duration(value).map(|v| leadership.retry_every = v),
            "priority" => count(value).map(|v| leadership.priority = v),
            _ => Err(unknown_key_message(key, LEADER_KEYS)),
        };
        if let Err(message) = result {
            problems.push(problem(key, message));
        }
    }
    if problems.is_empty() {
        for rule in leadership.validate().err().into_iter().flatten() {
            problems.push(match section.get(rule.field) {
                Some(value) => problem(
                    rule.field,
                    format!("{}; found {}", rule.message, describe(value)),
                ),
                // A rule on a default, broken by another key (renew_every by lease_ttl).
                None => SettingsProblem::new(
                    match rule.field {
                        "renew_every" => section.origin("lease_ttl"),
                        _ => Origin::Code,
                    },
                    section.path(),
                    rule.field,
                    format!("`{}` {}", rule.field, rule.message),
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(leadership)
    } else {
        Err(problems)
    }
}
