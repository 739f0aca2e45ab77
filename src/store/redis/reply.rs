//! Reading the scripts' replies: flat arrays whose first element says how the call went
//! (`ok`, `corrupted`, `newer`, `unknown`), then fixed-width rows of fields.

use redis::Value;

use crate::store::record::{FORMAT, run_times_problem};
use crate::store::schedule::{OperatorMark, RunRecord, RunResult, ScheduleRecord};
use crate::store::{Lease, StoreError};

/// How many fields a run takes in a reply.
pub(super) const RUN_FIELDS: usize = 10;
/// How many fields a schedule record (with its last run) takes in a reply.
pub(super) const RECORD_FIELDS: usize = 8 + RUN_FIELDS;

/// A reply's fields after its `ok`, or the error its status names.
pub(super) fn fields(reply: Value, key: &str) -> Result<Vec<Value>, StoreError> {
    let Value::Array(mut values) = reply else {
        return Err(malformed("the script's reply is not an array"));
    };
    if values.is_empty() {
        return Err(malformed("the script's reply is empty"));
    }
    let rest = values.split_off(1);
    let status = text(&values[0]).unwrap_or_default();
    match status.as_str() {
        "ok" => Ok(rest),
        "unknown" => Err(StoreError::UnknownKey {
            key: key.to_owned(),
        }),
        "corrupted" => {
            let table = rest.first().and_then(text).unwrap_or_default();
            let key = rest.get(1).and_then(text).unwrap_or_default();
            let problem = rest.get(2).and_then(text).unwrap_or_default();
            Err(StoreError::corrupted(&table, &key, problem))
        }
        "newer" => Err(StoreError::NewerRecord {
            table: rest.first().and_then(text).unwrap_or_default(),
            key: rest.get(1).and_then(text).unwrap_or_default(),
            format: rest.get(2).and_then(int).unwrap_or(i64::MAX),
            supported: FORMAT,
        }),
        other => Err(malformed(&format!("unknown reply status `{other}`"))),
    }
}

/// A reply that no script of this build sends: the server runs other scripts under these names.
fn malformed(problem: &str) -> StoreError {
    StoreError::Backend {
        operation: "script",
        source: format!("{problem}; is another program using the same key prefix?").into(),
    }
}

/// A text field (lossy for bytes that are not UTF-8); `None` for nil.
pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field, sent as an integer or as its decimal text; `None` for nil or non-numbers.
pub(super) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// A required field of a row of `table` for `key`.
fn required<T>(table: &str, key: &str, what: &str, value: Option<T>) -> Result<T, StoreError> {
    value.ok_or_else(|| {
        StoreError::corrupted(table, key, format!("its {what} is missing or invalid"))
    })
}

/// Leases from rows of (key, epoch, expires), all held by `holder`.
pub(super) fn leases(values: &[Value], holder: &str) -> Result<Vec<Lease>, StoreError> {
    let mut leases = Vec::with_capacity(values.len() / 3);
    for row in values.chunks_exact(3) {
        let key = required("leases", "?", "key", text(&row[0]))?;
        let epoch = required("leases", &key, "epoch", int(&row[1]))?;
        let expires_at_ms = required("leases", &key, "expiry", int(&row[2]))?;
        leases.push(Lease {
            holder: holder.to_owned(),
            epoch: required("leases", &key, "epoch", u64::try_from(epoch).ok())?,
            expires_at_ms,
            key,
        });
    }
    leases.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(leases)
}

