//! A lease store wrapper for the leadership benchmark: it counts calls by kind, times renew
//! calls, and records when a node first won a lease and when it last released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use loopjob::store::{
    Acquired, Lease, LeaseRef, LeaseStatus, LeaseStore, Member, Plan, ReleaseNotifications, RunEnd,
    RunRecord, RunStart, ScheduleRecord, StartedRun, StoreError,
};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use crate::GIVE_UP;

/// Wraps a store: counts calls by kind, times renew calls, and records when an acquire first
/// won something (the instant the node holds a lease, as the elector learns it).
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn LeaseStore>,
    pub renews: AtomicU64,
    pub acquires: AtomicU64,
    pub releases: AtomicU64,
    pub others: AtomicU64,
    /// Schedule record reads (`schedules`), run starts and run ends, and first-run plans.
    pub reads: AtomicU64,
    pub starts: AtomicU64,
    pub ends: AtomicU64,
    pub plans: AtomicU64,
    pub renew_latency: Mutex<Vec<Duration>>,
    won: watch::Sender<Option<Instant>>,
    /// When the last release call was sent and when it answered.
    pub release_sent: Mutex<Option<Instant>>,
    pub released: Mutex<Option<Instant>>,
    /// When the last run-start call was sent, and when the last run-start and run-end calls
    /// answered.
    pub last_start_sent: Mutex<Option<Instant>>,
    pub last_started: Mutex<Option<Instant>>,
    pub ended: Mutex<Option<Instant>>,
    /// When the last renew or acquire call that kept or won a lease was sent.
    pub last_kept: Mutex<Option<Instant>>,
    /// After the first win: the first record read (when it was sent and answered, and how far
    /// ahead of the store's clock the first record's due time was; the acquisition itself, where
    /// the store answers records with it), and the first committed start (when it
    /// was sent, and when it answered).
    pub takeover: Mutex<Takeover>,
}

/// When a new holder's steps after its win happened (see [`Counting::takeover`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Takeover {
    pub read_sent: Option<Instant>,
    pub read: Option<Instant>,
    /// The first record's `next_due_ms − read_at_ms`, in milliseconds.
    pub due_ahead_ms: Option<i64>,
    pub start_sent: Option<Instant>,
    pub started: Option<Instant>,
}

impl Counting {
    pub fn new(inner: Arc<dyn LeaseStore>) -> Arc<Self> {
        Arc::new(Counting {
            inner,
            renews: AtomicU64::new(0),
            acquires: AtomicU64::new(0),
            releases: AtomicU64::new(0),
            others: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            starts: AtomicU64::new(0),
            ends: AtomicU64::new(0),
            plans: AtomicU64::new(0),
            renew_latency: Mutex::new(Vec::new()),
            won: watch::channel(None).0,
            release_sent: Mutex::new(None),
            released: Mutex::new(None),
            last_start_sent: Mutex::new(None),
            last_started: Mutex::new(None),
            ended: Mutex::new(None),
            last_kept: Mutex::new(None),
            takeover: Mutex::new(Takeover::default()),
        })
    }

    fn counters(&self) -> [&AtomicU64; 8] {
        [
            &self.renews,
            &self.acquires,
            &self.releases,
            &self.others,
            &self.reads,
            &self.starts,
            &self.ends,
            &self.plans,
        ]
    }

    pub fn reset(&self) {
        for counter in self.counters() {
            counter.store(0, Ordering::SeqCst);
        }
        self.renew_latency.lock().unwrap().clear();
    }

