//! What a store last saw of the keys its holders hold, so that a fenced write (a run's start
//! or end, a plan) is one round trip, not a read and then a transaction.
//!
//! A fenced write is guarded by the revisions at which the key's marker, lease row and record
//! were last changed. A revision names one value of a key, so guards that hold on the
//! revisions this store saw prove the keys hold the values it saw: the write decides on them
//! exactly as it would on a read made just before. Where the guards fail (another node or an
//! operator wrote in between), or what is known does not let the write go ahead, the store
//! forgets the key, reads it, and tries once more; so knowing stale values costs a round trip,
//! never a wrong write.
//!
//! What is known comes from the store's own reads and writes: an acquisition the lease, a read
//! of the records (which the guard makes right after it acquires) the record, each fenced
//! write what it wrote. A release uses the known lease too (one round trip, on the same
//! terms) and forgets the key, as does a renewal that lost or moved it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::layout::LeaseRow;
use crate::store::RunRecord;
use crate::store::record::Record;

/// What a fenced write needs of a key, as read or as known: its lease (if held), its record
/// and, for an end, the run.
#[derive(Debug, Clone)]
pub(super) struct Fenced {
    pub(super) lease: Option<LeaseSeen>,
    pub(super) record: RecordSeen,
    pub(super) run: Option<RunSeen>,
}

/// A held key's marker and lease row, with the revisions at which each was last changed.
#[derive(Debug, Clone)]
pub(super) struct LeaseSeen {
    pub(super) held_revision: i64,
    /// The marker's value: who holds the key, by etcd.
    pub(super) held_by: String,
    /// The etcd lease the marker rides on.
    pub(super) etcd_lease: i64,
    pub(super) row_revision: i64,
    pub(super) row: LeaseRow,
}

/// A key's record and the revision at which it was last changed (0 and `None`: no record).
#[derive(Debug, Clone, Default)]
pub(super) struct RecordSeen {
    pub(super) revision: i64,
    pub(super) record: Option<Record>,
}

/// One run of a key and the revision at which it was last changed.
#[derive(Debug, Clone)]
pub(super) struct RunSeen {
    pub(super) seq: i64,
    pub(super) revision: i64,
    pub(super) run: RunRecord,
}

impl Fenced {
    /// Whether `holder` holds the key at `epoch`, by etcd (its marker exists).
    pub(super) fn holds(&self, holder: &str, epoch: i64) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|lease| lease.holds(holder, epoch))
    }

    /// Whether the expiry the key's holder last asked for is still ahead at `now` (see
    /// `KeyState::alive`).
    pub(super) fn alive(&self, expiries: &HashMap<i64, i64>, now: i64) -> bool {
        self.lease.as_ref().is_some_and(|lease| {
            let asked = expiries.get(&lease.etcd_lease).copied().unwrap_or(0);
            now < lease.row.expires.max(asked)
        })
    }
}

/// One key's known state; usable for a fenced write once its record is known too.
#[derive(Debug)]
struct Seen {
    lease: LeaseSeen,
    record: Option<RecordSeen>,
    run: Option<RunSeen>,
}

/// What this store knows of its holders' keys and of the expiries asked of its etcd leases.
#[derive(Debug, Default)]
pub(super) struct Known {
    state: Mutex<KnownState>,
}

#[derive(Debug, Default)]
struct KnownState {
    keys: HashMap<String, Seen>,
    expiries: HashMap<i64, i64>,
}

impl Known {
    /// The state of each of `keys` (with the run asked for, if any) and the expiries of the
    /// etcd leases they ride on, if all of that is known; else `None`, and the caller reads.
    pub(super) fn fenced(
        &self,
        keys: &[(&str, Option<i64>)],
    ) -> Option<(Vec<Fenced>, HashMap<i64, i64>)> {
        let state = self.lock();
        let mut fenced = Vec::with_capacity(keys.len());
        let mut expiries = HashMap::new();
        for (key, run) in keys {
            let seen = state.keys.get(*key)?;
            let record = seen.record.clone()?;
            let run = match run {
                None => None,
                Some(seq) => Some(seen.run.clone().filter(|run| run.seq == *seq)?),
            };
            let lease = seen.lease.etcd_lease;
            expiries.insert(lease, *state.expiries.get(&lease)?);
            fenced.push(Fenced {
                lease: Some(seen.lease.clone()),
                record,
                run,
            });
        }
        Some((fenced, expiries))
    }

    /// Keeps `key`'s state as a read for a fenced write found it, if the key is held.
    pub(super) fn read(&self, key: &str, fenced: &Fenced) {
        let Some(lease) = fenced.lease.clone() else {
            self.forget(key);
            return;
        };
        let seen = Seen {
            lease,
            record: Some(fenced.record.clone()),
            run: fenced.run.clone(),
        };
        self.lock().keys.insert(key.to_owned(), seen);
    }

    /// Keeps `key`'s lease as this store just wrote it (an acquisition or a move); its record
    /// is learnt from the next read of it.
    pub(super) fn leased(&self, key: &str, lease: LeaseSeen) {
        let seen = Seen {
            lease,
            record: None,
            run: None,
        };
        self.lock().keys.insert(key.to_owned(), seen);
    }

    /// Keeps `key`'s record as a read of the records found it, if the key's lease is known
    /// and nothing newer is (a fenced write may have answered while the read was on its way).
    pub(super) fn record_read(&self, key: &str, record: RecordSeen) {
        if let Some(seen) = self.lock().keys.get_mut(key)
            && seen
                .record
                .as_ref()
                .is_none_or(|known| known.revision <= record.revision)
        {
            seen.record = Some(record);
        }
    }

    /// Keeps what a fenced write of `key` made at `revision`: its record, and the run it wrote
    /// (`None` keeps the run known before).
    pub(super) fn wrote(&self, key: &str, revision: i64, record: Record, run: Option<RunSeen>) {
        if let Some(seen) = self.lock().keys.get_mut(key) {
            seen.record = Some(RecordSeen {
                revision,
                record: Some(record),
            });
            if run.is_some() {
                seen.run = run;
            }
        }
    }

    /// Keeps the expiry asked of etcd lease `lease` (the latest one wins).
    pub(super) fn expiry(&self, lease: i64, expires: i64) {
        let mut state = self.lock();
        let known = state.expiries.entry(lease).or_insert(expires);
        *known = (*known).max(expires);
    }

    /// Forgets `keys`, answering the lease known of each (for a release).
    pub(super) fn take(&self, keys: &[&str]) -> Vec<Option<LeaseSeen>> {
        let mut state = self.lock();
        keys.iter()
            .map(|key| state.keys.remove(*key).map(|seen| seen.lease))
            .collect()
    }

    /// Forgets `key`: the next fenced write of it reads first.
    pub(super) fn forget(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    fn lock(&self) -> MutexGuard<'_, KnownState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LeaseSeen {
    /// Whether `holder` holds the key at `epoch`.
    pub(super) fn holds(&self, holder: &str, epoch: i64) -> bool {
        self.held_by == holder && self.row.holder == holder && self.row.epoch == epoch
    }

    /// A lease that `holder` took or moved at `revision` (its marker and row written together).
    pub(super) fn written(holder: &str, revision: i64, row: LeaseRow) -> Self {
        LeaseSeen {
            held_revision: revision,
            held_by: holder.to_owned(),
            row_revision: revision,
            etcd_lease: row.lease,
            row,
        }
    }
}
