//! A job's section: its schedule and leadership keys applied over the values from its code,
//! its unknown keys found, and every rule checked, each problem at the key that caused it.

use std::collections::BTreeSet;

use config::Value;

use super::error::{Origin, SettingsProblem, unknown_key_message};
use super::leadership::{LeaderMode, Leadership};
use super::options::OptionKeys;
use super::section::Section;
use super::value::{boolean, count, describe, duration, one_of, optional_duration};
use crate::schedule::{Cadence, CatchUp, MissedTicks, Schedule, ScheduleMode, ScheduleProblem};

/// The schedule keys of a job section, as [`Schedule`]'s fields are named.
pub const SCHEDULE_KEYS: [&str; 16] = [
    "interval",
    "cron",
    "timezone",
    "initial_delay",
    "mode",
    "skip_if_running",
    "max_overlap",
    "missed_ticks",
    "catch_up",
    "jitter",
    "align",
    "timeout",
    "cancel_grace",
    "retries",
    "retry_backoff",
    "enabled",
];

/// The leadership keys of a job section.
pub const LEADERSHIP_KEYS: [&str; 7] = [
    "leader",
    "lease_ttl",
    "renew_every",
    "retry_every",
    "priority",
    "partitions",
    "history",
];

/// When a rule between two keys breaks and only one of them was set, the one to blame.
const RELATED: [(&str, &str); 9] = [
    ("retry_backoff", "interval"),
    ("renew_every", "lease_ttl"),
    ("retry_every", "lease_ttl"),
    ("jitter", "cron"),
    ("retry_backoff", "cron"),
    ("mode", "cron"),
    ("align", "cron"),
    ("missed_ticks", "cron"),
    ("timezone", "cron"),
];

/// The keys that say when a job ticks; a section gives one of them at most.
const CADENCE_KEYS: [&str; 2] = ["interval", "cron"];

pub(crate) fn is_framework_key(key: &str) -> bool {
    SCHEDULE_KEYS.contains(&key) || LEADERSHIP_KEYS.contains(&key)
}

/// A job's schedule and leadership once its section is applied; see
/// [`Settings::job`](super::Settings::job).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobSettings {
    /// When the job runs.
    pub schedule: Schedule,
    /// Which replicas run it.
    pub leadership: Leadership,
}

