//! Reading the schedule records of the keys a node holds, for the elector: when it wins a lease
//! (to learn when the key's next run is due on the cluster's grid) and every retry period (to
//! learn of operator commands: pause, resume, trigger).
//!
//! One call reads every key the elector asks for. A key that has never been planned (its first
//! holder ever) gets its first run planned `initial_delay` from the store's now, only if no
//! other holder planned it first, and is read again: at most three round trips, however many
//! keys, and only when a key is new.
//!
//! A record the store cannot read (a row edited by hand into nonsense: [`StoreError::Corrupted`],
//! or one from a newer version: [`StoreError::NewerRecord`], each naming its key) fails the
//! whole call; the key it names is then left out and the rest read again, one more round trip
//! per such key, so one bad row never stops the other keys' schedules. The keys left out are
//! answered as [`ReadBatch::unreadable`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::guard::notice::RoundTrip;
use crate::store::{LeaseStore, NextDue, Plan, ScheduleRecord, StoreError};

/// A key whose record the elector wants, as it holds it.
#[derive(Debug, Clone)]
pub(crate) struct RecordWanted {
    /// The job the key belongs to, by its index in the elector.
    pub(crate) job: usize,
    pub(crate) key: String,
    pub(crate) epoch: u64,
    /// The job's `initial_delay`: how far off a key's first run ever is planned.
    pub(crate) initial_delay: Duration,
}

/// Records as one store answer gave them, with the call's round trip.
pub(crate) struct ReadBatch {
    pub(crate) round_trip: RoundTrip,
    /// Each record with the job and epoch it was asked for.
    pub(crate) records: Vec<(usize, u64, ScheduleRecord)>,
    /// The keys whose records the store reported unreadable, with their job and the error.
    pub(crate) unreadable: Vec<(usize, String, StoreError)>,
}

/// Reads the records of `wanted`, planning the first run of the keys that have none; see the
/// module docs. Returns each answer's records with its call's round trip.
pub(crate) async fn read_records(
    store: Arc<dyn LeaseStore>,
    holder: String,
    wanted: Vec<RecordWanted>,
) -> Result<Vec<ReadBatch>, StoreError> {
    let mut keys: Vec<String> = wanted.iter().map(|w| w.key.clone()).collect();
    let mut unreadable = Vec::new();
    let (records, sent) = loop {
        let sent = Instant::now();
        match store.schedules(&keys).await {
            Err(error) => {
                let named =
                    unreadable_key(&error).and_then(|key| wanted.iter().find(|w| w.key == key));
                let Some(bad) = named else {
                    return Err(error);
                };
                keys.retain(|key| *key != bad.key);
                unreadable.push((bad.job, bad.key.clone(), error));
                if keys.is_empty() {
                    break (Vec::new(), sent);
                }
            }
            Ok(records) => break (records, sent),
        }
    };
    let round_trip = RoundTrip {
        sent,
        received: Instant::now(),
    };
    let wanted: Vec<RecordWanted> = wanted
        .into_iter()
        .filter(|w| keys.contains(&w.key))
        .collect();
    let mut by_key: BTreeMap<String, ScheduleRecord> =
        records.into_iter().map(|r| (r.key.clone(), r)).collect();
    let unplanned: Vec<&RecordWanted> = wanted
        .iter()
        .filter(|w| by_key.get(&w.key).is_none_or(|r| r.next_due_ms.is_none()))
        .collect();
    let mut batches = vec![ReadBatch {
        round_trip,
        records: take_records(&wanted, &mut by_key, |w| {
            !unplanned.iter().any(|u| u.key == w.key)
        }),
        unreadable,
    }];
    if unplanned.is_empty() {
        return Ok(batches);
    }
    let plans: Vec<Plan> = unplanned
        .iter()
        .map(|w| Plan {
            key: w.key.clone(),
            epoch: w.epoch,
            next_due: NextDue::After(w.initial_delay),
            only_if_unset: true,
        })
        .collect();
    store.plan(&holder, &plans).await?;
    // Planned by this call or by another holder just before: read what the store kept.
    let keys: Vec<String> = unplanned.iter().map(|w| w.key.clone()).collect();
    let sent = Instant::now();
    let records = store.schedules(&keys).await?;
    let round_trip = RoundTrip {
        sent,
        received: Instant::now(),
    };
    let mut by_key: BTreeMap<String, ScheduleRecord> =
        records.into_iter().map(|r| (r.key.clone(), r)).collect();
    let planned: Vec<RecordWanted> = unplanned.into_iter().cloned().collect();
    batches.push(ReadBatch {
        round_trip,
        records: take_records(&planned, &mut by_key, |_| true),
        unreadable: Vec::new(),
    });
    Ok(batches)
}

/// The key an error says the store cannot read the record of, if it names one.
fn unreadable_key(error: &StoreError) -> Option<&str> {
    match error {
        StoreError::Corrupted { key, .. } | StoreError::NewerRecord { key, .. } => Some(key),
        _ => None,
    }
}

/// The records of the `wanted` keys that pass `keep`, taken out of `by_key`.
fn take_records(
    wanted: &[RecordWanted],
    by_key: &mut BTreeMap<String, ScheduleRecord>,
    keep: impl Fn(&RecordWanted) -> bool,
) -> Vec<(usize, u64, ScheduleRecord)> {
    wanted
        .iter()
        .filter(|w| keep(w))
        .filter_map(|w| Some((w.job, w.epoch, by_key.remove(&w.key)?)))
        .collect()
}
