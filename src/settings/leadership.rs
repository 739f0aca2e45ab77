//! Which replicas may run a job: [`Leadership`] and its [`LeaderMode`], as settings and the
//! derive attribute give them. The guard that enforces them lives elsewhere; this is plain data.

use std::time::Duration;

use crate::limits::{
    MAX_LEASE_TTL, MAX_POLLS_PER_TTL, MAX_PRIORITY, MAX_RETRY_EVERY, MIN_LEASE_POLL, MIN_LEASE_TTL,
    at_least, at_most,
};
use crate::schedule::{ScheduleProblem, humanize};

/// Which replicas run a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaderMode {
    /// Every replica runs the job.
    #[default]
    None,
    /// One replica per group runs it (lease key `{job}@{group}`).
    Cluster,
    /// One replica across all groups runs it (lease key `{job}`).
    Global,
    /// Every live replica runs it for a balanced share of `partitions` leases (`{job}#{p}`).
    Partitioned,
}

impl LeaderMode {
    /// The modes by the names settings use.
    pub(crate) const NAMES: [(&'static str, LeaderMode); 4] = [
        ("none", LeaderMode::None),
        ("cluster", LeaderMode::Cluster),
        ("global", LeaderMode::Global),
        ("partitioned", LeaderMode::Partitioned),
    ];
}

/// A job's leadership settings: its [`LeaderMode`] and lease timing.
///
/// ```
/// use std::time::Duration;
/// use loopjob::{LeaderMode, Leadership};
///
/// let leadership = Leadership::new(LeaderMode::Cluster).lease_ttl(Duration::from_secs(30));
/// assert_eq!(leadership.renew_every(), Duration::from_secs(10)); // ttl / 3 unless set
/// assert!(leadership.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leadership {
    /// Which replicas run the job. Default: [`LeaderMode::None`].
    pub mode: LeaderMode,
    /// How long a lease lasts unless renewed. Default: 15s.
    pub lease_ttl: Duration,
    /// How often a holder renews; `None` means `lease_ttl / 3`. Read it with
    /// [`Leadership::renew_every`].
    pub renew_every: Option<Duration>,
    /// How often a candidate retries to take a free lease. Default: 2s.
    pub retry_every: Duration,
    /// 0 is the highest: a candidate of priority p waits p·retry_every after a lease frees
    /// before trying. Default: 0.
    pub priority: u32,
    /// How many partition leases a partitioned job has: 1 to [`MAX_PARTITIONS`]. Default: 16.
    pub partitions: u32,
    /// How many runs the store keeps in each lease key's history (1 to 100,000); older runs
    /// are dropped as new ones start. Default: 100.
    pub history: u32,
}

/// The default `lease_ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// The default `retry_every`.
pub const DEFAULT_RETRY_EVERY: Duration = Duration::from_secs(2);
/// The default `partitions`.
pub const DEFAULT_PARTITIONS: u32 = 16;
/// The most `partitions` a partitioned job may have.
///
/// Acquiring, renewing and releasing partitions costs time in proportion to their number (a
/// node takes 10,000 free partitions in well under 0.1 s on the memory store, 0.1–0.3 s on SQLite),
/// but every partition is a row in the store renewed every `renew_every`, and a job that needs
/// more than this many units of work should map its work items onto partitions (`item %
/// partitions`) instead.
pub const MAX_PARTITIONS: u32 = 10_000;
/// The default `history`.
pub const DEFAULT_HISTORY: u32 = 100;
/// The largest `history`.
pub const MAX_HISTORY: u32 = 100_000;

impl Default for Leadership {
    fn default() -> Self {
        Leadership::new(LeaderMode::None)
    }
}

impl Leadership {
    /// Leadership in `mode` with default timing.
    pub fn new(mode: LeaderMode) -> Self {
        Leadership {
            mode,
            lease_ttl: DEFAULT_LEASE_TTL,
            renew_every: None,
            retry_every: DEFAULT_RETRY_EVERY,
            priority: 0,
            partitions: DEFAULT_PARTITIONS,
            history: DEFAULT_HISTORY,
        }
    }

