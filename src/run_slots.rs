//! The host-wide limit on runs in flight, `max_parallel_runs`: one slot per run, shared by
//! every job of the host, beside each job's own overlap limit.
//!
//! The rules, in one place:
//!
//! * A run holds a slot from the moment it starts until it ends (or is dropped).
//! * A tick that finds no free slot waits for one, and its run starts the moment one frees.
//! * If the job's next tick comes first, the waiting tick is skipped and counted in
//!   [`JobCounters::skipped`](crate::JobCounters::skipped), and the new tick waits in its place:
//!   a job never queues more than one tick, so a busy host never replays a burst.
//! * A fixed-delay job has no next tick while it waits, so its tick waits for as long as it
//!   takes.
//! * Slots are handed out in the order ticks began to wait for them (tokio's semaphore is
//!   fair), so no job starves while others tick faster.
//! * A trigger that finds no free slot starts nothing and answers
//!   [`Triggered::HostBusy`](crate::Triggered::HostBusy).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A free slot, held by a run until it ends.
pub(crate) type Slot = OwnedSemaphorePermit;

/// The host's slots for runs in flight.
#[derive(Clone, Debug)]
pub(crate) struct RunSlots(Arc<Semaphore>);

impl RunSlots {
    /// `max_parallel_runs` slots.
    pub(crate) fn new(max_parallel_runs: usize) -> Self {
        RunSlots(Arc::new(Semaphore::new(
            max_parallel_runs.min(Semaphore::MAX_PERMITS),
        )))
    }

    /// A free slot, if there is one now.
    pub(crate) fn has_free(&self) -> bool {
        self.0.available_permits() > 0
    }

    pub(crate) fn try_take(&self) -> Option<Slot> {
        self.0.clone().try_acquire_owned().ok()
    }

    /// A tick that waits for a slot.
    pub(crate) fn wait(&self, scheduled: Instant, next_tick: Option<Instant>) -> WaitingTick {
        let semaphore = self.0.clone();
        WaitingTick {
            scheduled,
            next_tick,
            slot: Box::pin(async move {
                // The semaphore is never closed, so this never fails.
                semaphore.acquire_owned().await.ok()
            }),
        }
    }
}

/// A tick that found no free slot, waiting for one.
pub(crate) struct WaitingTick {
    /// The tick's scheduled instant.
    pub(crate) scheduled: Instant,
    /// The job's next tick, which its run's retries must not reach.
    pub(crate) next_tick: Option<Instant>,
    slot: Pin<Box<dyn Future<Output = Option<Slot>> + Send>>,
}

impl std::fmt::Debug for WaitingTick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingTick")
            .field("scheduled", &self.scheduled)
            .finish_non_exhaustive()
    }
}

/// Completes when the waiting tick (if any) gets its slot; pending forever while none waits.
/// Cancel-safe: the tick keeps its place in the queue.
pub(crate) async fn slot_for(waiting: &mut Option<WaitingTick>) -> Slot {
    let Some(tick) = waiting else {
        return std::future::pending().await;
    };
    match tick.slot.as_mut().await {
        Some(slot) => slot,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_frees_when_its_holder_drops_it_and_goes_to_the_first_waiter() {
        let slots = RunSlots::new(1);
        let held = slots.try_take().expect("one slot");
        assert!(slots.try_take().is_none());
        let now = Instant::now();
        let mut first = Some(slots.wait(now, None));
        let mut second = Some(slots.wait(now, None));
        drop(held);
        let slot = slot_for(&mut first).await;
        assert!(
            slots.try_take().is_none(),
            "the freed slot went to the first waiter"
        );
        drop(slot);
        let _ = slot_for(&mut second).await;
    }
}
