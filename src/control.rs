//! The line between a job's supervisor and the [`HostHandle`](crate::HostHandle): the job's
//! status, and the operator's commands.
//!
//! One small shared cell per job, rather than a channel each way: a host may run ten thousand
//! jobs, and a bounded channel preallocates its queue. Commands are rare, so they wait in a
//! mutex-guarded queue that allocates nothing until used; the status is written under a mutex
//! and watchers are woken once per turn of the supervisor's loop, not once per counter.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, oneshot};

use crate::status::{JobState, JobStatus};

/// An operator's request to a job, with the channel its answer goes back on.
#[derive(Debug)]
pub(crate) enum Command {
    Trigger(oneshot::Sender<Triggered>),
    Pause(oneshot::Sender<()>),
    Resume(oneshot::Sender<()>),
    CancelRuns(oneshot::Sender<usize>),
    /// The host is shutting down (its token is cancelled already).
    Shutdown,
}

/// The answer to a manual trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// A run started; its run id.
    Started(u64),
    /// No run started: the job already has as many runs in flight as it allows.
    AlreadyRunning,
    /// No run started: the job is guarded and this node does not hold its lease.
    NotLeader,
}

/// What a job's supervisor and the handle share.
#[derive(Debug)]
pub(crate) struct JobCell {
    status: Mutex<JobStatus>,
    /// Woken when the status changed.
    status_changed: Notify,
    /// `None` once the supervisor has stopped: commands are refused from then on.
    commands: Mutex<Option<VecDeque<Command>>>,
    /// Woken (with a stored permit) when a command is queued.
    command_queued: Notify,
}

impl JobCell {
    pub(crate) fn new(status: JobStatus) -> Self {
        JobCell {
            status: Mutex::new(status),
            status_changed: Notify::new(),
            commands: Mutex::new(Some(VecDeque::new())),
            command_queued: Notify::new(),
        }
    }

    /// The status, to read or change. A change is seen by watchers after
    /// [`JobCell::status_changed`].
    pub(crate) fn status(&self) -> MutexGuard<'_, JobStatus> {
        lock(&self.status)
    }

    /// Wakes everyone waiting for a change of the status.
    pub(crate) fn status_changed(&self) {
        self.status_changed.notify_waiters();
    }

    /// Waits until `predicate` holds for the status, and returns that status; `None` if the job
    /// stopped without it holding. Cancel-safe.
    pub(crate) async fn wait_for(
        &self,
        mut predicate: impl FnMut(&JobStatus) -> bool,
    ) -> Option<JobStatus> {
        loop {
            // Register before looking, so that no change slips between the look and the wait.
            let changed = self.status_changed.notified();
            {
                let status = self.status();
                if predicate(&status) {
                    return Some(status.clone());
                }
                if status.state == JobState::Stopped {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// Queues a command; gives it back if the supervisor has stopped.
    pub(crate) fn send(&self, command: Command) -> Result<(), Command> {
        match lock(&self.commands).as_mut() {
            Some(queue) => queue.push_back(command),
            None => return Err(command),
        }
        self.command_queued.notify_one();
        Ok(())
    }

    /// The next queued command, waiting for one. Cancel-safe.
    pub(crate) async fn next_command(&self) -> Command {
        loop {
            if let Some(command) = lock(&self.commands).as_mut().and_then(VecDeque::pop_front) {
                return command;
            }
            self.command_queued.notified().await;
        }
    }

    /// Refuses every later command; those still queued are dropped, so their senders learn the
    /// job is not running.
    pub(crate) fn close(&self) {
        lock(&self.commands).take();
    }
}

/// Locks a mutex whose data stays valid whatever a panicking holder did (every write is a
/// plain field update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
