//! The one listener a store keeps for its notices (see the parent module).

use std::sync::Mutex;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{BACKLOG, ReleaseNotice, ReleaseNotifications};

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
    #[cfg(any(feature = "postgres", feature = "redis", feature = "etcd"))]
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn outside_a_runtime_nothing_starts_and_followers_poll() {
        let listener = Listener::default();
        let subscribed = listener.subscribe(|_, _| panic!("started outside a runtime"));
        assert!(subscribed.is_none());
    }

    #[tokio::test]
    async fn the_first_subscription_starts_the_listener_once_and_every_subscriber_hears_it() {
        let listener = Listener::default();
        let starts = Cell::new(0);
        let start = |sender: broadcast::Sender<ReleaseNotice>, _stop| {
            starts.set(starts.get() + 1);
            // A listener's first notice, sent before `subscribe` has even returned.
            sender.send(ReleaseNotice::Missed).unwrap();
            Ok(())
        };
        let mut first = listener.subscribe(start).unwrap();
        let mut second = listener.subscribe(start).unwrap();
        assert_eq!(starts.get(), 1);
        assert_eq!(first.recv().await, Some(ReleaseNotice::Missed));

        let sender = listener.sender.lock().unwrap().clone().unwrap();
        sender.send(ReleaseNotice::Released("k".into())).unwrap();
        for subscriber in [&mut first, &mut second] {
            assert_eq!(
                subscriber.recv().await,
                Some(ReleaseNotice::Released("k".into()))
            );
        }
    }

    #[tokio::test]
    async fn a_start_that_fails_gives_no_subscription_and_the_next_one_tries_again() {
        let listener = Listener::default();
        let failed = listener.subscribe(|_, _| Err(std::io::ErrorKind::Unsupported.into()));
        assert!(failed.is_none());
        assert!(listener.subscribe(|_, _| Ok(())).is_some());
    }

    #[tokio::test]
    async fn dropping_the_listener_stops_what_it_started() {
        let listener = Listener::default();
        let stop = Cell::new(None);
        listener
            .subscribe(|_, token| {
                stop.set(Some(token));
                Ok(())
            })
            .unwrap();
        let stop = stop.take().unwrap();
        assert!(!stop.is_cancelled());
        drop(listener);
        assert!(stop.is_cancelled());
    }
}
