//! The supervisor's cron path: an unguarded cron job's ticks, timed by the host's wall clock.
//!
//! The rules are in [`crate::schedule::cron`]; here they meet the clocks. The shard's timer is
//! monotonic, so a wait for an occurrence is a monotonic wait computed from the wall clock when
//! the job last looked, and never longer than
//! [`WALL_CLOCK_RECHECK`](crate::WALL_CLOCK_RECHECK): each time the timer fires, the job reads
//! the wall clock again, so a step of the clock during a long wait is seen. What the job
//! reached by the passage of time alone (the wall clock at its last look plus the monotonic
//! time since) tells the occurrences it lived through from those that the clock jumped over,
//! which [`CatchUp`](crate::CatchUp) decides.
//!
//! An interval job never comes here, nor a guarded cron job: its occurrences are kept in its
//! keys' records, on the store's clock ([`super::cluster`]).

#[cfg(feature = "cron")]
pub(super) use with_cron::CronTicking;

use super::{Supervisor, Turn};

#[cfg(not(feature = "cron"))]
impl Supervisor {
    /// Without the `cron` feature there are no cron jobs.
    pub(super) fn start_cron(&self, _: &mut Turn<'_>) -> bool {
        false
    }
}

#[cfg(feature = "cron")]
mod with_cron {
    use std::time::Duration;

    use jiff::Timestamp;
    use tokio::time::Instant;

    use super::{Supervisor, Turn};
    use crate::metrics;
    use crate::run::Run;
    use crate::schedule::Cadence;
    use crate::schedule::cron::WALL_CLOCK_RECHECK;

    /// A cron job's place in its schedule, by the wall clock.
    pub(in crate::supervisor) struct CronTicking {
        /// The next occurrence.
        scheduled: Timestamp,
        /// When it fires: `scheduled` plus this occurrence's jitter.
        fire_at: Timestamp,
        /// The wall clock and the monotonic clock when the job last looked at them.
        looked_wall: Timestamp,
        looked_at: Instant,
    }

    impl Supervisor {
        /// For a cron job: schedules its first occurrence (the first after its start plus
        /// `initial_delay`) and returns `true`. `false` for an interval job.
        pub(in crate::supervisor) fn start_cron(&self, turn: &mut Turn<'_>) -> bool {
            let Cadence::Cron(cron) = &self.schedule.cadence else {
                return false;
            };
            let (wall, now) = (self.wall_now(), Instant::now());
            let after = wall
                .checked_add(self.schedule.initial_delay)
                .unwrap_or(wall);
            match cron.next_after(after) {
                Some(first) => self.arm(turn, first.timestamp(), wall, now),
                None => {
                    tracing::warn!(job = %self.shared.name, %cron, "cron schedule has no next occurrence");
                }
            }
            true
        }

