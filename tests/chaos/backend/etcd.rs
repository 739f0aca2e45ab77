//! etcd: a private three-member cluster this run starts (Debian's `etcd`) on free loopback
//! ports, heartbeats every 50 ms and a 500 ms election timeout as in `.ci/etcd-cluster`, its
//! data in memory-backed `/dev/shm` where there is one (as `.ci/run` does: three members
//! syncing to a loaded disk make every write slow), else under the test's temporary directory.
//! It is not CI's shared cluster (fixed ports, used by the other etcd tests), which the run
//! never touches.
//!
//! **The nodes reach it through their proxies, one per member.** The store URL lists every
//! member, and etcd-client spreads requests over all of them (one balanced gRPC channel, a
//! connection per endpoint); the store sends a request again when its connection to the member
//! the client picked fails. So each node gets a proxy per member and a URL listing its three
//! proxies: cutting or slowing a node sets all three ([`Kind::Cut`], [`Kind::Slow`]), and the
//! member faults below still reach every node as they would without proxies.
//!
//! Its store-wide faults are the members' own (timed, like every store-wide fault, from their
//! end: the fault hits every node's calls that land on the member, or all of them while raft
//! elects a leader):
//!
//! - [`Kind::LeaderKill`]: `kill -9` of the member that leads raft (asked of each member's
//!   status), then after 0.5–2.5 s the member starts again on its data directory; the fault
//!   ends when all three answer with the same leader.
//! - [`Kind::FollowerKill`]: the same, of a member that does not lead.
//! - [`Kind::MemberCut`]: a member cut off from the other two for 1–3.5 s, the leader or a
//!   follower (drawn from the seed). Members reach each other's peer port through a peer
//!   proxy each (the peer URL a member advertises is its proxy's); a cut closes every peer
//!   connection the cut member opened or was opened to, and refuses new ones, both ways.
//!   Which member opened a connection the proxy learns from the kernel (the connecting
//!   socket's inode in `/proc/net/tcp`, found among the members' open files), as they all
//!   dial from 127.0.0.1. The nodes still reach the cut-off member: it waits on a leader it
//!   cannot reach, then answers them `no leader` (a leader cut off steps down), which is the
//!   hard case for its clients.
//!
//! A passing run deletes its keys (its prefix) and then stops the cluster and removes its
//! directory; a failing one leaves the directory (data and the members' logs) for inspection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, DeleteOptions};
use fastrand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Backend;
use crate::clock::mono_ns;
use crate::faults::Kind;

const MEMBERS: usize = 3;

/// One member of the cluster.
struct Member {
    name: String,
    /// Where it listens for clients.
    client: u16,
    /// Where it listens for peers (behind its peer proxy).
    peer: u16,
    /// Its peer proxy: the peer URL it advertises.
    advertised: u16,
}

pub struct Etcd {
    dir: PathBuf,
    members: Vec<Member>,
    /// The members' processes (none while one is down).
    processes: Mutex<Vec<Option<Child>>>,
    /// The members' pids, for the peer proxies to tell who dialed (0 while one is down).
    pids: Arc<Mutex<[u32; MEMBERS]>>,
    /// The member cut off from its peers, if any: the peer proxies watch it.
    cut: watch::Sender<Option<usize>>,
    peer_proxies: Vec<JoinHandle<()>>,
}

impl Etcd {
    /// Starts a private cluster named after `name` (its directory) and waits until every member
    /// answers with a leader.
    pub async fn start(name: &str) -> Etcd {
        let dir = super::fresh_dir(&format!("loopjob-{name}-etcd"));
        let (cut, _) = watch::channel(None);
        let pids = Arc::new(Mutex::new([0; MEMBERS]));
        let mut members = Vec::new();
        let mut peer_proxies = Vec::new();
        for i in 0..MEMBERS {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a peer proxy");
            let member = Member {
                name: format!("m{i}"),
                client: super::free_port(),
                peer: super::free_port(),
                advertised: listener.local_addr().expect("its address").port(),
            };
            peer_proxies.push(tokio::spawn(peer_proxy(
                listener,
                i,
                member.peer,
                pids.clone(),
                cut.subscribe(),
            )));
            members.push(member);
        }
        let etcd = Etcd {
            dir,
            members,
            processes: Mutex::new((0..MEMBERS).map(|_| None).collect()),
            pids,
            cut,
            peer_proxies,
        };
        for i in 0..MEMBERS {
            etcd.launch(i);
        }
        etcd.wait_healthy().await;
        etcd
    }

