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
//! A job is named as its hosts register it; its records are those of its lease keys (`job` for
//! a `global` job, `job@group` for each group of a `cluster` job, `job#p` for each partition of
//! a `partitioned` one: see [`job_of_key`]), and a command acts on all of them.
//! [`ClusterControl::status`] reads the whole cluster at once: every job's view, every lease with
//! its holder, epoch and expiry, and the live members of the partitioned jobs. The admin
//! endpoint's `GET /api/cluster` and the `loopjob` command (feature `cli`) are built on it, and
//! show it in the schema of `cluster::json` (features `admin` or `cli`).
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

#[cfg(any(feature = "admin", feature = "cli"))]
pub mod json;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::status::ClusterView;
use crate::store::{
    LeaseStatus, LeaseStore, Member, RunRecord, ScheduleRecord, StoreError, StoreOptions,
};

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

/// What the store knows of the cluster, read by [`ClusterControl::status`]: every guarded job's
/// cluster schedule, every lease, and the live members of every partitioned job.
///
/// The store knows a node only through what it writes there: the leases it holds, and (for a
/// partitioned job, whose nodes share its partitions) its membership heartbeat. A node that
/// runs a `cluster` or `global` job without leading it leaves no trace in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// Every guarded job that has schedule records, by name.
    pub jobs: BTreeMap<String, ClusterView>,
    /// Every lease in the store, held or not, sorted by key: each with its last holder, epoch
    /// and expiry (see [`job_of_key`] for the job a key belongs to).
    pub leases: Vec<LeaseStatus>,
    /// The live members of each partitioned job, by job name; a job whose members all
    /// expired has an empty list.
    pub members: BTreeMap<String, Vec<Member>>,
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

    /// Opens the store at `url` with `options` (a table prefix, an operation timeout), as
    /// [`store::open_with`](crate::store::open_with) does.
    pub fn open_with(url: &str, options: StoreOptions) -> Result<Self, ClusterError> {
        Ok(ClusterControl::new(crate::store::open_with(url, options)?))
    }

    /// The store's backend: `memory`, `sqlite`, `postgres`, `mysql` or `redis`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
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
                .entry(job_of_key(&record.key).to_owned())
                .or_default()
                .push(record);
        }
        Ok(by_job
            .into_iter()
            .map(|(job, records)| (job, ClusterView::from_records(records)))
            .collect())
    }

    /// Everything the store knows of the cluster: every guarded job's view, every lease, and
    /// the live members of every partitioned job (see [`ClusterStatus`]). Two listings, and
    /// one members read per partitioned job.
    pub async fn status(&self) -> Result<ClusterStatus, ClusterError> {
        let jobs = self.jobs().await?;
        let leases = self.store.list("").await?;
        let members = self.members_of(&jobs, &leases).await?;
        Ok(ClusterStatus {
            jobs,
            leases,
            members,
        })
    }

    /// The live members of every partitioned job, by job name: the nodes that share its
    /// partitions. Other jobs have no members in the store (see [`ClusterStatus`]).
    pub async fn members(&self) -> Result<BTreeMap<String, Vec<Member>>, ClusterError> {
        Ok(self.status().await?.members)
    }

    /// The members of each partitioned job among `jobs` and the jobs of `leases`.
    async fn members_of(
        &self,
        jobs: &BTreeMap<String, ClusterView>,
        leases: &[LeaseStatus],
    ) -> Result<BTreeMap<String, Vec<Member>>, ClusterError> {
        let keys = jobs
            .values()
            .flat_map(|view| view.records.iter().map(|record| record.key.as_str()))
            .chain(leases.iter().map(|status| status.lease.key.as_str()));
        let partitioned: BTreeSet<&str> = keys.filter_map(partitioned_job).collect();
        let mut members = BTreeMap::new();
        for job in partitioned {
            let scope = crate::guard::membership_scope(job);
            members.insert(job.to_owned(), self.store.members(&scope).await?);
        }
        Ok(members)
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
            .filter(|record| job_of_key(&record.key) == name)
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

/// The job a lease key belongs to: `job#3` (a partition) and `job@group` (a `cluster` job's
/// group) belong to `job`; a `global` job's key is its name (see [`guard`](crate::guard)'s key
/// table). This is how [`ClusterControl`] finds a job's keys by its name.
///
/// ```
/// use loopjob::cluster::job_of_key;
///
/// assert_eq!(job_of_key("report@eu-west"), "report");
/// assert_eq!(job_of_key("sync#12"), "sync");
/// assert_eq!(job_of_key("nightly"), "nightly");
/// ```
pub fn job_of_key(key: &str) -> &str {
    if let Some(job) = partitioned_job(key) {
        return job;
    }
    match key.rsplit_once('@') {
        Some((job, _)) => job,
        None => key,
    }
}

/// The job of a partition's key (`sync` for `sync#12`); `None` for any other key.
fn partitioned_job(key: &str) -> Option<&str> {
    let (job, partition) = key.rsplit_once('#')?;
    let is_number = !partition.is_empty() && partition.bytes().all(|b| b.is_ascii_digit());
    is_number.then_some(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_jobs() {
        assert_eq!(job_of_key("report"), "report");
        assert_eq!(job_of_key("report@eu-west"), "report");
        assert_eq!(job_of_key("sync#12"), "sync");
        assert_eq!(job_of_key("odd#name"), "odd#name");
        assert_eq!(partitioned_job("sync#12"), Some("sync"));
        assert_eq!(partitioned_job("sync#members"), None);
        assert_eq!(partitioned_job("report@eu"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn status_lists_jobs_leases_and_the_partitioned_jobs_members() {
        use crate::store::{MemoryStore, NextDue, Plan};
        use std::time::Duration;

        let store = Arc::new(MemoryStore::new());
        let ttl = Duration::from_secs(15);
        let keys = [
            "report@eu".to_owned(),
            "sync#0".to_owned(),
            "sync#1".to_owned(),
        ];
        let won = store.try_acquire("web-1/a", &keys, ttl).await.unwrap();
        let plans: Vec<Plan> = won
            .iter()
            .map(|lease| Plan {
                key: lease.key.clone(),
                epoch: lease.epoch,
                next_due: NextDue::After(Duration::from_secs(60)),
                only_if_unset: true,
            })
            .collect();
        store.plan("web-1/a", &plans).await.unwrap();
        store
            .heartbeat("sync#members", "web-1/a", ttl)
            .await
            .unwrap();
        store
            .heartbeat("sync#members", "web-2/b", ttl)
            .await
            .unwrap();
        // A lease that no guarded job holds (a `LeaderElector`'s) is listed too.
        store
            .try_acquire("tool", &["migrations".to_owned()], ttl)
            .await
            .unwrap();

        let control = ClusterControl::new(store);
        let status = control.status().await.unwrap();
        assert_eq!(
            status.jobs.keys().collect::<Vec<_>>(),
            ["report", "sync"],
            "{status:?}"
        );
        assert_eq!(status.jobs["sync"].records.len(), 2);
        let leases: Vec<(&str, &str)> = status
            .leases
            .iter()
            .map(|s| (s.lease.key.as_str(), s.lease.holder.as_str()))
            .collect();
        assert_eq!(
            leases,
            [
                ("migrations", "tool"),
                ("report@eu", "web-1/a"),
                ("sync#0", "web-1/a"),
                ("sync#1", "web-1/a")
            ]
        );
        let members: Vec<&str> = status.members["sync"]
            .iter()
            .map(|m| m.member.as_str())
            .collect();
        assert_eq!(members, ["web-1/a", "web-2/b"]);
        assert_eq!(
            status.members.len(),
            1,
            "only partitioned jobs have members"
        );
        assert_eq!(control.members().await.unwrap(), status.members);
    }
}
