//! The elector: one task per host that holds every lease of every guarded job.
//!
//! It talks to the store in batches — one `renew` statement per renew period for all the leases
//! the host holds, one `try_acquire` per retry period for all the keys it is missing — so a
//! node's round trips do not grow with its number of jobs. It publishes to each guarded job's
//! supervisor what the job holds and every change ([`LeadershipEvent`](super::LeadershipEvent)).
//!
//! It also reads the schedule records of the keys it holds (see
//! [`store::schedule`](crate::store::schedule)), in one call for all of them: as soon as it wins
//! keys (the new leader learns when the key's next run is due; a store that answers the records
//! with the acquisition, [`LeaseStore::try_acquire_with_records`], spares that call), every retry
//! period, at once when the store announces an operator's command ([`ReleaseNotice::Commanded`])
//! or this host's handle wrote one. Runs' starts and ends are written by the run ledger
//! (`guard/ledger.rs`), not here.
//!
//! # Safety argument
//!
//! The elector keeps these invariants; the code points at them by number.
//!
//! 1. **Store-clock expiry.** The store decides expiry by its own clock; nothing here sends a
//!    timestamp. The store sets a lease's expiry to *its* time of execution plus the ttl.
//! 2. **Local deadline from the send instant.** A lease's local deadline is the monotonic
//!    instant at which the acquire or renew request was *sent*, plus the ttl, minus a safety
//!    margin of a tenth of the ttl (`local_deadline`). The request executed after it was sent,
//!    so the store's expiry is at least `ttl` after the send in real time; with the margin, a
//!    local clock that runs up to ~10% fast still stops believing first. No clock
//!    synchronisation is needed, only a bounded drift rate.
//! 3. **Prompt stop.** At the local deadline (a timer in this task, and [`HeldLease::is_held`]
//!    checking the clock itself), or when the store refuses a renewal, the lease is marked lost
//!    and its job's state token is cancelled at once, which cancels every run started under it.
//!    A store call that hangs cannot delay this: calls run beside the deadline timer, never in
//!    front of it. Nor can this task's turn: a run reads its leases' deadline itself
//!    (`guard/run_leases.rs`) at every poll and in its context's checks, so a process woken
//!    from a freeze past the deadline stops its runs before this task runs again.
//! 4. **Fencing.** Every acquisition gets a new, strictly greater epoch from the store; the epoch
//!    travels with the lease into the run's context as its fencing token.
//! 5. **Release after the runs.** On shutdown the host stops this task only after every
//!    supervisor has finished or dropped its runs; then every lease is marked lost and released
//!    in one call, so followers take over at once (by notification where the store has them,
//!    otherwise on their next retry). Surplus partitions are marked lost *before* they are
//!    released. (Each supervisor has already reported its leases lost with
//!    [`LostReason::Released`] as it stopped, so its `on_lost` hook sees the release too.)
//!
//! Leases are won, lost and released in batches, each with one log line and one new state per
//! job, and looked up by key in a map: a job's P partitions cost O(P) per store answer, not
//! O(P²).
//!
//! 6. **A run's start is committed under the lease.** The ledger commits a run's start to the
//!    key's record, fenced by the epoch, before the run begins; a supervisor converts a due time
//!    read in the store's clock to a local instant measured from when the answer was
//!    *received*, with a margin like the lease deadline's, so it never starts a run early.
//!
//! 7. **A job that no longer runs here holds nothing.** A supervisor that ended without
//!    stopping (a panic in loopjob, which its shard contains to that one job) cancels its
//!    job's `abandoned` token as it is dropped. At its next call (within a renew period) the
//!    elector marks the job's leases lost and releases them, and asks for that job's keys no
//!    more, so that another node runs the job instead of this one renewing it for nothing.
//!
//! Holders are unique per process (`{node_id}/{random}`), so a restarted process never
//! mistakes its predecessor's lease for its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::job_leases::{GuardedJob, JobLeases};
use super::lease::{HeldLease, LostReason};
use super::records::{ReadBatch, RecordWanted, read_records};
use crate::run::sleep_until_or_never;
use crate::schedule::after;
use crate::store::{
    Lease, LeaseRef, LeaseStore, Member, ReleaseNotice, ReleaseNotifications, ScheduleRecord,
    StoreError,
};

