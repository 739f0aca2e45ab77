//! One node process of a chaos run: a host with a global job, a cluster job and a partitioned
//! job on short leases. Every run writes to the fenced journal; the process prints what the
//! checker needs on stdout, one `LJ` line each, stamped with CLOCK_MONOTONIC nanoseconds:
//!
//! ```text
//! LJ START <node> <pid> <t>                       host about to run
//! LJ ACQ <node> <key> <epoch> <t>                 on_acquired
//! LJ LOST <node> <key> <epoch> <t>                the lease's lost() completed (elector-side)
//! LJ CANCEL <node> <job> <run_id> <t>             the run's token was cancelled while it ran
//! LJ JERR <node> <key> <epoch> <error>            a journal write failed
//! LJ EXIT <node> <job> <runs> <skipped> <not_leader> <missed> <failures> <panics> <dropped> <t>
//! ```
//!
//! It reads its configuration from `LOOPJOB_CHAOS_*` variables set by the harness; without
//! them the test is a no-op, so `--include-ignored` does not break.

use std::sync::Arc;
use std::time::Duration;

use loopjob::store::{StoreOptions, open_with};
use loopjob::{
    HeldLease, Host, JobContext, JobError, LeaderMode, Leadership, LoopJob, LostReason,
    NodeIdentity, Schedule,
};

use crate::clock::mono_ns;
use crate::journal::{Entry, Journal};

/// Lease timing of every guarded job in a chaos run.
pub const TTL: Duration = Duration::from_secs(2);
pub const RENEW_EVERY: Duration = Duration::from_millis(600);
pub const RETRY_EVERY: Duration = Duration::from_millis(300);
pub const INTERVAL: Duration = Duration::from_millis(200);
pub const PARTITIONS: u32 = 6;
/// Store calls give up after this; well under the ttl, above a slow round trip.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(1500);

/// The jobs every node runs: (name, mode).
pub const JOBS: [(&str, LeaderMode); 3] = [
    ("global", LeaderMode::Global),
    ("cluster", LeaderMode::Cluster),
    ("part", LeaderMode::Partitioned),
];

/// The environment a node process reads.
pub struct NodeConfig {
    pub name: String,
    pub group: String,
    pub store_url: String,
    pub table_prefix: String,
    pub journal_url: String,
    pub journal_name: String,
}

impl NodeConfig {
    pub const VARS: [&'static str; 6] = [
        "LOOPJOB_CHAOS_NODE",
        "LOOPJOB_CHAOS_GROUP",
        "LOOPJOB_CHAOS_STORE",
        "LOOPJOB_CHAOS_PREFIX",
        "LOOPJOB_CHAOS_JOURNAL_URL",
        "LOOPJOB_CHAOS_JOURNAL",
    ];

    pub fn to_env(&self) -> [(&'static str, String); 6] {
        let [a, b, c, d, e, f] = Self::VARS;
        [
            (a, self.name.clone()),
            (b, self.group.clone()),
            (c, self.store_url.clone()),
            (d, self.table_prefix.clone()),
            (e, self.journal_url.clone()),
            (f, self.journal_name.clone()),
        ]
    }

    fn from_env() -> Option<NodeConfig> {
        let var = |name| std::env::var(name).ok();
        let [a, b, c, d, e, f] = Self::VARS;
        Some(NodeConfig {
            name: var(a)?,
            group: var(b)?,
            store_url: var(c)?,
            table_prefix: var(d)?,
            journal_url: var(e)?,
            journal_name: var(f)?,
        })
    }
}

/// Prints one `LJ` line.
macro_rules! line {
    ($($arg:tt)*) => {{
        println!("LJ {}", format_args!($($arg)*));
    }};
}

struct ChaosJob {
    name: &'static str,
    mode: LeaderMode,
    node: Arc<str>,
    journal: Journal,
}

impl LoopJob for ChaosJob {
    fn name(&self) -> &str {
        self.name
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(INTERVAL)
    }

