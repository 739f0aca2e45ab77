//! The PcKeepAlive job, the loopjob way: every 10 seconds, mark as offline each PC whose last
//! keep-alive is older than `change_state_after` (or that never sent one).
//!
//! What the attribute and the settings replace: the options interface and class, the hosted
//! service, the registration helper and the constructor. The job is a struct with its
//! dependencies as fields (taken by type from the builder's resources) and its options (read
//! and validated from `[jobs.pc_keep_alive]`), and one `execute`.
//!
//! ```text
//! cargo run --example pc_keep_alive -- --config config/pc_keep_alive.toml
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use loopjob::{Host, JobContext, JobError, LoopJob, Schedule, Settings};
use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use validator::Validate;

/// One PC as the PC table stores it.
#[derive(Debug, Clone)]
struct Pc {
    mac: String,
    online: bool,
    offline_since: Option<SystemTime>,
}

/// Stands in for the PC table.
#[derive(Default)]
struct PcRepository {
    pcs: Mutex<Vec<Pc>>,
}

impl PcRepository {
    fn online(&self) -> Vec<Pc> {
        self.lock().iter().filter(|pc| pc.online).cloned().collect()
    }

    fn add(&self, mac: &str) {
        self.lock().push(Pc {
            mac: mac.to_owned(),
            online: true,
            offline_since: None,
        });
    }

    fn declare_offline(&self, mac: &str, now: SystemTime) -> Result<(), JobError> {
        let mut pcs = self.lock();
        let pc = pcs
            .iter_mut()
            .find(|pc| pc.mac == mac)
            .ok_or_else(|| JobError::msg(format!("no PC with MAC {mac}")))?;
        pc.online = false;
        pc.offline_since = Some(now);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pc>> {
        // A poisoned lock only means another thread panicked mid-update; the list is still usable.
        self.pcs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Stands in for the keep-alive store: the last keep-alive per MAC. Clones share the store.
#[derive(Default, Clone)]
struct KeepAliveRepository {
    last: Arc<Mutex<HashMap<String, SystemTime>>>,
}

impl KeepAliveRepository {
    fn record(&self, mac: &str, at: SystemTime) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mac.to_owned(), at);
    }

    fn last_keep_alive(&self, mac: &str) -> Option<SystemTime> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(mac)
            .copied()
    }
}

/// The job's own option, beside the schedule keys in `[jobs.pc_keep_alive]`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct PcKeepAliveOptions {
    /// A PC whose last keep-alive is older than this is declared offline.
    #[serde(with = "loopjob::settings::duration")]
    change_state_after: Duration,
}

/// Marks PCs offline when their keep-alives stop.
#[derive(LoopJob)]
#[loopjob(
    options = PcKeepAliveOptions,
    interval = "10s",
    initial_delay = "10m",
    skip_if_running = true,
    discover
)]
struct PcKeepAlive {
    pcs: Arc<PcRepository>,
    keep_alives: Arc<KeepAliveRepository>,
    options: PcKeepAliveOptions,
}

impl PcKeepAlive {
    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        let now = SystemTime::now();
        let mut declared = 0;
        for pc in self.pcs.online() {
            if ctx.is_cancelled() {
                break;
            }
            let silent_for = match self.keep_alives.last_keep_alive(&pc.mac) {
                Some(last) => now.duration_since(last).unwrap_or_default(),
                None => {
                    tracing::debug!(mac = %pc.mac, "no keep-alive on record");
                    Duration::MAX
                }
            };
            if silent_for > self.options.change_state_after {
                tracing::info!(mac = %pc.mac, "declaring PC offline");
                // One PC that cannot be updated is logged; the others are still checked.
                match self.pcs.declare_offline(&pc.mac, now) {
                    Ok(()) => declared += 1,
                    Err(error) => tracing::error!(mac = %pc.mac, %error, "cannot mark PC offline"),
                }
            }
        }
        tracing::debug!(run = ctx.run_id(), declared, "keep-alive lookup completed");
        Ok(())
    }
}

/// The file after `--config`, or `default`.
fn config_path(default: &str) -> String {
    let given = std::env::args().skip_while(|arg| arg != "--config").nth(1);
    given.unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), loopjob::Report> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let settings = Settings::load(config_path("config/pc_keep_alive.toml"))?;

    // Three PCs: one that keeps sending keep-alives, one silent for 20 minutes, one never heard.
    let pcs = PcRepository::default();
    let keep_alives = KeepAliveRepository::default();
    for mac in [
        "00:1a:2b:00:00:01",
        "00:1a:2b:00:00:02",
        "00:1a:2b:00:00:03",
    ] {
        pcs.add(mac);
    }
    let twenty_minutes_ago = SystemTime::now() - Duration::from_secs(20 * 60);
    keep_alives.record("00:1a:2b:00:00:02", twenty_minutes_ago);

    let sender = keep_alives.clone();
    let host = Host::builder()
        .settings(settings)
        .resource(pcs)
        .resource(keep_alives)
        .discover()
        // Stands in for PC 1 sending its keep-alives.
        .job_fn(
            "pc_1_keep_alive",
            Schedule::every(Duration::from_secs(2)),
            move |_| {
                sender.record("00:1a:2b:00:00:01", SystemTime::now());
                async { Ok(()) }
            },
        )
        .build()?;
    tracing::info!(jobs = ?host.handle().job_names(), "running; press Ctrl-C to stop");
    host.run().await;
    Ok(())
}
