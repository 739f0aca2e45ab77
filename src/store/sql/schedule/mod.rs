//! What the SQL stores share for the cluster schedule: each write's flow as one transaction
//! (here), how a row is read and checked ([`rows`]), and the whole-row upserts of the dialects
//! with `?` placeholders (`upserts`).
//!
//! Every fenced write (plan, start, end) and every operator command runs as one transaction on
//! a [`ScheduleTx`]: it first reads and locks the rows it will change (the lease rows the caller
//! holds, by the database's clock, with their records), applies the shared rules of
//! [`record`](crate::store::record) to them in Rust, writes the changed rows back in a few
//! batched statements, and commits. So the number of statements does not grow with the batch,
//! a stale epoch changes nothing (its lease row does not match), and the new leader of a key
//! cannot take the lease between the check and the write (the lease row is locked until the
//! commit: PostgreSQL holds it `FOR KEY SHARE`, MySQL `FOR UPDATE`, SQLite its write lock).

mod rows;
#[cfg(any(feature = "sqlite", feature = "mysql"))]
mod upserts;

use std::time::Duration;

use async_trait::async_trait;

pub(crate) use self::rows::*;
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) use self::upserts::*;
use super::bounded;
use crate::store::args::{CheckedEnd, CheckedPlan, CheckedStart};
use crate::store::record::Record;
use crate::store::schedule::{RunRecord, ScheduleRecord, StartedRun};
use crate::store::{Plan, RunEnd, RunStart, StoreError, args};

/// A key the caller holds, as a fenced read found it.
#[derive(Debug)]
pub(crate) struct Fenced {
    pub(crate) key: String,
    /// The store's clock at the read.
    pub(crate) now: i64,
    pub(crate) record: Option<Record>,
    /// The run asked for, if its row exists and was started at the caller's epoch.
    pub(crate) run: Option<RunRecord>,
}

/// A key and epoch to fence on, with the run (by sequence number) an end names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FenceRef<'a> {
    pub(crate) key: &'a str,
    pub(crate) epoch: i64,
    pub(crate) seq: Option<i64>,
}

/// A record read by an operator command: the store's clock, the record and its last run.
#[derive(Debug)]
pub(crate) struct ReadRecord {
    pub(crate) now: i64,
    pub(crate) record: Record,
    pub(crate) last_run: Option<RunRecord>,
}

/// One backend's schedule transaction: the reads and batched writes the shared flows need.
/// Dropping it without [`ScheduleTx::commit`] rolls everything back.
#[async_trait]
pub(crate) trait ScheduleTx: Send {
    /// Reads and locks, among `refs`, the lease rows `holder` holds at their epoch and that are
    /// unexpired by the store's clock, with each key's record and the run each ref names (if it
    /// was started at that epoch). Decoding errors name the key.
    async fn fenced(
        &mut self,
        holder: &str,
        refs: &[FenceRef<'_>],
    ) -> Result<Vec<Fenced>, StoreError>;

    /// Reads and locks `key`'s record and last run; `None` if it has no record.
    async fn record(&mut self, key: &str) -> Result<Option<ReadRecord>, StoreError>;

    /// Writes these records whole (inserting the missing ones), with this build's format.
    async fn write_records(&mut self, records: &[(&str, &Record)]) -> Result<(), StoreError>;

    /// Writes these runs whole (inserting the missing ones).
    async fn write_runs(&mut self, runs: &[RunRecord]) -> Result<(), StoreError>;

    /// Deletes the runs of `keys` older than their record's history keeps.
    async fn trim(&mut self, keys: &[&str]) -> Result<(), StoreError>;

    /// Tells subscribers, when the transaction commits, that an operator changed `key`.
    async fn notify(&mut self, key: &str) -> Result<(), StoreError> {
        let _ = key;
        Ok(())
    }

    /// Commits.
    async fn commit(&mut self) -> Result<(), StoreError>;
}

/// An SQL store that opens schedule transactions: what the shared flows below need of it.
#[async_trait]
pub(crate) trait ScheduleStore: Send + Sync {
    /// The bound on every call.
    fn timeout(&self) -> Duration;