    fn leadership(&self) -> Leadership {
        Leadership::new(self.mode)
            .lease_ttl(TTL)
            .with_renew_every(RENEW_EVERY)
            .retry_every(RETRY_EVERY)
            .partitions(PARTITIONS)
    }

    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        let start_ns = mono_ns();
        let leases: Vec<(String, u64)> = match self.mode {
            LeaderMode::Partitioned => ctx
                .partitions()
                .iter()
                .map(|l| (l.key().to_owned(), l.epoch()))
                .collect(),
            _ => ctx
                .lease()
                .map(|l| (l.key().to_owned(), l.epoch()))
                .into_iter()
                .collect(),
        };
        // P4: note when the run's token is cancelled, from a task of its own so the time is
        // taken the moment the token fires, whatever the run is doing.
        let token = ctx.token().clone();
        let finished = Arc::new(tokio::sync::Notify::new());
        let (node, job, run_id) = (self.node.clone(), self.name, ctx.run_id());
        let watcher_finished = finished.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => line!("CANCEL {node} {job} {run_id} {}", mono_ns()),
                _ = watcher_finished.notified() => {}
            }
        });
        // The work: 40–260 ms against a 200 ms interval, so some ticks find it still running.
        let work = Duration::from_millis(fastrand::u64(40..=260));
        tokio::select! {
            _ = tokio::time::sleep(work) => {}
            _ = ctx.cancelled() => {}
        }
        let end_ns = mono_ns();
        let cancelled = ctx.is_cancelled();
        finished.notify_one();
        // The result goes downstream even if the run was cancelled: a stale leader's write in
        // flight, which the fence must reject.
        for (key, epoch) in leases {
            let entry = Entry {
                key,
                node: self.node.to_string(),
                job: self.name.to_owned(),
                run_id: ctx.run_id(),
                epoch,
                start_ns,
                end_ns,
                cancelled,
            };
            if let Err(error) = self.journal.write(&entry).await {
                let error = error.to_string().replace('\n', " ");
                line!("JERR {} {} {} {error}", self.node, entry.key, entry.epoch);
            }
        }
        Ok(())
    }

    async fn on_acquired(&self, lease: &HeldLease) {
        line!(
            "ACQ {} {} {} {}",
            self.node,
            lease.key(),
            lease.epoch(),
            mono_ns()
        );
        // The elector marks the lease lost the moment it stops believing in it.
        let (node, lease) = (self.node.clone(), lease.clone());
        tokio::spawn(async move {
            lease.lost().await;
            line!(
                "LOST {node} {} {} {}",
                lease.key(),
                lease.epoch(),
                mono_ns()
            );
        });
    }

    async fn on_lost(&self, _lease: &HeldLease, _reason: &LostReason) {}
}

/// The node process's body.
pub async fn run() {
    let Some(config) = NodeConfig::from_env() else {
        eprintln!("chaos_node runs only as a node of a chaos run; nothing to do");
        return;
    };
    // Warnings (lost leases, failed store calls) go to stderr, which the harness keeps.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let store = open_with(
        &config.store_url,
        StoreOptions::default()
            .table_prefix(config.table_prefix.clone())
            .operation_timeout(OPERATION_TIMEOUT),
    )
    .expect("open the lease store");
    let journal = Journal::connect(&config.journal_url, &config.journal_name)
        .await
        .expect("connect to the journal");
    let node: Arc<str> = config.name.as_str().into();
    let mut builder = Host::builder()
        .node(NodeIdentity::new(
            config.name.as_str(),
            config.group.as_str(),
        ))
        .store(store)
        .shutdown_grace(Duration::from_secs(3));
    for (name, mode) in JOBS {
        builder = builder.job(ChaosJob {
            name,
            mode,
            node: node.clone(),
            journal: journal.clone(),
        });
    }
    let host = builder.build().expect("build the node's host");
    let handle = host.handle();
    line!("START {node} {} {}", std::process::id(), mono_ns());
    let _report = host.run().await;
    let now = mono_ns();
    for status in handle.statuses() {
        let c = status.counters;
        line!(
            "EXIT {node} {} {} {} {} {} {} {} {} {now}",
            status.name,
            c.runs,
            c.skipped,
            c.not_leader,
            c.missed,
            c.failures,
            c.panics,
            c.dropped
        );
    }
}
