//! Release notifications by etcd watch: one task per store watches the held markers' deletions
//! (a release, or the expiry of the holder's etcd lease) and the operator commands, and turns
//! them into [`ReleaseNotice`]s.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, WatchFilterType, WatchOptions, WatchStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::layout::Layout;
use crate::store::ReleaseNotice;

/// How long the listener waits before it watches again after losing its watch.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// How the listener connects: on its own connection, so that a watch never waits on calls.
pub(super) struct Connect {
    pub(super) endpoints: Vec<String>,
    pub(super) options: ConnectOptions,
}

/// Watches until `stop` is cancelled, forwarding notices to `sender`. Each time a watch is
/// established, the first one included, it sends [`ReleaseNotice::Missed`]: events before it
/// (since the caller asked for notices, or while the watch was lost) are not replayed.
pub(super) async fn listen(
    connect: Connect,
    layout: Layout,
    sender: broadcast::Sender<ReleaseNotice>,
    stop: CancellationToken,
) {
    let (held, commands) = (layout.held(""), layout.command(""));
    loop {
        let watch = tokio::select! {
            () = stop.cancelled() => return,
            watch = watch(&connect, &held, &commands) => watch,
        };
        match watch {
            Ok(mut events) => {
                // No subscriber is not an error.
                let _ = sender.send(ReleaseNotice::Missed);
                loop {
                    let answer = tokio::select! {
                        () = stop.cancelled() => return,
                        answer = events.message() => answer,
                    };
                    let Ok(Some(answer)) = answer else { break };
                    if answer.canceled() {
                        break;
                    }
                    for kv in answer.events().iter().filter_map(|event| event.kv()) {
                        if let Some(key) = Layout::name_after(&held, kv.key()) {
                            let _ = sender.send(ReleaseNotice::Released(key));
                        } else if let Some(key) = Layout::name_after(&commands, kv.key()) {
                            let _ = sender.send(ReleaseNotice::Commanded(key));
                        }
                    }
                }
                tracing::debug!("etcd watch lost; watching again");
            }
            Err(error) => tracing::debug!(%error, "cannot watch etcd; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

/// One stream with two watches: deletions of held markers, and puts of operator commands.
async fn watch(
    connect: &Connect,
    held: &[u8],
    commands: &[u8],
) -> Result<WatchStream, etcd_client::Error> {
    let mut client =
        Client::connect(connect.endpoints.clone(), Some(connect.options.clone())).await?;
    let only = |skip: WatchFilterType| Some(WatchOptions::new().with_prefix().with_filters([skip]));
    let mut events = client
        .watch(held.to_vec(), only(WatchFilterType::NoPut))
        .await?;
    events
        .watch(commands.to_vec(), only(WatchFilterType::NoDelete))
        .await?;
    Ok(events)
}