mod answers;

/// The longest the elector waits between attempts while the store is failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The local deadline of a lease whose request was sent at `sent` (invariant 2).
pub(crate) fn local_deadline(sent: Instant, ttl: Duration) -> Instant {
    after(sent, ttl.saturating_sub(ttl / 10))
}

/// The elector task's state.
pub(crate) struct Elector {
    store: Arc<dyn LeaseStore>,
    holder: String,
    jobs: Vec<JobLeases>,
    /// The job each lease key belongs to, by its index in `jobs`: looking a key up costs the
    /// same with 10,000 partitions as with one.
    owners: HashMap<String, usize>,
    /// Cancelled by the host once every supervisor has stopped.
    stop: CancellationToken,
    next_renew: Instant,
    /// Leases marked lost and waiting to be released.
    to_release: Vec<LeaseRef>,
    /// Store calls that failed in a row, for backoff.
    failures: u32,
    /// When the records of the held keys are read again.
    next_read: Instant,
    /// Woken by the host's handle after it wrote an operator's command: read the records now.
    read_now: Arc<Notify>,
    /// Keys whose records the store last reported unreadable, each logged once until it is
    /// read again.
    unreadable: BTreeSet<String>,
}

/// A store call in flight, and what it answers.
type Call = Pin<Box<dyn Future<Output = Answer> + Send>>;

enum Answer {
    Renewed(Vec<Batch>),
    Acquired(Vec<Acquisition>),
    Members(Vec<(usize, Result<Vec<Member>, StoreError>)>),
    Released(Result<(), StoreError>),
    Records(Result<Vec<ReadBatch>, StoreError>),
}

/// One statement of a renew or acquire call: when it was sent, with which ttl, and its answer.
struct Batch {
    sent: Instant,
    ttl: Duration,
    result: Result<Vec<Lease>, StoreError>,
}

/// One acquire statement's answer, with the schedule records of the keys won that the store
/// read in the same round trip, and when that answer was received.
struct Acquisition {
    batch: Batch,
    records: Vec<ScheduleRecord>,
    received: Instant,
}

