//! The run ledger: one task per host that commits the starts and ends of guarded runs to the
//! store, in batches.
//!
//! A guarded run starts only once its start is committed to its key's record (so that a new
//! leader never runs a period twice), and its end is recorded with its outcome. Supervisors send
//! their requests here; the ledger takes every request queued at that moment, from every shard,
//! and sends them as one `end_runs` and one `start_runs` call. While a call is in flight, new
//! requests queue up and go together in the next one: the statements a node sends grow with
//! time, not with the number of its jobs that start together.
//!
//! The ledger stops once every supervisor has stopped (their lines are dropped) and it has sent
//! what they queued; the host stops the elector, which releases the leases, only after that, so
//! the last ends are still written under the leases they ran under.
//!
//! Starts are another matter: once the host is stopping, no run begins, so a start still queued
//! is not sent. One already in flight is awaited, not dropped: a dropped call cannot take back a
//! commit already on its way, and a start committed with no run would take its key's period from
//! the next leader without running it (docs/RELIABILITY.md, item 20). Every start the store
//! committed is then either told to its supervisor, which runs it or, stopping, ends it unrun,
//! or, when the supervisor no longer listens, ended unrun here ([`not_run`]): cancelled, with no
//! attempt, and the key due again at the run's point, so the next leader runs that period at
//! once. A graceful handover that falls during a start waits for that one call.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendError;
use tokio_util::sync::CancellationToken;

use super::notice::{GuardNotice, StartAnswer};
use crate::store::{LeaseStore, NextDue, RunEnd, RunResult, RunStart, StartedRun};

/// A supervisor's line to the ledger: cheap to clone, one per guarded job.
#[derive(Clone)]
pub(crate) struct LedgerLine {
    requests: mpsc::UnboundedSender<Request>,
    /// Where the answers to this job's starts go.
    reply: mpsc::UnboundedSender<GuardNotice>,
}

impl LedgerLine {
    pub(crate) fn new(
        ledger: &mpsc::UnboundedSender<Request>,
        reply: mpsc::UnboundedSender<GuardNotice>,
    ) -> Self {
        LedgerLine {
            requests: ledger.clone(),
            reply,
        }
    }

    /// Asks for `starts` to be committed; the answer comes back as [`GuardNotice::Started`]
    /// with `request`. Returns `false` if the ledger has stopped.
    pub(crate) fn start(&self, request: u64, starts: Vec<RunStart>) -> bool {
        self.requests
            .send(Request::Start {
                request,
                starts,
                reply: self.reply.clone(),
            })
            .is_ok()
    }

    /// Reports run ends; nothing comes back (the ledger logs what the store refused).
    pub(crate) fn end(&self, ends: Vec<RunEnd>) {
        if !ends.is_empty() {
            let _ = self.requests.send(Request::End(ends));
        }
    }
}

/// One request to the ledger.
pub(crate) enum Request {
    Start {
        request: u64,
        starts: Vec<RunStart>,
        reply: mpsc::UnboundedSender<GuardNotice>,
    },
    End(Vec<RunEnd>),
}

/// The ledger task's state.
pub(crate) struct Ledger {
    store: Arc<dyn LeaseStore>,
    holder: String,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl Ledger {
    /// A ledger writing as `holder` (the elector's holder name), and the sender supervisors'
    /// lines are made from. Drop that sender once the lines are made, so that the ledger stops
    /// when the last line is gone.
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        holder: String,
    ) -> (Self, mpsc::UnboundedSender<Request>) {
        let (sender, requests) = mpsc::unbounded_channel();
        let ledger = Ledger {
            store,
            holder,
            requests,
        };
        (ledger, sender)
    }

