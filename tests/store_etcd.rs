//! What only the etcd store must show: epochs keep growing when a lease row is deleted by hand,
//! calls keep working with one member of three down (also those in flight on it when it died),
//! unreachable endpoints and a cluster without quorum are errors within the operation timeout
//! that say what to fix, an operator's trigger whose answer was lost is not asked for twice,
//! calls that only read add nothing to etcd's log, bad URLs and prefixes are named, and a URL's
//! password never shows.
//!
//! The test on the shared cluster runs when `LOOPJOB_TEST_ETCD_URL` is set (`.ci/run` sets it)
//! and says plainly that it was skipped otherwise. The quorum, member and log tests start
//! private three-member clusters (and kill members); they say so when `etcd` is not installed.
#![cfg(feature = "etcd")]

#[path = "support/database_url.rs"]
mod database_url;
#[path = "support/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use etcd_client::{Client, DeleteOptions};
use loopjob::store::{
    EtcdStore, Lease, LeaseStore, NextDue, RunEnd, RunResult, RunStart, StoreError, StoreOptions,
    open_with,
};

const LONG: Duration = Duration::from_secs(60);

fn url() -> Option<String> {
    database_url::database_url("LOOPJOB_TEST_ETCD_URL", "etcd store tests")
}

fn endpoints(url: &str) -> Vec<String> {
    let hosts = url.trim_start_matches("etcd://");
    hosts
        .split(',')
        .map(|host| format!("http://{host}"))
        .collect()
}

#[tokio::test]
async fn epochs_keep_growing_after_a_lease_row_is_deleted() {
    let Some(url) = url() else { return };
    let prefix = format!("lje{}_deleted_", std::process::id());
    let options = StoreOptions::default().table_prefix(&prefix);
    let store = EtcdStore::connect_lazy(&url, options).unwrap();
    store.initialise().await.unwrap();
    let keys = ["k".to_owned()];
    let first = store.try_acquire("a", &keys, LONG).await.unwrap().remove(0);
    let again = store.try_acquire("a", &keys, LONG).await.unwrap().remove(0);
    assert_eq!(again.epoch, first.epoch + 1);
    store.release("a", &[again.to_ref()]).await.unwrap();

    // An operator deletes every key of the store: the next first epoch is a later revision.
    let mut admin = Client::connect(endpoints(&url), None).await.unwrap();
    let every_key = Some(DeleteOptions::new().with_prefix());
    admin
        .delete(prefix.as_str(), every_key.clone())
        .await
        .unwrap();
    let after = store.try_acquire("b", &keys, LONG).await.unwrap().remove(0);
    assert!(after.epoch > again.epoch, "{after:?} after {again:?}");
    admin.delete(prefix.as_str(), every_key).await.unwrap();
}