    /// Sets [`Leadership::lease_ttl`].
    pub fn lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.lease_ttl = lease_ttl;
        self
    }

    /// Sets how often a holder renews (default: `lease_ttl / 3`).
    pub fn with_renew_every(mut self, renew_every: Duration) -> Self {
        self.renew_every = Some(renew_every);
        self
    }

    /// Sets [`Leadership::retry_every`].
    pub fn retry_every(mut self, retry_every: Duration) -> Self {
        self.retry_every = retry_every;
        self
    }

    /// Sets [`Leadership::priority`].
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets [`Leadership::partitions`].
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets [`Leadership::history`].
    pub fn history(mut self, history: u32) -> Self {
        self.history = history;
        self
    }

    /// How often a holder renews its leases: as set, or `lease_ttl / 3`.
    pub fn renew_every(&self) -> Duration {
        self.renew_every.unwrap_or(self.lease_ttl / 3)
    }

    /// Checks the rules between the fields and returns every broken one; each names the key
    /// as settings spell it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use loopjob::{LeaderMode, Leadership};
    ///
    /// let broken = Leadership::new(LeaderMode::Partitioned)
    ///     .partitions(0)
    ///     .with_renew_every(Duration::from_secs(20));
    /// let keys: Vec<_> = broken.validate().unwrap_err().iter().map(|p| p.field).collect();
    /// assert_eq!(keys, ["renew_every", "partitions"]);
    /// ```
    pub fn validate(&self) -> Result<(), Vec<ScheduleProblem>> {
        let mut problems = Vec::new();
        let problem = |field, message: String| ScheduleProblem { field, message };
        let ttl = self.lease_ttl;
        // Rules relative to the ttl are checked only on a ttl within its bounds.
        let ttl_ok = (MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&ttl);
        if ttl.is_zero() {
            problems.push(problem(
                "lease_ttl",
                "must be more than zero, e.g. \"15s\"".into(),
            ));
        } else if let Some(broken) = at_least(
            "lease_ttl",
            ttl,
            MIN_LEASE_TTL,
            "loopjob::limits::MIN_LEASE_TTL",
        )
        .or_else(|| at_most("lease_ttl", ttl, MAX_LEASE_TTL, "MAX_LEASE_TTL"))
        {
            problems.push(broken);
        } else if self.renew_every().is_zero() {
            problems.push(problem(
                "renew_every",
                "must be more than zero, e.g. \"5s\"".into(),
            ));
        } else if self.renew_every() >= ttl {
            problems.push(problem(
                "renew_every",
                format!(
                    "must be shorter than lease_ttl ({}): a lease would expire before its renewal \
                     (a third of the ttl is a good choice)",
                    humanize(ttl)
                ),
            ));
        } else if let Some(broken) = self.too_often("renew_every", self.renew_every(), true) {
            problems.push(broken);
        }
        if self.retry_every.is_zero() {
            problems.push(ScheduleProblem {
                field: "retry_every",
                message: "must be more than zero, e.g. \"2s\"".into(),
            });
        } else if let Some(broken) = self
            .too_often("retry_every", self.retry_every, ttl_ok)
            .or_else(|| {
                at_most(
                    "retry_every",
                    self.retry_every,
                    MAX_RETRY_EVERY,
                    "MAX_RETRY_EVERY",
                )
            })
        {
            problems.push(broken);
        }
        if self.priority > MAX_PRIORITY {
            problems.push(ScheduleProblem {
                field: "priority",
                message: format!(
                    "is {}, more than the most allowed, {MAX_PRIORITY} \
                     (loopjob::limits::MAX_PRIORITY); 0 is the highest",
                    self.priority
                ),
            });
        }
        if self.partitions == 0 {
            problems.push(ScheduleProblem {
                field: "partitions",
                message: "must be at least 1, e.g. 16".into(),
            });
        } else if self.partitions > MAX_PARTITIONS {
            problems.push(ScheduleProblem {
                field: "partitions",
                message: format!(
                    "is {}, more than the {MAX_PARTITIONS} a job may have: map your work items \
                     onto fewer partitions (item % partitions)",
                    self.partitions
                ),
            });
        }
        if !(1..=MAX_HISTORY).contains(&self.history) {
            problems.push(problem(
                "history",
                format!(
                    "must be 1 to {MAX_HISTORY} runs kept per lease key (default {DEFAULT_HISTORY}); found {}",
                    self.history
                ),
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// A problem if a store call every `every` would be absurdly often: more often than
    /// [`MIN_LEASE_POLL`], or (with `per_ttl`) more than [`MAX_POLLS_PER_TTL`] times per ttl.
    /// For `retry_every` that second bound is never more than [`DEFAULT_RETRY_EVERY`], so that
    /// the default fits a ttl of any length.
    fn too_often(
        &self,
        field: &'static str,
        every: Duration,
        per_ttl: bool,
    ) -> Option<ScheduleProblem> {
        let min_poll = "loopjob::limits::MIN_LEASE_POLL";
        at_least(field, every, MIN_LEASE_POLL, min_poll).or_else(|| {
            if !per_ttl {
                return None;
            }
            let per_ttl = self.lease_ttl / MAX_POLLS_PER_TTL;
            let by_default = field == "retry_every" && per_ttl > DEFAULT_RETRY_EVERY;
            let least = if by_default {
                DEFAULT_RETRY_EVERY
            } else {
                per_ttl
            };
            // The reason is written only for a problem: every job is checked at build.
            if every >= least {
                return None;
            }
            let why = if by_default {
                String::from("the default, for a lease_ttl this long")
            } else {
                format!(
                    "lease_ttl / {MAX_POLLS_PER_TTL}: at most {MAX_POLLS_PER_TTL} store calls \
                     per lease_ttl, see loopjob::limits::MAX_POLLS_PER_TTL"
                )
            };
            at_least(field, every, least, &why)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let leadership = Leadership::default();
        assert_eq!(leadership.mode, LeaderMode::None);
        assert_eq!(leadership.lease_ttl, Duration::from_secs(15));
        assert_eq!(leadership.renew_every(), Duration::from_secs(5));
        assert_eq!(leadership.retry_every, Duration::from_secs(2));
        assert_eq!(leadership.priority, 0);
        assert_eq!(leadership.partitions, 16);
        assert_eq!(leadership.history, 100);
        assert!(leadership.validate().is_ok());
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let broken = Leadership::new(LeaderMode::Global)
            .lease_ttl(Duration::from_secs(10))
            .with_renew_every(Duration::from_secs(10))
            .retry_every(Duration::ZERO)
            .partitions(0);
        let problems = broken.validate().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["renew_every", "retry_every", "partitions"]);
        assert!(problems[0].message.contains("shorter than lease_ttl (10s)"));
        let no_ttl = Leadership::default()
            .lease_ttl(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(no_ttl[0].field, "lease_ttl");
        for history in [0, 100_001] {
            let problems = Leadership::default()
                .history(history)
                .validate()
                .unwrap_err();
            assert_eq!(problems[0].field, "history");
            assert!(
                problems[0].message.contains("1 to 100000"),
                "{}",
                problems[0]
            );
        }
        assert!(Leadership::default().history(100_000).validate().is_ok());
    }

    #[test]
    fn partitions_are_bounded() {
        let at_bound = Leadership::new(LeaderMode::Partitioned).partitions(MAX_PARTITIONS);
        assert!(at_bound.validate().is_ok());
        let problems = at_bound
            .partitions(MAX_PARTITIONS + 1)
            .validate()
            .unwrap_err();
        assert_eq!(problems[0].field, "partitions");
        assert!(problems[0].message.contains("10000"), "{}", problems[0]);
    }
}
