//! The parts of the supervisor's loop that only a guarded job has: its leadership changes, and
//! its ticks on the cluster schedule ([`super::cluster`]), where a tick asks the ledger to
//! commit a start and the run begins when the store answered.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Guard, RunLeadership, Supervisor, Turn};
use crate::guard::{GuardNotice, LeadershipEvent, RunLeases};
use crate::metrics;
use crate::run::Run;

impl Supervisor {
    /// A message from the guard; returns the run to start, when a start was committed.
    pub(super) fn guard_notice(&mut self, notice: GuardNotice, turn: &mut Turn<'_>) -> Option<Run> {
        let run = match notice {
            GuardNotice::Leadership(event) => {
                self.leadership_changed(event, turn);
                None
            }
            GuardNotice::Records(read) => {
                let guard = self.guard.as_mut()?;
                let held = guard.state.borrow().held();
                guard.cluster.records(read, &held, &self.schedule);
                self.shared.status().cluster = guard.cluster.view().map(Box::new);
                turn.mark_changed();
                None
            }
            GuardNotice::Started(answer) => {
                let guard = self.guard.as_mut()?;
                let (held, lost, worker) = {
                    let state = guard.state.borrow();
                    (state.held(), state.lost.clone(), state.worker)
                };
                let now = Instant::now();
                let committed =
                    guard
                        .cluster
                        .answered(answer, &held, now, &self.schedule, &self.shared.name);
                match committed {
                    Some(committed) => {
                        let leases = RunLeases::new(Arc::from(committed.leases.clone()), lost);
                        let leadership = RunLeadership {
                            leases: Some(Arc::new(leases)),
                            worker,
                        };
                        let scheduled = committed.scheduled;
                        self.follow_cluster(turn);
                        let next = turn.next_tick;
                        // The start is committed: it runs, holding a slot of the host's
                        // `max_parallel_runs` if one is free (the tick asked only with one free,
                        // but another job may have taken it while the store answered).
                        let slot = self.free_slot().unwrap_or(None);
                        let run = self.new_run(turn, scheduled, now, next, leadership, slot);
                        if let Some(guard) = &mut self.guard {
                            guard.cluster.began(run.ctx.run_id(), committed);
                        }
                        Some(run)
                    }
                    None => {
                        turn.count(|c| c.not_started += 1);
                        None
                    }
                }
            }
        };
        self.follow_cluster(turn);
        run
    }

    /// A tick of a guarded job: the keys due ask for their starts.
    pub(super) fn cluster_tick(&mut self, turn: &mut Turn<'_>, now: Instant) {
        let job_full = !self.may_start(turn);
        let slots_free = self.slots_free();
        let may_start = !job_full && slots_free;
        let Some(guard) = &mut self.guard else {
            return;
        };
        let tick = guard.cluster.tick(now, may_start, job_full, &self.schedule);
        // An operator's trigger that found every slot of the host taken waits for one (a
        // point passes instead). Left pending, it would fire the next tick at once, again and
        // again, and the loop would never yield.
        if !job_full && !slots_free && turn.waiting.is_none() && guard.cluster.triggered() {
            if let Some(slots) = &self.shared.host.slots {
                turn.waiting = Some(slots.wait(now, None));
            }
        }
        if tick.missed > 0 {
            turn.count(|c| c.missed += tick.missed);
            metrics::ticks_missed(&self.shared.name, tick.missed);
        }
        if tick.skipped {
            turn.count(|c| c.skipped += 1);
            metrics::tick_skipped(&self.shared.name);
            tracing::debug!(job = %self.shared.name, in_flight = turn.runs.len(), reason = "run in flight or no free slot", "tick skipped");
        }
        self.follow_cluster(turn);
    }

    /// Sets the next tick to the cluster schedule's (a disabled job's: for triggers only).
    pub(super) fn follow_cluster(&mut self, turn: &mut Turn<'_>) {
        // A trigger waiting for a slot (`cluster_tick`) waits as a busy job's does.
        let busy = !self.may_start(turn) || turn.waiting.is_some();
        let Some(guard) = &self.guard else {
            return;
        };
        let next = guard.cluster.next_tick(busy, self.schedule.enabled);
        if next != turn.next_tick {
            self.set_next_tick(turn, next);
        }
    }
}

impl Guard {
    /// The job is stopping, and begins no run from now on: stops listening to the guard and
    /// returns the leadership changes it had not taken yet. A start answered from now on
    /// cannot be told, so the ledger ends it unrun; one it was already told of (an answer that
    /// came with the shutdown, which the loop takes first) it ends unrun here. Records come
    /// too late to matter.
    pub(super) fn stop_listening(&mut self) -> Vec<LeadershipEvent> {
        // The job stops in order: its leases are released with the others' at the end.
        if let Some(abandoned) = self.abandoned.take() {
            abandoned.disarm();
        }
        self.events.close();
        let mut changes = Vec::new();
        let told = self.held_back.take().into_iter();
        for notice in told.chain(std::iter::from_fn(|| self.events.try_recv().ok())) {
            match notice {
                GuardNotice::Leadership(event) => changes.push(event),
                GuardNotice::Started(answer) => self.cluster.abandoned(answer),
                GuardNotice::Records(_) => {}
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::guard::ledger::Request;
    use crate::guard::{GuardState, HeldLease};
    use crate::supervisor::cluster::tests::{a_start_in_flight, committed, unrun};
    use crate::supervisor::leadership::StateChanges;

    /// An answer that came with the shutdown is ended unrun by the supervisor, and a leadership
    /// change that came with it is kept for the hooks; an answer that comes after it stopped
    /// listening cannot be delivered, which tells the ledger to end it itself.
    #[tokio::test(start_paused = true)]
    async fn a_stopping_job_ends_the_starts_it_was_told_of_and_hears_no_more() {
        let (reply, events) = mpsc::unbounded_channel();
        let (cluster, mut requests, request, point_ms) = a_start_in_flight(reply.clone());
        let (_state_tx, state) = watch::channel(GuardState::empty());
        let mut guard = Guard {
            state_changes: StateChanges::new(state.clone()),
            state,
            events,
            held_back: None,
            cluster,
            abandoned: None,
        };
        let won = HeldLease::new("k".into(), 3, None, Instant::now());
        reply
            .send(GuardNotice::Started(committed(request)))
            .unwrap();
        reply
            .send(GuardNotice::Leadership(LeadershipEvent::Acquired(won)))
            .unwrap();

        let changes = guard.stop_listening();
        assert!(
            matches!(&changes[..], [LeadershipEvent::Acquired(lease)] if lease.key() == "k"),
            "{changes:?}"
        );
        let Ok(Request::End(ends)) = requests.try_recv() else {
            panic!("the start told of was not ended");
        };
        assert_eq!(ends, [unrun(point_ms)]);
        assert!(
            reply
                .send(GuardNotice::Started(committed(request)))
                .is_err(),
            "a stopped job still takes answers"
        );
    }
}