    pub fn total(&self) -> u64 {
        self.counters()
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits until an acquire call has won a lease; returns when it answered.
    pub async fn won(&self) -> Instant {
        let mut won = self.won.subscribe();
        let at = timeout(GIVE_UP, won.wait_for(Option::is_some))
            .await
            .expect("a lease was won within 30 s")
            .expect("the sender lives in self");
        at.expect("checked by wait_for")
    }
}

#[async_trait]
impl LeaseStore for Counting {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn initialise(&self) -> Result<(), StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.initialise().await
    }
    async fn try_acquire_free_for(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let acquired = self
            .try_acquire_with_records(holder, keys, ttl, free_for)
            .await?;
        Ok(acquired.leases)
    }
    async fn try_acquire_with_records(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Acquired, StoreError> {
        self.acquires.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        let acquired = self
            .inner
            .try_acquire_with_records(holder, keys, ttl, free_for)
            .await;
        if let Some(won) = acquired.as_ref().ok().filter(|won| !won.leases.is_empty()) {
            *self.last_kept.lock().unwrap() = Some(sent);
            let now = Instant::now();
            let first_win = self
                .won
                .send_if_modified(|at| at.is_none() && at.replace(now).is_none());
            // The records read with the acquisition are the new holder's record read.
            if let Some(record) = won.records.first().filter(|_| first_win) {
                let mut takeover = self.takeover.lock().unwrap();
                takeover.read_sent = Some(sent);
                takeover.read = Some(now);
                takeover.due_ahead_ms = record.next_due_ms.map(|due| due - record.read_at_ms);
            }
        }
        acquired
    }
    async fn renew(
        &self,
        holder: &str,
        leases: &[LeaseRef],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        self.renews.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let renewed = self.inner.renew(holder, leases, ttl).await;
        if renewed.as_ref().is_ok_and(|kept| !kept.is_empty()) {
            *self.last_kept.lock().unwrap() = Some(started);
        }
        self.renew_latency.lock().unwrap().push(started.elapsed());
        renewed
    }
    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        *self.release_sent.lock().unwrap() = Some(Instant::now());
        let released = self.inner.release(holder, leases).await;
        *self.released.lock().unwrap() = Some(Instant::now());
        released
    }
    async fn heartbeat(
        &self,
        scope: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.heartbeat(scope, member, ttl).await
    }
    async fn members(&self, scope: &str) -> Result<Vec<Member>, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.members(scope).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaseStatus>, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix).await
    }
    async fn schedules(&self, keys: &[String]) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        let read = self.inner.schedules(keys).await;
        let mut takeover = self.takeover.lock().unwrap();
        if self.won.borrow().is_some() && takeover.read.is_none() {
            takeover.read_sent = Some(sent);
            takeover.read = Some(Instant::now());
            let first = read.as_ref().ok().and_then(|records| records.first());
            takeover.due_ahead_ms =
                first.and_then(|record| Some(record.next_due_ms? - record.read_at_ms));
        }
        read
    }
    async fn list_schedules(&self, prefix: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.list_schedules(prefix).await
    }
    async fn plan(&self, holder: &str, plans: &[Plan]) -> Result<Vec<String>, StoreError> {
        self.plans.fetch_add(1, Ordering::SeqCst);
        self.inner.plan(holder, plans).await
    }
    async fn start_runs(
        &self,
        holder: &str,
        starts: &[RunStart],
    ) -> Result<Vec<StartedRun>, StoreError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        *self.last_start_sent.lock().unwrap() = Some(sent);
        let started = self.inner.start_runs(holder, starts).await;
        *self.last_started.lock().unwrap() = Some(Instant::now());
        let mut takeover = self.takeover.lock().unwrap();
        if started.as_ref().is_ok_and(|runs| !runs.is_empty()) && takeover.started.is_none() {
            takeover.start_sent = Some(sent);
            takeover.started = Some(Instant::now());
        }
        started
    }
    async fn end_runs(&self, holder: &str, ends: &[RunEnd]) -> Result<Vec<String>, StoreError> {
        self.ends.fetch_add(1, Ordering::SeqCst);
        let ended = self.inner.end_runs(holder, ends).await;
        *self.ended.lock().unwrap() = Some(Instant::now());
        ended
    }
    async fn pause(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.pause(key, by).await
    }
    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.resume(key, by).await
    }
    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.trigger(key, by).await
    }
    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.history(key, limit).await
    }
    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        self.inner.release_notifications()
    }
}
