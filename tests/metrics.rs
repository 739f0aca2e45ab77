//! With the `metrics` feature, runs, skips and leadership changes are counted through the
//! `metrics` facade, labelled by job.

#![cfg(feature = "metrics")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::store::MemoryStore;
use loopjob::{Host, LeaderMode, Leadership, Schedule};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Counters by name and labels, as `name{label=value,…}`, and the name of every metric
/// registered (emitted), counter or histogram.
#[derive(Default, Clone)]
struct Counters(
    Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
    Arc<Mutex<BTreeSet<String>>>,
);

struct Count(Arc<AtomicU64>);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl Counters {
    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.1.lock().unwrap().insert(key.name().to_owned());
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let count = self.0.lock().unwrap().entry(name).or_default().clone();
        Counter::from_arc(Arc::new(Count(count)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.1.lock().unwrap().insert(key.name().to_owned());
        Histogram::noop()
    }
}

#[test]
fn runs_skips_and_leadership_changes_are_counted() {
    let counters = Counters::default();
    metrics::with_local_recorder(&counters, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            // The first tick comes a second after the elector won the lease at the start.
            let slow_schedule =
                Schedule::every(Duration::from_secs(10)).initial_delay(Duration::from_secs(1));
            let host = Host::builder()
                .store(Arc::new(MemoryStore::new()))
                .job_fn(
                    "fine",
                    Schedule::every(Duration::from_secs(10)),
                    |_ctx| async { Ok(()) },
                )
                .job_fn("slow", slow_schedule, |ctx| async move {
                    // Longer than two intervals; stops when shut down.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(25)) => {}
                        _ = ctx.cancelled() => {}
                    }
                    Ok(())
                })
                .leadership("slow", Leadership::new(LeaderMode::Global))
                .build()
                .unwrap();
            // "fine" runs at 0, 10, 20 and 30. "slow" runs from 1 to 26, skips 11 and 21, and
            // runs from 31 until the shutdown at 33.
            host.run_until(tokio::time::sleep(Duration::from_secs(33)))
                .await;
        });
    });
    assert_eq!(
        counters.get("loopjob_runs_total{job=fine,outcome=succeeded}"),
        4
    );
    assert_eq!(
        counters.get("loopjob_runs_total{job=slow,outcome=succeeded}"),
        2
    );
    assert_eq!(counters.get("loopjob_ticks_skipped_total{job=slow}"), 2);
    assert_eq!(
        counters.get("loopjob_leadership_changes_total{job=slow,change=acquired}"),
        1
    );
}

/// Every metric README's Observability section names is emitted, and no other.
#[test]
fn every_metric_readme_lists_is_emitted() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("### Observability")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has an Observability section");
    let listed: BTreeSet<String> = section
        .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .filter(|word| word.starts_with("loopjob_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(listed.len(), 5, "README lists five metrics: {listed:?}");

    let counters = Counters::default();
    metrics::with_local_recorder(&counters, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let host = Host::builder()
                .store(Arc::new(MemoryStore::new()))
                // 15 s of work every 10 s: skips; a guarded job: a leadership change.
                .job_fn(
                    "slow",
                    Schedule::every(Duration::from_secs(10)),
                    |ctx| async move {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                            _ = ctx.cancelled() => {}
                        }
                        Ok(())
                    },
                )
                .leadership("slow", Leadership::new(LeaderMode::Global))
                .job_fn(
                    "quick",
                    Schedule::every(Duration::from_secs(10)),
                    |_ctx| async { Ok(()) },
                )
                .build()
                .unwrap();
            let handle = host.handle();
            let running = tokio::spawn(host.run_until(std::future::pending()));
            tokio::time::sleep(Duration::from_secs(12)).await;
            // A stall: the clock jumps 35 s without the supervisors being polled.
            tokio::time::advance(Duration::from_secs(35)).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            handle.shutdown();
            running.await.unwrap();
        });
    });
    let emitted = counters.1.lock().unwrap().clone();
    assert_eq!(emitted, listed);
    assert!(counters.get("loopjob_ticks_missed_total{job=quick}") >= 2);
}
