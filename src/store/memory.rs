//! An in-process lease store, for a single process and for tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::notify::BACKLOG;
use super::record::Record;
use super::{
    Lease, LeaseRef, LeaseStatus, LeaseStore, Member, Plan, ReleaseNotice, ReleaseNotifications,
    RunEnd, RunRecord, RunStart, ScheduleRecord, StartedRun, StoreError, args,
};

/// A lease store in this process's memory: leader election among tasks of one process, and a
/// fast store for tests.
///
/// Its clock is Tokio's ([`tokio::time::Instant`]), anchored to the system clock when the store
/// is created: under a paused test runtime (`#[tokio::test(start_paused = true)]`) leases expire
/// as virtual time advances, so expiry can be tested without waiting. Nothing survives the
/// process, so its epochs are fencing tokens only within it. Every method completes without
/// waiting and is cancel-safe. Releases and operator commands are pushed to
/// [`LeaseStore::release_notifications`]. Schedule records and their run histories are kept
/// beside the leases, by the same clock.
///
/// ```
/// use std::time::Duration;
/// use loopjob::store::{LeaseStore, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), loopjob::store::StoreError> {
/// let store = MemoryStore::new();
/// let keys = ["nightly".to_owned()];
/// store.try_acquire("a", &keys, Duration::from_secs(10)).await?;
/// assert!(store.try_acquire("b", &keys, Duration::from_secs(10)).await?.is_empty());
///
/// tokio::time::advance(Duration::from_secs(10)).await;
/// assert_eq!(store.try_acquire("b", &keys, Duration::from_secs(10)).await?[0].epoch, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    anchor: Instant,
    anchor_ms: i64,
    state: Mutex<State>,
    releases: broadcast::Sender<ReleaseNotice>,
}

#[derive(Debug, Default)]
struct State {
    leases: BTreeMap<String, Row>,
    members: BTreeMap<(String, String), i64>,
    schedules: BTreeMap<String, Schedule>,
}

/// A key's schedule record and its history, oldest run first.
#[derive(Debug, Default)]
struct Schedule {
    record: Record,
    runs: VecDeque<RunRecord>,
}

impl Schedule {
    fn to_public(&self, key: &str, now: i64) -> ScheduleRecord {
        self.record.to_public(key, now, self.runs.back().cloned())
    }
}

impl State {
    /// Whether `holder` holds `key` at `epoch`, unexpired at `now`: the fence of every schedule
    /// write.
    fn holds(&self, holder: &str, key: &str, epoch: i64, now: i64) -> bool {
        self.leases.get(key).is_some_and(|row| {
            row.holder == holder && row.epoch as i64 == epoch && row.expires_at_ms > now
        })
    }

    fn schedule(&mut self, key: &str) -> Result<&mut Schedule, StoreError> {
        self.schedules
            .get_mut(key)
            .ok_or_else(|| StoreError::UnknownKey {
                key: key.to_owned(),
            })
    }
}

#[derive(Debug)]
struct Row {
    holder: String,
    epoch: u64,
    expires_at_ms: i64,
}

impl Row {
    fn lease(&self, key: &str) -> Lease {
        Lease {
            key: key.to_owned(),
            holder: self.holder.clone(),
            epoch: self.epoch,
            expires_at_ms: self.expires_at_ms,
        }
    }
}

