//! Release notifications over Redis pub/sub: one task per store subscribes to the prefix's
//! notice channel and turns its messages into [`ReleaseNotice`]s.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::ReleaseNotice;

/// How long the listener waits before it subscribes again after losing its connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The notice a channel message stands for: `released:KEY` or `commanded:KEY`.
pub(super) fn notice(message: &str) -> Option<ReleaseNotice> {
    if let Some(key) = message.strip_prefix("released:") {
        return Some(ReleaseNotice::Released(key.to_owned()));
    }
    message
        .strip_prefix("commanded:")
        .map(|key| ReleaseNotice::Commanded(key.to_owned()))
}

/// Subscribes to `channel` until `stop` is cancelled, forwarding notices to `sender`. Each time
/// a subscription is established, the first one included, it sends [`ReleaseNotice::Missed`]:
/// messages published before it (since the caller asked for notices, or while the connection
/// was lost) are lost, as pub/sub keeps nothing.
pub(super) async fn listen(
    client: redis::Client,
    channel: String,
    sender: broadcast::Sender<ReleaseNotice>,
    stop: CancellationToken,
) {
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            () = stop.cancelled() => return,
            subscribed = subscribed => subscribed,
        };
        match pubsub {
            Ok(mut pubsub) => {
                // No subscriber is not an error.
                let _ = sender.send(ReleaseNotice::Missed);
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = messages.next() => message,
                    };
                    let Some(message) = message else { break };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(notice) = notice(&payload) {
                        let _ = sender.send(notice);
                    }
                }
                tracing::debug!(channel, "redis notice subscription lost; subscribing again");
            }
            Err(error) => {
                tracing::debug!(channel, %error, "cannot subscribe to redis notices; retrying");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_notice() {
        assert_eq!(
            notice("released:a:b"),
            Some(ReleaseNotice::Released("a:b".to_owned()))
        );
        assert_eq!(
            notice("commanded:k"),
            Some(ReleaseNotice::Commanded("k".to_owned()))
        );
        assert_eq!(notice("hello"), None);
    }
}
