//! The bounds every duration and count of a job is checked against, in one place.
//!
//! [`Schedule::validate`](crate::Schedule::validate), [`Leadership::validate`] and
//! [`HostBuilder::build`](crate::HostBuilder::build) refuse a value outside its bounds, whether
//! it came from code, the derive attribute, a settings file or the environment; the message
//! names the key, the value and the bound. The upper bounds keep every deadline far from the
//! limits of the clock (an `interval` of `"500000000000y"` cannot be added to an instant);
//! the lower bounds of the lease timing keep a typo from flooding the store and the log.
//!
//! | key | bounds |
//! |---|---|
//! | `interval`, `initial_delay`, `jitter`, `timeout`, `retry_backoff` | at most [`MAX_SCHEDULE_DURATION`] (366 days) |
//! | `cancel_grace`, `shutdown_grace` | at most [`MAX_GRACE`] (1 day) |
//! | `lease_ttl` | from [`MIN_LEASE_TTL`] (1s) to [`MAX_LEASE_TTL`] (1 day) |
//! | `renew_every` | at least [`MIN_LEASE_POLL`] (10ms) and `lease_ttl / `[`MAX_POLLS_PER_TTL`] (100), shorter than `lease_ttl` |
//! | `retry_every` | at least [`MIN_LEASE_POLL`] and `lease_ttl / `[`MAX_POLLS_PER_TTL`] (but never more than the default, 2s, is asked), at most [`MAX_RETRY_EVERY`] (1 hour) |
//! | `priority` | at most [`MAX_PRIORITY`] (1000) |
//!
//! [`Leadership::validate`]: crate::Leadership::validate

use std::time::Duration;

use crate::schedule::{ScheduleProblem, humanize};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The longest `interval`, `initial_delay`, `jitter`, `timeout` and `retry_backoff`: 366 days,
/// so that a yearly job fits, leap years included.
pub const MAX_SCHEDULE_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The longest `cancel_grace` and `shutdown_grace`: one day.
pub const MAX_GRACE: Duration = DAY;

/// The shortest `lease_ttl`: one second. A shorter lease would expire within the round trips
/// and clock resolution of a database, and its safety margin (a tenth of the ttl) would be
/// smaller than a scheduling hiccup.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// The longest `lease_ttl`: one day. A crashed leader holds its jobs for up to one ttl.
pub const MAX_LEASE_TTL: Duration = DAY;

/// The shortest `renew_every` and `retry_every`: 10 milliseconds.
pub const MIN_LEASE_POLL: Duration = Duration::from_millis(10);

/// `renew_every` and `retry_every` are at least `lease_ttl / MAX_POLLS_PER_TTL`: no more than
/// this many store calls per key and ttl.
pub const MAX_POLLS_PER_TTL: u32 = 100;

/// The longest `retry_every`: one hour. A candidate waits `priority · retry_every` after a lease
/// frees, so this also bounds that wait.
pub const MAX_RETRY_EVERY: Duration = Duration::from_secs(3600);

/// The largest `priority` (0 is the highest).
pub const MAX_PRIORITY: u32 = 1000;

/// A problem if `value` of `field` is longer than `max`; the message names the value, the bound
/// and the constant that holds it.
pub(crate) fn at_most(
    field: &'static str,
    value: Duration,
    max: Duration,
    constant: &str,
) -> Option<ScheduleProblem> {
    (value > max).then(|| ScheduleProblem {
        field,
        message: format!(
            "is {}, longer than the most allowed, {} (loopjob::limits::{constant})",
            humanize(value),
            bound(max)
        ),
    })
}

/// A problem if `value` of `field` is shorter than `min`; `why` says where the bound comes
/// from.
pub(crate) fn at_least(
    field: &'static str,
    value: Duration,
    min: Duration,
    why: &str,
) -> Option<ScheduleProblem> {
    (value < min).then(|| ScheduleProblem {
        field,
        message: format!(
            "is {}, shorter than the least allowed, {} ({why})",
            humanize(value),
            bound(min)
        ),
    })
}

/// A bound as its constant is written: `366days`, not humantime's `1year 18h`.
fn bound(bound: Duration) -> String {
    if !bound.is_zero() && bound.as_nanos() % DAY.as_nanos() == 0 {
        let days = bound.as_secs() / DAY.as_secs();
        format!("{days}day{}", if days == 1 { "" } else { "s" })
    } else {
        humanize(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_value_and_the_bound() {
        let problem = at_most("interval", 400 * DAY, MAX_SCHEDULE_DURATION, "MAX_X").unwrap();
        assert_eq!(problem.field, "interval");
        assert!(
            problem.message.contains("is 1year 1month"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("allowed, 366days (loopjob"),
            "{}",
            problem.message
        );
        assert!(problem.message.contains("loopjob::limits::MAX_X"));
        assert!(
            at_most(
                "interval",
                MAX_SCHEDULE_DURATION,
                MAX_SCHEDULE_DURATION,
                "X"
            )
            .is_none()
        );
        let problem = at_least("lease_ttl", Duration::from_millis(3), MIN_LEASE_TTL, "why");
        assert!(
            problem
                .unwrap()
                .message
                .contains("is 3ms, shorter than the least allowed, 1s")
        );
    }
}