/// Applies `section` over the values from the job's code. Returns the result, or every
/// problem: unknown keys (with a suggestion), values of the wrong form, and broken rules.
///
/// A value that is wrong is reported and not applied, so a rule between keys is reported
/// once, at the key that was set.
pub(crate) fn resolve(
    section: &Section<'_>,
    code_schedule: &Schedule,
    code_leadership: &Leadership,
    options: OptionKeys,
) -> Result<JobSettings, Vec<SettingsProblem>> {
    let mut problems = Vec::new();
    let keys = section.keys();
    for &key in &keys {
        if is_framework_key(key) {
            continue;
        }
        if let OptionKeys::Fields(fields) = options {
            if !fields.contains(&key) {
                let known = SCHEDULE_KEYS
                    .iter()
                    .chain(&LEADERSHIP_KEYS)
                    .chain(fields)
                    .copied();
                problems.push(problem(section, key, unknown_key_message(key, known)));
            }
        }
    }

    let mut rejected = BTreeSet::new();
    if CADENCE_KEYS.iter().all(|key| section.get(key).is_some()) {
        for key in CADENCE_KEYS {
            let message = "`cron` and `interval` are exclusive: a job runs every interval or at \
                           the times of a cron expression; keep one of the two keys"
                .to_owned();
            problems.push(problem(section, key, message));
            rejected.insert(key);
        }
    }
    let mut scratch = (code_schedule.clone(), code_leadership.clone());
    let exclusive = rejected.clone();
    for &key in keys
        .iter()
        .filter(|key| is_framework_key(key) && !exclusive.contains(*key))
    {
        if let Some(value) = section.get(key) {
            if let Err(message) = set(key, value, &mut scratch.0, &mut scratch.1) {
                problems.push(problem(section, key, message));
                rejected.insert(key);
            }
        }
    }

    // Apply what parsed, check the rules, and take back each value that breaks one, until
    // what is left is consistent: every broken rule is reported once, at its own key.
    loop {
        let mut schedule = code_schedule.clone();
        let mut leadership = code_leadership.clone();
        for &key in keys
            .iter()
            .filter(|key| is_framework_key(key) && !rejected.contains(*key))
        {
            if let Some(value) = section.get(key) {
                // Parsed once already; cannot fail now.
                let _ = set(key, value, &mut schedule, &mut leadership);
            }
        }
        let broken: Vec<ScheduleProblem> = [schedule.validate(), leadership.validate()]
            .into_iter()
            .filter_map(Result::err)
            .flatten()
            .collect();
        let blamed: Vec<(&ScheduleProblem, &str)> = broken
            .iter()
            .filter_map(|rule| Some((rule, blame(section, rule.field, &rejected)?)))
            .collect();
        if blamed.is_empty() {
            // What is left was broken by the code's own values. The host checks the schedule
            // from code; the leadership it adds is checked here.
            // (A rule on a key settings set was reported with that key.)
            let from_code = |rule: &&ScheduleProblem| {
                LEADERSHIP_KEYS.contains(&rule.field) && !touched(section, rule.field)
            };
            for rule in broken.iter().filter(from_code) {
                let message = format!("{} (the job's code gives this value)", rule.message);
                problems.push(SettingsProblem::new(
                    Origin::Code,
                    section.path(),
                    rule.field,
                    message,
                ));
            }
            return if problems.is_empty() {
                Ok(JobSettings {
                    schedule,
                    leadership,
                })
            } else {
                Err(problems)
            };
        }
        for (rule, key) in blamed {
            if !rejected.insert(key) {
                continue; // two rules blamed on one key: report it once
            }
            let found = section.get(key).map(describe).unwrap_or_default();
            let message = if key == rule.field {
                format!("{}; found {found}", rule.message)
            } else {
                format!("`{}` {}; this key is {found}", rule.field, rule.message)
            };
            problems.push(problem(section, key, message));
        }
    }
}

/// The key of `section` that a broken rule on `field` is to be blamed on: the field if settings
/// set it (unless already reported), else a related key that settings set.
fn blame<'a>(section: &Section<'a>, field: &'a str, rejected: &BTreeSet<&str>) -> Option<&'a str> {
    if section.get(field).is_some() {
        return (!rejected.contains(field)).then_some(field);
    }
    RELATED
        .iter()
        .filter(|(of, _)| *of == field)
        .map(|(_, key)| *key)
        .find(|key| section.get(key).is_some() && !rejected.contains(key))
}

/// Whether settings set `field` or a key related to it.
fn touched(section: &Section<'_>, field: &str) -> bool {
    section.get(field).is_some()
        || RELATED
            .iter()
            .any(|(of, key)| *of == field && section.get(key).is_some())
}

fn problem(section: &Section<'_>, key: &str, message: String) -> SettingsProblem {
    SettingsProblem::new(section.origin(key), section.path(), key, message)
}

