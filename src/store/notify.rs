//! Release notifications: how a store that can push releases wakes waiting followers early, and
//! tells a key's holder at once that an operator changed its schedule record.

use tokio::sync::broadcast;

#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "etcd"
))]
mod listener;
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "etcd"
))]
pub(crate) use listener::Listener;

/// How many notices a slow subscriber may fall behind before it is told it missed some.
pub(crate) const BACKLOG: usize = 1024;

/// One notice, as a subscriber sees it: a release, or an operator's command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseNotice {
    /// The lease with this key was released and may be free now.
    Released(String),
    /// An operator paused, resumed or triggered this key: its holder should re-read the key's
    /// schedule record (see [`LeaseStore::schedules`](super::LeaseStore::schedules)).
    Commanded(String),
    /// Notices may have been lost (the subscriber fell behind, or the store's listening
    /// connection was established or re-established, and notices before it were not heard):
    /// treat every key as possibly free and poll now. A subscriber may get one soon after it
    /// subscribes.
    Missed,
}

/// A subscription to a store's releases, from [`LeaseStore::release_notifications`].
///
/// [`LeaseStore::release_notifications`]: super::LeaseStore::release_notifications
#[derive(Debug)]
pub struct ReleaseNotifications {
    receiver: broadcast::Receiver<ReleaseNotice>,
}

impl ReleaseNotifications {
    pub(crate) fn new(receiver: broadcast::Receiver<ReleaseNotice>) -> Self {
        ReleaseNotifications { receiver }
    }

    /// Waits for the next notice; `None` once the store has been dropped.
    ///
    /// Cancel-safe: dropping the future loses no notice.
    pub async fn recv(&mut self) -> Option<ReleaseNotice> {
        match self.receiver.recv().await {
            Ok(notice) => Some(notice),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(ReleaseNotice::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