#[tokio::test]
async fn unreachable_endpoints_are_an_error_within_the_timeout() {
    let options = StoreOptions::default().operation_timeout(Duration::from_millis(500));
    let store = open_with("etcd://root:s3cret@127.0.0.1:1,127.0.0.1:2", options).unwrap();
    let started = Instant::now();
    let err = store.initialise().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    assert!(err.is_transient(), "{err}");
    let shown = format!("{err} {err:?} {store:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    // Guarded jobs do not run: nothing can be acquired.
    let keys = ["k".to_owned()];
    assert!(store.try_acquire("a", &keys, LONG).await.is_err());
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_named() {
    for url in ["etcd://u:s3cret@host", "etcd://host:2379/prefix", "etcd://"] {
        let err = open_with(url, StoreOptions::default()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{message}");
        assert!(
            message.contains("etcd://[user:password@]host:port"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
    }
    let err = open_with(
        "etcd://127.0.0.1:2379",
        StoreOptions::default().table_prefix("has space"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has space"), "{err}");
}

/// A private three-member etcd cluster on free loopback ports, killed on drop.
struct PrivateCluster {
    members: Vec<std::process::Child>,
    dir: std::path::PathBuf,
    client_ports: Vec<u16>,
}

impl PrivateCluster {
    /// Starts one named `name` (its directory), or `None` (saying so) where `etcd` is not
    /// installed.
    fn start(name: &str) -> Option<Self> {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|address| address.port())
                .unwrap()
        };
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!("loopjob-{name}-{}", std::process::id()));
        let cluster = peer_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("m{i}=http://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut started = PrivateCluster {
            members: Vec::new(),
            dir,
            client_ports: client_ports.clone(),
        };
        for (i, (client, peer)) in client_ports.iter().zip(&peer_ports).enumerate() {
            let child = std::process::Command::new("etcd")
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(started.dir.join(format!("m{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &cluster])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(child) => started.members.push(child),
                Err(_) => {
                    use std::io::Write;
                    let line = format!("SKIPPED etcd {name} test: `etcd` is not on PATH\n");
                    let _ = std::io::stderr().write_all(line.as_bytes());
                    return None;
                }
            }
        }
        Some(started)
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .client_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// The member that leads raft and one that does not, once the cluster has a leader (by
    /// the members' status).
    async fn leader_and_follower(&self) -> (usize, usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (index, port) in self.client_ports.iter().enumerate() {
                let Ok(mut client) = Client::connect([format!("127.0.0.1:{port}")], None).await
                else {
                    continue;
                };
                if let Ok(status) = client.status().await
                    && status.leader() != 0
                    && status.header().map(|h| h.member_id()) == Some(status.leader())
                {
                    return (index, (index + 1) % self.client_ports.len());
                }
            }
            assert!(
                Instant::now() < deadline,
                "the private cluster has no leader"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` to member `index`.
    fn signal(&self, index: usize, signal: i32) {
        let pid = self.members[index].id() as i32;
        // SAFETY: kill(2) on a child of ours that we have not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Kills (SIGKILL) member `index`.
    fn kill(&mut self, index: usize) {
        let _ = self.members[index].kill();
        let _ = self.members[index].wait();
    }
}

/// The lease of `key` that holder "a" takes first on a private cluster just started: until
/// every member listens, the calls the client sends to one that does not yet fail.
async fn first_lease(store: &EtcdStore, key: &str) -> Lease {
    let keys = [key.to_owned()];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.try_acquire("a", &keys, LONG).await {
            Ok(mut held) if held.len() == 1 => return held.remove(0),
            answer => assert!(
                Instant::now() < deadline,
                "the private cluster did not start: {answer:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn one_member_down_is_fine_and_no_quorum_an_error_within_the_timeout() {
    let Some(mut cluster) = PrivateCluster::start("no-quorum") else {
        return;
    };
    let timeout = Duration::from_secs(2);
    let options = StoreOptions::default().operation_timeout(timeout);
    let store = EtcdStore::connect_lazy(&cluster.url(), options).unwrap();
    let keys = ["k".to_owned()];
    let held = first_lease(&store, "k").await;

    // One member down: the others keep a majority. If it led raft, calls fail (transiently,
    // within the timeout) until the others have elected a leader; from then on every call
    // succeeds (calls the client sends to the dead member's endpoint are sent again).
    cluster.kill(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(error) = store.renew("a", &[held.to_ref()], LONG).await {
        assert!(error.is_transient(), "{error}");
        assert!(Instant::now() < deadline, "no majority answered: {error}");
    }
    for _ in 0..20 {
        let renewed = store.renew("a", &[held.to_ref()], LONG).await.unwrap();
        assert_eq!(renewed.len(), 1);
    }

    cluster.kill(1);
    // Every call fails in time (a timeout while the last member still believes in its
    // leader), and once it has stepped down, the error says what is wrong.
    loop {
        let started = Instant::now();
        let err = store.renew("a", &[held.to_ref()], LONG).await.unwrap_err();
        assert!(started.elapsed() < timeout * 2, "{err}");
        assert!(err.is_transient(), "{err}");
        let message = err.to_string();
        if message.contains("no leader") {
            assert!(message.contains("a majority of its members"), "{message}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never said `no leader`: {message}"
        );
    }
    assert!(store.try_acquire("b", &keys, LONG).await.is_err());
}

/// Calls whose requests are in flight on a member when it dies go on: the client spreads
/// requests over the members, so some were sent to the one that died, and their connection
/// closes under them; the store sends them again to a live member, however the connection
/// ended. (Before, requests the member was working on when its connection was closed cleanly,
/// as a proxy in front of it closes it, failed with "operation was canceled … connection
/// closed": under the chaos suite's member kills the nodes' renewals failed with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_on_a_member_that_dies_are_sent_again() {
    let Some(mut cluster) = PrivateCluster::start("member-dies") else {
        return;
    };
    let (leader, follower) = cluster.leader_and_follower().await;
    // The client reaches the follower through a proxy, which closes its side cleanly when the
    // member's side ends.
    let direct = format!("127.0.0.1:{}", cluster.client_ports[follower]);
    let proxy = proxy::Proxy::start(direct.parse().unwrap()).await;
    let url = cluster.url().replace(&direct, &proxy.addr().to_string());
    let options = StoreOptions::default().operation_timeout(Duration::from_secs(10));
    let store = std::sync::Arc::new(EtcdStore::connect_lazy(&url, options).unwrap());
    let held = first_lease(&store, "k").await;
    // With the leader frozen, the follower takes the requests it gets and waits for the
    // leader; then it dies (before the others could elect a new leader), and the leader comes
    // back: it and the last member are a majority.
    cluster.signal(leader, libc::SIGSTOP);
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (store, held) = (store.clone(), held.clone());
            tokio::spawn(async move { store.renew("a", &[held.to_ref()], LONG).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.kill(follower);
    cluster.signal(leader, libc::SIGCONT);
    for call in calls {
        match call.await.unwrap() {
            Ok(renewed) => assert_eq!(renewed.len(), 1),
            // etcd's own answers, not a lost connection: a proposal that the cluster could not
            // commit in time while it elected a leader (on a loaded machine the freeze and the
            // kill can outlast etcd's request timeout), or one made while the member it reached
            // knew of no leader yet (a fresh CI run met it). The elector renews again next
            // period.
            Err(error)
                if ["etcdserver: request timed out", "etcdserver: no leader"]
                    .iter()
                    .any(|answer| error.to_string().contains(answer)) => {}
            Err(error) => panic!("a call in flight on the dead member: {error}"),
        }
    }
}

/// The calls that only read (a try for a key another node holds, the records, the history, the
/// list) add no entry to etcd's raft log, which every member writes to its disk: they cost the
/// cluster a read, not a write. (The store's reads used to nest each key's gets in a
/// transaction of its own, which etcd takes for a write even when it holds only gets.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_only_read_add_nothing_to_etcds_log() {
    let Some(cluster) = PrivateCluster::start("reads") else {
        return;
    };
    let (leader, _) = cluster.leader_and_follower().await;
    let store = EtcdStore::connect_lazy(&cluster.url(), StoreOptions::default()).unwrap();
    let keys = ["k".to_owned()];
    first_lease(&store, "k").await;
    // The first try of "b" grants its etcd lease (a write); later tries keep it alive.
    let b_finds_k_held = async || {
        let won = store.try_acquire("b", &keys, LONG).await.unwrap();
        assert!(won.is_empty(), "{won:?}");
    };
    b_finds_k_held().await;
    let leader_address = format!("127.0.0.1:{}", cluster.client_ports[leader]);
    let mut leader_client = Client::connect([leader_address], None).await.unwrap();
    // An election (a busy machine can stall a member past its election timeout) appends an
    // entry of its own: the reads are measured again, in a term that did not change.
    for _ in 0..3 {
        let before = leader_client.status().await.unwrap();
        for _ in 0..5 {
            b_finds_k_held().await;
            assert!(store.schedules(&keys).await.unwrap().is_empty());
            let history = store.history("k", 10).await;
            assert!(
                matches!(history, Err(StoreError::UnknownKey { .. })),
                "{history:?}"
            );
            assert_eq!(store.list("").await.unwrap().len(), 1);
        }
        let after = leader_client.status().await.unwrap();
        if after.raft_term() == before.raft_term() {
            assert_eq!(
                after.raft_index(),
                before.raft_index(),
                "entries added to the raft log by reads"
            );
            return;
        }
    }
    panic!("etcd elected a leader during each of three measurements");
}

/// How many transactions the members of `cluster` have been sent, by their metrics.
async fn transactions(cluster: &PrivateCluster) -> u64 {
    let mut total = 0;
    for port in &cluster.client_ports {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total += metrics
            .lines()
            .filter(|line| {
                line.starts_with("grpc_server_started_total{")
                    && line.contains("grpc_method=\"Txn\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Once the store knows a key it holds (from the acquisition and the read of its record that
/// a guard makes next), a run's start, its end and the key's release are one transaction
/// each, not a read and then a transaction; and when another writer changed the record in
/// between (an operator's trigger through another store), the write on what the store knew
/// fails its guards, and the store reads and writes again: the start still counts the run
/// after the trigger's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_keys_start_end_and_release_are_one_transaction_each() {
    let Some(cluster) = PrivateCluster::start("known") else {
        return;
    };
    let store = EtcdStore::connect_lazy(&cluster.url(), StoreOptions::default()).unwrap();
    let keys = ["k".to_owned()];
    let lease = first_lease(&store, "k").await;
    let epoch = lease.epoch;
    let start = RunStart {
        key: "k".to_owned(),
        epoch,
        scheduled_ms: 0,
        next_due: NextDue::After(LONG),
        triggered: false,
        history_limit: 10,
    };
    let end = |seq| RunEnd {
        key: "k".to_owned(),
        epoch,
        seq,
        outcome: RunResult::Succeeded,
        attempts: 1,
        error: None,
        next_due: NextDue::Unchanged,
    };
    assert!(store.schedules(&keys).await.unwrap().is_empty());

    let before = transactions(&cluster).await;
    let started = store
        .start_runs("a", std::slice::from_ref(&start))
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(transactions(&cluster).await - before, 1, "a known start");
    let before = transactions(&cluster).await;
    let ended = store.end_runs("a", &[end(started[0].seq)]).await.unwrap();
    assert_eq!(ended, ["k"]);
    assert_eq!(transactions(&cluster).await - before, 1, "a known end");

    let operator = EtcdStore::connect_lazy(&cluster.url(), StoreOptions::default()).unwrap();
    operator.trigger("k", "ops").await.unwrap();
    let before = transactions(&cluster).await;
    let triggered = RunStart {
        triggered: true,
        ..start
    };
    let started = store.start_runs("a", &[triggered]).await.unwrap();
    assert_eq!(started.len(), 1, "the start after the trigger");
    assert_eq!(started[0].seq, 2);
    // The write on what was known, the read, the write.
    assert_eq!(
        transactions(&cluster).await - before,
        3,
        "a start after another's write"
    );
    let history = store.history("k", 10).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");

    let before = transactions(&cluster).await;
    store.release("a", &[lease.to_ref()]).await.unwrap();
    assert_eq!(transactions(&cluster).await - before, 1, "a known release");
    // The next holder reads the key's record with its lease, and starts from what it read.
    let taken = store
        .try_acquire_with_records("b", &keys, LONG, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(taken.leases.len(), 1, "the released key is free");
    assert_eq!(taken.records.len(), 1, "its record came with it");
    let before = transactions(&cluster).await;
    let first = RunStart {
        key: "k".to_owned(),
        epoch: taken.leases[0].epoch,
        scheduled_ms: 0,
        next_due: NextDue::After(LONG),
        triggered: false,
        history_limit: 10,
    };
    let started = store.start_runs("b", &[first]).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].seq, 3);
    assert_eq!(
        transactions(&cluster).await - before,
        1,
        "a new holder's first start"
    );
}

/// An operator's trigger whose answer was lost is not asked for again: the store sends a
/// request whose connection failed once more, and that second send finds the record changed by
/// the first. The leader served the trigger in between, so applying it again would run the job
/// twice for one trigger (the chaos suite met this under etcd member faults).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_whose_answer_was_lost_is_not_asked_for_twice() {
    let Some(url) = url() else { return };
    let prefix = format!("lje{}_resent_", std::process::id());
    let options = StoreOptions::default()
        .table_prefix(&prefix)
        .operation_timeout(Duration::from_secs(20));
    let leader = EtcdStore::connect_lazy(&url, options.clone()).unwrap();
    leader.initialise().await.unwrap();
    let keys = ["k".to_owned()];
    let held = leader
        .try_acquire("leader", &keys, LONG)
        .await
        .unwrap()
        .remove(0);
    let start = |triggered| {
        let (leader, epoch) = (&leader, held.epoch);
        async move {
            let start = RunStart {
                key: "k".to_owned(),
                epoch,
                scheduled_ms: 0,
                next_due: NextDue::Unchanged,
                triggered,
                history_limit: 10,
            };
            let started = leader.start_runs("leader", &[start]).await.unwrap();
            assert_eq!(started.len(), 1, "the leader's start was not committed");
        }
    };
    start(false).await;

    // The operator reaches one member through a proxy, which holds every chunk back.
    let proxy = proxy::Proxy::start(proxy::upstreams_of(&url)[0]).await;
    let operator = EtcdStore::connect_lazy(&format!("etcd://{}", proxy.addr()), options).unwrap();
    operator.schedules(&keys).await.unwrap();
    proxy.set(proxy::Mode::Delay(Duration::from_millis(700)));
    let trigger = tokio::spawn(async move { operator.trigger("k", "ops").await });

    // The trigger reaches etcd, and the leader serves it while its answer is held back ...
    let deadline = Instant::now() + Duration::from_secs(10);
    while leader.schedules(&keys).await.unwrap()[0].trigger.is_none() {
        assert!(Instant::now() < deadline, "the trigger never reached etcd");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start(true).await;
    // Another operator's command comes after it, so the trigger's own write is not the command
    // key's newest: the operator looks further back for it.
    leader.pause("k", "other").await.unwrap();
    // ... and then its answer is lost: the connection is cut, and the store sends the command
    // again.
    assert!(
        !trigger.is_finished(),
        "the trigger's answer came back before the cut: nothing was lost"
    );
    proxy.set(proxy::Mode::Cut);
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.set(proxy::Mode::Forward);
    trigger.await.unwrap().expect("the trigger, sent again");

    let record = leader.schedules(&keys).await.unwrap().remove(0);
    assert_eq!(
        record.trigger, None,
        "the trigger the leader served was asked for again"
    );
    assert!(
        record.paused.is_some(),
        "the other operator's pause is kept"
    );
    let mut admin = Client::connect(endpoints(&url), None).await.unwrap();
    let every_key = Some(DeleteOptions::new().with_prefix());
    admin.delete(prefix.as_str(), every_key).await.unwrap();
}
