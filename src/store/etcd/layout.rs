//! Where the etcd store keeps what, and how its values read and write: one place for the key
//! names and the JSON documents, and for the checks that refuse a corrupted document.

use serde::{Deserialize, Serialize};

use crate::store::record::{FORMAT, Record, run_times_problem};
use crate::store::schedule::{OperatorMark, RunRecord, RunResult};
use crate::store::{Lease, StoreError};

/// The etcd key names under one prefix (`P`):
///
/// ```text
/// P lease/KEY                     the lease row (JSON LeaseRow); never deleted
/// P held/KEY                      the holder's name, attached to its etcd lease: the key is held while it exists
/// P expiry/LEASE                  the last expiry (ms) its holder asked of etcd lease LEASE (16 hex digits)
/// P members/LEN/SCOPE/MEMBER      the member's expiry (ms), attached to the member's etcd lease
/// P schedule/KEY                  the schedule record (JSON ScheduleDoc)
/// P runs/LEN/KEY/SEQ              one run (JSON RunDoc), SEQ in 20 digits; LEN is KEY's length
/// P commands/KEY                  the last command, unique per call, watched by holders
/// ```
///
/// `LEN/` (the name's byte length in three digits) keeps one scope's or key's range from
/// covering another's whose name it starts: `runs/003/job/` never matches key `job/1`.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    prefix: String,
}

impl Layout {
    pub(super) fn new(prefix: &str) -> Self {
        Layout {
            prefix: prefix.to_owned(),
        }
    }

    fn section(&self, section: &str, rest: &str) -> Vec<u8> {
        format!("{}{section}/{rest}", self.prefix).into_bytes()
    }

    /// The lease row of `key`; with a key prefix, the start of every row under it.
    pub(super) fn row(&self, key: &str) -> Vec<u8> {
        self.section("lease", key)
    }

    /// The marker that exists while `key` is held; with a key prefix, the start of every marker.
    pub(super) fn held(&self, key: &str) -> Vec<u8> {
        self.section("held", key)
    }

    pub(super) fn expiry(&self, lease: i64) -> Vec<u8> {
        self.section("expiry", &format!("{lease:016x}"))
    }

    pub(super) fn expiries(&self) -> Vec<u8> {
        self.section("expiry", "")
    }

    pub(super) fn members(&self, scope: &str) -> Vec<u8> {
        self.section("members", &format!("{:03}/{scope}/", scope.len()))
    }

    pub(super) fn member(&self, scope: &str, member: &str) -> Vec<u8> {
        let mut name = self.members(scope);
        name.extend_from_slice(member.as_bytes());
        name
    }

    /// The schedule record of `key`; with a key prefix, the start of every record under it.
    pub(super) fn schedule(&self, key: &str) -> Vec<u8> {
        self.section("schedule", key)
    }

    pub(super) fn runs(&self, key: &str) -> Vec<u8> {
        self.section("runs", &format!("{:03}/{key}/", key.len()))
    }

    pub(super) fn run(&self, key: &str, seq: i64) -> Vec<u8> {
        let mut name = self.runs(key);
        name.extend_from_slice(format!("{:020}", seq.max(0)).as_bytes());
        name
    }

    pub(super) fn command(&self, key: &str) -> Vec<u8> {
        self.section("commands", key)
    }

    /// The name after `start` in the etcd key `full`, if it is under it.
    pub(super) fn name_after(start: &[u8], full: &[u8]) -> Option<String> {
        full.strip_prefix(start)
            .map(|rest| String::from_utf8_lossy(rest).into_owned())
    }
}

/// A lease row: who holds (or last held) the key, at which epoch, on which etcd lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LeaseRow {
    #[serde(default)]
    pub(super) holder: String,
    #[serde(default)]
    pub(super) epoch: i64,
    /// The etcd lease the key was last attached to.
    #[serde(default)]
    pub(super) lease: i64,
    /// The expiry asked for at the last acquisition (ms, the caller's clock).
    #[serde(default)]
    pub(super) expires: i64,
    /// When it was released (ms, the caller's clock), while it stays released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) freed: Option<i64>,
}

impl LeaseRow {
    /// The row in `value`, or why it is corrupted (naming `key`).
    pub(super) fn read(table: &str, key: &str, value: &[u8]) -> Result<Self, StoreError> {
        let row: LeaseRow = serde_json::from_slice(value).map_err(|error| {
            StoreError::corrupted(table, key, format!("not a lease row: {error}"))
        })?;
        if row.holder.is_empty() {
            return Err(StoreError::corrupted(table, key, "the lease has no holder"));
        }
        if row.epoch < 1 {
            return Err(StoreError::corrupted(
                table,
                key,
                format!("the lease's epoch {} is below 1", row.epoch),
            ));
        }
        Ok(row)
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(super) fn lease(&self, key: &str, expires_at_ms: i64) -> Lease {
        Lease {
            key: key.to_owned(),
            holder: self.holder.clone(),
            epoch: self.epoch as u64,
            expires_at_ms,
        }
    }
}

/// An operator's mark as a schedule document keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MarkDoc {
    by: String,
    at: i64,
}

