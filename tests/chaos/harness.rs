//! The cluster of node processes: starting them (this test binary, re-executed to run only the
//! ignored `chaos_node` test), reading their lines, signalling them, giving them operator
//! commands (a line on their stdin), and their proxies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::backend::Backend;
use crate::clock::mono_ns;
use crate::lines::Line;
use crate::netns::Netns;
use crate::node::NodeConfig;
use crate::proxy::{Proxy, rewrite_all, upstream_of, upstreams_of};
use crate::skew::{NodeClock, Skew};

/// Everything the nodes printed, and who holds what as far as their lines tell.
#[derive(Default)]
pub struct Seen {
    pub lines: Vec<Line>,
    /// key → (node, epoch) of the newest acquisition not yet lost.
    pub owners: BTreeMap<String, (String, u64)>,
    pub bad_lines: Vec<String>,
}

impl Seen {
    fn push(&mut self, line: Line) {
        match &line {
            Line::Acq {
                node, key, epoch, ..
            } => {
                let newer = self.owners.get(key).is_none_or(|(_, e)| epoch > e);
                if newer {
                    self.owners.insert(key.clone(), (node.clone(), *epoch));
                }
            }
            Line::Lost { key, epoch, .. }
                if self.owners.get(key).is_some_and(|(_, e)| e == epoch) =>
            {
                self.owners.remove(key);
            }
            _ => {}
        }
        self.lines.push(line);
    }

    /// The keys `node` holds, with their epochs.
    pub fn held_by(&self, node: &str) -> Vec<(String, u64)> {
        self.owners
            .iter()
            .filter(|(_, (n, _))| n == node)
            .map(|(k, (_, e))| (k.clone(), *e))
            .collect()
    }
}

/// One node process.
pub struct NodeProc {
    pub name: String,
    pub group: String,
    pub pid: i32,
    child: Child,
    /// Where operator commands go (see `node.rs`).
    stdin: Option<ChildStdin>,
    /// Its proxies to the store: one per host of the store URL (etcd lists every member), none
    /// if the store is not proxied.
    pub proxies: Vec<Proxy>,
    /// Whether it runs in the network namespace (`netns.rs`).
    pub in_netns: bool,
    pub clock: NodeClock,
    stderr: tokio::task::JoinHandle<String>,
    /// Set once the process is known to be gone.
    pub exit: Option<ExitStatus>,
    /// Killed by the harness (SIGKILL), so no graceful exit is expected.
    pub killed: bool,
}

/// What a node left behind, for the checker.
pub struct NodeOutcome {
    pub name: String,
    pub clock: NodeClock,
    pub killed: bool,
    pub exit: Option<ExitStatus>,
    pub stderr: String,
}

pub struct Cluster {
    pub backend: Arc<dyn Backend>,
    pub table_prefix: String,
    pub journal_url: String,
    pub journal_name: String,
    pub log_dir: PathBuf,
    pub nodes: BTreeMap<String, NodeProc>,
    pub seen: Arc<Mutex<Seen>>,
    /// Skewed node clocks, where the store allows them.
    pub skew: Option<Skew>,
    /// The network namespace one node runs in (a proxied store only), and the proxy through
    /// which that node reaches the journal.
    pub netns: Option<Netns>,
    journal_proxy: Option<Proxy>,
    next_index: usize,
}

