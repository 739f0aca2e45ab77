//! `HostBuilder::job_fn`: closures that own state, clone shared values per run, and panic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loopjob::{Host, Schedule};

/// A closure that owns a counter and changes it on every run: each run sees the next value.
#[tokio::test(start_paused = true)]
async fn a_closure_owns_and_changes_its_state() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut calls = 0_u32;
    let host = Host::builder()
        .job_fn(
            "counting",
            Schedule::every(Duration::from_secs(10)),
            move |_ctx| {
                calls += 1;
                let call = calls;
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(call);
                    Ok(())
                }
            },
        )
        .build()
        .unwrap();
    // Ticks at 0, 10 and 20.
    host.run_until(tokio::time::sleep(Duration::from_secs(25)))
        .await;
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
}

struct Db {
    purged: AtomicU64,
}

/// The pattern the docs show: a captured `Arc` cloned per run, moved into the run's future.
#[tokio::test(start_paused = true)]
async fn a_captured_arc_is_cloned_into_each_run() {
    let db = Arc::new(Db {
        purged: AtomicU64::new(0),
    });
    let job_db = db.clone();
    let host = Host::builder()
        .job_fn(
            "purge",
            Schedule::every(Duration::from_secs(10)),
            move |_ctx| {
                let db = job_db.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    db.purged.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .build()
        .unwrap();
    host.run_until(tokio::time::sleep(Duration::from_secs(15)))
        .await;
    assert_eq!(db.purged.load(Ordering::SeqCst), 2);
}

/// A panic in the closure's own body (before its future) is a panicked run, counted like one
/// in the future; the job keeps its schedule and its next run calls the closure again.
#[tokio::test(start_paused = true)]
async fn a_panic_in_the_closure_body_is_a_panicked_run() {
    let mut calls = 0_u32;
    let host = Host::builder()
        .job_fn(
            "panics_first",
            Schedule::every(Duration::from_secs(10)),
            move |_ctx| {
                calls += 1;
                if calls == 1 {
                    panic!("the closure's body panicked");
                }
                async { Ok(()) }
            },
        )
        .build()
        .unwrap();
    let report = host
        .run_until(tokio::time::sleep(Duration::from_secs(15)))
        .await;
    let counters = report.job("panics_first").unwrap().status.counters;
    assert_eq!(
        (counters.runs, counters.panics, counters.succeeded),
        (2, 1, 1)
    );
}