/// Sets one schedule or leadership key from its value.
fn set(
    key: &str,
    value: &Value,
    schedule: &mut Schedule,
    leadership: &mut Leadership,
) -> Result<(), String> {
    match key {
        "interval" => schedule.cadence = Cadence::Every(duration(value)?),
        "cron" => set_cron(value, schedule)?,
        "timezone" => set_timezone(value, schedule)?,
        "catch_up" => {
            schedule.catch_up = one_of(value, &[("once", CatchUp::Once), ("skip", CatchUp::Skip)])?
        }
        "initial_delay" => schedule.initial_delay = duration(value)?,
        "mode" => {
            schedule.mode = one_of(
                value,
                &[
                    ("fixed_rate", ScheduleMode::FixedRate),
                    ("fixed_delay", ScheduleMode::FixedDelay),
                ],
            )?
        }
        "skip_if_running" => schedule.skip_if_running = boolean(value)?,
        "max_overlap" => schedule.max_overlap = count(value)?,
        "missed_ticks" => {
            schedule.missed_ticks = one_of(
                value,
                &[("skip", MissedTicks::Skip), ("delay", MissedTicks::Delay)],
            )?
        }
        "jitter" => schedule.jitter = duration(value)?,
        "align" => schedule.align = boolean(value)?,
        "timeout" => schedule.timeout = optional_duration(value)?,
        "cancel_grace" => schedule.cancel_grace = duration(value)?,
        "retries" => schedule.retries = count(value)?,
        "retry_backoff" => schedule.retry_backoff = duration(value)?,
        "enabled" => schedule.enabled = boolean(value)?,
        "leader" => leadership.mode = one_of(value, &LeaderMode::NAMES)?,
        "lease_ttl" => leadership.lease_ttl = duration(value)?,
        "renew_every" => leadership.renew_every = Some(duration(value)?),
        "retry_every" => leadership.retry_every = duration(value)?,
        "priority" => leadership.priority = count(value)?,
        "partitions" => leadership.partitions = count(value)?,
        "history" => leadership.history = count(value)?,
        _ => {}
    }
    Ok(())
}

/// `cron = "…"`: the job runs at the expression's times, in the time zone the code gave (UTC by
/// default; `timezone` changes it).
#[cfg(feature = "cron")]
fn set_cron(value: &Value, schedule: &mut Schedule) -> Result<(), String> {
    let expression = text(value)?;
    let timezone = schedule
        .cron_schedule()
        .map_or_else(|| "UTC".to_owned(), |cron| cron.timezone().to_owned());
    let cron = Schedule::cron(expression).timezone(timezone).cadence;
    let problem = match &cron {
        Cadence::Cron(cron) => cron
            .problems()
            .into_iter()
            .find(|problem| problem.field == "cron"),
        Cadence::Every(_) => None,
    };
    // Set even when broken, so that a `timezone` beside it is read as a cron job's.
    schedule.cadence = cron;
    match problem {
        Some(problem) => Err(problem.message),
        None => Ok(()),
    }
}

/// `timezone = "…"`: the zone a cron expression is read in.
#[cfg(feature = "cron")]
fn set_timezone(value: &Value, schedule: &mut Schedule) -> Result<(), String> {
    let name = text(value)?;
    let Cadence::Cron(cron) = &mut schedule.cadence else {
        return Err(
            "applies to a cron schedule only, and this job runs on an `interval`: give `cron` \
             too, or remove `timezone`"
                .into(),
        );
    };
    cron.set_timezone(name);
    match cron
        .problems()
        .into_iter()
        .find(|problem| problem.field == "timezone")
    {
        Some(problem) => Err(problem.message),
        None => Ok(()),
    }
}

#[cfg(not(feature = "cron"))]
fn set_cron(_: &Value, _: &mut Schedule) -> Result<(), String> {
    Err(NEEDS_CRON_FEATURE.into())
}

#[cfg(not(feature = "cron"))]
fn set_timezone(_: &Value, _: &mut Schedule) -> Result<(), String> {
    Err(NEEDS_CRON_FEATURE.into())
}

#[cfg(not(feature = "cron"))]
const NEEDS_CRON_FEATURE: &str = "cron schedules need loopjob's `cron` feature: add `features = [\"cron\"]` to the loopjob \
     dependency in Cargo.toml";

/// A value that must be a string (a cron expression, a time zone's name).
#[cfg(feature = "cron")]
fn text(value: &Value) -> Result<String, String> {
    match &value.kind {
        config::ValueKind::String(text) => Ok(text.clone()),
        _ => Err(format!("expected a string, found {}", describe(value))),
    }
}
