//! How a host wires its guarded jobs: one [elector](crate::guard::elector) holding every lease
//! and reading the keys' schedule records, one [ledger] committing every run's start and end,
//! and for each job its supervisor's lines to both and the handle's line to its keys' records.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Registration;
use crate::guard::elector::Elector;
use crate::guard::ledger::{self, Ledger, LedgerLine};
use crate::guard::{GuardState, GuardedJob, JobLine, holder_name, lease_keys, membership_scope};
use crate::handle::ClusterLine;
use crate::identity::NodeIdentity;
use crate::settings::LeaderMode;
use crate::store::LeaseStore;
use crate::supervisor::{ClusterTiming, Guard, StateChanges};

/// The guarded jobs of a host being built.
pub(crate) struct Guarding {
    store: Arc<dyn LeaseStore>,
    holder: String,
    jobs: Vec<GuardedJob>,
    ledger: Ledger,
    /// Supervisors' ledger lines are made from it; dropped when the tasks start, so that the
    /// ledger stops once every supervisor has.
    ledger_line: mpsc::UnboundedSender<ledger::Request>,
    read_now: Arc<Notify>,
}

/// The tasks a host with guarded jobs runs beside its shards.
pub(crate) struct GuardTasks {
    pub(crate) elector: Elector,
    pub(crate) ledger: Ledger,
}

impl Guarding {
    pub(crate) fn new(store: Arc<dyn LeaseStore>, node: &NodeIdentity) -> Self {
        let holder = holder_name(node);
        let (ledger, ledger_line) = Ledger::new(store.clone(), holder.clone());
        Guarding {
            store,
            holder,
            jobs: Vec::new(),
            ledger,
            ledger_line,
            read_now: Arc::new(Notify::new()),
        }
    }

    /// The guard of a guarded job (its supervisor's view of the elector and the ledger), and
    /// the handle's line to its keys' schedule records.
    pub(crate) fn add(
        &mut self,
        registration: &Registration,
        node: &NodeIdentity,
    ) -> (Guard, ClusterLine) {
        let leadership = registration.leadership.clone();
        let (state_tx, state_rx) = watch::channel(GuardState::empty());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let keys = lease_keys(
            &registration.name,
            leadership.mode,
            leadership.partitions,
            node,
        );
        let cluster = ClusterTiming::new(
            LedgerLine::new(&self.ledger_line, events_tx.clone()),
            leadership.retry_every,
            leadership.lease_ttl,
            leadership.history,
        );
        let abandoned = CancellationToken::new();
        let line = ClusterLine {
            keys: keys.clone(),
            store: self.store.clone(),
            read_now: self.read_now.clone(),
        };
        self.jobs.push(GuardedJob {
            name: registration.name.clone(),
            keys,
            scope: (leadership.mode == LeaderMode::Partitioned)
                .then(|| membership_scope(&registration.name)),
            leadership,
            state: state_tx,
            events: JobLine::Supervisor(events_tx),
            initial_delay: Some(registration.schedule.initial_delay),
            abandoned: abandoned.clone(),
        });
        let guard = Guard {
            state_changes: StateChanges::new(state_rx.clone()),
            state: state_rx,
            events: events_rx,
            held_back: None,
            cluster,
            abandoned: Some(abandoned.drop_guard()),
        };
        (guard, line)
    }

    /// The elector and the ledger, ready to run; `None` if no job is guarded.
    pub(crate) fn into_tasks(self) -> Option<GuardTasks> {
        if self.jobs.is_empty() {
            return None;
        }
        drop(self.ledger_line);
        Some(GuardTasks {
            elector: Elector::new(self.store, self.holder, self.jobs, self.read_now),
            ledger: self.ledger,
        })
    }
}
