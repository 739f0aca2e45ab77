//! Why a host cannot be built: [`BuildError`] and its [`BuildProblem`]s.

use std::fmt;
use std::panic::Location;

use crate::schedule::ScheduleProblem;
use crate::settings::{LeaderMode, SettingsProblem};

/// Why a [`HostBuilder`](crate::HostBuilder) could not build: every problem found, each naming the job and field.
#[derive(Debug, thiserror::Error)]
#[error("{}", ProblemList(.problems))]
pub struct BuildError {
    pub(super) problems: Vec<BuildProblem>,
}

impl BuildError {
    /// Every problem found.
    pub fn problems(&self) -> &[BuildProblem] {
        &self.problems
    }
}

/// One reason a host cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildProblem {
    /// A job's schedule breaks a rule.
    #[error("job `{job}` (registered at {registered_at}): schedule {problem}")]
    InvalidSchedule {
        /// The job's name.
        job: String,
        /// The broken rule.
        problem: ScheduleProblem,
        /// Where the job was registered.
        registered_at: &'static Location<'static>,
    },
    /// A setting is wrong: the problem names its origin (file and line, or variable), its
    /// section and its key.
    #[error(transparent)]
    Settings(SettingsProblem),
    /// A job's leadership settings break a rule.
    #[error("job `{job}` (registered at {registered_at}): leadership {problem}")]
    InvalidLeadership {
        /// The job's name.
        job: String,
        /// The broken rule.
        problem: ScheduleProblem,
        /// Where the job was registered.
        registered_at: &'static Location<'static>,
    },
    /// A guarded job, but no lease store to elect its leader through.
    #[error(
        "job `{job}` has leader = {mode:?} but the host has no lease store: set one with \
         `HostBuilder::store` (or `store = \"sqlite://…\"` in settings), or use leader = none"
    )]
    MissingStore {
        /// The job's name.
        job: String,
        /// Its leader mode.
        mode: LeaderMode,
    },
    /// A per-job setting on the builder (such as [`HostBuilder::leadership`](crate::HostBuilder::leadership)) names a job
    /// that is not registered.
    #[error(
        "{setting} is set for job `{job}`, which is not registered{}",
        match suggestion {
            Some(name) => format!(": did you mean `{name}`?"),
            None => ": register it, or check the name".to_owned(),
        }
    )]
    UnknownJob {
        /// The name given.
        job: String,
        /// What was set for it: `leadership`.
        setting: &'static str,
        /// The registered job whose name is closest, if one is close.
        suggestion: Option<String>,
    },
    /// A per-job setting on the builder names a discovered job, which takes its settings
    /// from its attribute and its settings section instead.
    #[error(
        "{setting} is set on the builder for job `{job}`, which is discovered: set it in the \
         job's #[loopjob(...)] attribute or its settings section, or register the job with \
         `HostBuilder::job`"
    )]
    DiscoveredJob {
        /// The name given.
        job: String,
        /// What was set for it: `leadership`.
        setting: &'static str,
    },
    /// A host-wide setting given in code breaks a rule (settings report theirs as
    /// [`BuildProblem::Settings`]).
    #[error("host setting {problem}")]
    InvalidHostSetting {
        /// The broken rule.
        problem: ScheduleProblem,
    },
    /// Two jobs share one name.
    #[error(
        "two jobs are named `{name}`, registered at {first} and at {second}: job names must be unique, rename one"
    )]
    DuplicateName {
        /// The shared name.
        name: String,
        /// Where the first was registered.
        first: &'static Location<'static>,
        /// Where the second was registered.
        second: &'static Location<'static>,
    },
    /// `max_parallel_runs` is zero, so no run could ever start.
    #[error(
        "max_parallel_runs is 0, so no job could ever run: set at least 1, or leave it unset for no limit"
    )]
    NoRunSlots,
    /// A job's name is empty.
    #[error("a job registered at {registered_at} has an empty name: give it one")]
    EmptyName {
        /// Where the job was registered.
        registered_at: &'static Location<'static>,
    },
    /// The admin endpoint cannot listen on its address (feature `admin`).
    #[cfg(feature = "admin")]
    #[error(
        "the admin endpoint cannot listen on {address}: {reason}; choose another address or port"
    )]
    AdminBind {
        /// The address asked for.
        address: std::net::SocketAddr,
        /// Why it cannot listen there.
        reason: String,
    },
}

struct ProblemList<'a>(&'a [BuildProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(
            f,
            "cannot start: {count} problem{}",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}