/// How long an expired membership is kept before a heartbeat sweeps it (as in the SQL stores).
const MEMBER_RETENTION_MS: i64 = 3_600_000;

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::starting_at(SystemTime::now())
    }

    /// An empty store whose clock reads `now` at this moment and then runs with Tokio's: for
    /// tests that need the store's time exactly, such as a guarded cron job's occurrences. A
    /// time before the Unix epoch reads as the epoch.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use loopjob::store::{LeaseStore, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), loopjob::store::StoreError> {
    /// let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    /// let store = MemoryStore::starting_at(new_year);
    /// let keys = ["nightly".to_owned()];
    /// let lease = store.try_acquire("a", &keys, Duration::from_secs(10)).await?;
    /// assert_eq!(lease[0].expires_at_ms, 1_767_225_610_000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn starting_at(now: SystemTime) -> Self {
        let anchor_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        MemoryStore {
            anchor: Instant::now(),
            anchor_ms,
            state: Mutex::new(State::default()),
            releases: broadcast::channel(BACKLOG).0,
        }
    }

    /// The store's clock, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.anchor_ms.saturating_add(elapsed)
    }

    /// Applies an operator command to `key`'s record, tells subscribers, and answers the record.
    fn command(
        &self,
        key: &str,
        by: &str,
        apply: impl FnOnce(&mut Record, &str, i64),
    ) -> Result<ScheduleRecord, StoreError> {
        let key = args::name("lease key", key)?;
        let by = args::name("operator name", by)?;
        let now = self.now_ms();
        let record = {
            let mut state = self.state();
            let schedule = state.schedule(key)?;
            apply(&mut schedule.record, by, now);
            schedule.to_public(key, now)
        };
        // No subscriber is not an error.
        let _ = self.releases.send(ReleaseNotice::Commanded(key.to_owned()));
        Ok(record)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, and every update is one assignment, so a
        // poisoned lock still guards consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn initialise(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn try_acquire_free_for(
        &self,
        holder: &str,
        keys: &[String],
        ttl: Duration,
        free_for: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let (holder, keys, ttl, free_for) = args::acquire(holder, keys, ttl, free_for)?;
        let now = self.now_ms();
        let mut state = self.state();
        let mut won = Vec::new();
        for key in keys {
            match state.leases.get_mut(key) {
                Some(row)
                    if row.expires_at_ms <= now.saturating_sub(free_for)
                        || row.holder == holder =>
                {
                    row.holder = holder.to_owned();
                    row.epoch += 1;
                    row.expires_at_ms = now.saturating_add(ttl);
                    won.push(row.lease(key));
                }
                Some(_) => {}
                None => {
                    let row = Row {
                        holder: holder.to_owned(),
                        epoch: 1,
                        expires_at_ms: now.saturating_add(ttl),
                    };
                    won.push(row.lease(key));
                    state.leases.insert(key.to_owned(), row);
                }
            }
        }
        Ok(won)
    }

    async fn renew(
        &self,
        holder: &str,
        leases: &[LeaseRef],
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        let ttl = args::ttl_ms(ttl)?;
        let now = self.now_ms();
        let mut state = self.state();
        let mut renewed = Vec::new();
        for (key, epoch) in leases {
            if let Some(row) = state.leases.get_mut(key) {
                if row.holder == holder && row.epoch as i64 == epoch && row.expires_at_ms > now {
                    row.expires_at_ms = now.saturating_add(ttl);
                    renewed.push(row.lease(key));
                }
            }
        }
        Ok(renewed)
    }

    async fn release(&self, holder: &str, leases: &[LeaseRef]) -> Result<(), StoreError> {
        let holder = args::name("holder", holder)?;
        let leases = args::lease_refs(leases)?;
        let now = self.now_ms();
        let mut released = Vec::new();
        {
            let mut state = self.state();
            for (key, epoch) in leases {
                if let Some(row) = state.leases.get_mut(key) {
                    if row.holder == holder && row.epoch as i64 == epoch && row.expires_at_ms > now
                    {
                        row.expires_at_ms = now;
                        released.push(key.to_owned());
                    }
                }
            }
        }
        for key in released {
            // No subscriber is not an error.
            let _ = self.releases.send(ReleaseNotice::Released(key));
        }
        Ok(())
    }

    async fn heartbeat(
        &self,
        scope: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        let scope = args::name("membership scope", scope)?;
        let member = args::name("member", member)?;
        let ttl = args::ttl_ms(ttl)?;
        let now = self.now_ms();
        let mut state = self.state();
        state.members.retain(|(in_scope, _), expires_at_ms| {
            in_scope != scope || *expires_at_ms >= now.saturating_sub(MEMBER_RETENTION_MS)
        });
        state.members.insert(
            (scope.to_owned(), member.to_owned()),
            now.saturating_add(ttl),
        );
        Ok(live_members(&state, scope, now))
    }

    async fn members(&self, scope: &str) -> Result<Vec<Member>, StoreError> {
        let scope = args::name("membership scope", scope)?;
        let now = self.now_ms();
        Ok(live_members(&self.state(), scope, now))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaseStatus>, StoreError> {
        let now = self.now_ms();
        let state = self.state();
        Ok(state
            .leases
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, row)| LeaseStatus {
                lease: row.lease(key),
                remaining: args::remaining(row.expires_at_ms, now),
            })
            .collect())
    }

    async fn schedules(&self, keys: &[String]) -> Result<Vec<ScheduleRecord>, StoreError> {
        let keys = args::keys(keys)?;
        let now = self.now_ms();
        let state = self.state();
        Ok(keys
            .into_iter()
            .filter_map(|key| Some(state.schedules.get(key)?.to_public(key, now)))
            .collect())
    }

    async fn list_schedules(&self, prefix: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        let now = self.now_ms();
        let state = self.state();
        Ok(state
            .schedules
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, schedule)| schedule.to_public(key, now))
            .collect())
    }

    async fn plan(&self, holder: &str, plans: &[Plan]) -> Result<Vec<String>, StoreError> {
        let holder = args::name("holder", holder)?;
        let plans = args::plans(plans)?;
        let now = self.now_ms();
        let mut state = self.state();
        let mut written = Vec::new();
        for plan in plans {
            if !state.holds(holder, plan.key, plan.epoch, now) {
                continue;
            }
            let record = &mut state
                .schedules
                .entry(plan.key.to_owned())
                .or_default()
                .record;
            if plan.only_if_unset && record.next_due.is_some() {
                continue;
            }
            record.set_due(plan.due, now);
            written.push(plan.key.to_owned());
        }
        Ok(written)
    }

    async fn start_runs(
        &self,
        holder: &str,
        starts: &[RunStart],
    ) -> Result<Vec<StartedRun>, StoreError> {
        let holder = args::name("holder", holder)?;
        let starts = args::starts(starts)?;
        let now = self.now_ms();
        let mut state = self.state();
        let mut started = Vec::new();
        for start in starts {
            if !state.holds(holder, start.key, start.epoch, now) {
                continue;
            }
            let schedule = state.schedules.entry(start.key.to_owned()).or_default();
            let Some(seq) =
                schedule
                    .record
                    .start(start.due, start.triggered, start.history_limit, now)
            else {
                continue;
            };
            schedule.runs.push_back(start.run(holder, seq, now));
            let oldest_kept = schedule.record.oldest_kept();
            while schedule
                .runs
                .front()
                .is_some_and(|run| run.seq < oldest_kept)
            {
                schedule.runs.pop_front();
            }
            started.push(StartedRun {
                key: start.key.to_owned(),
                seq,
                started_ms: now,
            });
        }
        Ok(started)
    }

    async fn end_runs(&self, holder: &str, ends: &[RunEnd]) -> Result<Vec<String>, StoreError> {
        let holder = args::name("holder", holder)?;
        let ends = args::ends(ends)?;
        let now = self.now_ms();
        let mut state = self.state();
        let mut written = Vec::new();
        for end in ends {
            if !state.holds(holder, end.key, end.epoch, now) {
                continue;
            }
            let Some(schedule) = state.schedules.get_mut(end.key) else {
                continue;
            };
            let run = schedule
                .runs
                .iter_mut()
                .find(|run| run.seq == end.seq && run.epoch as i64 == end.epoch);
            if let Some(run) = run {
                // Never before its start, even if the clock was set back since.
                run.ended_ms.get_or_insert(now.max(run.started_ms));
                run.outcome = Some(end.outcome);
                run.attempts = u32::try_from(end.attempts).unwrap_or(u32::MAX);
                run.error = end.error;
            }
            schedule.record.set_due(end.due, now);
            written.push(end.key.to_owned());
        }
        Ok(written)
    }

    async fn pause(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, |record, by, now| record.pause(by, now))
    }

    async fn resume(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, |record, _, _| record.resume())
    }

    async fn trigger(&self, key: &str, by: &str) -> Result<ScheduleRecord, StoreError> {
        self.command(key, by, |record, by, now| record.trigger(by, now))
    }

    async fn history(&self, key: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let key = args::name("lease key", key)?;
        let limit = args::history_limit(limit)?;
        let mut state = self.state();
        let schedule = state.schedule(key)?;
        Ok(schedule
            .runs
            .iter()
            .rev()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    fn release_notifications(&self) -> Option<ReleaseNotifications> {
        Some(ReleaseNotifications::new(self.releases.subscribe()))
    }
}

/// The members of `scope` alive at `now`, sorted by name.
fn live_members(state: &State, scope: &str, now: i64) -> Vec<Member> {
    state
        .members
        .iter()
        .filter(|((in_scope, _), expires_at_ms)| in_scope == scope && **expires_at_ms > now)
        .map(|((scope, member), expires_at_ms)| Member {
            scope: scope.clone(),
            member: member.clone(),
            expires_at_ms: *expires_at_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_follows_tokio_time() {
        let store = MemoryStore::new();
        let won = store
            .try_acquire("a", &keys(&["k"]), Duration::from_millis(100))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(
            store
                .try_acquire("b", &keys(&["k"]), Duration::from_secs(1))
                .await
                .unwrap()
                .is_empty()
        );
        let renewed = store
            .renew("a", &[won[0].to_ref()], Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(renewed.len(), 1);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(
            store
                .renew("a", &[won[0].to_ref()], Duration::from_millis(100))
                .await
                .unwrap()
                .is_empty()
        );
        let taken = store
            .try_acquire("b", &keys(&["k"]), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(taken[0].epoch, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_writes_are_fenced_and_history_is_trimmed() {
        use crate::store::{NextDue, RunStart};
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(10);
        let won = store.try_acquire("a", &keys(&["k"]), ttl).await.unwrap();
        let start = |epoch| RunStart {
            key: "k".to_owned(),
            epoch,
            scheduled_ms: 0,
            next_due: NextDue::After(Duration::from_secs(1)),
            triggered: false,
            history_limit: 2,
        };
        for _ in 0..3 {
            let started = store.start_runs("a", &[start(won[0].epoch)]).await.unwrap();
            assert_eq!(started.len(), 1);
        }
        assert!(store.start_runs("a", &[start(7)]).await.unwrap().is_empty());
        assert!(store.start_runs("b", &[start(1)]).await.unwrap().is_empty());
        let history = store.history("k", 10).await.unwrap();
        assert_eq!(history.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 2]);
        tokio::time::advance(ttl).await;
        assert!(store.start_runs("a", &[start(1)]).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn old_memberships_are_swept() {
        let store = MemoryStore::new();
        store
            .heartbeat("s", "gone", Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2 * 3600)).await;
        store
            .heartbeat("s", "here", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(store.state().members.len(), 1);
    }
}
