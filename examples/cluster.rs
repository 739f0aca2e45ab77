//! Several node processes sharing one lease store, each running a cluster job, a global job and
//! a partitioned job. Every leadership change prints one line; after a while the leader of the
//! global job is killed (SIGKILL, no release) and another node takes over once its lease
//! expires.
//!
//! ```text
//! cargo run --example cluster -- --nodes 3
//! cargo run --example cluster --features postgres -- --nodes 3 --store postgres://postgres@127.0.0.1/test
//! ```
//!
//! Without `--store`, the nodes share a fresh SQLite file in the temporary directory.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use loopjob::{
    HeldLease, Host, JobContext, JobError, LeaderMode, Leadership, LoopJob, LostReason,
    NodeIdentity, Schedule,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LEASE_TTL: Duration = Duration::from_secs(3);

/// A job that prints its leadership changes, one line each, for the parent to read.
struct Announcer {
    name: &'static str,
    node: String,
    mode: LeaderMode,
}

impl LoopJob for Announcer {
    fn name(&self) -> &str {
        self.name
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(Duration::from_secs(1))
    }

    fn leadership(&self) -> Leadership {
        Leadership::new(self.mode)
            .lease_ttl(LEASE_TTL)
            .with_renew_every(Duration::from_secs(1))
            .retry_every(Duration::from_millis(500))
            .partitions(6)
    }

    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        // Real work would pass ctx.fencing_token() (or each partition's epoch) downstream.
        let _ = (ctx.fencing_token(), ctx.partitions());
        Ok(())
    }

    async fn on_acquired(&self, lease: &HeldLease) {
        println!(
            "{} {} acquired {} epoch {}",
            self.node,
            self.name,
            lease.key(),
            lease.epoch()
        );
    }

    async fn on_lost(&self, lease: &HeldLease, reason: &LostReason) {
        println!(
            "{} {} lost {} epoch {} ({reason})",
            self.node,
            self.name,
            lease.key(),
            lease.epoch()
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), loopjob::Report> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let store = flag("--store").unwrap_or_else(|| {
        let path = std::env::temp_dir().join(format!("loopjob-cluster-{}.db", std::process::id()));
        format!("sqlite://{}", path.display())
    });
    match flag("--node") {
        Some(node) => run_node(&node, &store).await,
        None => {
            let nodes: usize = flag("--nodes").map_or(Ok(3), |n| n.parse())?;
            run_cluster(nodes.max(2), &store).await
        }
    }
}

/// One node: a host with three guarded jobs, until SIGTERM.
async fn run_node(node: &str, store_url: &str) -> Result<(), loopjob::Report> {
    let store = loopjob::store::open(store_url)?;
    let group = if node.ends_with(['1', '3', '5', '7', '9']) {
        "odd"
    } else {
        "even"
    };
    let job = |name, mode| Announcer {
        name,
        node: node.to_owned(),
        mode,
    };
    let host = Host::builder()
        .node(NodeIdentity::new(node, group))
        .store(store)
        .job(job("per_group", LeaderMode::Cluster))
        .job(job("singleton", LeaderMode::Global))
        .job(job("sharded", LeaderMode::Partitioned))
        .shutdown_grace(Duration::from_secs(2))
        .build()?;
    host.run().await;
    Ok(())
}

/// The parent: starts the nodes, prints their lines, kills the global leader, shows the takeover.
async fn run_cluster(nodes: usize, store_url: &str) -> Result<(), loopjob::Report> {
    println!("store: {store_url}");
    let store = loopjob::store::open(store_url)?;
    store.initialise().await?;
    let exe = std::env::current_exe()?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut children: BTreeMap<String, Child> = BTreeMap::new();
    for index in 1..=nodes {
        let name = format!("node-{index}");
        let mut child = Command::new(&exe)
            .args(["--node", &name, "--store", store_url])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let lines_tx = lines_tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = lines_tx.send(line);
            }
        });
        children.insert(name, child);
    }

    // Watch for a while, remembering who leads the global job.
    let started = Instant::now();
    let mut global_leader = None;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(Some(line)) = tokio::time::timeout_at(watch_until, lines.recv()).await {
        println!("{:>6.2}s  {line}", started.elapsed().as_secs_f64());
        if line.contains(" singleton acquired ") {
            global_leader = line.split(' ').next().map(str::to_owned);
        }
    }
    let leader = global_leader.ok_or("no node acquired the global job")?;
    let mut child = children.remove(&leader).ok_or("unknown leader")?;
    child.kill().await?;
    let killed = Instant::now();
    println!(
        "{:>6.2}s  killed {leader} (SIGKILL: no release); the lease expires within {LEASE_TTL:?}",
        started.elapsed().as_secs_f64()
    );

    let takeover_until = tokio::time::Instant::now() + LEASE_TTL + Duration::from_secs(3);
    while let Ok(Some(line)) = tokio::time::timeout_at(takeover_until, lines.recv()).await {
        println!("{:>6.2}s  {line}", started.elapsed().as_secs_f64());
        if line.contains(" singleton acquired ") {
            println!(
                "takeover of the global job after {:.2}s",
                killed.elapsed().as_secs_f64()
            );
            break;
        }
    }

    for (name, child) in &children {
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            println!("stopping {name} gracefully");
        }
    }
    for (_, mut child) in children {
        let _ = child.wait().await;
    }
    while let Ok(line) = lines.try_recv() {
        println!("{:>6.2}s  {line}", started.elapsed().as_secs_f64());
    }
    Ok(())
}
