//! Store stalls the suite did not inject. The host is shared (other builds and test suites use
//! its cores, its disk and the same database servers), and now and then the store answers
//! nobody for a second or more. The harness writes to the store itself (a membership heartbeat,
//! on its own direct connection) four times a second, and every write that takes longer than
//! [`STALL`] marks a stall: a store-wide fault the checker treats as it treats an injected one
//! (P5's and P7's bounds grow by it), and the report says how many there were and how long.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::store::LeaseStore;
use tokio::task::JoinHandle;

use crate::clock::mono_ns;

/// A write slower than this is a stall.
pub const STALL: Duration = Duration::from_millis(500);

/// The running probe.
pub struct StallProbe {
    stalls: Arc<Mutex<Vec<(u64, u64)>>>,
    task: JoinHandle<()>,
}

impl StallProbe {
    pub fn start(store: Arc<dyn LeaseStore>) -> StallProbe {
        let stalls: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let found = stalls.clone();
        let task = tokio::spawn(async move {
            loop {
                let sent = mono_ns();
                let write =
                    store.heartbeat("chaos-stall-probe", "harness", Duration::from_secs(10));
                let failed = !matches!(
                    tokio::time::timeout(Duration::from_secs(10), write).await,
                    Ok(Ok(_))
                );
                let answered = mono_ns();
                if failed || Duration::from_nanos(answered - sent) > STALL {
                    let mut found = found.lock().unwrap_or_else(|p| p.into_inner());
                    found.push((sent, answered));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        StallProbe { stalls, task }
    }

    /// Stops the probe; returns the stalls, (start, end) in monotonic ns.
    pub fn stop(self) -> Vec<(u64, u64)> {
        self.task.abort();
        let stalls = self.stalls.lock().unwrap_or_else(|p| p.into_inner());
        stalls.clone()
    }
}
