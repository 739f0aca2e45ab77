//! The tick arithmetic of an interval schedule: the first tick, the next one on a fixed-rate
//! grid or after a fixed-delay run, jitter, and when a retry may start.
//!
//! Pure: each function takes the instants it needs. A cron schedule's timing is in
//! [`super::cron`]; these functions are for interval schedules (`Cadence::Every`).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{MissedTicks, Schedule};

impl Schedule {
    /// The instant of the first tick for a job started at `start`, when the wall clock read
    /// `wall_at_start`.
    ///
    /// With `align`, the tick is moved forward to the next instant at which the wall clock is a
    /// whole multiple of `interval` since the Unix epoch (a tick that already falls on one stays).
    pub fn first_tick(&self, start: Instant, wall_at_start: SystemTime) -> Instant {
        let first = after(start, self.initial_delay);
        if !self.align {
            return first;
        }
        let Some(wall_at_first) = wall_at_start.checked_add(self.initial_delay) else {
            return first;
        };
        let since_epoch = wall_at_first
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let remainder = nanos(since_epoch) % nanos(self.tick_interval()).max(1);
        if remainder == 0 {
            first
        } else {
            after(first, from_nanos(nanos(self.tick_interval()) - remainder))
        }
    }

    /// The fixed-rate tick that follows `previous`, as seen at `now`.
    ///
    /// Returns the next tick and how many ticks were missed on the way (zero unless `now` is
    /// already past `previous + interval`). A tick that falls exactly on `now` is due, not missed.
    pub fn next_fixed_rate_tick(&self, previous: Instant, now: Instant) -> NextTick {
        let due = after(previous, self.tick_interval());
        if due >= now {
            return NextTick { at: due, missed: 0 };
        }
        match self.missed_ticks {
            MissedTicks::Skip => {
                // Smallest k ≥ 1 with previous + k·interval ≥ now; ticks 1..k were missed.
                let behind = nanos(now - previous);
                let step = nanos(self.tick_interval()).max(1);
                let k = behind.div_ceil(step);
                NextTick {
                    at: after(previous, from_nanos(k.saturating_mul(step))),
                    missed: saturating_u64(k - 1),
                }
            }
            MissedTicks::Delay => {
                let step = nanos(self.tick_interval()).max(1);
                let missed = nanos(now - previous) / step;
                NextTick {
                    at: after(now, self.tick_interval()),
                    missed: saturating_u64(missed),
                }
            }
        }
    }

    /// The tick after a fixed-delay run that ended at `ended`.
    pub fn next_fixed_delay_tick(&self, ended: Instant) -> Instant {
        after(ended, self.tick_interval())
    }

    /// The instant at which a tick scheduled at `tick` actually fires, given a random
    /// `fraction` in `[0, 1]` (the supervisor draws it per tick).
    pub fn jittered(&self, tick: Instant, fraction: f64) -> Instant {
        let fraction = fraction.clamp(0.0, 1.0);
        // In seconds as a float, so that no jitter, however long, overflows the product.
        let extra = Duration::try_from_secs_f64(self.jitter.as_secs_f64() * fraction)
            .unwrap_or(self.jitter);
        after(tick, extra)
    }

    /// When retry number `retry` (1 for the first) of a run that failed at `failed_at` should
    /// start, or `None` when no retries are left or the retry would not start before
    /// `next_tick`.
    ///
    /// The backoff doubles with each retry: `retry_backoff · 2^(retry-1)`.
    pub fn retry_at(
        &self,
        retry: u32,
        failed_at: Instant,
        next_tick: Option<Instant>,
    ) -> Option<Instant> {
        if retry == 0 || retry > self.retries {
            return None;
        }
        let factor = 1u32.checked_shl(retry - 1)?;
        let at = failed_at.checked_add(self.retry_backoff.checked_mul(factor)?)?;
        match next_tick {
            Some(next) if at >= next => None,
            _ => Some(at),
        }
    }
}

/// The result of [`Schedule::next_fixed_rate_tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextTick {
    /// When the next tick is due.
    pub at: Instant,
    /// How many ticks were missed (not run) before it.
    pub missed: u64,
}

/// How far ahead the schedule arithmetic reaches: about thirty years, which stands for "never"
/// (tokio's own timers treat anything past two years or so the same way).
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `instant + duration`, saturating at [`FAR_FUTURE`] after `instant`: the add every deadline
/// and tick in loopjob goes through, so no duration, however large, can make one overflow.
/// (Should even `instant + FAR_FUTURE` not be representable, `instant` itself.)
pub(crate) fn after(instant: Instant, duration: Duration) -> Instant {
    instant
        .checked_add(duration.min(FAR_FUTURE))
        .unwrap_or(instant)
}

fn nanos(duration: Duration) -> u128 {
    duration.as_nanos()
}

fn from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits.
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

