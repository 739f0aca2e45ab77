//! A panic in a job's loop, which is loopjob's own code (a job's runs and hooks are caught where
//! they run), stops that job alone: its shard's other jobs go on, its status says it stopped,
//! and a guarded job's leases are released so that another node runs it, instead of being
//! renewed for a job that no longer runs here.
//!
//! The loop's one call into code that is not loopjob's is `tracing`: the panic comes from a
//! layer that panics on the job's first `run failed` event.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::store::{LeaseStore, MemoryStore};
use loopjob::{
    Host, HostHandle, JobError, JobState, LeaderMode, Leadership, NodeIdentity, Schedule,
    ShutdownReport,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

const EVERY: Duration = Duration::from_millis(100);
const RENEW: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_secs(1);

/// Panics on the first `run failed` event of the job `fragile`, and keeps every `supervisor
/// failed` event's level, job and panic.
#[derive(Clone, Default)]
struct PanicOnce {
    fired: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<(Level, String, String)>>>,
}

#[derive(Default)]
struct Fields {
    message: String,
    job: String,
    panic: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        match field.name() {
            "message" => self.message = value,
            "job" => self.job = value,
            "panic" => self.panic = value,
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for PanicOnce {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == "supervisor failed" {
            let failure = (*event.metadata().level(), fields.job, fields.panic);
            self.failures.lock().unwrap().push(failure);
        } else if fields.message == "run failed"
            && fields.job == "fragile"
            && !self.fired.swap(true, Ordering::SeqCst)
        {
            panic!("a layer that panics");
        }
    }
}

fn global() -> Leadership {
    Leadership::new(LeaderMode::Global)
        .lease_ttl(3 * RENEW)
        .with_renew_every(RENEW)
        .retry_every(RETRY)
}

struct Node {
    handle: HostHandle,
    task: JoinHandle<ShutdownReport>,
}

/// A host named `name` with the guarded job `fragile`, whose runs fail and are counted in
/// `fragile_runs`; with `siblings`, also the guarded job `guarded` and the unguarded `steady`,
/// counted in `sibling_runs`.
fn start(
    name: &'static str,
    store: Arc<dyn LeaseStore>,
    fragile_runs: Arc<AtomicU32>,
    sibling_runs: Option<Arc<AtomicU32>>,
) -> Node {
    let mut builder = Host::builder()
        .node(NodeIdentity::new(name, "default"))
        .store(store)
        .job_fn("fragile", Schedule::every(EVERY), move |_ctx| {
            fragile_runs.fetch_add(1, Ordering::SeqCst);
            async { Err(JobError::msg("no")) }
        })
        .leadership("fragile", global());
    if let Some(runs) = sibling_runs {
        for sibling in ["guarded", "steady"] {
            let runs = runs.clone();
            builder = builder.job_fn(sibling, Schedule::every(EVERY), move |_ctx| {
                runs.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            });
        }
        builder = builder.leadership("guarded", global());
    }
    let host = builder.build().expect("a valid host");
    let handle = host.handle();
    let task = tokio::spawn(host.run_until(std::future::pending()));
    Node { handle, task }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_one_jobs_loop_stops_that_job_alone_and_lets_another_node_run_it() {
    let layer = PanicOnce::default();
    let _subscriber = tracing::subscriber::set_default(Registry::default().with(layer.clone()));
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    let t0 = Instant::now();
    let (a_fragile, a_siblings, b_fragile) = Default::default();
    let a = start(
        "a",
        store.clone(),
        Arc::clone(&a_fragile),
        Some(Arc::clone(&a_siblings)),
    );
    // `a` holds `fragile` when `b` comes: its first run fails, and the layer panics.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = start("b", store, Arc::clone(&b_fragile), None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let siblings_then = a_siblings.load(Ordering::SeqCst);

    // `a` lets go of the lease at its elector's next call, within a renew period; `b` takes
    // it at its next try, within a retry period.
    tokio::time::sleep_until(t0 + RENEW + RETRY + Duration::from_millis(500)).await;
    let failures = layer.failures.lock().unwrap().clone();
    assert_eq!(
        failures,
        [(
            Level::ERROR,
            "fragile".to_owned(),
            "a layer that panics".to_owned()
        )]
    );
    assert_eq!(a_fragile.load(Ordering::SeqCst), 1, "fragile ran once on a");
    assert!(
        b_fragile.load(Ordering::SeqCst) > 0,
        "b never ran fragile: a kept its lease"
    );
    let status = a.handle.status("fragile").unwrap();
    assert_eq!(status.state, JobState::Stopped);
    // The shard's other jobs, guarded or not, went on.
    let siblings_now = a_siblings.load(Ordering::SeqCst);
    assert!(
        siblings_now >= siblings_then + 2 * 10,
        "{siblings_then} sibling runs then, {siblings_now} now"
    );

    for node in [a, b] {
        node.handle.shutdown();
        let report = node.task.await.unwrap();
        assert!(
            report
                .jobs
                .iter()
                .all(|job| job.status.state == JobState::Stopped)
        );
    }
}
