//! How the elector takes the store's answers: renewals, acquisitions, memberships and schedule
//! records.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::{Acquisition, Batch, Elector, local_deadline};
use crate::guard::lease::{HeldLease, LostReason};
use crate::guard::notice::{RecordsRead, RoundTrip};
use crate::guard::partitions::{fair_share, to_release, worker_place};
use crate::guard::records::ReadBatch;
use crate::schedule::after;
use crate::settings::LeaderMode;
use crate::store::{Lease, LeaseRef, Member, ScheduleRecord, StoreError};

impl Elector {
    pub(super) fn renewed(&mut self, batches: Vec<Batch>) {
        for batch in batches {
            let renewed = match batch.result {
                Ok(renewed) => renewed,
                Err(error) => {
                    // Keep the leases until their deadlines (invariant 3) and retry soon.
                    let retry = self.backoff(self.retry_every().min(self.renew_every()));
                    self.next_renew = after(Instant::now(), retry);
                    tracing::warn!(%error, retry_in = ?retry, "renewing leases failed");
                    continue;
                }
            };
            self.succeeded();
            let deadline = local_deadline(batch.sent, batch.ttl);
            let still_held: BTreeMap<&str, u64> =
                renewed.iter().map(|l| (l.key.as_str(), l.epoch)).collect();
            for job in &mut self.jobs {
                if job.job.leadership.lease_ttl != batch.ttl {
                    continue;
                }
                let refused: Vec<String> = job
                    .held
                    .iter()
                    .filter_map(|(key, lease)| match still_held.get(key.as_str()) {
                        Some(&epoch) if epoch == lease.epoch() => {
                            lease.extend_to(deadline);
                            None
                        }
                        _ => Some(key.clone()),
                    })
                    .collect();
                job.lose(refused.iter().map(String::as_str), LostReason::RenewRefused);
            }
        }
    }

    pub(super) fn acquired(&mut self, answers: Vec<Acquisition>) {
        let held_before = self.jobs.iter().any(|j| !j.held.is_empty());
        // Whether a key of a job on the cluster schedule was won, and whether one came without
        // its record.
        let (mut won_scheduled, mut read_now) = (false, false);
        for Acquisition {
            batch,
            mut records,
            received,
        } in answers
        {
            let won = match batch.result {
                Ok(won) => won,
                Err(error) => {
                    let retry = self.backoff(self.retry_every());
                    for job in &mut self.jobs {
                        job.next_acquire = job.next_acquire.max(after(Instant::now(), retry));
                    }
                    tracing::warn!(%error, retry_in = ?retry, "acquiring leases failed");
                    continue;
                }
            };
            self.succeeded();
            let deadline = local_deadline(batch.sent, batch.ttl);
            if !held_before && !won.is_empty() {
                self.next_renew = after(batch.sent, self.renew_every_of(batch.ttl));
            }
            // Sorted out by job first, so that each job logs, and tells its supervisor, once.
            let mut by_job: BTreeMap<usize, Vec<Lease>> = BTreeMap::new();
            for lease in won {
                if let Some(&index) = self.owners.get(&lease.key) {
                    by_job.entry(index).or_default().push(lease);
                }
            }
            for (index, won) in by_job {
                let job = &mut self.jobs[index];
                // An acquisition of a key we believed we held means our belief was stale.
                job.lose(won.iter().map(|l| l.key.as_str()), LostReason::RenewRefused);
                let partitioned = job.job.leadership.mode == LeaderMode::Partitioned;
                let epochs: Vec<(String, u64)> =
                    won.iter().map(|l| (l.key.clone(), l.epoch)).collect();
                let held = won
                    .into_iter()
                    .map(|lease| {
                        let partition =
                            lease.key.rsplit_once('#').and_then(|(_, p)| p.parse().ok());
                        let partition = partition.filter(|_| partitioned);
                        HeldLease::new(lease.key, lease.epoch, partition, deadline)
                    })
                    .collect();
                job.won(held);
                if job.job.initial_delay.is_some() {
                    won_scheduled = true;
                    let round_trip = RoundTrip {
                        sent: batch.sent,
                        received,
                    };
                    read_now |= self.records_with_leases(index, epochs, &mut records, round_trip);
                }
            }
        }
        if won_scheduled && !held_before {
            // The periodic reads begin; the records that came with the leases are fresh.
            self.next_read = after(Instant::now(), self.retry_every());
        }
        if read_now {
            self.next_read = Instant::now();
        }
    }

