//! Partitioned jobs at scale: acquiring P partitions costs O(P), and a host with a
//! 10,000-partition job shuts down promptly.
//!
//! The figures (`cargo test --release --all-features --test partitions_scale -- --ignored
//! --nocapture`) are printed, not asserted: the machine decides them. What is asserted (every
//! partition won in one batch, logged once, released at once at shutdown) is in
//! `tests/leadership_release.rs`, under tokio's paused clock.
//!
//! Measured on a shared 2-core machine under load (release build), before and after batching:
//!
//! | store | partitions | acquired (before → after) | shut down (before → after) |
//! |---|---|---|---|
//! | memory | 2,000 | 25 ms → 4–13 ms | 34 ms → 1–12 ms |
//! | memory | 10,000 | 1.21 s → 28–61 ms | 0.85 s → 11–27 ms |
//! | SQLite | 2,000 | 75 ms → 72–155 ms | 93 ms → 22–86 ms |
//! | SQLite | 10,000 | 1.17 s → 89–307 ms | 1.59 s → 0.16–0.23 s |

use std::sync::Arc;
use std::time::Duration;

use loopjob::store::{LeaseStore, MemoryStore};
use loopjob::{Host, LeaderMode, Leadership, NodeIdentity, Schedule};

/// A host with one partitioned job of `partitions` partitions on `store`.
fn host(store: Arc<dyn LeaseStore>, partitions: u32) -> Host {
    Host::builder()
        .node(NodeIdentity::new("a", "default"))
        .store(store)
        .shutdown_grace(Duration::from_secs(1))
        .job_fn(
            "sharded",
            Schedule::every(Duration::from_secs(1)),
            |_ctx| async { Ok(()) },
        )
        .leadership(
            "sharded",
            Leadership::new(LeaderMode::Partitioned).partitions(partitions),
        )
        .build()
        .expect("valid host")
}

/// How long a lone host takes to hold all `partitions` partitions, and then to shut down.
async fn acquire_all(store: Arc<dyn LeaseStore>, partitions: u32) -> (Duration, Duration) {
    let host = host(store, partitions);
    let handle = host.handle();
    let start = std::time::Instant::now();
    let running = tokio::spawn(host.run_until(std::future::pending()));
    handle
        .wait_for("sharded", |s| {
            s.leadership
                .as_ref()
                .is_some_and(|l| l.leases.len() == partitions as usize)
        })
        .await
        .unwrap();
    let acquired = start.elapsed();
    let stop = std::time::Instant::now();
    handle.shutdown();
    running.await.unwrap();
    (acquired, stop.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run with --ignored --nocapture"]
async fn acquisition_time_grows_linearly_with_partitions() {
    for partitions in [2_000, 10_000] {
        let (acquired, stopped) = acquire_all(Arc::new(MemoryStore::new()), partitions).await;
        println!(
            "memory {partitions:>6} partitions: acquired in {acquired:?}, shut down in {stopped:?}"
        );
        #[cfg(feature = "sqlite")]
        {
            let dir = std::env::temp_dir().join(format!(
                "loopjob-partitions-scale-{}-{partitions}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}", dir.join("leases.db").display());
            let store = loopjob::store::open(&url).unwrap();
            let (acquired, stopped) = acquire_all(store, partitions).await;
            println!(
                "sqlite {partitions:>6} partitions: acquired in {acquired:?}, shut down in {stopped:?}"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
