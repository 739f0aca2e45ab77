//! An in-process lease store, for a single process and for tests.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::notify::BACKLOG;
use super::{
    Lease, LeaseRef, LeaseStatus, LeaseStore, Member, ReleaseNotice, ReleaseNotifications,
    StoreError, args,
};

/// A lease store in this process's memory: leader election among tasks of one process, and a
/// fast store for tests.
///
/// Its clock is Tokio's ([`tokio::time::Instant`]), anchored to the system clock when the store
/// is created: under a paused test runtime (`#[tokio::test(start_paused = true)]`) leases expire
/// as virtual time advances, so expiry can be tested without waiting. Nothing survives the
/// process, so its epochs are fencing tokens only within it. Every method completes without
/// waiting and is cancel-safe. Releases are pushed to [`LeaseStore::release_notifications`].
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
        let anchor_ms = SystemTime::now()
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
        let holder = args::name("holder", holder)?;
        let keys = args::keys(keys)?;
        let ttl = args::ttl_ms(ttl)?;
        let free_for = args::free_for_ms(free_for)?;
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