    /// Starts member `i` (on its data directory, if it has one).
    fn launch(&self, i: usize) {
        let member = &self.members[i];
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.advertised))
            .collect::<Vec<_>>()
            .join(",");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", member.name)))
            .expect("open the member's log");
        let client_url = format!("http://127.0.0.1:{}", member.client);
        let child = Command::new("etcd")
            .args(["--name", &member.name, "--data-dir"])
            .arg(self.dir.join(&member.name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", member.peer),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", member.advertised),
            ])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                &format!("loopjob-chaos-{}", std::process::id()),
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log again"))
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian's etcd-server package)");
        self.lock_pids()[i] = child.id();
        self.lock_processes()[i] = Some(child);
    }

    /// SIGKILLs member `i` and reaps it.
    fn kill(&self, i: usize) {
        if let Some(mut child) = self.lock_processes()[i].take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        self.lock_pids()[i] = 0;
    }

    fn lock_processes(&self) -> std::sync::MutexGuard<'_, Vec<Option<Child>>> {
        self.processes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pids(&self) -> std::sync::MutexGuard<'_, [u32; MEMBERS]> {
        self.pids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Member `i`'s id and the leader it knows (0 for none), if it answers.
    async fn status(&self, i: usize) -> Option<(u64, u64)> {
        let endpoint = format!("127.0.0.1:{}", self.members[i].client);
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_millis(500));
        let mut client = Client::connect([endpoint], Some(options)).await.ok()?;
        let status = client.status().await.ok()?;
        Some((status.header()?.member_id(), status.leader()))
    }

    /// The member that leads raft, by its own status.
    async fn leader(&self) -> Option<usize> {
        for i in 0..MEMBERS {
            if let Some((id, leader)) = self.status(i).await
                && id == leader
            {
                return Some(i);
            }
        }
        None
    }

    /// Waits until every member answers and all name the same leader.
    async fn wait_healthy(&self) {
        for _ in 0..300 {
            let mut leaders = Vec::new();
            for i in 0..MEMBERS {
                leaders.push(self.status(i).await.map(|(_, leader)| leader));
            }
            if leaders[0].is_some_and(|leader| leader != 0)
                && leaders.iter().all(|l| *l == leaders[0])
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the private etcd cluster did not become healthy; logs in {}",
            self.dir.display()
        );
    }

    /// The member a fault of `kind` hits (a cut: the leader or a follower, drawn from `rng`),
    /// and whether it leads raft.
    async fn target(&self, kind: Kind, rng: &mut Rng) -> (usize, bool) {
        let mut leader = None;
        for _ in 0..100 {
            leader = self.leader().await;
            if leader.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leader = leader.expect("the etcd cluster has a leader between faults");
        let follower = (leader + 1) % MEMBERS;
        let leads = match kind {
            Kind::LeaderKill => true,
            Kind::FollowerKill => false,
            Kind::MemberCut => rng.bool(),
            _ => unreachable!("etcd's own faults are its members', not {kind}"),
        };
        (if leads { leader } else { follower }, leads)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..MEMBERS {
            self.kill(i);
        }
        for proxy in &self.peer_proxies {
            proxy.abort();
        }
    }
}

#[async_trait]
impl Backend for Etcd {
    fn label(&self) -> &'static str {
        "etcd"
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    fn proxied(&self) -> bool {
        true
    }

