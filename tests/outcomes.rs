//! The counters say what happened to a run that outlived its timeout: dropped when it ignored
//! its token past `cancel_grace`, overran when it kept the thread past the timeout.

#[path = "support/recorder.rs"]
mod recorder;

use std::time::Duration;

use loopjob::{Host, RunOutcome, Schedule};
use recorder::{Behaviour, Recorder, secs};

#[tokio::test(start_paused = true)]
async fn a_timed_out_run_that_ignores_its_token_past_the_grace_counts_as_dropped() {
    let job = Recorder::new(
        "stubborn",
        Schedule::every(secs(60))
            .timeout(secs(5))
            .cancel_grace(secs(2)),
        Behaviour::Stubborn(secs(3_600)),
    );
    let host = Host::builder().job(job.clone()).build().unwrap();
    let report = host.run_until(tokio::time::sleep(secs(30))).await;
    let status = &report.job("stubborn").unwrap().status;
    assert_eq!(status.last_outcome, Some(RunOutcome::TimedOut));
    assert_eq!(status.last_ended, Some(job.t0 + secs(7)), "timeout + grace");
    let counters = status.counters;
    assert_eq!(
        (counters.timeouts, counters.dropped, counters.failures),
        (1, 1, 1)
    );
    assert_eq!(counters.overran, 0);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_run_that_stops_in_its_grace_is_not_dropped() {
    let job = Recorder::new(
        "cooperative",
        Schedule::every(secs(60)).timeout(secs(5)),
        Behaviour::Work(secs(3_600)),
    );
    let host = Host::builder().job(job).build().unwrap();
    let report = host.run_until(tokio::time::sleep(secs(30))).await;
    let counters = report.job("cooperative").unwrap().status.counters;
    assert_eq!((counters.timeouts, counters.dropped), (1, 0));
}

/// The job blocks the thread (as synchronous work without `spawn_blocking` does) for five
/// times its timeout, then succeeds. The real clock is needed here: blocking the thread is what
/// the paused clock cannot show, and the sleep guarantees at least that long has passed.
#[tokio::test]
async fn a_run_that_blocks_the_thread_past_its_timeout_overran_and_did_not_succeed() {
    let timeout = Duration::from_millis(20);
    let host = Host::builder()
        .job_fn(
            "blocking",
            Schedule::every(Duration::from_secs(3_600)).timeout(timeout),
            move |_ctx| async move {
                std::thread::sleep(timeout * 5);
                Ok(())
            },
        )
        .job_fn(
            "blocking_then_pending",
            Schedule::every(Duration::from_secs(3_600)).timeout(timeout),
            move |_ctx| async move {
                std::thread::sleep(timeout * 5);
                tokio::task::yield_now().await;
                Ok(())
            },
        )
        .build()
        .unwrap();
    let handle = host.handle();
    let stop = async move {
        for name in ["blocking", "blocking_then_pending"] {
            let _ = handle.wait_for(name, |s| s.last_outcome.is_some()).await;
        }
    };
    let report = host.run_until(stop).await;
    for name in ["blocking", "blocking_then_pending"] {
        let status = &report.job(name).unwrap().status;
        assert_eq!(status.last_outcome, Some(RunOutcome::Overran), "{name}");
        let counters = status.counters;
        assert_eq!(counters.succeeded, 0, "{name}");
        assert_eq!(
            (counters.overran, counters.timeouts, counters.failures),
            (1, 1, 1),
            "{name}"
        );
    }
}
