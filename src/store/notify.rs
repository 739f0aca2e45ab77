//! Release notifications: how a store that can push releases wakes waiting followers early, and
//! tells a key's holder at once that an operator changed its schedule record.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

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

/// A store's one listener for notices, shared by all its subscribers: started by the first
/// subscription, stopped when the store is dropped.
///
/// Every store that can push notices (PostgreSQL's `LISTEN`, SQLite's bell, Redis's pub/sub,
/// etcd's watch) keeps one of these, so each starts its listener the same way.
#[derive(Debug, Default)]
pub(crate) struct Listener {
    sender: Mutex<Option<broadcast::Sender<ReleaseNotice>>>,
    stop: CancellationToken,
}

impl Listener {
    /// Subscribes; the first call spawns `listen(sender, stop)` to send the store's notices.
    ///
    /// `None`, so that followers poll, outside a Tokio runtime.
    pub(crate) fn subscribe_spawning<F>(
        &self,
        listen: impl FnOnce(broadcast::Sender<ReleaseNotice>, CancellationToken) -> F,
    ) -> Option<ReleaseNotifications>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.subscribe(|sender, stop| {
            tokio::spawn(listen(sender, stop));
            Ok(())
        })
    }

    /// Subscribes; the first call runs `start(sender, stop)`, which starts whatever sends the
    /// store's notices until `stop` is cancelled.
    ///
    /// `None`, so that followers poll, outside a Tokio runtime or when `start` fails (and a
    /// later call tries again).
    pub(crate) fn subscribe(
        &self,
        start: impl FnOnce(broadcast::Sender<ReleaseNotice>, CancellationToken) -> std::io::Result<()>,
    ) -> Option<ReleaseNotifications> {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(sender) = sender.as_ref() {
            return Some(ReleaseNotifications::new(sender.subscribe()));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("release notifications need a Tokio runtime; falling back to polling");
            return None;
        }
        // The first caller's receiver is made before the listener starts, so it hears the
        // listener's first `Missed` however soon that comes.
        let (new_sender, receiver) = broadcast::channel(BACKLOG);
        if let Err(error) = start(new_sender.clone(), self.stop.clone()) {
            tracing::debug!(%error, "cannot listen for lease releases; followers poll");
            return None;
        }
        *sender = Some(new_sender);
        Some(ReleaseNotifications::new(receiver))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
