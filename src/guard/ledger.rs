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
//! is not sent and one in flight is dropped (an SQL store's transaction then rolls back, unless
//! its commit was already on its way). Committed, such a start would take the key's period from
//! the next leader without running it, and the release, which waits for the ledger, would wait
//! for its commit: a graceful handover that fell during a start paid for it twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::notice::{GuardNotice, StartAnswer};
use crate::store::{LeaseStore, RunEnd, RunStart};

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

    /// Ends first, so that a key's history reads in order; then starts, answered to each
    /// requester, unless the host stops first.
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
        if !ends.is_empty() {
            match self.store.end_runs(&self.holder, &ends).await {
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
        if starts.is_empty() {
            return;
        }
        let answer = tokio::select! {
            biased;
            () = stopping.cancelled() => {
                tracing::debug!(runs = starts.len(), "run starts not committed: the host is stopping");
                None
            }
            answer = self.store.start_runs(&self.holder, &starts) => Some(answer),
        };
        let started = match answer {
            Some(Ok(started)) => started,
            failed => {
                if let Some(Err(error)) = failed {
                    tracing::warn!(%error, runs = starts.len(), "committing run starts failed; those runs do not start");
                }
                for (request, reply, _) in requesters {
                    let _ = reply.send(GuardNotice::Started(StartAnswer {
                        request,
                        started: None,
                    }));
                }
                return;
            }
        };
        for run in started {
            if let Some(&index) = asked_by.get(&run.key) {
                requesters[index].2.push(run);
            }
        }
        for (request, reply, started) in requesters {
            let _ = reply.send(GuardNotice::Started(StartAnswer {
                request,
                started: Some(started),
            }));
        }
    }
}
