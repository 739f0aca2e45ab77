//! Which replicas may run a job: [`Leadership`] and its [`LeaderMode`], as settings and the
//! derive attribute give them. The guard that enforces them lives elsewhere; this is plain data.

use std::time::Duration;

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
    /// How many partition leases a partitioned job has. Default: 16.
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
        let mut problem =
            |field, message: String| problems.push(ScheduleProblem { field, message });
        if self.lease_ttl.is_zero() {
            problem("lease_ttl", "must be more than zero, e.g. \"15s\"".into());
        } else if self.renew_every().is_zero() {
            problem("renew_every", "must be more than zero, e.g. \"5s\"".into());
        } else if self.renew_every() >= self.lease_ttl {
            problem(
                "renew_every",
                format!(
                    "must be shorter than lease_ttl ({}): a lease would expire before its renewal \
                     (a third of the ttl is a good choice)",
                    humanize(self.lease_ttl)
                ),
            );
        }
        if self.retry_every.is_zero() {
            problem("retry_every", "must be more than zero, e.g. \"2s\"".into());
        }
        if self.partitions == 0 {
            problem("partitions", "must be at least 1, e.g. 16".into());
        }
        if !(1..=MAX_HISTORY).contains(&self.history) {
            problem(
                "history",
                format!(
                    "must be 1 to {MAX_HISTORY} runs kept per lease key (default {DEFAULT_HISTORY}); found {}",
                    self.history
                ),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
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
}
