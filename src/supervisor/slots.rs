//! A job's side of the host-wide limit on runs in flight ([`crate::run_slots`]): taking a slot
//! for a run, and the tick that waits for one.

use tokio::time::Instant;

use super::{Supervisor, Turn};
use crate::metrics;
use crate::run::Run;
use crate::run_slots::{RunSlots, Slot};
use crate::schedule::ScheduleMode;

impl Supervisor {
    /// The slot a run starting now takes: none when the host sets no limit, or an error when
    /// every slot is taken.
    pub(super) fn free_slot(&self) -> Result<Option<Slot>, NoFreeSlot> {
        match &self.shared.host.slots {
            None => Ok(None),
            Some(slots) => slots.try_take().map(Some).ok_or(NoFreeSlot),
        }
    }

    /// Whether a run could take a slot now (always, when the host sets no limit).
    pub(super) fn slots_free(&self) -> bool {
        self.shared
            .host
            .slots
            .as_ref()
            .is_none_or(RunSlots::has_free)
    }

    /// A tick passed without a run, for `reason`: it is counted as skipped.
    pub(super) fn skipped(&self, turn: &mut Turn<'_>, reason: &'static str) {
        turn.count(|c| c.skipped += 1);
        metrics::tick_skipped(&self.shared.name);
        tracing::debug!(job = %self.shared.name, in_flight = turn.runs.len(), reason, "tick skipped");
    }

    /// The tick waiting for a slot got one: its run starts now, if the job still may.
    pub(super) fn slot_freed(&mut self, slot: Slot, turn: &mut Turn<'_>) -> Option<Run> {
        let waiting = turn.waiting.take()?;
        if self.guard.is_some() {
            // A guarded job's trigger waited for a slot: it asks the store for its start now,
            // and its run takes a slot once the start is committed (see `guard_notice`).
            drop(slot);
            self.cluster_tick(turn, Instant::now());
            return None;
        }
        if !self.may_start(turn) {
            self.skipped(turn, "run in flight");
            return None;
        }
        let now = Instant::now();
        let Some(leadership) = self.leadership() else {
            turn.count(|c| c.not_leader += 1);
            if self.schedule.mode == ScheduleMode::FixedDelay {
                // No run will end to schedule the next tick: it is one interval from now.
                let next = self.schedule.next_fixed_delay_tick(now);
                self.set_next_tick(turn, Some(next));
            }
            return None;
        };
        Some(self.new_run(
            turn,
            waiting.scheduled,
            now,
            waiting.next_tick,
            leadership,
            Some(slot),
        ))
    }
}

/// Every one of the host's slots for runs is taken.
pub(super) struct NoFreeSlot;
