//! One node process of a chaos run: a host with a global job, a cluster job and a partitioned
//! job on short leases. Every run writes to the fenced journal; the process prints what the
//! checker needs on stdout, one `LJ` line each, stamped with CLOCK_MONOTONIC nanoseconds:
//!
//! ```text
//! LJ START <node> <pid> <t>                       host about to run
//! LJ ACQ <node> <key> <epoch> <t>                 on_acquired
//! LJ LOST <node> <key> <epoch> <t>                the lease's lost() completed (elector-side)
//! LJ RUN <node> <job> <run_id> <tick> <t> <key>:<epoch>[,<key>:<epoch>…]
//!                                                 a run's body began (tick: when it was asked for)
//! LJ CANCEL <node> <job> <run_id> <t>             the run's token was cancelled while it ran
//! LJ OP <node> <command> <job> <sent> <done> <ok|error…>
//!                                                 an operator's command the harness asked for
//! LJ STORE <node> <ok|error> <t>                  the node read a schedule record (every second)
//! LJ JERR <node> <key> <epoch> <error>            a journal write failed
//! LJ EXIT <node> <job> <runs> <skipped> <not_leader> <missed> <failures> <panics> <dropped> <t>
//! ```
//!
//! Every job is guarded, so it runs on the cluster schedule: its ticks come from its keys'
//! schedule records in the store, and the store keeps every run's committed start in the key's
//! history (kept whole: `history` is the largest allowed).
//!
//! The harness gives operator commands through the node's stdin, one line each:
//! `pause <job>`, `resume <job>`, `trigger <job>`; the node calls its `HostHandle` (which
//! writes the command to the job's schedule records) and answers with an `OP` line.
//!
//! It reads its configuration from `LOOPJOB_CHAOS_*` variables set by the harness; without
//! them the test is a no-op, so `--include-ignored` does not break.

use std::sync::Arc;
use std::time::Duration;

use loopjob::store::{StoreOptions, open_with};
use loopjob::{
    HeldLease, Host, HostHandle, JobContext, JobError, LeaderMode, Leadership, LoopJob, LostReason,
    NodeIdentity, Schedule,
};

use crate::clock::{mono_ns, process_clocks};
use crate::journal::{Entry, Journal};

/// Lease timing of every guarded job in a chaos run.
pub const TTL: Duration = Duration::from_secs(2);
pub const RENEW_EVERY: Duration = Duration::from_millis(600);
pub const RETRY_EVERY: Duration = Duration::from_millis(300);
/// Long enough beside the cluster schedule's margin (a tenth of the ttl, 200 ms) that P6's
/// `interval − ε` says something: two runs of a key closer than ~750 ms are a violation.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// A run's work: shorter than the interval, so that a key's next point is never skipped for a
/// run still under way (P7's bound has no room for a skipped point on top of a fault).
pub const WORK_MS: std::ops::RangeInclusive<u64> = 50..=800;
pub const PARTITIONS: u32 = 6;
/// Every run stays in its key's history for the checker (the most the store allows).
pub const HISTORY: u32 = 100_000;
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
            .history(HISTORY)
    }

    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        let start_ns = mono_ns();
        let tick_ns = start_ns.saturating_sub(ctx.scheduled_at().elapsed().as_nanos() as u64);
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
        let keys: Vec<String> = leases.iter().map(|(k, e)| format!("{k}:{e}")).collect();
        line!(
            "RUN {} {} {} {tick_ns} {start_ns} {}",
            self.node,
            self.name,
            ctx.run_id(),
            keys.join(",")
        );
        // P4: note when the run observes its cancellation, from a task of its own so the time
        // is taken the moment it can, whatever the run is doing. A clone of the context (not
        // of its raw token) also sees the lease's deadline pass by itself, as the run does.
        let watched = ctx.clone();
        let finished = Arc::new(tokio::sync::Notify::new());
        let (node, job, run_id) = (self.node.clone(), self.name, ctx.run_id());
        let watcher_finished = finished.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = watched.cancelled() => line!("CANCEL {node} {job} {run_id} {}", mono_ns()),
                _ = watcher_finished.notified() => {}
            }
        });
        let work = Duration::from_millis(fastrand::u64(WORK_MS));
        // The cancellation first: woken from a freeze with both ready, the run must see that
        // its lease is gone rather than finish its step (P4 checks `cancelled` below).
        tokio::select! {
            biased;
            _ = ctx.cancelled() => {}
            _ = tokio::time::sleep(work) => {}
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
    tokio::spawn(obey_operator(handle.clone(), node.clone()));
    tokio::spawn(probe_store(handle.clone(), node.clone()));
    tokio::spawn(show_clocks(node.clone()));
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

/// Prints the node's own clocks beside the host's every second, so that the checker sees the
/// skew `skew.rs` gave it take effect.
async fn show_clocks(node: Arc<str>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let (own, wall_offset_ms) = process_clocks();
        line!("CLOCK {node} {} {own} {wall_offset_ms}", mono_ns());
    }
}

/// Reads the harness's operator commands from stdin and gives each through the host's handle.
async fn obey_operator(handle: HostHandle, node: Arc<str>) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some((command, job)) = line.trim().split_once(' ') else {
            continue;
        };
        let sent = mono_ns();
        let result = match command {
            "pause" => handle.pause(job).await,
            "resume" => handle.resume(job).await,
            "trigger" => handle.trigger(job).await.map(drop),
            _ => continue,
        };
        let done = mono_ns();
        let outcome = match result {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("error {}", error.to_string().replace('\n', " ")),
        };
        line!("OP {node} {command} {job} {sent} {done} {outcome}");
    }
}

/// Reads the global job's schedule record through the node's store every second, and says
/// whether it could: a node whose store connection never comes back after a fault shows here.
async fn probe_store(handle: HostHandle, node: Arc<str>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let outcome = match handle.schedule("global").await {
            Ok(_) => "ok",
            Err(_) => "error",
        };
        line!("STORE {node} {outcome} {}", mono_ns());
    }
}