    /// Sends batches until every line is dropped and the queue is empty. Once `stopping` (the
    /// host's shutdown token) is cancelled, only ends are sent.
    pub(crate) async fn run(mut self, stopping: CancellationToken) {
        while let Some(first) = self.requests.recv().await {
            // Let the other shards queue what they are starting in this same instant.
            tokio::task::yield_now().await;
            let mut batch = vec![first];
            while let Ok(more) = self.requests.try_recv() {
                batch.push(more);
            }
            self.send(batch, &stopping).await;
        }
    }

    /// Ends first, so that a key's history reads in order; then starts, unless the host is
    /// stopping, answered to each requester.
    async fn send(&self, batch: Vec<Request>, stopping: &CancellationToken) {
        let mut ends = Vec::new();
        let mut starts = Vec::new();
        let mut requesters = Vec::new();
        // Which requester asked for each key.
        let mut asked_by: BTreeMap<String, usize> = BTreeMap::new();
        for request in batch {
            match request {
                Request::End(more) => ends.extend(more),
                Request::Start {
                    request,
                    starts: more,
                    reply,
                } => {
                    for start in &more {
                        asked_by.insert(start.key.clone(), requesters.len());
                    }
                    starts.extend(more);
                    requesters.push((request, reply, Vec::new()));
                }
            }
        }
        self.end(&ends).await;
        if starts.is_empty() {
            return;
        }
        let started = if stopping.is_cancelled() {
            tracing::debug!(
                runs = starts.len(),
                "run starts not sent: the host is stopping"
            );
            None
        } else {
            // Awaited even if the host stops meanwhile: dropped, the call could not take back a
            // commit already on its way, and that start would be left with no run and no end.
            match self.store.start_runs(&self.holder, &starts).await {
                Ok(started) => Some(started),
                Err(error) => {
                    tracing::warn!(%error, runs = starts.len(), "committing run starts failed; those runs do not start");
                    None
                }
            }
        };
        let asked = started.is_some();
        for run in started.into_iter().flatten() {
            if let Some(&index) = asked_by.get(&run.key) {
                requesters[index].2.push(run);
            }
        }
        let mut never_began = Vec::new();
        for (request, reply, committed) in requesters {
            let answer = StartAnswer {
                request,
                started: asked.then_some(committed),
            };
            // A supervisor stops listening once its job stops: what it was not told, it never
            // runs, so the ledger ends those runs itself.
            let Err(SendError(GuardNotice::Started(unheard))) =
                reply.send(GuardNotice::Started(answer))
            else {
                continue;
            };
            never_began.extend(unheard.started.into_iter().flatten().filter_map(|run| {
                let start = starts.iter().find(|start| start.key == run.key)?;
                Some(not_run(run, start.epoch, start.scheduled_ms))
            }));
        }
        if !never_began.is_empty() {
            tracing::debug!(
                runs = never_began.len(),
                "run starts committed as their jobs stopped were ended unrun; their periods are due again"
            );
            self.end(&never_began).await;
        }
    }

    /// Records run ends, logging what the store refused.
    async fn end(&self, ends: &[RunEnd]) {
        if ends.is_empty() {
            return;
        }
        match self.store.end_runs(&self.holder, ends).await {
            Ok(written) if written.len() < ends.len() => {
                tracing::debug!(
                    refused = ends.len() - written.len(),
                    "run ends not recorded: their leases had moved on"
                )
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, runs = ends.len(), "recording run ends failed; the runs' records show no end")
            }
        }
    }
}

/// The end of a run whose start the store committed (`run`, at `epoch`, for the point
/// `point_ms`) but which never began, because its host stopped first: cancelled, with no
/// attempt, and its key due again at that point, so that the next leader runs the period at
/// once (as any period passed unrun, by the job's [`CatchUp`](crate::CatchUp)).
pub(crate) fn not_run(run: StartedRun, epoch: u64, point_ms: i64) -> RunEnd {
    RunEnd {
        key: run.key,
        epoch,
        seq: run.seq,
        outcome: RunResult::Cancelled,
        attempts: 0,
        error: None,
        next_due: NextDue::At(point_ms),
    }
}
