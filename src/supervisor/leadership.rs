//! A guarded job's side of leadership: the changes its elector reports, recorded in its status
//! and handed to its hooks in order, and the release of its leases at a clean shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;

use super::{Guard, Supervisor, Turn};
use crate::guard::{GuardNotice, GuardState, LeadershipEvent};
use crate::job::ErasedJob;
use crate::metrics;
use crate::run::{CatchUnwind, panic_message};

impl Supervisor {
    /// The elector reported a change: record it, with every other change already queued, in
    /// the status, log it, and call the job's hooks beside the loop (a slow or panicking hook
    /// never delays ticks).
    ///
    /// The changes queued are taken together, so that a partitioned job winning 10,000
    /// partitions at once costs one status update, one log line and one hook task, not 10,000.
    pub(super) fn leadership_changed(&mut self, first: LeadershipEvent, turn: &mut Turn<'_>) {
        let Some(guard) = &mut self.guard else {
            return;
        };
        let mut events = vec![first];
        // The leadership changes queued behind this one; the first other notice waits its turn.
        while let Ok(notice) = guard.events.try_recv() {
            match notice {
                GuardNotice::Leadership(event) => events.push(event),
                other => {
                    guard.held_back = Some(other);
                    break;
                }
            }
        }
        let state = guard.state.borrow_and_update().clone();
        for event in &events {
            if let LeadershipEvent::Lost { lease, .. } = event {
                guard.cluster.lost(lease.key());
            }
        }
        self.record_leadership(&events, Some(&state));
        turn.mark_changed();
        let acquired = events
            .iter()
            .filter(|e| matches!(e, LeadershipEvent::Acquired(_)))
            .count() as u64;
        let lost = events.len() as u64 - acquired;
        if acquired > 0 {
            metrics::leadership_changed(&self.shared.name, "acquired", acquired);
            tracing::debug!(job = %self.shared.name, acquired, held = state.leases.len(), "leadership acquired");
        }
        if lost > 0 {
            metrics::leadership_changed(&self.shared.name, "lost", lost);
            tracing::debug!(job = %self.shared.name, lost, held = state.leases.len(), "leadership lost");
        }
        let job = self.job.clone();
        let name = self.shared.name.clone();
        // The hooks run in the order of the changes: after those of the changes before.
        let before = turn.hooks.take();
        turn.hooks = Some(tokio::spawn(call_hooks(job, name, before, events)));
    }

    /// The elector changed what the job holds without an event (a partitioned job's place
    /// among the members): the status shows it.
    pub(super) fn guard_state_changed(&mut self, turn: &mut Turn<'_>) {
        let Some(guard) = &mut self.guard else {
            return;
        };
        let state = guard.state.borrow_and_update().clone();
        self.record_leadership(&[], Some(&state));
        turn.mark_changed();
    }

    /// Counts `events` in the job's leadership status, which now holds what `state` holds.
    fn record_leadership(&self, events: &[LeadershipEvent], state: Option<&GuardState>) {
        let mut status = self.shared.status();
        let leadership = status.leadership.get_or_insert_with(Default::default);
        for event in events {
            match event {
                LeadershipEvent::Acquired(_) => leadership.acquired += 1,
                LeadershipEvent::Lost { .. } => leadership.lost += 1,
            }
        }
        if let Some(state) = state {
            leadership.leases = state.leases.clone();
            leadership.worker = state.worker;
        }
    }

    /// Shutdown of a guarded job, once its runs have ended: every lease it holds is released
    /// ([`LostReason::Released`](crate::LostReason::Released)), so `on_lost` is called for
    /// each, after the hooks of the changes still queued, bounded by the shutdown grace. The
    /// leases are marked lost here, and the elector gives them back to the store right after
    /// every job has stopped (its invariant 5), which logs them, once per job.
    pub(super) async fn leadership_released(
        &mut self,
        before: Option<tokio::task::JoinHandle<()>>,
    ) {
        let Some(guard) = &mut self.guard else {
            return;
        };
        let mut events = guard.stop_listening();
        let held = guard.state.borrow().leases.clone();
        for lease in &held {
            lease.mark_lost();
        }
        events.extend(held.into_iter().map(|lease| LeadershipEvent::Lost {
            lease,
            reason: crate::LostReason::Released,
        }));
        if events.is_empty() {
            return;
        }
        self.record_leadership(&events, Some(&GuardState::empty()));
        let hooks = call_hooks(self.job.clone(), self.shared.name.clone(), before, events);
        let hooks = AbortOnDropHandle::new(tokio::spawn(hooks));
        let grace = self.shared.host.shutdown_grace;
        if tokio::time::timeout(grace, hooks).await.is_err() {
            tracing::warn!(job = %self.shared.name, ?grace, "on_lost did not finish within the shutdown grace and was dropped")
        }
    }
}

/// Calls the job's leadership hooks for `events`, in order, after the hooks of the changes
/// before (`before`); a hook that panics is logged and the next one is called.
async fn call_hooks(
    job: Arc<dyn ErasedJob>,
    name: Arc<str>,
    before: Option<JoinHandle<()>>,
    events: Vec<LeadershipEvent>,
) {
    if let Some(before) = before {
        let _ = before.await;
    }
    for event in events {
        if let Err(panic) = CatchUnwind(job.clone().on_leadership(event)).await {
            let message = panic_message(panic);
            tracing::error!(job = %name, panic = %message, "leadership hook panicked");
        }
    }
}

/// What a guarded job's elector told it.
pub(super) enum GuardChange {
    /// A lease was won or lost, records were read, or a start was answered.
    Notice(GuardNotice),
    /// What the job holds changed without an event: its place among the members, for a
    /// partitioned job.
    State,
}

/// The next change of a guarded job's leadership, if one came; pending while none has, and
/// always for an unguarded job.
#[inline] // Called on every turn of every job's loop; most jobs have no guard.
pub(super) fn poll_change(
    guard: &mut Option<Box<Guard>>,
    cx: &mut Context<'_>,
) -> Poll<GuardChange> {
    let Some(guard) = guard else {
        return Poll::Pending;
    };
    if let Some(notice) = guard.held_back.take() {
        return Poll::Ready(GuardChange::Notice(notice));
    }
    // A closed line (the elector stopped) stays pending: shutdown comes as a command.
    if let Poll::Ready(Some(notice)) = guard.events.poll_recv(cx) {
        return Poll::Ready(GuardChange::Notice(notice));
    }
    if guard.state_changes.poll_changed(cx).is_ready() {
        return Poll::Ready(GuardChange::State);
    }
    Poll::Pending
}

/// Tells when a guarded job's leadership state changed: `watch::Receiver::changed` is a
/// future, and the job's loop polls its sources in place, so the future is kept here, on a
/// receiver of its own (the loop reads the state through its own receiver).
///
/// A change that came with a leadership event is seen here too: the loop then records the
/// same state once more, which changes nothing.
pub(crate) struct StateChanges(Pin<Box<dyn Future<Output = Option<StateReceiver>> + Send + Sync>>);

type StateReceiver = watch::Receiver<GuardState>;

impl StateChanges {
    pub(crate) fn new(mut receiver: StateReceiver) -> Self {
        StateChanges(Box::pin(async move {
            receiver.changed().await.ok()?;
            Some(receiver)
        }))
    }

    /// Ready once the state changed since the last time it was; pending forever once the
    /// elector is gone.
    fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut().poll(cx) {
            Poll::Ready(Some(receiver)) => {
                *self = StateChanges::new(receiver);
                Poll::Ready(())
            }
            Poll::Ready(None) => {
                self.0 = Box::pin(std::future::pending());
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
