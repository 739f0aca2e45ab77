//! What the guard tells a guarded job's supervisor: leadership changes, the schedule records of
//! the keys it holds, and the answers to its requests to start runs.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lease::LeadershipEvent;
use crate::store::{ScheduleRecord, StartedRun};

/// One message from the guard to a guarded job's supervisor, in the order they happened.
#[derive(Debug)]
pub(crate) enum GuardNotice {
    /// A lease was won or lost.
    Leadership(LeadershipEvent),
    /// Schedule records of keys the job held when they were read.
    Records(RecordsRead),
    /// The store's answer to a request to start a run.
    Started(StartAnswer),
}

/// When a store call was sent and its answer received: the store read its clock in between.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoundTrip {
    /// How late a run is is judged by the store's clock measured from here: the store read its
    /// clock no sooner, so measured from here its clock is never underestimated.
    pub(crate) sent: Instant,
    /// A due time in the store's clock is measured from here, so that it is never reached
    /// early: the store read its clock no later.
    pub(crate) received: Instant,
}

/// Schedule records as one store call read them.
#[derive(Debug)]
pub(crate) struct RecordsRead {
    /// The call that read them.
    pub(crate) round_trip: RoundTrip,
    /// Each record with the epoch the elector held its key at when it asked.
    pub(crate) records: Vec<(u64, ScheduleRecord)>,
    /// Keys whose records the store could not read (edited into nonsense, or from a newer
    /// version): no run of them starts until they can be read again.
    pub(crate) unreadable: Vec<String>,
}

/// The answer to a supervisor's request to start a run
/// ([`LedgerLine::start`](super::ledger::LedgerLine::start)).
#[derive(Debug)]
pub(crate) struct StartAnswer {
    /// The request's number, as the supervisor gave it.
    pub(crate) request: u64,
    /// The starts the store committed; `None` if the store could not be asked (the ledger
    /// logged why).
    pub(crate) started: Option<Vec<StartedRun>>,
}

/// Where the elector sends a job's news: a guarded job's supervisor hears everything; a
/// standalone elector's watcher hears leadership changes only (it has no schedule).
pub(crate) enum JobLine {
    /// A guarded job's supervisor.
    Supervisor(mpsc::UnboundedSender<GuardNotice>),
    /// A [`LeaderElector`](super::LeaderElector)'s events.
    Standalone(mpsc::UnboundedSender<LeadershipEvent>),
}

impl JobLine {
    /// Tells of a leadership change. A listener that is gone is ignored.
    pub(crate) fn leadership(&self, event: LeadershipEvent) {
        match self {
            JobLine::Supervisor(line) => {
                let _ = line.send(GuardNotice::Leadership(event));
            }
            JobLine::Standalone(line) => {
                let _ = line.send(event);
            }
        }
    }

    /// Hands over records read for the job (a standalone elector has none).
    pub(crate) fn records(&self, read: RecordsRead) {
        if let JobLine::Supervisor(line) = self {
            let _ = line.send(GuardNotice::Records(read));
        }
    }
}
