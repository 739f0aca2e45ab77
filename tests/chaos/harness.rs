//! The cluster of node processes: starting them (this test binary, re-executed to run only the
//! ignored `chaos_node` test), reading their lines, signalling them, and their proxies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::clock::mono_ns;
use crate::lines::Line;
use crate::node::NodeConfig;
use crate::proxy::{Proxy, upstream_of};

/// Where the lease store is.
#[derive(Debug, Clone)]
pub enum Backend {
    /// PostgreSQL at this URL; every node reaches it through its own proxy.
    Postgres(String),
    /// One SQLite file shared by every node.
    Sqlite(PathBuf),
}

impl Backend {
    pub fn label(&self) -> &'static str {
        match self {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The store URL the harness itself uses (never through a proxy).
    pub fn direct_url(&self) -> String {
        match self {
            Backend::Postgres(url) => url.clone(),
            Backend::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }
}

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
    pub proxy: Option<Proxy>,
    stderr: tokio::task::JoinHandle<String>,
    /// Set once the process is known to be gone.
    pub exit: Option<ExitStatus>,
    /// Killed by the harness (SIGKILL), so no graceful exit is expected.
    pub killed: bool,
}

/// What a node left behind, for the checker.
pub struct NodeOutcome {
    pub name: String,
    pub killed: bool,
    pub exit: Option<ExitStatus>,
    pub stderr: String,
}

pub struct Cluster {
    pub backend: Backend,
    pub table_prefix: String,
    pub journal_url: String,
    pub journal_name: String,
    pub log_dir: PathBuf,
    pub nodes: BTreeMap<String, NodeProc>,
    pub seen: Arc<Mutex<Seen>>,
    next_index: usize,
}

impl Cluster {
    pub fn new(
        backend: Backend,
        table_prefix: String,
        journal_url: String,
        journal_name: String,
        log_dir: PathBuf,
    ) -> Cluster {
        Cluster {
            backend,
            table_prefix,
            journal_url,
            journal_name,
            log_dir,
            nodes: BTreeMap::new(),
            seen: Arc::new(Mutex::new(Seen::default())),
            next_index: 1,
        }
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a node in `group`; returns its name.
    pub async fn start_node(&mut self, group: &str) -> String {
        let name = format!("n{}", self.next_index);
        self.next_index += 1;
        let (store_url, proxy) = match &self.backend {
            Backend::Postgres(url) => {
                let proxy = Proxy::start(upstream_of(url)).await;
                (proxy.rewrite(url), Some(proxy))
            }
            Backend::Sqlite(_) => (self.backend.direct_url(), None),
        };
        let config = NodeConfig {
            name: name.clone(),
            group: group.to_owned(),
            store_url,
            table_prefix: self.table_prefix.clone(),
            journal_url: self.journal_url.clone(),
            journal_name: self.journal_name.clone(),
        };
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "chaos_node",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(config.to_env())
            .env("RUST_LOG", "loopjob=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a node process");
        let pid = child.id().expect("a started child has a pid") as i32;
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
                proxy,
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

    /// SIGKILLs `node` and reaps it; returns the time of the kill.
    pub async fn kill(&mut self, node: &str) -> u64 {
        let t = self.signal(node, libc::SIGKILL);
        let proc_ = self.nodes.get_mut(node).expect("known node");
        proc_.killed = true;
        proc_.exit = proc_.child.wait().await.ok();
        proc_.proxy = None;
        t
    }

    /// Asks every live node to stop (SIGTERM), waits for them (SIGKILL after `grace`), and
    /// returns what each left behind.
    pub async fn shutdown(mut self, grace: Duration) -> Vec<NodeOutcome> {
        for name in self.live() {
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