    /// A new leader's first question: when is its next run due? Hands the job `index` the
    /// records of the keys it won (at `epochs`) that came with the acquisition, in the round trip
    /// `round_trip`; answers whether a key came without one, to be read at once (a key never
    /// planned, too: reading it plans its first run).
    fn records_with_leases(
        &mut self,
        index: usize,
        epochs: Vec<(String, u64)>,
        records: &mut Vec<ScheduleRecord>,
        round_trip: RoundTrip,
    ) -> bool {
        let mut read = RecordsRead {
            round_trip,
            records: Vec::new(),
            unreadable: Vec::new(),
        };
        let mut read_now = false;
        for (key, epoch) in epochs {
            match take_record(records, &key) {
                Some(record) if record.next_due_ms.is_some() => {
                    self.unreadable.remove(&key);
                    read.records.push((epoch, record));
                }
                _ => read_now = true,
            }
        }
        if !read.records.is_empty() {
            self.jobs[index].job.events.records(read);
        }
        read_now
    }

    pub(super) fn members(&mut self, answers: Vec<(usize, Result<Vec<Member>, StoreError>)>) {
        for (index, result) in answers {
            let members = match result {
                Ok(members) => {
                    self.succeeded();
                    members
                }
                Err(error) => {
                    tracing::warn!(job = %self.jobs[index].job.name, %error, "membership heartbeat failed");
                    continue;
                }
            };
            let job = &mut self.jobs[index];
            let worker = worker_place(&members, &self.holder);
            let count = worker.1;
            if job.worker != Some(worker) {
                tracing::info!(job = %job.job.name, index = worker.0, members = worker.1, "partition membership changed");
                job.worker = Some(worker);
                job.publish();
            }
            // Hand back the surplus when members joined (marked lost first: invariant 5).
            let target = fair_share(job.job.leadership.partitions, count);
            let held: BTreeSet<u32> = job.held.values().filter_map(HeldLease::partition).collect();
            let leave_until = after(
                Instant::now(),
                job.job.leadership.retry_every.saturating_mul(2),
            );
            let surplus = to_release(&held, target, worker);
            let keys: Vec<String> = surplus
                .iter()
                .map(|partition| format!("{}#{partition}", job.job.name))
                .collect();
            job.handed_over
                .extend(surplus.iter().map(|&partition| (partition, leave_until)));
            let released = job.lose(keys.iter().map(String::as_str), LostReason::Released);
            self.to_release.extend(
                released
                    .iter()
                    .map(|lease| LeaseRef::new(lease.key(), lease.epoch())),
            );
        }
    }

    /// Records were read: each job hears those of its keys. On failure, they are read again
    /// after a backoff.
    pub(super) fn records(&mut self, result: Result<Vec<ReadBatch>, StoreError>) {
        let batches = match result {
            Ok(batches) => {
                self.succeeded();
                batches
            }
            Err(error) => {
                let retry = self.backoff(self.retry_every());
                self.next_read = after(Instant::now(), retry);
                tracing::warn!(%error, retry_in = ?retry, "reading schedule records failed; guarded jobs wait for them");
                return;
            }
        };
        for batch in batches {
            let mut by_job: BTreeMap<usize, RecordsRead> = BTreeMap::new();
            let round_trip = batch.round_trip;
            for (job, epoch, record) in batch.records {
                self.unreadable.remove(&record.key);
                read_of(&mut by_job, job, round_trip)
                    .records
                    .push((epoch, record));
            }
            for (job, key, error) in batch.unreadable {
                let name = self.jobs.get(job).map_or("?", |j| &*j.job.name);
                // Once per key until it can be read again: the read repeats every retry period.
                if self.unreadable.insert(key.clone()) {
                    tracing::warn!(job = %name, %key, %error, "the key's schedule record cannot be read; the key's runs wait until it is repaired or deleted, the other keys go on");
                }
                read_of(&mut by_job, job, round_trip).unreadable.push(key);
            }
            for (job, read) in by_job {
                if let Some(job) = self.jobs.get(job) {
                    job.job.events.records(read);
                }
            }
        }
    }
}

/// The record of `key` among `records`, taken out.
fn take_record(records: &mut Vec<ScheduleRecord>, key: &str) -> Option<ScheduleRecord> {
    let index = records.iter().position(|record| record.key == key)?;
    Some(records.swap_remove(index))
}

/// The records read for `job` so far in this answer.
fn read_of(
    by_job: &mut BTreeMap<usize, RecordsRead>,
    job: usize,
    round_trip: RoundTrip,
) -> &mut RecordsRead {
    by_job.entry(job).or_insert_with(|| RecordsRead {
        round_trip,
        records: Vec::new(),
        unreadable: Vec::new(),
    })
}