    /// Opens a write transaction for `operation`.
    async fn begin(&self, operation: &'static str) -> Result<Box<dyn ScheduleTx + '_>, StoreError>;
}

/// [`LeaseStore::plan`](crate::store::LeaseStore::plan): checks, then one transaction.
pub(crate) async fn plan_with(
    store: &dyn ScheduleStore,
    holder: &str,
    plans: &[Plan],
) -> Result<Vec<String>, StoreError> {
    let holder = args::name("holder", holder)?;
    let plans = args::plans(plans)?;
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    bounded("plan", store.timeout(), async {
        let mut tx = store.begin("plan").await?;
        plan(&mut *tx, holder, &plans).await
    })
    .await
}

/// [`LeaseStore::start_runs`](crate::store::LeaseStore::start_runs): checks, then one
/// transaction.
pub(crate) async fn start_runs_with(
    store: &dyn ScheduleStore,
    holder: &str,
    starts: &[RunStart],
) -> Result<Vec<StartedRun>, StoreError> {
    let holder = args::name("holder", holder)?;
    let starts = args::starts(starts)?;
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    bounded("start_runs", store.timeout(), async {
        let mut tx = store.begin("start_runs").await?;
        start_runs(&mut *tx, holder, &starts).await
    })
    .await
}

/// [`LeaseStore::end_runs`](crate::store::LeaseStore::end_runs): checks, then one transaction.
pub(crate) async fn end_runs_with(
    store: &dyn ScheduleStore,
    holder: &str,
    ends: &[RunEnd],
) -> Result<Vec<String>, StoreError> {
    let holder = args::name("holder", holder)?;
    let ends = args::ends(ends)?;
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    bounded("end_runs", store.timeout(), async {
        let mut tx = store.begin("end_runs").await?;
        end_runs(&mut *tx, holder, &ends).await
    })
    .await
}

/// The operator commands.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Command {
    Pause,
    Resume,
    Trigger,
}

/// An operator command: checks, then one transaction (see [`command`]).
pub(crate) async fn command_with(
    store: &dyn ScheduleStore,
    which: Command,
    key: &str,
    by: &str,
) -> Result<ScheduleRecord, StoreError> {
    let key = args::name("lease key", key)?;
    let by = args::name("operator name", by)?;
    let operation = match which {
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::Trigger => "trigger",
    };
    bounded(operation, store.timeout(), async {
        let mut tx = store.begin(operation).await?;
        command(&mut *tx, key, by, |record, by, now| match which {
            Command::Pause => record.pause(by, now),
            Command::Resume => record.resume(),
            Command::Trigger => record.trigger(by, now),
        })
        .await
    })
    .await
}

/// The element of `batch` (sorted by key) for `key`.
fn find<'b, T>(batch: &'b [T], key: &str, key_of: impl Fn(&T) -> &str) -> Option<&'b T> {
    let index = batch.binary_search_by(|item| key_of(item).cmp(key)).ok()?;
    batch.get(index)
}