impl Elector {
    /// An elector for `jobs`, holding their leases as `holder`; `read_now` is woken (by the
    /// host's handle) when an operator's command was written.
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        holder: String,
        jobs: Vec<GuardedJob>,
        read_now: Arc<Notify>,
    ) -> Self {
        let now = Instant::now();
        let owners = jobs
            .iter()
            .enumerate()
            .flat_map(|(index, job)| job.keys.iter().map(move |key| (key.clone(), index)))
            .collect();
        let jobs = jobs
            .into_iter()
            .map(|job| JobLeases {
                // A key that was never held has no release to wait after: priority p first
                // waits p·retry_every from the start instead, so that among candidates starting
                // together the highest priority wins.
                next_acquire: after(
                    now,
                    job.leadership
                        .retry_every
                        .saturating_mul(job.leadership.priority),
                ),
                job,
                held: BTreeMap::new(),
                lost: CancellationToken::new(),
                worker: None,
                handed_over: BTreeMap::new(),
                next_heartbeat: now,
            })
            .collect();
        Elector {
            store,
            holder,
            jobs,
            owners,
            stop: CancellationToken::new(),
            next_renew: now,
            to_release: Vec::new(),
            failures: 0,
            next_read: now,
            read_now,
            unreadable: BTreeSet::new(),
        }
    }

    /// The token that stops this elector.
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs until the host stops it, then releases everything (invariant 5).
    pub(crate) async fn run(mut self) {
        if !self.initialise().await {
            return;
        }
        let mut notifications = self.store.release_notifications();
        let mut call: Option<Call> = None;
        loop {
            let deadline = self.earliest_deadline();
            let next_call = self.next_call_at();
            // A call due now (a release, an acquire after a release notice, a read after a
            // win) starts at once: a tokio timer rounds its deadline up to the next
            // millisecond, which a graceful handover would pay at every step.
            if call.is_none() && next_call.is_some_and(|at| at <= Instant::now()) {
                call = self.next_call();
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                _ = sleep_until_or_never(deadline) => self.expire_due(),
                answer = answer_of(&mut call), if call.is_some() => {
                    call = None;
                    self.apply(answer);
                }
                notice = next_notice(&mut notifications) => self.on_notice(notice, &mut notifications),
                _ = self.read_now.notified() => self.next_read = Instant::now(),
                _ = sleep_until_or_never(next_call), if call.is_none() => call = self.next_call(),
            }
        }
        drop(call);
        self.release_all().await;
    }

    /// Creates the schema, retrying with backoff while the store is down. Returns `false` if
    /// the host stopped first.
    async fn initialise(&mut self) -> bool {
        loop {
            match self.store.initialise().await {
                Ok(()) => {
                    self.succeeded();
                    return true;
                }
                Err(error) => {
                    let wait = self.backoff(self.retry_every());
                    tracing::warn!(store = self.store.backend(), %error, retry_in = ?wait, "lease store unavailable; guarded jobs wait for it");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// The shortest retry period of all guarded jobs.
    fn retry_every(&self) -> Duration {
        self.jobs
            .iter()
            .map(|j| j.job.leadership.retry_every)
            .min()
            .unwrap_or(Duration::from_secs(2))
    }

    /// The shortest renew period of the jobs that hold leases.
    fn renew_every(&self) -> Duration {
        self.jobs
            .iter()
            .filter(|j| !j.held.is_empty())
            .map(|j| j.job.leadership.renew_every())
            .min()
            .unwrap_or(Duration::from_secs(5))
    }

    /// The renew period of the jobs whose leases have this ttl.
    fn renew_every_of(&self, ttl: Duration) -> Duration {
        self.jobs
            .iter()
            .filter(|j| j.job.leadership.lease_ttl == ttl)
            .map(|j| j.job.leadership.renew_every())
            .min()
            .unwrap_or(ttl / 3)
    }

    /// A call succeeded: the store is back. Whatever waits in backoff goes ahead now, so that
    /// leases are taken over as soon as the store answers, not when the backoff ends.
    fn succeeded(&mut self) {
        if std::mem::take(&mut self.failures) == 0 {
            return;
        }
        let now = Instant::now();
        self.next_renew = self.next_renew.min(now);
        self.next_read = self.next_read.min(now);
        for job in &mut self.jobs {
            job.next_acquire = job.next_acquire.min(now);
        }
    }

    /// `base`, doubled for every failure in a row, at most [`MAX_BACKOFF`].
    fn backoff(&mut self, base: Duration) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << self.failures.saturating_sub(1).min(5);
        base.saturating_mul(factor).min(MAX_BACKOFF.max(base))
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.jobs
            .iter()
            .flat_map(|j| j.held.values())
            .map(HeldLease::deadline)
            .min()
    }

    /// Invariant 3: a lease whose local deadline passed is lost, whatever the store may say
    /// later.
    fn expire_due(&mut self) {
        let now = Instant::now();
        for job in &mut self.jobs {
            let due: Vec<String> = job
                .held
                .iter()
                .filter(|(_, lease)| lease.deadline() <= now)
                .map(|(key, _)| key.clone())
                .collect();
            job.lose(due.iter().map(String::as_str), LostReason::DeadlinePassed);
        }
    }

    fn next_call_at(&self) -> Option<Instant> {
        let renew = self
            .jobs
            .iter()
            .any(|j| !j.held.is_empty())
            .then_some(self.next_renew);
        let release = (!self.to_release.is_empty()).then(Instant::now);
        let acquire = self
            .jobs
            .iter()
            .filter(|j| j.wants_more())
            .map(|j| j.next_acquire)
            .min();
        let heartbeat = self
            .jobs
            .iter()
            .filter(|j| j.job.scope.is_some())
            .map(|j| j.next_heartbeat)
            .min();
        let read = self.records_wanted().then_some(self.next_read);
        [renew, release, acquire, heartbeat, read]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a job on the cluster schedule holds keys, whose records are then read.
    fn records_wanted(&self) -> bool {
        self.jobs
            .iter()
            .any(|j| j.job.initial_delay.is_some() && !j.held.is_empty())
    }

    /// The call that reads the records of every held key of the jobs on the cluster schedule.
    fn read_call(&mut self, now: Instant) -> Call {
        self.next_read = now + self.retry_every();
        let wanted: Vec<RecordWanted> = self
            .jobs
            .iter_mut()
            .enumerate()
            .filter_map(|(index, j)| Some((index, j.job.initial_delay?, j)))
            .flat_map(|(index, initial_delay, j)| {
                j.held.values().map(move |lease| RecordWanted {
                    job: index,
                    key: lease.key().to_owned(),
                    epoch: lease.epoch(),
                    initial_delay,
                })
            })
            .collect();
        let (store, holder) = (self.store.clone(), self.holder.clone());
        Box::pin(async move { Answer::Records(read_records(store, holder, wanted).await) })
    }

    /// The store call that is due now, most urgent first: renew, release, records, membership,
    /// acquire.
    fn next_call(&mut self) -> Option<Call> {
        self.let_go_of_abandoned_jobs();
        let now = Instant::now();
        let store = self.store.clone();
        let holder = self.holder.clone();
        if now >= self.next_renew && self.jobs.iter().any(|j| !j.held.is_empty()) {
            // One statement per distinct ttl: usually exactly one for the whole host.
            let mut by_ttl: BTreeMap<Duration, Vec<LeaseRef>> = BTreeMap::new();
            for job in self.jobs.iter().filter(|j| !j.held.is_empty()) {
                let refs = job.held.values().map(|l| LeaseRef::new(l.key(), l.epoch()));
                by_ttl
                    .entry(job.job.leadership.lease_ttl)
                    .or_default()
                    .extend(refs);
            }
            self.next_renew = after(now, self.renew_every());
            return Some(Box::pin(async move {
                let mut batches = Vec::with_capacity(by_ttl.len());
                for (ttl, refs) in by_ttl {
                    let sent = Instant::now();
                    let result = store.renew(&holder, &refs, ttl).await;
                    batches.push(Batch { sent, ttl, result });
                }
                Answer::Renewed(batches)
            }));
        }
        if !self.to_release.is_empty() {
            let refs = std::mem::take(&mut self.to_release);
            return Some(Box::pin(async move {
                Answer::Released(store.release(&holder, &refs).await)
            }));
        }
        if now >= self.next_read && self.records_wanted() {
            return Some(self.read_call(now));
        }
        let heartbeats: Vec<(usize, String, Duration)> = self
            .jobs
            .iter_mut()
            .enumerate()
            .filter(|(_, j)| now >= j.next_heartbeat && !j.job.abandoned.is_cancelled())
            .filter_map(|(index, j)| {
                let scope = j.job.scope.clone()?;
                j.next_heartbeat = after(now, j.job.leadership.renew_every());
                Some((index, scope, j.job.leadership.lease_ttl))
            })
            .collect();
        if !heartbeats.is_empty() {
            return Some(Box::pin(async move {
                let mut answers = Vec::with_capacity(heartbeats.len());
                for (index, scope, ttl) in heartbeats {
                    answers.push((index, store.heartbeat(&scope, &holder, ttl).await));
                }
                Answer::Members(answers)
            }));
        }
        // One statement for all the keys the host is missing (one per distinct ttl and
        // priority wait, when jobs differ in those).
        let mut by_terms: BTreeMap<(Duration, Duration), Vec<String>> = BTreeMap::new();
        for job in self
            .jobs
            .iter_mut()
            .filter(|j| j.wants_more() && now >= j.next_acquire)
        {
            job.next_acquire = after(now, job.job.leadership.retry_every);
            let missing = job.missing_keys(now);
            let leadership = &job.job.leadership;
            // Priority p waits p·retry_every after a lease frees, by the store's clock.
            let free_for = leadership.retry_every.saturating_mul(leadership.priority);
            let settled = free_for.saturating_add(leadership.retry_every / 2);
            for (free_for, keys) in [(free_for, missing.at_once), (settled, missing.when_settled)] {
                if !keys.is_empty() {
                    by_terms
                        .entry((leadership.lease_ttl, free_for))
                        .or_default()
                        .extend(keys);
                }
            }
        }
        if by_terms.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            let mut answers = Vec::with_capacity(by_terms.len());
            for ((ttl, free_for), keys) in by_terms {
                let sent = Instant::now();
                let (result, records) = match store
                    .try_acquire_with_records(&holder, &keys, ttl, free_for)
                    .await
                {
                    Ok(acquired) => (Ok(acquired.leases), acquired.records),
                    Err(error) => (Err(error), Vec::new()),
                };
                answers.push(Acquisition {
                    batch: Batch { sent, ttl, result },
                    records,
                    received: Instant::now(),
                });
            }
            Answer::Acquired(answers)
        }))
    }

    /// Invariant 7: the leases of jobs whose supervisor is gone are marked lost, to be released
    /// by the next call.
    fn let_go_of_abandoned_jobs(&mut self) {
        for job in &mut self.jobs {
            if job.held.is_empty() || !job.job.abandoned.is_cancelled() {
                continue;
            }
            let keys: Vec<String> = job.held.keys().cloned().collect();
            let lost = job.lose(keys.iter().map(String::as_str), LostReason::Released);
            let refs = lost.iter().map(|l| LeaseRef::new(l.key(), l.epoch()));
            self.to_release.extend(refs);
        }
    }

    fn apply(&mut self, answer: Answer) {
        match answer {
            Answer::Renewed(batches) => self.renewed(batches),
            Answer::Acquired(batches) => self.acquired(batches),
            Answer::Members(answers) => self.members(answers),
            Answer::Records(result) => self.records(result),
            Answer::Released(result) => {
                if let Err(error) = result {
                    // The leases were marked lost before; they expire by themselves.
                    tracing::warn!(%error, "releasing leases failed; they will expire after their ttl");
                }
            }
        }
    }

    /// A release was announced: the jobs that want that key try at once (or after their
    /// priority's wait).
    fn on_notice(
        &mut self,
        notice: Option<ReleaseNotice>,
        notifications: &mut Option<ReleaseNotifications>,
    ) {
        let now = Instant::now();
        let wake = |job: &mut JobLeases| {
            let wait = job
                .job
                .leadership
                .retry_every
                .saturating_mul(job.job.leadership.priority);
            job.next_acquire = job.next_acquire.min(after(now, wait));
        };
        match notice {
            Some(ReleaseNotice::Released(key)) => {
                if let Some(&index) = self.owners.get(&key) {
                    let job = &mut self.jobs[index];
                    if !job.held.contains_key(&key) {
                        wake(job);
                    }
                }
            }
            Some(ReleaseNotice::Commanded(key)) => {
                if self.jobs.iter().any(|j| j.held.contains_key(&key)) {
                    self.next_read = now;
                }
            }
            Some(ReleaseNotice::Missed) => {
                self.jobs.iter_mut().for_each(wake);
                self.next_read = now;
            }
            None => *notifications = None,
        }
    }

    /// Invariant 5: everything held is marked lost, then released in one call.
    async fn release_all(mut self) {
        let mut refs = std::mem::take(&mut self.to_release);
        for job in &mut self.jobs {
            let keys: Vec<String> = job.held.keys().cloned().collect();
            let released = job.lose(keys.iter().map(String::as_str), LostReason::Released);
            refs.extend(
                released
                    .iter()
                    .map(|lease| LeaseRef::new(lease.key(), lease.epoch())),
            );
        }
        if refs.is_empty() {
            return;
        }
        match self.store.release(&self.holder, &refs).await {
            Ok(()) => tracing::debug!(leases = refs.len(), "leases given back to the store"),
            Err(error) => {
                tracing::warn!(%error, "releasing leases at shutdown failed; they will expire after their ttl")
            }
        }
    }
}

/// The answer of the call in flight; never, when there is none.
async fn answer_of(call: &mut Option<Call>) -> Answer {
    match call {
        Some(call) => call.await,
        None => std::future::pending().await,
    }
}

async fn next_notice(notifications: &mut Option<ReleaseNotifications>) -> Option<ReleaseNotice> {
    match notifications {
        Some(notifications) => notifications.recv().await,
        None => std::future::pending().await,
    }
}