impl Cluster {
    pub async fn new(
        backend: Arc<dyn Backend>,
        table_prefix: String,
        journal_url: String,
        journal_name: String,
        log_dir: PathBuf,
    ) -> Cluster {
        let skew = Skew::new(backend.own_clock(), &log_dir, backend.label());
        let netns = if backend.proxied() {
            Netns::create(backend.label())
        } else {
            None
        };
        let journal_proxy = match &netns {
            Some(netns) => Some(Proxy::start_at(netns.journal_ip, upstream_of(&journal_url)).await),
            None => None,
        };
        Cluster {
            backend,
            table_prefix,
            journal_url,
            journal_name,
            log_dir,
            nodes: BTreeMap::new(),
            seen: Arc::new(Mutex::new(Seen::default())),
            skew,
            netns,
            journal_proxy,
            next_index: 1,
        }
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live node in the network namespace, if any.
    pub fn in_netns(&self) -> Option<String> {
        self.nodes
            .values()
            .find(|node| node.in_netns && node.exit.is_none() && !node.killed)
            .map(|node| node.name.clone())
    }

    /// Starts a node in `group`, with its clock (`skew.rs`), in the network namespace if no
    /// live node is there; returns its name.
    pub async fn start_node(&mut self, group: &str) -> String {
        let name = format!("n{}", self.next_index);
        let netns = self.netns.as_ref().filter(|_| self.in_netns().is_none());
        let (clock, clock_env) = match &self.skew {
            Some(skew) => {
                let clock = NodeClock::of_node(self.next_index);
                (clock, skew.env(&name, clock))
            }
            None => (NodeClock::Host, Vec::new()),
        };
        self.next_index += 1;
        let url = self.backend.url();
        let mut proxies = Vec::new();
        if self.backend.proxied() {
            for upstream in upstreams_of(&url) {
                proxies.push(match netns {
                    Some(netns) => Proxy::start_at(netns.store_ip, upstream).await,
                    None => Proxy::start(upstream).await,
                });
            }
        }
        let store_url = if proxies.is_empty() {
            url
        } else {
            rewrite_all(&url, &proxies)
        };
        let journal_url = match (netns, &self.journal_proxy) {
            (Some(_), Some(journal)) => journal.rewrite(&self.journal_url),
            _ => self.journal_url.clone(),
        };
        let config = NodeConfig {
            name: name.clone(),
            group: group.to_owned(),
            store_url,
            table_prefix: self.table_prefix.clone(),
            journal_url,
            journal_name: self.journal_name.clone(),
        };
        let exe = std::env::current_exe().expect("the test binary's path");
        // `ip netns exec` enters the namespace and execs the node: the pid is the node's.
        let mut command = match netns {
            Some(netns) => {
                let [program, args @ ..] = netns.exec();
                let mut command = Command::new(program);
                command.args(args).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let in_netns = netns.is_some();
        let mut child = command
            .args([
                "--ignored",
                "--exact",
                "chaos_node",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(config.to_env())
            .envs(clock_env)
            .env("RUST_LOG", "loopjob=info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a node process");
        let pid = child.id().expect("a started child has a pid") as i32;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let seen = self.seen.clone();
        let log = self.log_dir.join(format!("{name}.stdout"));
        tokio::spawn(async move {
            let mut text = String::new();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                text.push_str(&line);
                text.push('\n');
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                match Line::parse(&line) {
                    Some(Ok(line)) => seen.push(line),
                    Some(Err(bad)) => seen.bad_lines.push(bad),
                    None => {}
                }
            }
            let _ = std::fs::write(log, text);
        });
        let log = self.log_dir.join(format!("{name}.stderr"));
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            let _ = std::fs::write(log, &text);
            text
        });
        self.nodes.insert(
            name.clone(),
            NodeProc {
                name: name.clone(),
                group: group.to_owned(),
                pid,
                child,
                stdin,
                proxies,
                in_netns,
                clock,
                stderr,
                exit: None,
                killed: false,
            },
        );
        name
    }

    /// The live nodes' names.
    pub fn live(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.exit.is_none())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Sends `signal` to `node`; returns the monotonic time just before sending.
    pub fn signal(&self, node: &str, signal: i32) -> u64 {
        let pid = self.nodes[node].pid;
        let t = mono_ns();
        // SAFETY: kill(2) on a pid of our own child that we have not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
        t
    }

    /// Gives `node` an operator command line (`pause global`); false if it could not be written
    /// (the node is gone).
    pub async fn tell(&mut self, node: &str, line: &str) -> bool {
        let Some(stdin) = self.nodes.get_mut(node).and_then(|n| n.stdin.as_mut()) else {
            return false;
        };
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_ok()
            && stdin.flush().await.is_ok()
    }

    /// SIGKILLs `node` and reaps it; returns the time of the kill.
    pub async fn kill(&mut self, node: &str) -> u64 {
        let t = self.signal(node, libc::SIGKILL);
        let proc_ = self.nodes.get_mut(node).expect("known node");
        proc_.killed = true;
        proc_.exit = proc_.child.wait().await.ok();
        proc_.proxies.clear();
        t
    }

    /// Asks every live node to stop (SIGTERM), waits for them (SIGKILL after `grace`), and
    /// returns what each left behind.
    pub async fn shutdown(mut self, grace: Duration) -> Vec<NodeOutcome> {
        for name in self.live() {
            // The node's stdin reader is a blocking read its runtime would wait for at exit.
            if let Some(node) = self.nodes.get_mut(&name) {
                node.stdin = None;
            }
            self.signal(&name, libc::SIGCONT);
            self.signal(&name, libc::SIGTERM);
        }
        let mut outcomes = Vec::new();
        for (_, mut node) in std::mem::take(&mut self.nodes) {
            if node.exit.is_none() {
                node.exit = match tokio::time::timeout(grace, node.child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        let _ = node.child.kill().await;
                        None // did not stop in time: the checker reports it
                    }
                };
            }
            let stderr = node.stderr.await.unwrap_or_default();
            outcomes.push(NodeOutcome {
                name: node.name,
                clock: node.clock,
                killed: node.killed,
                exit: node.exit,
                stderr,
            });
        }
        // Let the stdout readers drain.
        tokio::time::sleep(Duration::from_millis(300)).await;
        outcomes
    }
}