/// A schedule record as its etcd document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScheduleDoc {
    format: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    anchor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_due: Option<i64>,
    #[serde(default)]
    last_seq: i64,
    #[serde(default)]
    history_limit: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused: Option<MarkDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trigger: Option<MarkDoc>,
}

/// The record in `value`: refused if it is not one, or if a newer loopjob wrote it.
pub(super) fn read_record(table: &str, key: &str, value: &[u8]) -> Result<Record, StoreError> {
    let doc: ScheduleDoc = serde_json::from_slice(value).map_err(|error| {
        StoreError::corrupted(table, key, format!("not a schedule record: {error}"))
    })?;
    if doc.format > FORMAT {
        return Err(StoreError::NewerRecord {
            table: table.to_owned(),
            key: key.to_owned(),
            format: doc.format,
            supported: FORMAT,
        });
    }
    let mark = |doc: Option<MarkDoc>| {
        doc.map(|mark| OperatorMark {
            by: mark.by,
            at_ms: mark.at,
        })
    };
    Ok(Record {
        anchor: doc.anchor,
        next_due: doc.next_due,
        last_seq: doc.last_seq,
        history_limit: doc.history_limit,
        paused: mark(doc.paused),
        trigger: mark(doc.trigger),
    })
}

pub(super) fn record_json(record: &Record) -> Vec<u8> {
    let mark = |mark: &Option<OperatorMark>| {
        mark.as_ref().map(|mark| MarkDoc {
            by: mark.by.clone(),
            at: mark.at_ms,
        })
    };
    let doc = ScheduleDoc {
        format: FORMAT,
        anchor: record.anchor,
        next_due: record.next_due,
        last_seq: record.last_seq,
        history_limit: record.history_limit,
        paused: mark(&record.paused),
        trigger: mark(&record.trigger),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// One run as its etcd document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunDoc {
    seq: i64,
    holder: String,
    epoch: i64,
    scheduled: i64,
    started: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(default)]
    attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default)]
    triggered: bool,
}

/// The run in `value`, or why it is corrupted (naming `key`).
pub(super) fn read_run(table: &str, key: &str, value: &[u8]) -> Result<RunRecord, StoreError> {
    let doc: RunDoc = serde_json::from_slice(value)
        .map_err(|error| StoreError::corrupted(table, key, format!("not a run: {error}")))?;
    let epoch = u64::try_from(doc.epoch).map_err(|_| {
        StoreError::corrupted(
            table,
            key,
            format!("run {} has a negative epoch {}", doc.seq, doc.epoch),
        )
    })?;
    if let Some(problem) = run_times_problem(doc.seq, doc.scheduled, doc.started, doc.ended) {
        return Err(StoreError::corrupted(table, key, problem));
    }
    let outcome = match doc.outcome.as_deref() {
        None => None,
        Some(name) => Some(RunResult::from_name(name).ok_or_else(|| {
            StoreError::corrupted(
                table,
                key,
                format!("run {} has the unknown outcome `{name}`", doc.seq),
            )
        })?),
    };
    Ok(RunRecord {
        key: key.to_owned(),
        seq: doc.seq,
        holder: doc.holder,
        epoch,
        scheduled_ms: doc.scheduled,
        started_ms: doc.started,
        ended_ms: doc.ended,
        outcome,
        attempts: u32::try_from(doc.attempts.max(0)).unwrap_or(u32::MAX),
        error: doc.error,
        triggered: doc.triggered,
    })
}

pub(super) fn run_json(run: &RunRecord) -> Vec<u8> {
    let doc = RunDoc {
        seq: run.seq,
        holder: run.holder.clone(),
        epoch: i64::try_from(run.epoch).unwrap_or(i64::MAX),
        scheduled: run.scheduled_ms,
        started: run.started_ms,
        ended: run.ended_ms,
        outcome: run.outcome.map(|outcome| outcome.as_str().to_owned()),
        attempts: i64::from(run.attempts),
        error: run.error.clone(),
        triggered: run.triggered,
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// A time in ms as stored in an expiry or member value; `None` if it is not a number.
pub(super) fn read_ms(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_one_name_never_cover_another() {
        let layout = Layout::new("p_");
        assert!(!layout.runs("job/1").starts_with(&layout.runs("job")));
        assert!(!layout.members("a/b").starts_with(&layout.members("a")));
        assert!(layout.run("job", 7).starts_with(&layout.runs("job")));
        assert_eq!(layout.run("k", 12), b"p_runs/001/k/00000000000000000012");
    }

    #[test]
    fn corrupted_rows_are_refused() {
        let no_holder = br#"{"epoch":3,"lease":0,"expires":0}"#;
        assert!(matches!(
            LeaseRow::read("t", "k", no_holder),
            Err(StoreError::Corrupted { .. })
        ));
        let negative = br#"{"holder":"a","epoch":-5}"#;
        assert!(LeaseRow::read("t", "k", negative).is_err());
        assert!(LeaseRow::read("t", "k", b"nonsense").is_err());
        let newer = br#"{"format":99}"#;
        assert!(matches!(
            read_record("t", "k", newer),
            Err(StoreError::NewerRecord { format: 99, .. })
        ));
    }
}
