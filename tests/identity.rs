//! Node identity: from the environment variables the platform sets, under names the settings
//! may change; and a partitioned job's worker index, stable across a restart.

use std::sync::Arc;
use std::time::Duration;

use loopjob::store::{LeaseStore, MemoryStore};
use loopjob::{Host, HostHandle, LeaderMode, Leadership, NodeIdentity, Schedule, Settings};
use tokio::task::JoinHandle;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn the_identity_comes_from_the_variables_named_in_settings() {
    // Names no other test uses, so that setting them here disturbs nothing else.
    // SAFETY: this test's process reads these two variables only here.
    unsafe {
        std::env::set_var("LOOPJOB_TEST_IDENTITY_POD", "worker-7");
        std::env::set_var("LOOPJOB_TEST_IDENTITY_REGION", "eu-north");
    }
    let node =
        NodeIdentity::from_env_vars("LOOPJOB_TEST_IDENTITY_POD", "LOOPJOB_TEST_IDENTITY_REGION");
    assert_eq!((node.node_id(), node.group()), ("worker-7", "eu-north"));

    let settings = Settings::from_toml_str(
        "[loopjob]\n\
         node_id_env = \"LOOPJOB_TEST_IDENTITY_POD\"\n\
         group_env = \"LOOPJOB_TEST_IDENTITY_REGION\"\n",
    )
    .unwrap();
    let host = Host::builder().settings(settings).build().unwrap();
    assert_eq!(host.handle().node(), &node);

    // A variable that is unset or empty falls back as `from_env` does: a group of "default".
    let unset =
        NodeIdentity::from_env_vars("LOOPJOB_TEST_IDENTITY_POD", "LOOPJOB_TEST_IDENTITY_UNSET");
    assert_eq!(unset.group(), loopjob::DEFAULT_GROUP);
}

/// A host running one partitioned job as node `name`.
fn start(name: &str, store: Arc<dyn LeaseStore>) -> (HostHandle, JoinHandle<()>) {
    let host = Host::builder()
        .node(NodeIdentity::new(name, "default"))
        .store(store)
        .job_fn("sharded", Schedule::every(SEC), |_ctx| async { Ok(()) })
        .leadership(
            "sharded",
            Leadership::new(LeaderMode::Partitioned)
                .partitions(4)
                .lease_ttl(15 * SEC)
                .retry_every(SEC),
        )
        .build()
        .unwrap();
    let handle = host.handle();
    let task = tokio::spawn(async move {
        host.run_until(std::future::pending()).await;
    });
    (handle, task)
}

async fn worker_of(handle: &HostHandle, expected: (u32, u32)) -> (u32, u32) {
    let waited = tokio::time::timeout(
        10 * SEC,
        handle.wait_for("sharded", |s| {
            s.leadership.as_ref().and_then(|l| l.worker) == Some(expected)
        }),
    )
    .await;
    match waited {
        Ok(status) => status.unwrap().leadership.unwrap().worker.unwrap(),
        Err(_) => handle
            .status("sharded")
            .and_then(|s| s.leadership)
            .and_then(|l| l.worker)
            .unwrap_or((u32::MAX, 0)),
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_keeps_its_worker_index_while_its_predecessor_is_still_listed() {
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    // "b-1" sorts before "b" by holder name ('-' < '/'), after it by node id.
    let (b, b_task) = start("b", store.clone());
    let (b1, _b1_task) = start("b-1", store.clone());
    let (c, _c_task) = start("c", store.clone());
    assert_eq!(worker_of(&b, (0, 3)).await, (0, 3));
    assert_eq!(worker_of(&b1, (1, 3)).await, (1, 3));
    assert_eq!(worker_of(&c, (2, 3)).await, (2, 3));

    // "b" crashes and comes straight back: its old announcement is live for another ttl.
    b_task.abort();
    let _ = b_task.await;
    let (b_again, _b_again_task) = start("b", store.clone());
    assert_eq!(worker_of(&b_again, (0, 3)).await, (0, 3));
    tokio::time::sleep(5 * SEC).await;
    assert_eq!(
        worker_of(&b_again, (0, 3)).await,
        (0, 3),
        "still, seconds later"
    );
    assert_eq!(worker_of(&c, (2, 3)).await, (2, 3));
}
