//! Argument checks shared by every backend, so that all of them accept and refuse the same input.

use std::time::Duration;

use super::record::Due;
use super::schedule::{MAX_ERROR_LEN, NextDue, Plan, RunEnd, RunRecord, RunResult, RunStart};
use super::{LeaseRef, MAX_NAME_LEN, StoreError};

/// The longest ttl a store accepts.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A name (key, holder, scope, member): 1 to [`MAX_NAME_LEN`] bytes.
pub(crate) fn name<'a>(what: &'static str, value: &'a str) -> Result<&'a str, StoreError> {
    if value.is_empty() {
        return Err(StoreError::invalid(
            what,
            "it is empty; give a non-empty name",
        ));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(StoreError::invalid(
            what,
            format!(
                "`{}…` is {} bytes long; the most is {MAX_NAME_LEN}",
                value.chars().take(32).collect::<String>(),
                value.len()
            ),
        ));
    }
    Ok(value)
}

/// The keys, checked, sorted and without duplicates (a fixed order also keeps concurrent
/// multi-key calls from locking rows in opposite orders).
pub(crate) fn keys(keys: &[String]) -> Result<Vec<&str>, StoreError> {
    let mut checked = keys
        .iter()
        .map(|key| name("lease key", key))
        .collect::<Result<Vec<_>, _>>()?;
    checked.sort_unstable();
    checked.dedup();
    Ok(checked)
}

/// The lease references as `(key, epoch)`, checked, sorted and without duplicates. An epoch
/// beyond `i64::MAX` can never have been issued (epochs are stored as BIGINT), so such a
/// reference is dropped: it cannot match.
pub(crate) fn lease_refs(leases: &[LeaseRef]) -> Result<Vec<(&str, i64)>, StoreError> {
    let mut checked = Vec::with_capacity(leases.len());
    for lease in leases {
        let key = name("lease key", &lease.key)?;
        if let Ok(epoch) = i64::try_from(lease.epoch) {
            checked.push((key, epoch));
        }
    }
    checked.sort_unstable();
    checked.dedup();
    Ok(checked)
}

/// The checked arguments of [`LeaseStore::try_acquire_free_for`]: the holder, the keys (sorted,
/// without duplicates), the ttl and the `free_for` wait in milliseconds.
///
/// [`LeaseStore::try_acquire_free_for`]: super::LeaseStore::try_acquire_free_for
pub(crate) fn acquire<'a>(
    holder: &'a str,
    keys: &'a [String],
    ttl: Duration,
    free_for: Duration,
) -> Result<(&'a str, Vec<&'a str>, i64, i64), StoreError> {
    Ok((
        name("holder", holder)?,
        self::keys(keys)?,
        ttl_ms(ttl)?,
        free_for_ms(free_for)?,
    ))
}

