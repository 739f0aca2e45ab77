//! `max_parallel_runs`: the host-wide limit on runs in flight, beside each job's overlap limit.
//! Under tokio's paused clock, so each start is an exact instant.

#[path = "support/recorder.rs"]
mod recorder;

use loopjob::{BuildProblem, Host, HostBuilder, Schedule, ScheduleMode, Settings, Triggered};
use recorder::{Behaviour, Recorder, secs};

fn limited(limit: usize, jobs: &[&Recorder]) -> HostBuilder {
    let mut builder = Host::builder().max_parallel_runs(limit);
    for job in jobs {
        builder = builder.job((*job).clone());
    }
    builder
}

#[tokio::test(start_paused = true)]
async fn a_tick_that_finds_no_slot_waits_and_runs_the_moment_one_frees() {
    let long = Recorder::new(
        "long",
        Schedule::every(secs(100)),
        Behaviour::Work(secs(30)),
    );
    let short = Recorder::new(
        "short",
        Schedule::every(secs(100)).initial_delay(secs(5)),
        Behaviour::Work(secs(10)),
    );
    let host = limited(1, &[&long, &short]).build().unwrap();
    let report = host.run_until(tokio::time::sleep(secs(60))).await;
    assert_eq!(long.starts_secs(), [0]);
    assert_eq!(
        short.starts_secs(),
        [30],
        "its tick at 5 waited for long to end"
    );
    assert_eq!(report.job("short").unwrap().status.counters.skipped, 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_tick_overtaken_by_the_next_tick_is_skipped_and_counted() {
    let long = Recorder::new(
        "long",
        Schedule::every(secs(100)),
        Behaviour::Work(secs(22)),
    );
    let frequent = Recorder::new(
        "frequent",
        Schedule::every(secs(10)).initial_delay(secs(5)),
        Behaviour::Work(secs(1)),
    );
    let host = limited(1, &[&long, &frequent]).build().unwrap();
    let report = host.run_until(tokio::time::sleep(secs(40))).await;
    // Tick 5 waits; tick 15 comes first, so 5 is skipped and 15 waits; the slot frees at 22.
    assert_eq!(frequent.starts_secs(), [22, 25, 35]);
    let counters = report.job("frequent").unwrap().status.counters;
    assert_eq!((counters.skipped, counters.runs), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_tick_waits_as_long_as_it_takes() {
    let long = Recorder::new(
        "long",
        Schedule::every(secs(100)),
        Behaviour::Work(secs(45)),
    );
    let delayed = Recorder::new(
        "delayed",
        Schedule::every(secs(10))
            .initial_delay(secs(5))
            .mode(ScheduleMode::FixedDelay),
        Behaviour::Work(secs(1)),
    );
    let host = limited(1, &[&long, &delayed]).build().unwrap();
    let report = host.run_until(tokio::time::sleep(secs(60))).await;
    // Waits from 5 to 45, runs to 46, next 10 s after.
    assert_eq!(delayed.starts_secs(), [45, 56]);
    assert_eq!(report.job("delayed").unwrap().status.counters.skipped, 0);
}

#[tokio::test(start_paused = true)]
async fn runs_in_flight_never_exceed_the_limit_and_a_trigger_without_a_slot_is_refused() {
    let jobs: Vec<Recorder> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|name| Recorder::new(name, Schedule::every(secs(10)), Behaviour::Work(secs(3))))
        .collect();
    let refs: Vec<&Recorder> = jobs.iter().collect();
    let host = limited(2, &refs).build().unwrap();
    let handle = host.handle();
    let check = async {
        // Looks between the instants at which runs start and end, when every task is idle.
        tokio::time::sleep(recorder::millis(500)).await;
        for _ in 0..40 {
            let in_flight: usize = handle.statuses().iter().map(|s| s.in_flight).sum();
            assert!(in_flight <= 2, "{in_flight} runs in flight");
            if in_flight == 2 {
                let idle = handle
                    .statuses()
                    .into_iter()
                    .find(|s| s.in_flight == 0)
                    .unwrap();
                assert_eq!(handle.trigger(&idle.name).await, Ok(Triggered::HostBusy));
            }
            tokio::time::sleep(secs(1)).await;
        }
    };
    let report = host.run_until(check).await;
    // Two at a time, 3 s each: every tick still runs, two of them 3 s late. In 40.5 s: the
    // ticks at 0, 10, 20, 30 and 40 of two jobs, and those of the two others that waited to
    // 3, 13, 23 and 33 (their ticks at 40 still wait).
    let runs: Vec<u64> = jobs
        .iter()
        .map(|job| report.job(job.name).unwrap().status.counters.runs)
        .collect();
    assert_eq!(runs.iter().sum::<u64>(), 18, "{runs:?}");
    assert!(runs.iter().all(|&runs| runs >= 4), "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn the_limit_comes_from_settings_and_zero_is_a_build_error() {
    let long = Recorder::new(
        "long",
        Schedule::every(secs(100)),
        Behaviour::Work(secs(30)),
    );
    let short = Recorder::new(
        "short",
        Schedule::every(secs(100)).initial_delay(secs(5)),
        Behaviour::Work(secs(10)),
    );
    let settings = Settings::from_toml_str("[loopjob]\nmax_parallel_runs = 1\n").unwrap();
    let host = Host::builder()
        .settings(settings)
        .job(long.clone())
        .job(short.clone())
        .build()
        .unwrap();
    host.run_until(tokio::time::sleep(secs(60))).await;
    assert_eq!(short.starts_secs(), [30]);

    let zero = Settings::from_toml_str("[loopjob]\nmax_parallel_runs = 0\n").unwrap();
    let error = Host::builder().settings(zero).build().unwrap_err();
    assert!(error.to_string().contains("max_parallel_runs"), "{error}");
    let error = Host::builder().max_parallel_runs(0).build().unwrap_err();
    assert!(
        matches!(error.problems(), [BuildProblem::NoRunSlots]),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn pausing_a_job_drops_its_waiting_tick_and_counts_it_skipped() {
    let long = Recorder::new(
        "long",
        Schedule::every(secs(100)),
        Behaviour::Work(secs(30)),
    );
    let short = Recorder::new(
        "short",
        Schedule::every(secs(100)).initial_delay(secs(5)),
        Behaviour::Work(secs(1)),
    );
    let host = limited(1, &[&long, &short]).build().unwrap();
    let handle = host.handle();
    let steer = async {
        tokio::time::sleep(secs(10)).await;
        handle.pause("short").await.unwrap();
        tokio::time::sleep(secs(30)).await;
        handle.resume("short").await.unwrap();
        tokio::time::sleep(secs(20)).await;
    };
    let report = host.run_until(steer).await;
    // Its tick at 5 waited, was dropped by the pause at 10, and never ran when long ended at 30;
    // after the resume at 40 its next tick is 105.
    assert!(short.starts_secs().is_empty(), "{:?}", short.starts_secs());
    assert_eq!(report.job("short").unwrap().status.counters.skipped, 1);
}

/// A host of one slot for `long`'s runs and `guarded`'s, the latter guarded on a memory store.
fn guarded_beside(long: &Recorder, guarded: &Recorder) -> Host {
    limited(1, &[long, guarded])
        .store(std::sync::Arc::new(loopjob::store::MemoryStore::new()))
        .leadership(
            "guarded",
            loopjob::Leadership::new(loopjob::LeaderMode::Global),
        )
        .build()
        .unwrap()
}

/// A guarded job on the cluster schedule asks the store for a start only when a slot is free:
/// its points that find every slot taken pass without a run (skipped and counted), and it runs
/// at the first point after the slot frees.
#[tokio::test(start_paused = true)]
async fn a_guarded_job_without_a_free_slot_passes_its_point() {
    let long = Recorder::new(
        "long",
        Schedule::every(secs(100)),
        Behaviour::Work(secs(22)),
    );
    let guarded = Recorder::new(
        "guarded",
        Schedule::every(secs(10)).initial_delay(secs(5)),
        Behaviour::Work(secs(1)),
    );
    let host = guarded_beside(&long, &guarded);
    let report = host.run_until(tokio::time::sleep(secs(40))).await;
    let starts = guarded.starts_secs();
    // Points at 5, 15, 25 and 35 s (each at most the margin late): the slot is long's until 22.
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(starts.iter().all(|&at| at >= 25), "{starts:?}");
    let counters = report.job("guarded").unwrap().status.counters;
    assert_eq!((counters.skipped, counters.runs), (2, 2));
}

/// An operator's trigger of a guarded job that finds every slot taken waits for one: its run
/// starts the moment the slot frees, and the job's loop does not tick again and again
/// meanwhile (it did: the trigger kept the next tick at once, and the shard never yielded).
#[tokio::test(start_paused = true)]
async fn a_guarded_trigger_without_a_free_slot_waits_for_one() {
    let long = Recorder::new(
        "long",
        Schedule::every(secs(100)),
        Behaviour::Work(secs(20)),
    );
    let guarded = Recorder::new(
        "guarded",
        Schedule::every(secs(100)).initial_delay(secs(60)),
        Behaviour::Work(secs(1)),
    );
    let host = guarded_beside(&long, &guarded);
    let handle = host.handle();
    let stop = async move {
        tokio::time::sleep(secs(5)).await;
        assert_eq!(handle.trigger("guarded").await, Ok(Triggered::Requested));
        tokio::time::sleep(secs(35)).await;
    };
    let report = host.run_until(stop).await;
    let starts = guarded.starts_secs();
    assert_eq!(starts, [20], "the trigger ran when long's slot freed");
    let counters = report.job("guarded").unwrap().status.counters;
    assert_eq!(counters.runs, 1);
}
