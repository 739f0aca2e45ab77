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
use std::task::{Context, Poll};

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

    /// A tick that waits for a slot; boxed, since few ticks ever wait and every job's loop keeps
    /// a place for one.
    pub(crate) fn wait(&self, scheduled: Instant, next_tick: Option<Instant>) -> Box<WaitingTick> {
        let semaphore = self.0.clone();
        Box::new(WaitingTick {
            scheduled,
            next_tick,
            slot: Box::pin(async move {
                // The semaphore is never closed, so this never fails.
                semaphore.acquire_owned().await.ok()
            }),
        })
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

/// The slot of the waiting tick (if any), once it has one; pending while none waits. The tick
/// keeps its place in the queue until then.
pub(crate) fn poll_slot(
    waiting: &mut Option<Box<WaitingTick>>,
    cx: &mut Context<'_>,
) -> Poll<Slot> {
    let Some(tick) = waiting else {
        return Poll::Pending;
    };
    match tick.slot.as_mut().poll(cx) {
        Poll::Ready(Some(slot)) => Poll::Ready(slot),
        // `None` never comes: the semaphore is never closed.
        Poll::Ready(None) | Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

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
        let slot = poll_fn(|cx| poll_slot(&mut first, cx)).await;
        assert!(
            slots.try_take().is_none(),
            "the freed slot went to the first waiter"
        );
        drop(slot);
        let _ = poll_fn(|cx| poll_slot(&mut second, cx)).await;
    }
}
