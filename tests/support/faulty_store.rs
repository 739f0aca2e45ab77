//! A lease store wrapper for leadership tests: it counts calls, and can be cut off (every call
//! fails at once, as if the network were gone), made to hang its renewals (never answered, as
//! with a store that froze), made deaf to release notifications (as SQLite and MySQL are), made
//! to stall its listings, slow to commit run starts (a loaded database), or made to answer
//! records with its acquisitions (as etcd does).
#![allow(dead_code)] // each test target uses a different part

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use loopjob::store::{
    Acquired, Lease, LeaseRef, LeaseStatus, LeaseStore, Member, MemoryStore, Plan,
    ReleaseNotifications, RunEnd, RunRecord, RunStart, ScheduleRecord, StartedRun, StoreError,
};

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<MemoryStore>,
    cut: AtomicBool,
    silent_lists: AtomicBool,
    hang_renewals: AtomicBool,
    records_with_leases: AtomicBool,
    notifications: bool,
    pub calls: AtomicU64,
    pub renews: AtomicU64,
    pub acquires: AtomicU64,
    /// Calls that read schedule records, and calls that commit run starts.
    pub reads: AtomicU64,
    pub starts: AtomicU64,
    /// How long each `start_runs` takes before it commits, in milliseconds.
    start_delay_ms: AtomicU64,
    /// How long the answers of `start_runs` and `schedules` calls sent now take to come back
    /// after the store read its clock, in milliseconds.
    answer_delay_ms: AtomicU64,
}

impl FaultyStore {
    /// A view of `inner` for one node; `notifications` says whether it passes releases on.
    pub fn new(inner: Arc<MemoryStore>, notifications: bool) -> Arc<Self> {
        Arc::new(FaultyStore {
            inner,
            cut: AtomicBool::new(false),
            silent_lists: AtomicBool::new(false),
            hang_renewals: AtomicBool::new(false),
            records_with_leases: AtomicBool::new(false),
            notifications,
            calls: AtomicU64::new(0),
            renews: AtomicU64::new(0),
            acquires: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            starts: AtomicU64::new(0),
            start_delay_ms: AtomicU64::new(0),
            answer_delay_ms: AtomicU64::new(0),
        })
    }

    /// Cuts (`true`) or restores (`false`) this node's line to the store.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// Makes `list` (what status tools and `/readyz` read) never answer (`true`), as a store
    /// that accepts the connection but stalls, or answer again (`false`).
    pub fn silence_lists(&self, silent: bool) {
        self.silent_lists.store(silent, Ordering::SeqCst);
    }

    /// Makes every renewal from now on hang (`true`), never answered, or answer again.
    pub fn hang_renewals(&self, hang: bool) {
        self.hang_renewals.store(hang, Ordering::SeqCst);
    }

    /// Makes acquisitions answer the records of the keys won (`true`), read in the same call,
    /// as a store that reads them in the acquisition's round trip does (etcd), or none.
    pub fn answer_records_with_leases(&self, answer: bool) {
        self.records_with_leases.store(answer, Ordering::SeqCst);
    }

    /// Makes every `start_runs` take `delay` before it commits.
    pub fn slow_starts(&self, delay: Duration) {
        self.start_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Makes the answers of the `start_runs` and `schedules` calls sent from now on come back
    /// `delay` after the store read its clock, as a stalled store's do (etcd reads the time as
    /// a call begins).
    pub fn hold_answers(&self, delay: Duration) {
        self.answer_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.cut.load(Ordering::SeqCst) {
            Err(StoreError::Timeout {
                operation: "test",
                timeout: Duration::ZERO,
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl LeaseStore for FaultyStore {
    fn backend(&self) -> &'static str {
        "faulty-memory"
    }
    async fn initialise(&self) -> Result<(), StoreError> {
        self.call()?;
        self.inner.initialise().await
    }
    async fn try_acquire_free_for(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        self.acquires.fetch_add(1, Ordering::SeqCst);
        self.call()?;
        self.inner
            .try_acquire_free_for(holder, keys, ttl, free_for)
            .await
    }
    async fn try_acquire_with_records(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Acquired, StoreError> {
        let leases = self
            .try_acquire_free_for(holder, keys, ttl, free_for)
            .await?;
        let records = if self.records_with_leases.load(Ordering::SeqCst) {
            let won: Vec<String> = leases.iter().map(|lease| lease.key.clone()).collect();
            self.inner.schedules(&won).await?
        } else {
            Vec::new()
        };
        Ok(Acquired { leases, records })
    }
    async fn renew(
        &self,
        holder: &str,
        leases: &[LeaseRef],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        self.renews.fetch_add(1, Ordering::SeqCst);
        if self.hang_renewals.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.call()?;
        self.inner.renew(holder, leases, ttl).await
    }
    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError> {
        self.call()?;
        self.inner.release(holder, leases).await
    }
    async fn heartbeat(
        &self,
        scope: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        self.call()?;
        self.inner.heartbeat(scope, member, ttl).await
    }
    async fn members(&self, scope: &str) -> Result<Vec<Member>, StoreError> {
        self.call()?;
        self.inner.members(scope).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaseStatus>, StoreError> {
        self.call()?;
        if self.silent_lists.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.list(prefix).await
    }
    async fn schedules(&self, keys: &[String]) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.call()?;
        let held = self.answer_delay_ms.load(Ordering::SeqCst);
        let records = self.inner.schedules(keys).await;
        tokio::time::sleep(Duration::from_millis(held)).await;
        records
    }
    async fn list_schedules(&self, prefix: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.call()?;
        self.inner.list_schedules(prefix).await
    }
    async fn plan(&self, holder: &str, plans: &[Plan]) -> Result<Vec<String>, StoreError> {
        self.call()?;
        self.inner.plan(holder, plans).await
    }
    async fn start_runs(
        &self,
        holder: &str,
        starts: &[RunStart],
    ) -> Result<Vec<StartedRun>, StoreError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.call()?;
        let (delay, held) = (
            self.start_delay_ms.load(Ordering::SeqCst),
            self.answer_delay_ms.load(Ordering::SeqCst),
        );
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let started = self.inner.start_runs(holder, starts).await;
        tokio::time::sleep(Duration::from_millis(held)).await;
        started
    }
    async fn end_runs(&self, holder: &str, ends: &[RunEnd]) -> Result<Vec<String>, StoreError> {
        self.call()?;
        self.inner.end_runs(holder, ends).await
    }
    async fn pause(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.call()?;
        self.inner.pause(key, by).await
    }
    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.call()?;
        self.inner.resume(key, by).await
    }
    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.call()?;
        self.inner.trigger(key, by).await
    }
    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        self.call()?;
        self.inner.history(key, limit).await
    }
    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        if self.notifications {
            self.inner.release_notifications()
        } else {
            None
        }
    }
}
