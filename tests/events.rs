//! The `tracing` events README lists (its Observability table) are emitted, each with the level
//! and the fields README gives, captured with a test subscriber.

#[path = "support/faulty_store.rs"]
mod faulty_store;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::store::MemoryStore;
use loopjob::{Host, JobError, LeaderMode, Leadership, Schedule};
use tracing::field::{Field, Visit};
use tracing::span::Attributes;
use tracing::{Event, Id, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// README's table: each event's message (or the span's name), its level and its fields.
const PROMISED: &[(&str, Level, &[&str])] = &[
    ("loopjob.job", Level::INFO, &["job"]),
    ("loopjob.run", Level::DEBUG, &["run_id", "attempt"]),
    ("host started", Level::INFO, &["jobs", "shards", "node"]),
    (
        "tick skipped",
        Level::DEBUG,
        &["job", "in_flight", "reason"],
    ),
    (
        "ticks missed during a stall",
        Level::WARN,
        &["job", "missed"],
    ),
    ("run failed", Level::WARN, &["job", "run_id", "error"]),
    (
        "run failed; retrying",
        Level::WARN,
        &["job", "run_id", "attempt", "outcome", "retry_in"],
    ),
    ("run timed out", Level::WARN, &["job", "run_id", "timeout"]),
    ("run panicked", Level::ERROR, &["job", "run_id", "panic"]),
    (
        "run ignored cancellation and was dropped",
        Level::WARN,
        &["job", "run_id", "grace"],
    ),
    ("leases acquired", Level::INFO, &["job", "count", "keys"]),
    (
        "leases lost",
        Level::WARN,
        &["job", "count", "keys", "reason"],
    ),
    ("shutdown requested through the handle", Level::INFO, &[]),
    (
        "runs still in flight after the shutdown grace were dropped",
        Level::WARN,
        &["job", "overdue", "grace"],
    ),
    ("host stopped", Level::INFO, &["dropped"]),
];

/// One event or span seen: its message (or the span's name), its level and its field names.
type Sighting = (String, Level, BTreeSet<String>);

/// Everything seen, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);

#[derive(Default)]
struct Fields {
    message: String,
    names: BTreeSet<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.names.insert(field.name().to_owned());
        }
    }
}

