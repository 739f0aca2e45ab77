//! Argument checks shared by every backend, so that all of them accept and refuse the same input.

use std::time::Duration;

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
    fn remaining_saturates() {
        assert_eq!(remaining(100, 40), Duration::from_millis(60));
        assert_eq!(remaining(100, 140), Duration::ZERO);
        assert_eq!(remaining(i64::MIN, i64::MAX), Duration::ZERO);
    }
}