/// A run from its [`RUN_FIELDS`] fields; `None` when the first is nil (no run).
pub(super) fn run(key: &str, row: &[Value]) -> Result<Option<RunRecord>, StoreError> {
    if matches!(row[0], Value::Nil) {
        return Ok(None);
    }
    let field = |index: usize, what: &str| required("runs", key, what, int(&row[index]));
    let outcome = match text(&row[6]) {
        None => None,
        Some(name) => Some(RunResult::from_name(&name).ok_or_else(|| {
            StoreError::corrupted(
                "runs",
                key,
                format!("a run has the unknown outcome `{name}`"),
            )
        })?),
    };
    let seq = field(0, "sequence number")?;
    let (scheduled_ms, started_ms) = (field(3, "scheduled time")?, field(4, "start time")?);
    let ended_ms = int(&row[5]);
    if let Some(problem) = run_times_problem(seq, scheduled_ms, started_ms, ended_ms) {
        return Err(StoreError::corrupted("runs", key, problem));
    }
    Ok(Some(RunRecord {
        key: key.to_owned(),
        seq,
        holder: required("runs", key, "holder", text(&row[1]))?,
        epoch: required(
            "runs",
            key,
            "epoch",
            int(&row[2]).and_then(|epoch| u64::try_from(epoch).ok()),
        )?,
        scheduled_ms,
        started_ms,
        ended_ms,
        outcome,
        attempts: u32::try_from(field(7, "attempts")?.max(0)).unwrap_or(u32::MAX),
        error: text(&row[8]),
        triggered: text(&row[9]).as_deref() == Some("1"),
    }))
}

/// Schedule records from rows of [`RECORD_FIELDS`] fields.
pub(super) fn records(values: &[Value]) -> Result<Vec<ScheduleRecord>, StoreError> {
    let mut records = Vec::with_capacity(values.len() / RECORD_FIELDS);
    for row in values.chunks_exact(RECORD_FIELDS) {
        let key = required("schedules", "?", "key", text(&row[0]))?;
        let mark = |by: usize| -> Result<Option<OperatorMark>, StoreError> {
            match text(&row[by]) {
                None => Ok(None),
                Some(by_name) => Ok(Some(OperatorMark {
                    by: by_name,
                    at_ms: required("schedules", &key, "operator mark", int(&row[by + 1]))?,
                })),
            }
        };
        records.push(ScheduleRecord {
            read_at_ms: required("schedules", &key, "read time", int(&row[1]))?,
            anchor_ms: int(&row[2]),
            next_due_ms: int(&row[3]),
            paused: mark(4)?,
            trigger: mark(6)?,
            last_run: run(&key, &row[8..])?,
            key,
        });
    }
    records.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn statuses_become_the_errors_they_name() {
        let reply = |values: &[&str]| Value::Array(values.iter().map(|v| bulk(v)).collect());
        assert!(matches!(
            fields(reply(&["corrupted", "leases", "k", "it has no holder"]), ""),
            Err(StoreError::Corrupted { key, problem, .. }) if key == "k" && problem == "it has no holder"
        ));
        assert!(matches!(
            fields(reply(&["newer", "schedules", "k", "7"]), ""),
            Err(StoreError::NewerRecord { key, format: 7, .. }) if key == "k"
        ));
        assert!(matches!(
            fields(reply(&["unknown"]), "asked"),
            Err(StoreError::UnknownKey { key }) if key == "asked"
        ));
        assert_eq!(fields(reply(&["ok", "a"]), "").unwrap(), [bulk("a")]);
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for reply in [
            Value::Nil,
            Value::Array(Vec::new()),
            Value::Array(vec![bulk("surprise")]),
            Value::Int(3),
        ] {
            assert!(matches!(
                fields(reply, "k"),
                Err(StoreError::Backend { .. })
            ));
        }
        // Short or odd rows are ignored or refused, never indexed out of bounds.
        assert!(records(&[bulk("k")]).unwrap().is_empty());
        assert!(leases(&[bulk("k"), bulk("x"), bulk("1")], "h").is_err());
        assert!(leases(&[bulk("k"), bulk("-5"), bulk("1")], "h").is_err());
    }

    #[test]
    fn runs_with_unknown_outcomes_are_corrupted() {
        let mut row: Vec<Value> = ["1", "h", "5", "0", "0", "9", "exploded", "1"]
            .iter()
            .map(|v| bulk(v))
            .collect();
        row.extend([Value::Nil, bulk("0")]);
        assert!(matches!(
            run("k", &row),
            Err(StoreError::Corrupted { key, .. }) if key == "k"
        ));
        row[6] = bulk("failed");
        let parsed = run("k", &row).unwrap().unwrap();
        assert_eq!(
            (parsed.seq, parsed.epoch, parsed.outcome, parsed.ended_ms),
            (1, 5, Some(RunResult::Failed), Some(9))
        );
        row[0] = Value::Nil;
        assert_eq!(run("k", &row).unwrap(), None);
    }
}