fn saturating_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn schedule(interval_secs: u32) -> Schedule {
        Schedule::every(interval_secs * SEC)
    }

    #[test]
    fn no_duration_overflows_the_tick_arithmetic() {
        let now = Instant::now();
        let never = now + FAR_FUTURE;
        assert_eq!(after(now, Duration::MAX), never);
        assert_eq!(after(now, 10 * SEC), now + 10 * SEC);
        let huge = Schedule::every(Duration::MAX)
            .initial_delay(Duration::MAX)
            .jitter(Duration::MAX)
            .align(true);
        assert_eq!(huge.first_tick(now, SystemTime::now()), never);
        assert_eq!(huge.next_fixed_rate_tick(now, now).at, never);
        assert_eq!(huge.next_fixed_delay_tick(now), never);
        assert_eq!(huge.jittered(now, 1.0), never);
        // A stall far longer than the interval: the grid is kept, the count saturates.
        let tiny = Schedule::every(Duration::from_nanos(1));
        let next = tiny.next_fixed_rate_tick(now, never);
        assert_eq!(next.at, never);
        assert!(next.missed > 0);
    }

    #[test]
    fn first_tick_waits_the_initial_delay() {
        let start = Instant::now();
        let s = schedule(10).initial_delay(90 * SEC);
        assert_eq!(
            s.first_tick(start, SystemTime::UNIX_EPOCH),
            start + 90 * SEC
        );
    }

    #[test]
    fn aligned_first_tick_lands_on_the_next_wall_clock_multiple() {
        let start = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_007);
        // 1_000_007 s since the epoch; the next multiple of 10 s is 1_000_010 s: 3 s away.
        assert_eq!(
            schedule(10).align(true).first_tick(start, wall),
            start + 3 * SEC
        );
        // The initial delay is waited first, then aligned: 1_000_012 → 1_000_020.
        let delayed = schedule(10).align(true).initial_delay(5 * SEC);
        assert_eq!(delayed.first_tick(start, wall), start + 13 * SEC);
        // Already on a multiple: no wait.
        let on_grid = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(schedule(10).align(true).first_tick(start, on_grid), start);
    }

    #[test]
    fn fixed_rate_ticks_follow_the_grid() {
        let t0 = Instant::now();
        let s = schedule(10);
        let next = s.next_fixed_rate_tick(t0, t0 + 3 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 10 * SEC,
                missed: 0
            }
        );
        // Exactly on the next tick: due now, nothing missed.
        let next = s.next_fixed_rate_tick(t0, t0 + 10 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 10 * SEC,
                missed: 0
            }
        );
    }

    #[test]
    fn a_stall_skips_to_the_next_future_tick_without_a_burst() {
        let t0 = Instant::now();
        let s = schedule(10);
        // Stalled until t0 + 35 s: ticks at 10, 20 and 30 were missed; the next is at 40.
        let next = s.next_fixed_rate_tick(t0, t0 + 35 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 40 * SEC,
                missed: 3
            }
        );
        // Stalled until exactly t0 + 30 s: 10 and 20 missed, 30 is due now.
        let next = s.next_fixed_rate_tick(t0, t0 + 30 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 30 * SEC,
                missed: 2
            }
        );
    }

    #[test]
    fn missed_ticks_delay_re_anchors_the_grid() {
        let t0 = Instant::now();
        let s = schedule(10).missed_ticks(MissedTicks::Delay);
        let next = s.next_fixed_rate_tick(t0, t0 + 35 * SEC);
        assert_eq!(
            next,
            NextTick {
                at: t0 + 45 * SEC,
                missed: 3
            }
        );
    }

    #[test]
    fn fixed_delay_counts_from_the_end_of_the_run() {
        let ended = Instant::now() + 7 * SEC;
        assert_eq!(schedule(10).next_fixed_delay_tick(ended), ended + 10 * SEC);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let tick = Instant::now();
        let s = schedule(10).jitter(2 * SEC);
        assert_eq!(s.jittered(tick, 0.0), tick);
        assert_eq!(s.jittered(tick, 0.5), tick + SEC);
        assert_eq!(s.jittered(tick, 1.0), tick + 2 * SEC);
        assert_eq!(s.jittered(tick, 7.0), tick + 2 * SEC, "fraction is clamped");
        assert_eq!(
            schedule(10).jittered(tick, 0.7),
            tick,
            "no jitter configured"
        );
    }

    #[test]
    fn retries_back_off_exponentially_and_stop_before_the_next_tick() {
        let failed = Instant::now();
        let s = schedule(60).retries(5).retry_backoff(2 * SEC);
        let next_tick = Some(failed + 20 * SEC);
        assert_eq!(s.retry_at(1, failed, next_tick), Some(failed + 2 * SEC));
        assert_eq!(s.retry_at(2, failed, next_tick), Some(failed + 4 * SEC));
        assert_eq!(s.retry_at(3, failed, next_tick), Some(failed + 8 * SEC));
        assert_eq!(s.retry_at(4, failed, next_tick), Some(failed + 16 * SEC));
        // 32 s would start after the next tick at 20 s: capped, no retry.
        assert_eq!(s.retry_at(5, failed, next_tick), None);
        // Beyond the configured retries: none, whatever the time.
        assert_eq!(s.retry_at(6, failed, None), None);
        assert_eq!(s.retry_at(0, failed, None), None);
    }
}