    /// etcd frees a lease only when its lessor, which looks for expired leases every 500 ms,
    /// revokes it, and counts the ttl from when a keep-alive *arrived*: a holder's lease may
    /// outlive what the holder believes by that half second (plus a keep-alive's one-way
    /// latency, which a slowed node's `added_latency` already counts). The ttl itself (2 s) is
    /// whole seconds, which etcd would otherwise round up. See `src/store/etcd/node_lease.rs`.
    fn expiry_lag(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// etcd keeps no clock the store can read: the times of schedule records are the nodes'
    /// (README's etcd section says to keep them in sync), so the nodes' clocks are not skewed.
    fn own_clock(&self) -> bool {
        false
    }

    fn kinds(&self) -> &'static [Kind] {
        &[
            Kind::Kill,
            Kind::Stop,
            Kind::Cut,
            Kind::Slow,
            Kind::Partition,
            Kind::LeaderKill,
            Kind::FollowerKill,
            Kind::MemberCut,
        ]
    }

    /// Kills a member and starts it again after `length`, or cuts one off for `length`; the
    /// fault ends when every member answers with the same leader.
    async fn store_fault(&self, kind: Kind, length: Duration, rng: &mut Rng) -> (u64, u64) {
        let (member, leads) = self.target(kind, rng).await;
        eprintln!(
            "chaos etcd: {kind} of member m{member} ({}) for {} ms",
            if leads { "the leader" } else { "a follower" },
            length.as_millis()
        );
        let start = mono_ns();
        if kind == Kind::MemberCut {
            self.cut.send_replace(Some(member));
            tokio::time::sleep(length).await;
            self.cut.send_replace(None);
        } else {
            self.kill(member);
            tokio::time::sleep(length).await;
            self.launch(member);
        }
        self.wait_healthy().await;
        (start, mono_ns())
    }

    async fn clean_up(&self, prefix: &str) {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        if let Ok(mut client) = Client::connect(endpoints, None).await {
            let _ = client
                .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                .await;
        }
        for i in 0..MEMBERS {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The peer proxy in front of member `me`'s peer port: forwards, except while `me` or the
/// member that opened the connection is cut off (see the module's doc).
async fn peer_proxy(
    listener: TcpListener,
    me: usize,
    peer_port: u16,
    pids: Arc<Mutex<[u32; MEMBERS]>>,
    cut: watch::Receiver<Option<usize>>,
) {
    loop {
        let Ok((mut inbound, from)) = listener.accept().await else {
            continue;
        };
        let known = *pids.lock().unwrap_or_else(|p| p.into_inner());
        // No member has the connecting socket open when its dialer gave up on it before it
        // was accepted (it waited in the listen queue): nobody reads it, and while a member
        // is cut off it is closed with the others.
        let dialer = dialer(from, &known);
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let blocked = |cut: Option<usize>| {
                cut.is_some() && (cut == Some(me) || dialer.is_none() || cut == dialer)
            };
            if blocked(*cut.borrow_and_update()) {
                return; // dropped: closed
            }
            let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", peer_port)).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(|&now| blocked(now)) => {}
            }
        });
    }
}

/// The member whose process opened the loopback connection that comes from `from`: the
/// connecting socket's inode (its line in `/proc/net/tcp`, local address `from`), and the
/// member among `pids` that has it open.
fn dialer(from: SocketAddr, pids: &[u32; MEMBERS]) -> Option<usize> {
    let SocketAddr::V4(from) = from else {
        return None;
    };
    // The kernel writes the address as the hex of its in-memory (network order) u32.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(from.ip().octets()),
        from.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // Fields: sl, local address, remote address, state, queues, timer, retransmits, uid,
    // timeout, inode, …
    let inode = table.lines().skip(1).find_map(|line| {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [_, address, _, _, _, _, _, _, _, inode, ..] if *address == local => {
                Some(inode.to_string())
            }
            _ => None,
        }
    })?;
    let socket = format!("socket:[{inode}]");
    pids.iter().position(|&pid| {
        pid != 0
            && std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|to| to.as_os_str() == socket.as_str())
                })
    })
}