/// The ttl in whole milliseconds: at least 1 ms, at most a year.
pub(crate) fn ttl_ms(ttl: Duration) -> Result<i64, StoreError> {
    if ttl < Duration::from_millis(1) || ttl > MAX_TTL {
        return Err(StoreError::invalid(
            "ttl",
            format!("{ttl:?} is out of range; give between 1 ms and 365 days"),
        ));
    }
    // At most a year in milliseconds: fits in i64 with room to spare.
    Ok(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// A `free_for` wait in milliseconds: zero to one year.
pub(crate) fn free_for_ms(free_for: Duration) -> Result<i64, StoreError> {
    if free_for > MAX_TTL {
        return Err(StoreError::invalid(
            "free_for",
            format!("{free_for:?} is out of range; give at most 365 days"),
        ));
    }
    Ok(i64::try_from(free_for.as_millis()).unwrap_or(i64::MAX))
}

/// The time left from `now_ms` until `expires_at_ms`, zero if past.
pub(crate) fn remaining(expires_at_ms: i64, now_ms: i64) -> Duration {
    let left = expires_at_ms.saturating_sub(now_ms);
    Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

/// The latest store time accepted in a schedule (the last millisecond of year 9999), so that
/// no grid arithmetic can overflow.
pub(crate) const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// The longest interval or delay a schedule accepts: a hundred years.
const MAX_SPAN_MS: i64 = 100 * 366 * 24 * 3_600_000;

/// The most runs a key's history keeps.
pub(crate) const MAX_HISTORY: u32 = 100_000;

/// A store time (ms since the Unix epoch) between 1970 and the end of year 9999.
pub(crate) fn time_ms(what: &'static str, ms: i64) -> Result<i64, StoreError> {
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(StoreError::invalid(
            what,
            format!("{ms} ms since the Unix epoch is out of range; give a time from 1970 to 9999"),
        ));
    }
    Ok(ms)
}

/// A span in whole milliseconds, at least `min_ms` and at most a hundred years.
fn span_ms(what: &'static str, span: Duration, min_ms: i64) -> Result<i64, StoreError> {
    let ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
    if ms < min_ms || ms > MAX_SPAN_MS {
        return Err(StoreError::invalid(
            what,
            format!("{span:?} is out of range; give {min_ms} ms to 100 years"),
        ));
    }
    Ok(ms)
}

/// A next due time, checked: times in range, an interval of at least 1 ms.
pub(crate) fn due(next_due: NextDue) -> Result<Due, StoreError> {
    Ok(match next_due {
        NextDue::Unchanged => Due::Unchanged,
        NextDue::At(at) => Due::At(time_ms("next due time", at)?),
        NextDue::After(delay) => Due::After(span_ms("next due delay", delay, 0)?),
        NextDue::OnGrid {
            anchor_ms,
            interval,
        } => Due::OnGrid {
            anchor: time_ms("grid anchor", anchor_ms)?,
            interval: span_ms("grid interval", interval, 1)?,
        },
    })
}

/// A history size: 1 to [`MAX_HISTORY`] runs.
pub(crate) fn history_limit(limit: u32) -> Result<i64, StoreError> {
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(StoreError::invalid(
            "history limit",
            format!("{limit} runs is out of range; give 1 to {MAX_HISTORY}"),
        ));
    }
    Ok(i64::from(limit))
}

/// An error text cut to at most [`MAX_ERROR_LEN`] bytes at a character boundary, ending with
/// `…` when cut.
pub(crate) fn error_text(error: Option<&str>) -> Option<String> {
    let error = error?;
    if error.len() <= MAX_ERROR_LEN {
        return Some(error.to_owned());
    }
    const ELLIPSIS: &str = "…";
    let mut end = MAX_ERROR_LEN - ELLIPSIS.len();
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}{ELLIPSIS}", &error[..end]))
}

/// A fenced write's key and epoch: `None` for an epoch beyond `i64::MAX`, which can never have
/// been issued and so matches nothing.
fn fenced(key: &str, epoch: u64) -> Result<Option<(&str, i64)>, StoreError> {
    let key = name("lease key", key)?;
    Ok(i64::try_from(epoch).ok().map(|epoch| (key, epoch)))
}

/// Sorts a batch by key and refuses a key named twice: one call says one thing per key.
fn one_per_key<T>(mut batch: Vec<T>, key: impl Fn(&T) -> &str) -> Result<Vec<T>, StoreError> {
    batch.sort_by(|a, b| key(a).cmp(key(b)));
    if let Some(pair) = batch.windows(2).find(|pair| key(&pair[0]) == key(&pair[1])) {
        return Err(StoreError::invalid(
            "schedule batch",
            format!(
                "key `{}` appears twice in one call; give each key once",
                key(&pair[0])
            ),
        ));
    }
    Ok(batch)
}

/// A checked [`Plan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedPlan<'a> {
    pub(crate) key: &'a str,
    pub(crate) epoch: i64,
    pub(crate) due: Due,
    pub(crate) only_if_unset: bool,
}

/// The plans, checked and sorted by key; plans with impossible epochs are dropped.
pub(crate) fn plans(plans: &[Plan]) -> Result<Vec<CheckedPlan<'_>>, StoreError> {
    let mut checked = Vec::with_capacity(plans.len());
    for plan in plans {
        let due = due(plan.next_due)?;
        if let Some((key, epoch)) = fenced(&plan.key, plan.epoch)? {
            checked.push(CheckedPlan {
                key,
                epoch,
                due,
                only_if_unset: plan.only_if_unset,
            });
        }
    }
    one_per_key(checked, |plan| plan.key)
}

/// A checked [`RunStart`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedStart<'a> {
    pub(crate) key: &'a str,
    pub(crate) epoch: i64,
    pub(crate) scheduled: i64,
    pub(crate) due: Due,
    pub(crate) triggered: bool,
    pub(crate) history_limit: i64,
}

impl CheckedStart<'_> {
    /// The history entry of the run this start begins, as `holder` started it at store time
    /// `started_ms` with sequence number `seq`.
    pub(crate) fn run(&self, holder: &str, seq: i64, started_ms: i64) -> RunRecord {
        RunRecord {
            key: self.key.to_owned(),
            seq,
            holder: holder.to_owned(),
            epoch: self.epoch as u64,
            scheduled_ms: self.scheduled,
            started_ms,
            ended_ms: None,
            outcome: None,
            attempts: 0,
            error: None,
            triggered: self.triggered,
        }
    }
}

