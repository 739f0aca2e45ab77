//! Operator events among the faults: pauses, resumes and triggers of a guarded job, given
//! through a node's `HostHandle` (a line on its stdin, from a node that does not lead the job
//! where there is one) or through `ClusterControl` on the store URL, in the harness itself.
//! Each is recorded with when it was sent and answered, and, for a pause, when the store
//! committed it (the record's mark, on the store's clock) for P8.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use fastrand::Rng;
use loopjob::cluster::ClusterControl;

use crate::clock::{StoreTime, mono_ns};
use crate::harness::Cluster;
use crate::lines::Line;
use crate::node::PARTITIONS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Command {
    Pause,
    Resume,
    Trigger,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Trigger => "trigger",
        })
    }
}

/// Who gives a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A node's `HostHandle`, preferably one that does not lead the job.
    Node,
    /// `ClusterControl` on the store URL.
    Store,
}

impl Source {
    pub fn other(self) -> Source {
        match self {
            Source::Node => Source::Store,
            Source::Store => Source::Node,
        }
    }
}

/// One command, as given.
#[derive(Debug, Clone)]
pub struct Event {
    pub command: Command,
    pub job: &'static str,
    /// The lease keys whose records it wrote.
    pub keys: Vec<String>,
    /// The node that gave it, or `store`.
    pub by: String,
    /// Monotonic ns: sent, and answered.
    pub sent: u64,
    pub done: u64,
    /// For a pause: per key, when the store committed it (its mark's time on the monotonic
    /// clock; the answer's arrival when the record could not be read).
    pub committed: BTreeMap<String, u64>,
    pub error: Option<String>,
    /// How many times it was given (a failed command is given again, up to three times).
    pub attempts: u32,
}

/// The keys of `job` that a command from `group` writes (`None`: from the store URL, every
/// group's).
fn keys_of(job: &str, group: Option<&str>) -> Vec<String> {
    match (job, group) {
        ("part", _) => (0..PARTITIONS).map(|p| format!("part#{p}")).collect(),
        ("cluster", Some(group)) => vec![format!("cluster@{group}")],
        ("cluster", None) => vec!["cluster@a".to_owned(), "cluster@b".to_owned()],
        (job, _) => vec![job.to_owned()],
    }
}

/// A live node (of `group`, if given) to give a command about `job`: one that holds none of
/// the keys it would write, if any does not.
fn follower(cluster: &Cluster, job: &str, group: Option<&str>, rng: &mut Rng) -> Option<String> {
    let mut live = cluster.live();
    live.retain(|node| group.is_none_or(|group| cluster.nodes[node].group == group));
    let seen = cluster.seen();
    let leads = |node: &str| {
        let group = &cluster.nodes[node].group;
        keys_of(job, Some(group))
            .iter()
            .any(|key| seen.owners.get(key).is_some_and(|(n, _)| n == node))
    };
    let followers: Vec<&String> = live.iter().filter(|n| !leads(n)).collect();
    let pool: Vec<&String> = if followers.is_empty() {
        live.iter().collect()
    } else {
        followers
    };
    (!pool.is_empty()).then(|| pool[rng.usize(..pool.len())].clone())
}

/// Gives `command` about `job` from `source` (a node of `group`, if given), and waits for its
/// answer (at most a few seconds).
#[allow(clippy::too_many_arguments)]
pub async fn give(
    cluster: &mut Cluster,
    control: &ClusterControl,
    store_time: StoreTime,
    command: Command,
    job: &'static str,
    source: Source,
    group: Option<&str>,
    rng: &mut Rng,
) -> Event {
    let node = match source {
        Source::Node => follower(cluster, job, group, rng),
        Source::Store => None,
    };
    // A command that fails is given again, as a tool would, up to three times (the first
    // call on a store connection that a restart broke fails, and reconnects); the event keeps
    // the first attempt's time and the last attempt's answer.
    let mut first_sent = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let event = attempt(cluster, control, store_time, command, job, node.as_deref()).await;
        let sent = *first_sent.get_or_insert(event.sent);
        if event.error.is_none() || attempts == 3 {
            return Event {
                sent,
                attempts,
                ..event
            };
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One attempt at a command, from `node` or (`None`) the store URL.
async fn attempt(
    cluster: &mut Cluster,
    control: &ClusterControl,
    store_time: StoreTime,
    command: Command,
    job: &'static str,
    node: Option<&str>,
) -> Event {
    let (keys, by, sent, done, error) = match node {
        Some(node) => {
            let group = cluster.nodes[node].group.clone();
            let sent = mono_ns();
            let (done, error) = if cluster.tell(node, &format!("{command} {job}")).await {
                answer(cluster, node, command, job, sent).await
            } else {
                (mono_ns(), Some("the node's stdin is closed".to_owned()))
            };
            (
                keys_of(job, Some(&group)),
                node.to_owned(),
                sent,
                done,
                error,
            )
        }
        None => {
            let sent = mono_ns();
            let result = match command {
                Command::Pause => control.pause(job).await,
                Command::Resume => control.resume(job).await,
                Command::Trigger => control.trigger(job).await,
            };
            let error = result.err().map(|e| e.to_string());
            (
                keys_of(job, None),
                "store".to_owned(),
                sent,
                mono_ns(),
                error,
            )
        }
    };
    let mut committed = BTreeMap::new();
    if command == Command::Pause && error.is_none() {
        for key in &keys {
            let at = match control.record(key).await {
                Ok(record) => record.paused.map(|mark| store_time.mono(mark.at_ms)),
                Err(_) => None,
            };
            committed.insert(key.clone(), at.unwrap_or(done));
        }
    }
    Event {
        command,
        job,
        keys,
        by,
        sent,
        done,
        committed,
        error,
        attempts: 1,
    }
}

/// Waits for `node`'s `OP` line answering the command sent at `sent`.
async fn answer(
    cluster: &Cluster,
    node: &str,
    command: Command,
    job: &str,
    sent: u64,
) -> (u64, Option<String>) {
    let command = command.to_string();
    for _ in 0..500 {
        let found = cluster
            .seen()
            .lines
            .iter()
            .rev()
            .find_map(|line| match line {
                Line::Op {
                    node: n,
                    command: c,
                    job: j,
                    sent: s,
                    done,
                    error,
                } if n == node && *c == command && j == job && *s >= sent => {
                    Some((*done, error.clone()))
                }
                _ => None,
            });
        if let Some(found) = found {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (mono_ns(), Some(format!("{node} did not answer within 5 s")))
}
