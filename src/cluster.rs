//! The cluster schedule from outside a host: read and steer guarded jobs through their
//! schedule records in the store, from a store URL, for tools (an admin command, a dashboard,
//! a deploy script).
//!
//! A guarded job's timing, pause state and run history live in the store beside its leases
//! (see [`store::schedule`](crate::store::schedule)), so a tool needs no running host to see
//! when a job last ran and where, or to pause it cluster-wide: [`ClusterControl`] opens the
//! store and works on it by job name. Whichever node leads a job obeys a command within one
//! retry period (at once where the store notifies), and a pause survives restarts of every
//! node. An unguarded job (`leader = "none"`) has no record: pause it per process with
//! [`HostHandle::pause`](crate::HostHandle::pause).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use loopjob::cluster::{ClusterControl, ClusterError};
//! use loopjob::store::{LeaseStore, MemoryStore, NextDue, Plan};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::new());
//! // A host with a guarded job `report` has planned its key's first run:
//! let lease = store.try_acquire("web-1", &["report".to_owned()], Duration::from_secs(15)).await?;
//! let plan = Plan { key: "report".into(), epoch: lease[0].epoch, next_due: NextDue::After(Duration::ZERO), only_if_unset: true };
//! store.plan("web-1", &[plan]).await?;
//!
//! let control = ClusterControl::new(store).operator("alice");
//! control.pause("report").await?;
//! assert!(control.job("report").await?.paused);
//! assert!(matches!(control.pause("nightly").await, Err(ClusterError::UnknownJob { .. })));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::status::ClusterView;
use crate::store::{LeaseStore, RunRecord, ScheduleRecord, StoreError};

/// Reads and steers guarded jobs' cluster schedules in a store, without a host.
///
/// Every method is one or a few store calls; none holds a lease or changes one.
#[derive(Clone)]
pub struct ClusterControl {
    store: Arc<dyn LeaseStore>,
    operator: String,
}

/// Why a [`ClusterControl`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The store could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No schedule record belongs to a job of this name.
    #[error(
        "no guarded job named `{name}` has a schedule record in this store (jobs with records: \
         {known}). A guarded job has one once a node has held its lease; a job with \
         leader = \"none\" has none: pause it per process with HostHandle::pause"
    )]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The jobs that have records, comma-separated (`none` if there are none).
        known: String,
    },
}

/// An operator's command on a key's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OperatorCommand {
    Pause,
    Resume,
    Trigger,
}

impl OperatorCommand {
    /// Writes the command to `key`'s record, as `by`.
    pub(crate) async fn write(
        self,
        store: &dyn LeaseStore,
        key: &str,
        by: &str,
    ) -> Result<ScheduleRecord, StoreError> {
        match self {
            OperatorCommand::Pause => store.pause(key, by).await,
            OperatorCommand::Resume => store.resume(key, by).await,
            OperatorCommand::Trigger => store.trigger(key, by).await,
        }
    }
}

impl ClusterControl {
    /// Works on `store` (already opened and initialised by the hosts), as operator `loopjob`.
    pub fn new(store: Arc<dyn LeaseStore>) -> Self {
        ClusterControl {
            store,
            operator: "loopjob".to_owned(),
        }
    }

    /// Opens the store at `url` (as [`store::open`](crate::store::open) does); the hosts create
    /// its tables.
    pub fn open(url: &str) -> Result<Self, ClusterError> {
        Ok(ClusterControl::new(crate::store::open(url)?))
    }

    /// Names who gives the commands (a user, a tool), as the records' operator marks show it.
    pub fn operator(mut self, name: impl Into<String>) -> Self {
        self.operator = name.into();
        self
    }

    /// Every guarded job that has records, by name, with its cluster view.
    pub async fn jobs(&self) -> Result<BTreeMap<String, ClusterView>, ClusterError> {
        let mut by_job: BTreeMap<String, Vec<ScheduleRecord>> = BTreeMap::new();
        for record in self.store.list_schedules("").await? {
            by_job
                .entry(job_of(&record.key).to_owned())
                .or_default()
                .push(record);
        }
        Ok(by_job
            .into_iter()
            .map(|(job, records)| (job, ClusterView::from_records(records)))
            .collect())
    }