/// The starts, checked and sorted by key; starts with impossible epochs are dropped.
pub(crate) fn starts(starts: &[RunStart]) -> Result<Vec<CheckedStart<'_>>, StoreError> {
    let mut checked = Vec::with_capacity(starts.len());
    for start in starts {
        let due = due(start.next_due)?;
        let scheduled = time_ms("scheduled time", start.scheduled_ms)?;
        let history_limit = history_limit(start.history_limit)?;
        if let Some((key, epoch)) = fenced(&start.key, start.epoch)? {
            checked.push(CheckedStart {
                key,
                epoch,
                scheduled,
                due,
                triggered: start.triggered,
                history_limit,
            });
        }
    }
    one_per_key(checked, |start| start.key)
}

/// A checked [`RunEnd`], its error text capped.
#[derive(Debug, Clone)]
pub(crate) struct CheckedEnd<'a> {
    pub(crate) key: &'a str,
    pub(crate) epoch: i64,
    pub(crate) seq: i64,
    pub(crate) outcome: RunResult,
    pub(crate) attempts: i64,
    pub(crate) error: Option<String>,
    pub(crate) due: Due,
}

/// The ends, checked and sorted by key; ends with impossible epochs are dropped.
pub(crate) fn ends(ends: &[RunEnd]) -> Result<Vec<CheckedEnd<'_>>, StoreError> {
    let mut checked = Vec::with_capacity(ends.len());
    for end in ends {
        let due = due(end.next_due)?;
        if let Some((key, epoch)) = fenced(&end.key, end.epoch)? {
            checked.push(CheckedEnd {
                key,
                epoch,
                seq: end.seq,
                outcome: end.outcome,
                attempts: i64::from(end.attempts),
                error: error_text(end.error.as_deref()),
                due,
            });
        }
    }
    one_per_key(checked, |end| end.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_non_empty_and_bounded() {
        assert!(name("lease key", "").is_err());
        assert!(name("lease key", &"x".repeat(MAX_NAME_LEN)).is_ok());
        let err = name("lease key", &"é".repeat(200)).unwrap_err().to_string();
        assert!(err.contains("400 bytes"), "{err}");
    }

    #[test]
    fn keys_are_sorted_and_deduplicated() {
        let given = ["b".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(keys(&given).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn impossible_epochs_are_dropped() {
        let refs = [LeaseRef::new("a", u64::MAX), LeaseRef::new("a", 3)];
        assert_eq!(lease_refs(&refs).unwrap(), vec![("a", 3)]);
    }

    #[test]
    fn ttl_bounds() {
        assert!(ttl_ms(Duration::ZERO).is_err());
        assert!(ttl_ms(Duration::from_micros(999)).is_err());
        assert_eq!(ttl_ms(Duration::from_millis(1500)).unwrap(), 1500);
        assert!(ttl_ms(MAX_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn error_text_is_capped_at_a_char_boundary() {
        assert_eq!(error_text(Some("short")).as_deref(), Some("short"));
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = error_text(Some(&long)).unwrap();
        assert!(cut.len() <= MAX_ERROR_LEN, "{}", cut.len());
        assert!(cut.len() > MAX_ERROR_LEN - 8);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(MAX_ERROR_LEN);
        assert_eq!(error_text(Some(&exact)).unwrap(), exact);
    }

    #[test]
    fn history_limits_and_due_times_are_bounded() {
        assert!(history_limit(0).is_err());
        assert!(history_limit(MAX_HISTORY + 1).is_err());
        assert_eq!(history_limit(MAX_HISTORY).unwrap(), 100_000);
        assert!(due(NextDue::At(-1)).is_err());
        assert!(due(NextDue::At(MAX_TIME_MS + 1)).is_err());
        let grid = |interval| NextDue::OnGrid {
            anchor_ms: 0,
            interval,
        };
        assert!(due(grid(Duration::ZERO)).is_err());
        assert!(due(grid(Duration::from_millis(1))).is_ok());
    }

    #[test]
    fn a_key_twice_in_one_batch_is_refused() {
        let plan = |key: &str| Plan {
            key: key.to_owned(),
            epoch: 1,
            next_due: NextDue::Unchanged,
            only_if_unset: false,
        };
        assert!(plans(&[plan("a"), plan("b"), plan("a")]).is_err());
        let given = [plan("b"), plan("a")];
        let checked = plans(&given).unwrap();
        assert_eq!(checked[0].key, "a");
    }

    #[test]
    fn remaining_saturates() {
        assert_eq!(remaining(100, 40), Duration::from_millis(60));
        assert_eq!(remaining(100, 140), Duration::ZERO);
        assert_eq!(remaining(i64::MIN, i64::MAX), Duration::ZERO);
    }
}