        /// A cron job's timer fired at `now`: run the occurrence that is due, if one is, and
        /// wait for the next.
        pub(in crate::supervisor) fn cron_tick(
            &mut self,
            turn: &mut Turn<'_>,
            now: Instant,
        ) -> Option<Run> {
            let Cadence::Cron(cron) = &self.schedule.cadence else {
                return None;
            };
            let state = turn.cron.as_ref()?;
            let wall = self.wall_now();
            if wall < state.fire_at {
                // Not yet by the wall clock: an early look, or the clock went back.
                let (scheduled, fire_at) = (state.scheduled, state.fire_at);
                self.wait(turn, scheduled, fire_at, wall, now);
                return None;
            }
            let elapsed = now.saturating_duration_since(state.looked_at);
            let catch_up = self.schedule.catch_up;
            let due = cron.due(state.scheduled, state.looked_wall, elapsed, wall, catch_up);
            if due.missed > 0 {
                turn.count(|c| c.missed += due.missed);
                metrics::ticks_missed(&self.shared.name, due.missed);
                tracing::warn!(job = %self.shared.name, missed = due.missed, catch_up = ?self.schedule.catch_up, "cron occurrences missed: the wall clock jumped forward, or the job stalled");
            }
            let at_local = |occurrence: Timestamp| match until(wall, occurrence) {
                Some(ahead) => now + ahead,
                None => now
                    .checked_sub(until(occurrence, wall).unwrap_or_default())
                    .unwrap_or(now),
            };
            let next_tick = due.next.map(at_local);
            let mut run = None;
            if let Some(occurrence) = due.run {
                if turn.waiting.take().is_some() {
                    self.skipped(turn, "no free slot before the next occurrence");
                }
                if !self.may_start(turn) {
                    self.skipped(turn, "run in flight");
                } else if let Some(leadership) = self.leadership() {
                    let scheduled = at_local(occurrence);
                    match (self.free_slot(), &self.shared.host.slots) {
                        (Ok(slot), _) => {
                            run = Some(
                                self.new_run(turn, scheduled, now, next_tick, leadership, slot),
                            )
                        }
                        (Err(_), Some(slots)) => {
                            tracing::debug!(job = %self.shared.name, "cron occurrence waits for a free slot (max_parallel_runs)");
                            turn.waiting = Some(slots.wait(scheduled, next_tick));
                        }
                        (Err(_), None) => {}
                    }
                } else {
                    turn.count(|c| c.not_leader += 1);
                }
            }
            match due.next {
                Some(next) => self.arm(turn, next, wall, now),
                None => {
                    turn.cron = None;
                    turn.next_tick = None;
                    turn.fire_at = None;
                }
            }
            run
        }

        /// After a pause: the occurrences that fell due while paused are not run; the job waits
        /// for the next one (or, if the clock went back, still for the one it waited for).
        pub(in crate::supervisor) fn resume_cron(&self, turn: &mut Turn<'_>) {
            let (Cadence::Cron(cron), Some(state)) = (&self.schedule.cadence, &turn.cron) else {
                return;
            };
            let (wall, now) = (self.wall_now(), Instant::now());
            let (scheduled, fire_at) = (state.scheduled, state.fire_at);
            if wall < scheduled {
                self.wait(turn, scheduled, fire_at, wall, now);
            } else if let Some(next) = cron.next_after(wall) {
                self.arm(turn, next.timestamp(), wall, now);
            }
        }

        /// Waits for `scheduled`, with a fresh draw of jitter.
        fn arm(&self, turn: &mut Turn<'_>, scheduled: Timestamp, wall: Timestamp, now: Instant) {
            let jitter = match self.schedule.jitter.is_zero() {
                true => Duration::ZERO,
                false => self.schedule.jitter.mul_f64(fastrand::f64()),
            };
            let fire_at = scheduled.checked_add(jitter).unwrap_or(scheduled);
            self.wait(turn, scheduled, fire_at, wall, now);
        }

        /// Sets the timer for `fire_at` by the wall clock, which reads `wall` at `now`, but no
        /// further than [`WALL_CLOCK_RECHECK`] away.
        fn wait(
            &self,
            turn: &mut Turn<'_>,
            scheduled: Timestamp,
            fire_at: Timestamp,
            wall: Timestamp,
            now: Instant,
        ) {
            let wait = until(wall, fire_at).unwrap_or_default();
            turn.next_tick = Some(now + until(wall, scheduled).unwrap_or_default());
            turn.fire_at = Some(now + wait.min(WALL_CLOCK_RECHECK));
            let state = CronTicking {
                scheduled,
                fire_at,
                looked_wall: wall,
                looked_at: now,
            };
            match &mut turn.cron {
                Some(kept) => **kept = state,
                None => turn.cron = Some(Box::new(state)),
            }
        }

        fn wall_now(&self) -> Timestamp {
            Timestamp::try_from(self.shared.host.clock.now()).unwrap_or(Timestamp::UNIX_EPOCH)
        }
    }

    /// How long from `from` until `to`, if `to` is not before `from`.
    fn until(from: Timestamp, to: Timestamp) -> Option<Duration> {
        Duration::try_from(to.duration_since(from)).ok()
    }
}