impl<S: Subscriber> Layer<S> for Seen {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let meta = attrs.metadata();
        let entry = (meta.name().to_owned(), *meta.level(), fields.names);
        self.0.lock().unwrap().push(entry);
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let entry = (fields.message, *event.metadata().level(), fields.names);
        self.0.lock().unwrap().push(entry);
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn every_event_readme_lists_is_emitted_with_its_fields() {
    let seen = Seen::default();
    let _subscriber = tracing::subscriber::set_default(Registry::default().with(seen.clone()));

    let shared = Arc::new(MemoryStore::new());
    let store = faulty_store::FaultyStore::new(shared, true);
    let mut attempts = 0;
    let host = Host::builder()
        .store(store.clone())
        // Runs 15 s of every 10: the tick at 10 s is skipped.
        .job_fn("slow", Schedule::every(secs(10)), |ctx| async move {
            tokio::select! {
                _ = tokio::time::sleep(secs(15)) => {}
                _ = ctx.cancelled() => {}
            }
            Ok(())
        })
        // Fails its first attempt, succeeds on the retry.
        .job_fn(
            "flaky",
            Schedule::every(secs(100)).retries(1),
            move |_ctx| {
                attempts += 1;
                let attempt = attempts;
                async move {
                    match attempt {
                        1 => Err(JobError::msg("the queue is busy")),
                        _ => Ok(()),
                    }
                }
            },
        )
        // Fails without retries.
        .job_fn("failing", Schedule::every(secs(100)), |_ctx| async {
            Err(JobError::msg("the disk is full"))
        })
        // Outlives its timeout but stops when cancelled.
        .job_fn(
            "late",
            Schedule::every(secs(100)).timeout(secs(1)),
            |ctx| async move {
                tokio::select! {
                    _ = tokio::time::sleep(secs(5)) => {}
                    _ = ctx.cancelled() => {}
                }
                Ok(())
            },
        )
        .job_fn("panicky", Schedule::every(secs(100)), |_ctx| async {
            panic!("a bug in the job")
        })
        // Ignores its token when the operator cancels its run: dropped after the cancel grace.
        .job_fn(
            "stubborn",
            Schedule::every(secs(100)).cancel_grace(secs(1)),
            |_ctx| async {
                tokio::time::sleep(secs(50)).await;
                Ok(())
            },
        )
        // Ignores its token at shutdown: dropped after the shutdown grace.
        .job_fn(
            "deaf",
            Schedule::every(secs(100)).initial_delay(secs(30)),
            |_ctx| async {
                tokio::time::sleep(secs(500)).await;
                Ok(())
            },
        )
        // Holds a global lease until its store is cut off.
        .job_fn("leader", Schedule::every(secs(5)), |_ctx| async { Ok(()) })
        .leadership(
            "leader",
            Leadership::new(LeaderMode::Global).lease_ttl(secs(3)),
        )
        .shutdown_grace(secs(2))
        .build()
        .unwrap();
    let handle = host.handle();
    let running = tokio::spawn(host.run_until(std::future::pending()));

    tokio::time::sleep(secs(3)).await;
    handle.cancel_runs("stubborn").await.unwrap();
    tokio::time::sleep(secs(9)).await;
    // A stall of 25 s: the clock jumps without the supervisors being polled.
    tokio::time::advance(secs(25)).await;
    tokio::time::sleep(secs(3)).await;
    // The leader's line to the store is cut: its lease runs out.
    store.cut(true);
    tokio::time::sleep(secs(10)).await;
    handle.shutdown();
    running.await.unwrap();

    let seen = seen.0.lock().unwrap().clone();
    let mut missing = Vec::new();
    for (message, level, fields) in PROMISED {
        let found = seen.iter().any(|(seen_message, seen_level, seen_fields)| {
            seen_message == message
                && seen_level == level
                && fields.iter().all(|field| seen_fields.contains(*field))
        });
        if !found {
            missing.push(format!("{message} ({level}, {fields:?})"));
        }
    }
    assert!(
        missing.is_empty(),
        "not emitted as README says: {missing:#?}\nseen: {seen:#?}"
    );
}

/// For each job event `reported`, the names of the spans it was in (root first).
#[derive(Clone, Default)]
struct Scopes(Arc<Mutex<Vec<Vec<String>>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Scopes {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message != "reported" {
            return;
        }
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| span.name().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(scope);
    }
}

/// At `info` a job's own events are in its `loopjob.job` span, one span for all its runs (a
/// span per run costs more than the event, docs/BENCHMARKS.md); at `debug` each attempt adds its
/// `loopjob.run` span, with the run's id.
#[tokio::test(start_paused = true)]
async fn a_jobs_events_are_in_its_span_made_once_for_all_its_runs() {
    for (level, expected_scope) in [
        (LevelFilter::INFO, vec!["loopjob.job"]),
        (LevelFilter::DEBUG, vec!["loopjob.job", "loopjob.run"]),
    ] {
        let (seen, scopes) = (Seen::default(), Scopes::default());
        let subscriber = Registry::default()
            .with(level)
            .with(seen.clone())
            .with(scopes.clone());
        let _subscriber = tracing::subscriber::set_default(subscriber);

        let host = Host::builder()
            .job_fn("reporter", Schedule::every(secs(1)), |ctx| async move {
                tracing::info!(run = ctx.run_id(), "reported");
                Ok(())
            })
            .build()
            .unwrap();
        let handle = host.handle();
        let running = tokio::spawn(host.run_until(std::future::pending()));
        // Runs at 0, 1 and 2 s.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        handle.shutdown();
        running.await.unwrap();

        let reported = scopes.0.lock().unwrap().clone();
        assert_eq!(reported, vec![expected_scope; 3], "at {level}");
        let seen = seen.0.lock().unwrap().clone();
        let spans: Vec<&str> = seen.iter().map(|(name, _, _)| name.as_str()).collect();
        let count = |name: &str| spans.iter().filter(|span| **span == name).count();
        assert_eq!(count("loopjob.job"), 1, "at {level}: {spans:?}");
        let runs = if level == LevelFilter::DEBUG { 3 } else { 0 };
        assert_eq!(count("loopjob.run"), runs, "at {level}: {spans:?}");
    }
}

/// A job's events are in its span after its first await too, and so is what its future logs as
/// it is dropped: here an attempt that ignores its cancelled token and is abandoned once its
/// timeout and `cancel_grace` have passed.
#[tokio::test(start_paused = true)]
async fn a_runs_later_polls_and_its_drop_are_in_the_jobs_span() {
    /// Logs `reported` when dropped with the attempt that holds it.
    struct ReportsWhenDropped;
    impl Drop for ReportsWhenDropped {
        fn drop(&mut self) {
            tracing::info!(when = "dropped", "reported");
        }
    }

    let scopes = Scopes::default();
    let subscriber = Registry::default()
        .with(LevelFilter::INFO)
        .with(scopes.clone());
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let schedule = Schedule::every(secs(60))
        .timeout(secs(1))
        .cancel_grace(secs(1));
    let host = Host::builder()
        .job_fn("stuck", schedule, |_ctx| async move {
            let _guard = ReportsWhenDropped;
            tokio::time::sleep(Duration::from_millis(10)).await;
            tracing::info!(when = "after an await", "reported");
            // Ignores its token: abandoned after its timeout and grace.
            std::future::pending::<()>().await;
            Ok(())
        })
        .build()
        .unwrap();
    let handle = host.handle();
    let running = tokio::spawn(host.run_until(std::future::pending()));
    tokio::time::sleep(secs(5)).await;
    let status = handle.status("stuck").unwrap();
    handle.shutdown();
    running.await.unwrap();

    assert_eq!(status.counters.dropped, 1, "{status:?}");
    let reported = scopes.0.lock().unwrap().clone();
    assert_eq!(reported, vec![vec!["loopjob.job"]; 2]);
}

/// Each event of the table above is in README's Observability table, and the other way round
/// (`shutdown requested`, on a signal, is seen by `tests/examples.rs`; `supervisor failed`, a
/// bug in loopjob, by `tests/containment.rs`).
#[test]
fn readme_lists_exactly_these_events() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("### Observability")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has an Observability section");
    let listed: BTreeSet<&str> = section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| line.split('`').nth(1))
        .collect();
    let mut promised: BTreeSet<&str> = PROMISED.iter().map(|(message, _, _)| *message).collect();
    promised.extend(["shutdown requested", "supervisor failed"]);
    assert_eq!(listed, promised);
}