/// [`LeaseStore::plan`](crate::store::LeaseStore::plan) on a transaction.
async fn plan(
    tx: &mut dyn ScheduleTx,
    holder: &str,
    plans: &[CheckedPlan<'_>],
) -> Result<Vec<String>, StoreError> {
    let refs: Vec<_> = plans
        .iter()
        .map(|plan| FenceRef {
            key: plan.key,
            epoch: plan.epoch,
            seq: None,
        })
        .collect();
    let mut writes = Vec::new();
    for fenced in tx.fenced(holder, &refs).await? {
        let Some(plan) = find(plans, &fenced.key, |plan| plan.key) else {
            continue;
        };
        let mut record = fenced.record.unwrap_or_default();
        if plan.only_if_unset && record.next_due.is_some() {
            continue;
        }
        record.set_due(plan.due, fenced.now);
        writes.push((plan.key, record));
    }
    writes.sort_unstable_by_key(|(key, _)| *key);
    let records: Vec<_> = writes.iter().map(|(key, record)| (*key, record)).collect();
    tx.write_records(&records).await?;
    tx.commit().await?;
    Ok(writes.into_iter().map(|(key, _)| key.to_owned()).collect())
}

/// [`LeaseStore::start_runs`](crate::store::LeaseStore::start_runs) on a transaction.
async fn start_runs(
    tx: &mut dyn ScheduleTx,
    holder: &str,
    starts: &[CheckedStart<'_>],
) -> Result<Vec<StartedRun>, StoreError> {
    let refs: Vec<_> = starts
        .iter()
        .map(|start| FenceRef {
            key: start.key,
            epoch: start.epoch,
            seq: None,
        })
        .collect();
    let mut records = Vec::new();
    let mut runs = Vec::new();
    for fenced in tx.fenced(holder, &refs).await? {
        let Some(start) = find(starts, &fenced.key, |start| start.key) else {
            continue;
        };
        let mut record = fenced.record.unwrap_or_default();
        let now = fenced.now;
        let Some(seq) = record.start(start.due, start.triggered, start.history_limit, now) else {
            continue;
        };
        records.push((start.key, record));
        runs.push(start.run(holder, seq, now));
    }
    records.sort_unstable_by_key(|(key, _)| *key);
    runs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let written: Vec<_> = records.iter().map(|(key, record)| (*key, record)).collect();
    let keys: Vec<_> = records.iter().map(|(key, _)| *key).collect();
    tx.write_records(&written).await?;
    tx.write_runs(&runs).await?;
    tx.trim(&keys).await?;
    tx.commit().await?;
    Ok(runs
        .into_iter()
        .map(|run| StartedRun {
            key: run.key,
            seq: run.seq,
            started_ms: run.started_ms,
        })
        .collect())
}

/// [`LeaseStore::end_runs`](crate::store::LeaseStore::end_runs) on a transaction.
async fn end_runs(
    tx: &mut dyn ScheduleTx,
    holder: &str,
    ends: &[CheckedEnd<'_>],
) -> Result<Vec<String>, StoreError> {
    let refs: Vec<_> = ends
        .iter()
        .map(|end| FenceRef {
            key: end.key,
            epoch: end.epoch,
            seq: Some(end.seq),
        })
        .collect();
    let mut records = Vec::new();
    let mut runs = Vec::new();
    for fenced in tx.fenced(holder, &refs).await? {
        let Some(end) = find(ends, &fenced.key, |end| end.key) else {
            continue;
        };
        let Some(mut record) = fenced.record else {
            continue;
        };
        if let Some(mut run) = fenced.run {
            // Never before its start, even if the database's clock was set back since.
            run.ended_ms.get_or_insert(fenced.now.max(run.started_ms));
            run.outcome = Some(end.outcome);
            run.attempts = u32::try_from(end.attempts).unwrap_or(u32::MAX);
            run.error.clone_from(&end.error);
            runs.push(run);
        }
        record.set_due(end.due, fenced.now);
        records.push((end.key, record));
    }
    records.sort_unstable_by_key(|(key, _)| *key);
    runs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let written: Vec<_> = records.iter().map(|(key, record)| (*key, record)).collect();
    tx.write_records(&written).await?;
    tx.write_runs(&runs).await?;
    tx.commit().await?;
    Ok(records.into_iter().map(|(key, _)| key.to_owned()).collect())
}

/// An operator command on a transaction: reads `key`'s record (or answers
/// [`StoreError::UnknownKey`]), applies `apply`, writes it, notifies, and answers the record.
async fn command(
    tx: &mut dyn ScheduleTx,
    key: &str,
    by: &str,
    apply: impl FnOnce(&mut Record, &str, i64) + Send,
) -> Result<ScheduleRecord, StoreError> {
    let Some(mut read) = tx.record(key).await? else {
        return Err(StoreError::UnknownKey {
            key: key.to_owned(),
        });
    };
    apply(&mut read.record, by, read.now);
    tx.write_records(&[(key, &read.record)]).await?;
    tx.notify(key).await?;
    tx.commit().await?;
    Ok(read.record.to_public(key, read.now, read.last_run))
}