    /// The cluster view of the job named `name`: next due time, last run, operator marks, and
    /// each of its keys' records.
    pub async fn job(&self, name: &str) -> Result<ClusterView, ClusterError> {
        Ok(ClusterView::from_records(self.records_of(name).await?))
    }

    /// The record of one lease key (`job`, `job@group`, `job#p`).
    pub async fn record(&self, key: &str) -> Result<ScheduleRecord, ClusterError> {
        let mut records = self.store.schedules(&[key.to_owned()]).await?;
        match records.pop() {
            Some(record) => Ok(record),
            None => Err(StoreError::UnknownKey {
                key: key.to_owned(),
            }
            .into()),
        }
    }

    /// The job's newest `limit` runs across its keys, newest first.
    pub async fn history(&self, name: &str, limit: u32) -> Result<Vec<RunRecord>, ClusterError> {
        let mut runs = Vec::new();
        for record in self.records_of(name).await? {
            runs.extend(self.store.history(&record.key, limit).await?);
        }
        runs.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.seq.cmp(&a.seq)));
        runs.truncate(limit as usize);
        Ok(runs)
    }

    /// Pauses the job cluster-wide: no scheduled run starts anywhere until it is resumed.
    pub async fn pause(&self, name: &str) -> Result<ClusterView, ClusterError> {
        self.command(name, OperatorCommand::Pause).await
    }

    /// Resumes the job cluster-wide.
    pub async fn resume(&self, name: &str) -> Result<ClusterView, ClusterError> {
        self.command(name, OperatorCommand::Resume).await
    }

    /// Asks whichever node leads the job (each partition's holder, for a partitioned job) for
    /// one run, even while paused.
    pub async fn trigger(&self, name: &str) -> Result<ClusterView, ClusterError> {
        self.command(name, OperatorCommand::Trigger).await
    }

    async fn command(
        &self,
        name: &str,
        command: OperatorCommand,
    ) -> Result<ClusterView, ClusterError> {
        let mut records = Vec::new();
        for record in self.records_of(name).await? {
            let written = command
                .write(self.store.as_ref(), &record.key, &self.operator)
                .await?;
            records.push(written);
        }
        Ok(ClusterView::from_records(records))
    }

    /// The records of the job named `name`; an error naming the known jobs if it has none.
    async fn records_of(&self, name: &str) -> Result<Vec<ScheduleRecord>, ClusterError> {
        let records: Vec<ScheduleRecord> = self
            .store
            .list_schedules(name)
            .await?
            .into_iter()
            .filter(|record| job_of(&record.key) == name)
            .collect();
        if !records.is_empty() {
            return Ok(records);
        }
        let known: Vec<String> = self.jobs().await?.into_keys().collect();
        Err(ClusterError::UnknownJob {
            name: name.to_owned(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        })
    }
}

impl fmt::Debug for ClusterControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterControl")
            .field("store", &self.store.backend())
            .field("operator", &self.operator)
            .finish()
    }
}

/// The job a lease key belongs to: `job#3` and `job@group` belong to `job` (see
/// [`guard`](crate::guard)'s key table).
fn job_of(key: &str) -> &str {
    if let Some((job, partition)) = key.rsplit_once('#') {
        if !partition.is_empty() && partition.bytes().all(|b| b.is_ascii_digit()) {
            return job;
        }
    }
    match key.rsplit_once('@') {
        Some((job, _)) => job,
        None => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_jobs() {
        assert_eq!(job_of("report"), "report");
        assert_eq!(job_of("report@eu-west"), "report");
        assert_eq!(job_of("sync#12"), "sync");
        assert_eq!(job_of("odd#name"), "odd#name");
    }
}
