//! The cluster schedule's cases: schedule records, runs and operator commands, the same on every
//! backend. Times come from the store's own clock (a record's `read_at_ms`), never the test's.

use std::sync::Arc;
use std::time::Duration;

use loopjob::store::schedule::MAX_ERROR_LEN;
use loopjob::store::{
    Acquired, Lease, LeaseStore, NextDue, Plan, ReleaseNotice, RunEnd, RunResult, RunStart,
    ScheduleRecord, StoreError,
};
use tokio::task::JoinSet;

use crate::backends::{Backend, RecordCorruption};
use crate::suite::{LONG, PAST_SHORT, SHORT, acquire_one, keys, ready};

const HOUR: Duration = Duration::from_secs(3600);

fn plan(lease: &Lease, next_due: NextDue) -> Plan {
    Plan {
        key: lease.key.clone(),
        epoch: lease.epoch,
        next_due,
        only_if_unset: false,
    }
}

fn start(lease: &Lease) -> RunStart {
    RunStart {
        key: lease.key.clone(),
        epoch: lease.epoch,
        scheduled_ms: 1_000_000,
        next_due: NextDue::After(HOUR),
        triggered: false,
        history_limit: 100,
    }
}

fn triggered(lease: &Lease) -> RunStart {
    RunStart {
        triggered: true,
        ..start(lease)
    }
}

fn end(lease: &Lease, seq: i64, outcome: RunResult) -> RunEnd {
    RunEnd {
        key: lease.key.clone(),
        epoch: lease.epoch,
        seq,
        outcome,
        attempts: 1,
        error: None,
        next_due: NextDue::Unchanged,
    }
}

async fn record(store: &dyn LeaseStore, key: &str) -> ScheduleRecord {
    let mut records = store.schedules(&keys(&[key])).await.expect("schedules");
    assert_eq!(records.len(), 1, "one record for {key}: {records:?}");
    records.pop().unwrap()
}

async fn seqs(store: &dyn LeaseStore, key: &str, limit: u32) -> Vec<i64> {
    let history = store.history(key, limit).await.expect("history");
    history.into_iter().map(|run| run.seq).collect()
}

async fn started(store: &dyn LeaseStore, holder: &str, starts: &[RunStart]) -> Vec<i64> {
    let answered = store.start_runs(holder, starts).await.expect("start_runs");
    answered.into_iter().map(|run| run.seq).collect()
}

pub async fn schedule_writes_are_fenced<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    assert_eq!(
        store
            .plan("a", &[plan(&a, NextDue::At(1000))])
            .await
            .unwrap(),
        ["k"]
    );
    // Another holder, or another epoch of the holder: nothing is written.
    let b_claims = Plan {
        key: "k".to_owned(),
        epoch: a.epoch,
        next_due: NextDue::At(2000),
        only_if_unset: false,
    };
    assert!(store.plan("b", &[b_claims]).await.unwrap().is_empty());
    let later_epoch = Lease {
        epoch: a.epoch + 1,
        ..a.clone()
    };
    let plans = [plan(&later_epoch, NextDue::At(2000))];
    assert!(store.plan("a", &plans).await.unwrap().is_empty());
    assert!(started(store, "a", &[start(&later_epoch)]).await.is_empty());
    assert_eq!(record(store, "k").await.next_due_ms, Some(1000));
    assert_eq!(started(store, "a", &[start(&a)]).await, [1]);

    // After a handover, the old epoch's writes are all rejected and change nothing.
    store.release("a", &[a.to_ref()]).await.unwrap();
    let b = acquire_one(store, "b", "k", LONG).await.unwrap();
    let before = record(store, "k").await;
    assert!(
        store
            .plan("a", &[plan(&a, NextDue::At(5))])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started(store, "a", &[start(&a)]).await.is_empty());
    let stale_end = end(&a, 1, RunResult::Succeeded);
    assert!(store.end_runs("a", &[stale_end]).await.unwrap().is_empty());
    let after = record(store, "k").await;
    assert_eq!(
        (after.next_due_ms, &after.last_run),
        (before.next_due_ms, &before.last_run)
    );
    // The new holder writes the record, but a run started under another epoch is not its own.
    let b_end = end(&b, 1, RunResult::Succeeded);
    assert_eq!(store.end_runs("b", &[b_end]).await.unwrap(), ["k"]);
    assert_eq!(record(store, "k").await.last_run.unwrap().ended_ms, None);

    // An expired lease writes nothing, and creates no record.
    let x = acquire_one(store, "a", "x", SHORT).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert!(
        store
            .plan("a", &[plan(&x, NextDue::At(5))])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started(store, "a", &[start(&x)]).await.is_empty());
    assert!(store.schedules(&keys(&["x"])).await.unwrap().is_empty());
}

pub async fn starts_are_durable_and_a_pause_holds_them_back<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    let store = ready(&*backend, &prefix).await;
    let operator = backend.open(&prefix).await;
    let (store, operator) = (&*store, &*operator);
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    let first = store.start_runs("a", &[start(&a)]).await.unwrap();
    assert_eq!(first.len(), 1);
    // The start is in the store, as any replica reads it.
    let seen = record(operator, "k").await;
    let run = seen.last_run.clone().expect("the started run");
    assert_eq!(
        (run.seq, run.holder.as_str(), run.epoch, run.scheduled_ms),
        (first[0].seq, "a", a.epoch, 1_000_000)
    );
    assert_eq!(run.started_ms, first[0].started_ms);
    assert_eq!(
        (run.ended_ms, run.outcome, run.triggered),
        (None, None, false)
    );
    assert!(run.started_ms <= seen.read_at_ms);

    // Paused: no start, not even a triggered one without a pending trigger.
    let paused = operator.pause("k", "ops").await.unwrap();
    let mark = paused.paused.clone().expect("paused");
    assert_eq!(mark.by, "ops");
    let again = operator.pause("k", "someone-else").await.unwrap();
    assert_eq!(
        again.paused,
        Some(mark.clone()),
        "the first pause mark is kept"
    );
    assert!(started(store, "a", &[start(&a)]).await.is_empty());
    assert!(started(store, "a", &[triggered(&a)]).await.is_empty());

    // A trigger lets one triggered start through, and is cleared by it; the pause stays.
    let asked = operator.trigger("k", "ops-2").await.unwrap();
    assert_eq!(asked.trigger.as_ref().map(|t| t.by.as_str()), Some("ops-2"));
    assert!(started(store, "a", &[start(&a)]).await.is_empty());
    assert_eq!(started(store, "a", &[triggered(&a)]).await, [2]);
    let now = record(operator, "k").await;
    assert_eq!((now.trigger, now.paused), (None, Some(mark)));
    assert!(now.last_run.unwrap().triggered);
    assert!(started(store, "a", &[triggered(&a)]).await.is_empty());

    // Resumed: scheduled starts again. An unpaused trigger waits for a triggered start.
    assert_eq!(operator.resume("k", "ops").await.unwrap().paused, None);
    assert_eq!(started(store, "a", &[start(&a)]).await, [3]);
    operator.trigger("k", "ops").await.unwrap();
    assert_eq!(started(store, "a", &[start(&a)]).await, [4]);
    assert!(record(operator, "k").await.trigger.is_some());
    assert_eq!(started(store, "a", &[triggered(&a)]).await, [5]);
    assert_eq!(record(operator, "k").await.trigger, None);
    // Resuming a running key is harmless.
    assert_eq!(operator.resume("k", "ops").await.unwrap().paused, None);
}

pub async fn next_due_is_worked_out_by_the_store_clock<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    store
        .plan("a", &[plan(&a, NextDue::Unchanged)])
        .await
        .unwrap();
    let fresh = record(store, "k").await;
    assert_eq!((fresh.next_due_ms, fresh.anchor_ms), (None, None));
    // Each write returns the store times before and after it.
    let write = |due: NextDue| {
        let a = a.clone();
        async move {
            let before = record(store, "k").await.read_at_ms;
            assert_eq!(store.plan("a", &[plan(&a, due)]).await.unwrap(), ["k"]);
            let after = record(store, "k").await;
            (before, after)
        }
    };

    let (before, after) = write(NextDue::At(123_456)).await;
    assert_eq!(after.next_due_ms, Some(123_456), "at {before}");

    let (before, after) = write(NextDue::After(Duration::from_secs(10))).await;
    let due = after.next_due_ms.unwrap();
    assert!(
        before + 10_000 <= due && due <= after.read_at_ms + 10_000,
        "{before} + 10 s <= {due} <= {} + 10 s",
        after.read_at_ms
    );

    let (_, after) = write(NextDue::Unchanged).await;
    assert_eq!(after.next_due_ms, Some(due));

    // On the grid: the first point strictly after the store's clock, the anchor set once.
    let anchor = before - 3_500;
    let grid = |anchor_ms| NextDue::OnGrid {
        anchor_ms,
        interval: Duration::from_secs(1),
    };
    let (before, after) = write(grid(anchor)).await;
    let due = after.next_due_ms.unwrap();
    assert_eq!(after.anchor_ms, Some(anchor));
    assert_eq!(
        (due - anchor) % 1000,
        0,
        "{due} is on the grid from {anchor}"
    );
    assert!(
        before < due && due <= after.read_at_ms + 1000,
        "{before} < {due}"
    );
    let (_, after) = write(grid(anchor - 200)).await;
    assert_eq!(after.anchor_ms, Some(anchor), "the anchor is set once");
    assert_eq!((after.next_due_ms.unwrap() - anchor) % 1000, 0);

    // A grid whose anchor is still ahead starts at the anchor.
    let f = acquire_one(store, "a", "future", LONG).await.unwrap();
    let ahead = after.read_at_ms + 60_000;
    store.plan("a", &[plan(&f, grid(ahead))]).await.unwrap();
    assert_eq!(record(store, "future").await.next_due_ms, Some(ahead));

    // Starts and ends set it too.
    let before = record(store, "k").await.read_at_ms;
    store.start_runs("a", &[start(&a)]).await.unwrap();
    let due = record(store, "k").await.next_due_ms.unwrap();
    assert!(due >= before + HOUR.as_millis() as i64, "{due}");
    let fixed_delay = RunEnd {
        next_due: NextDue::After(Duration::from_secs(5)),
        ..end(&a, 1, RunResult::Succeeded)
    };
    store.end_runs("a", &[fixed_delay]).await.unwrap();
    let after = record(store, "k").await;
    let ended = after.last_run.unwrap().ended_ms.unwrap();
    assert_eq!(after.next_due_ms, Some(ended + 5_000));
}

pub async fn plan_only_if_unset_writes_once<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    let first_ever = |at| Plan {
        only_if_unset: true,
        ..plan(&a, NextDue::At(at))
    };
    assert_eq!(store.plan("a", &[first_ever(1_000)]).await.unwrap(), ["k"]);
    assert!(
        store
            .plan("a", &[first_ever(2_000)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(record(store, "k").await.next_due_ms, Some(1_000));
    assert_eq!(
        store
            .plan("a", &[plan(&a, NextDue::At(3_000))])
            .await
            .unwrap(),
        ["k"]
    );
    assert_eq!(record(store, "k").await.next_due_ms, Some(3_000));
    // A mixed batch writes only what it may, answered sorted.
    let b = acquire_one(store, "a", "b", LONG).await.unwrap();
    let batch = [
        first_ever(4_000),
        Plan {
            only_if_unset: true,
            ..plan(&b, NextDue::At(5_000))
        },
    ];
    assert_eq!(store.plan("a", &batch).await.unwrap(), ["b"]);
    assert!(store.plan("a", &[]).await.unwrap().is_empty());
}

pub async fn history_is_newest_first_and_bounded<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    let keep = |history_limit| RunStart {
        history_limit,
        ..start(&a)
    };
    for _ in 0..5 {
        store.start_runs("a", &[keep(3)]).await.unwrap();
    }
    assert_eq!(seqs(store, "k", 10).await, [5, 4, 3]);
    assert_eq!(seqs(store, "k", 2).await, [5, 4]);
    store.start_runs("a", &[keep(1)]).await.unwrap();
    assert_eq!(seqs(store, "k", 10).await, [6]);
    store.start_runs("a", &[keep(100)]).await.unwrap();
    assert_eq!(seqs(store, "k", 100_000).await, [7, 6]);
    // An end of a run no longer kept still writes the record.
    assert_eq!(
        store
            .end_runs("a", &[end(&a, 3, RunResult::Failed)])
            .await
            .unwrap(),
        ["k"]
    );
    assert_eq!(seqs(store, "k", 10).await, [7, 6]);
}

pub async fn ends_are_recorded_with_error_text_capped<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    let outcomes = [
        RunResult::Succeeded,
        RunResult::Failed,
        RunResult::Panicked,
        RunResult::TimedOut,
        RunResult::Cancelled,
    ];
    for outcome in outcomes {
        let run = store.start_runs("a", &[start(&a)]).await.unwrap().remove(0);
        let ending = RunEnd {
            attempts: 3,
            error: (outcome != RunResult::Succeeded).then(|| format!("{outcome:?}: boom")),
            ..end(&a, run.seq, outcome)
        };
        assert_eq!(store.end_runs("a", &[ending]).await.unwrap(), ["k"]);
    }
    let history = store.history("k", 10).await.unwrap();
    let ended: Vec<_> = history.iter().rev().map(|run| run.outcome).collect();
    assert_eq!(ended, outcomes.map(Some));
    for run in &history {
        assert!(run.ended_ms.unwrap() >= run.started_ms, "{run:?}");
        assert_eq!(run.attempts, 3);
    }
    assert_eq!(history[0].error.as_deref(), Some("Cancelled: boom"));
    assert_eq!(history[4].error, None);

    // A long error is cut at a character boundary, and says it was cut.
    let run = store.start_runs("a", &[start(&a)]).await.unwrap().remove(0);
    let long = RunEnd {
        error: Some("é".repeat(MAX_ERROR_LEN)),
        ..end(&a, run.seq, RunResult::Failed)
    };
    store.end_runs("a", &[long]).await.unwrap();
    let kept = store
        .history("k", 1)
        .await
        .unwrap()
        .remove(0)
        .error
        .unwrap();
    assert!(
        kept.len() <= MAX_ERROR_LEN && kept.len() > MAX_ERROR_LEN - 8,
        "{}",
        kept.len()
    );
    assert!(kept.ends_with('…') && kept.trim_end_matches('…').chars().all(|c| c == 'é'));
}

pub async fn unknown_keys_are_named<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let unknown = |result: Result<(), StoreError>| match result {
        Err(StoreError::UnknownKey { key }) => assert_eq!(key, "nope"),
        other => panic!("expected UnknownKey naming nope, got {other:?}"),
    };
    unknown(store.pause("nope", "ops").await.map(drop));
    unknown(store.resume("nope", "ops").await.map(drop));
    unknown(store.trigger("nope", "ops").await.map(drop));
    unknown(store.history("nope", 10).await.map(drop));
    // A lease alone is no record either.
    acquire_one(store, "a", "nope", LONG).await.unwrap();
    unknown(store.pause("nope", "ops").await.map(drop));
    assert!(store.schedules(&keys(&["nope"])).await.unwrap().is_empty());

    let a = acquire_one(store, "a", "job#1", LONG).await.unwrap();
    let b = acquire_one(store, "a", "job#0", LONG).await.unwrap();
    let other = acquire_one(store, "a", "other", LONG).await.unwrap();
    let plans = [
        plan(&a, NextDue::Unchanged),
        plan(&b, NextDue::Unchanged),
        plan(&other, NextDue::Unchanged),
    ];
    store.plan("a", &plans).await.unwrap();
    let listed = |prefix: &'static str| async move {
        let records = store.list_schedules(prefix).await.unwrap();
        records.into_iter().map(|r| r.key).collect::<Vec<_>>()
    };
    assert_eq!(listed("job#").await, ["job#0", "job#1"]);
    assert_eq!(listed("").await, ["job#0", "job#1", "other"]);
    let read = store
        .schedules(&keys(&["other", "nope", "job#1"]))
        .await
        .unwrap();
    assert_eq!(
        read.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["job#1", "other"]
    );
    assert_eq!(store.history("job#1", 10).await.unwrap(), []);
}

pub async fn schedule_batches_of_1000<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let batch: Vec<String> = (0..1000).map(|i| format!("many/{i:04}")).collect();
    let mut held = store.try_acquire("a", &batch, LONG).await.unwrap();
    assert_eq!(held.len(), 1000);
    // Given in reverse, answered sorted.
    held.reverse();
    let plans: Vec<Plan> = held.iter().map(|l| plan(l, NextDue::At(7))).collect();
    assert_eq!(store.plan("a", &plans).await.unwrap(), batch);
    let starts: Vec<RunStart> = held.iter().map(start).collect();
    let runs = store.start_runs("a", &starts).await.unwrap();
    let started: Vec<_> = runs.iter().map(|run| run.key.clone()).collect();
    assert_eq!(started, batch);
    assert!(runs.iter().all(|run| run.seq == 1));
    let ends: Vec<RunEnd> = held
        .iter()
        .map(|l| end(l, 1, RunResult::Succeeded))
        .collect();
    assert_eq!(store.end_runs("a", &ends).await.unwrap(), batch);
    let records = store.schedules(&batch).await.unwrap();
    assert_eq!(records.len(), 1000);
    assert!(records.iter().all(|r| {
        let run = r.last_run.as_ref().unwrap();
        run.outcome == Some(RunResult::Succeeded) && run.ended_ms.is_some()
    }));
    assert_eq!(store.list_schedules("many/").await.unwrap().len(), 1000);
}

pub async fn commands_are_notified_where_supported<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let holder = backend.open(&prefix).await;
    let Some(mut notices) = holder.release_notifications() else {
        eprintln!("{}: no notifications; holders poll", backend.name());
        return;
    };
    let a = acquire_one(&*store, "a", "k", LONG).await.unwrap();
    store.start_runs("a", &[start(&a)]).await.unwrap();
    // The subscription may start listening asynchronously: command until a notice arrives.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            store.pause("k", "ops").await.unwrap();
            let wait = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match notices.recv().await {
                        Some(ReleaseNotice::Commanded(key)) => return key,
                        Some(_) => continue,
                        None => panic!("notifications closed"),
                    }
                }
            });
            if let Ok(key) = wait.await {
                return key;
            }
            store.resume("k", "ops").await.unwrap();
        }
    })
    .await
    .expect("a command notice within 10 s");
    assert_eq!(heard, "k");
    // Each command is heard: resume, then trigger.
    for command in ["resume", "trigger"] {
        match command {
            "resume" => store.resume("k", "ops").await.map(drop),
            _ => store.trigger("k", "ops").await.map(drop),
        }
        .unwrap();
        let key = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(ReleaseNotice::Commanded(key)) = notices.recv().await {
                    return key;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no notice of {command}"));
        assert_eq!(key, "k");
    }
}

pub async fn initialise_migrates_the_previous_schema<B: Backend>(backend: Arc<B>, prefix: String) {
    if !backend.previous_schema(&prefix).await {
        eprintln!(
            "{}: no schema to migrate; case not applicable",
            backend.name()
        );
        return;
    }
    // Many replicas start the new version at once on the old tables.
    let mut starts = JoinSet::new();
    for _ in 0..4 {
        let store = backend.open(&prefix).await;
        starts.spawn(async move { store.initialise().await });
    }
    while let Some(started) = starts.join_next().await {
        started
            .unwrap()
            .expect("concurrent initialise on the previous schema");
    }
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    // The old lease rows are kept, and their keys go on with higher epochs and records.
    let old = store.list("old").await.unwrap().remove(0).lease;
    assert_eq!((old.holder.as_str(), old.epoch), ("a", 5));
    let a = acquire_one(store, "a", "old", LONG).await.unwrap();
    assert_eq!(a.epoch, 6);
    assert_eq!(started(store, "a", &[start(&a)]).await, [1]);
    assert_eq!(store.pause("old", "ops").await.unwrap().key, "old");
    assert_eq!(seqs(store, "old", 10).await, [1]);
}

pub async fn bad_schedule_rows_are_errors_naming_the_key<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let rows = [
        ("newer", RecordCorruption::NewerFormat),
        ("outcome", RecordCorruption::UnknownOutcome),
        ("epoch", RecordCorruption::NegativeRunEpoch),
        ("ended", RecordCorruption::EndedBeforeStart),
    ];
    if !backend.corrupt_schedules(&prefix, &rows).await {
        eprintln!(
            "{}: bad schedule rows cannot exist; case not applicable",
            backend.name()
        );
        return;
    }
    let names = |result: Result<(), StoreError>, key: &str| match result {
        Err(StoreError::NewerRecord { key: named, .. }) if key == "newer" => {
            assert_eq!(named, key)
        }
        Err(StoreError::Corrupted { key: named, .. }) if key != "newer" => {
            assert_eq!(named, key)
        }
        other => panic!("expected an error naming {key}, got {other:?}"),
    };
    for (key, _) in rows {
        names(store.schedules(&keys(&[key])).await.map(drop), key);
        names(store.list_schedules(key).await.map(drop), key);
        names(store.history(key, 10).await.map(drop), key);
    }
    // A newer record is changed neither by operators nor by this build's holders.
    names(store.trigger("newer", "ops").await.map(drop), "newer");
    names(store.pause("newer", "ops").await.map(drop), "newer");
    let lease = acquire_one(store, "a", "newer", LONG).await.unwrap();
    names(
        store.start_runs("a", &[start(&lease)]).await.map(drop),
        "newer",
    );
    names(
        store
            .plan("a", &[plan(&lease, NextDue::At(1))])
            .await
            .map(drop),
        "newer",
    );
    let ending = end(&lease, 1, RunResult::Failed);
    names(store.end_runs("a", &[ending]).await.map(drop), "newer");
    // A bad record does not keep its key from being won; it comes without it (`schedules`
    // names the problem).
    let acquired = store
        .try_acquire_with_records("b", &keys(&["outcome"]), LONG, Duration::ZERO)
        .await
        .expect("a key with a bad record is acquired");
    assert_eq!(acquired.leases.len(), 1);
    assert!(acquired.records.is_empty(), "{acquired:?}");
    // Healthy keys beside them still work.
    let good = acquire_one(store, "a", "good", LONG).await.unwrap();
    assert_eq!(started(store, "a", &[start(&good)]).await, [1]);
}

pub async fn schedule_input_is_checked<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    let ok = acquire_one(store, "a", "ok", LONG).await.unwrap();
    let invalid = |result: Result<(), StoreError>, what: &str| match result {
        Err(StoreError::InvalidInput { .. }) => {}
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    };
    for history_limit in [0, 100_001] {
        let starts = [
            start(&ok),
            RunStart {
                history_limit,
                ..start(&a)
            },
        ];
        invalid(
            store.start_runs("a", &starts).await.map(drop),
            "history limit",
        );
    }
    invalid(store.history("k", 0).await.map(drop), "history(0)");
    invalid(
        store.history("k", 100_001).await.map(drop),
        "history(100001)",
    );
    let zero_grid = NextDue::OnGrid {
        anchor_ms: 0,
        interval: Duration::ZERO,
    };
    for due in [zero_grid, NextDue::At(-1)] {
        invalid(
            store.plan("a", &[plan(&a, due)]).await.map(drop),
            "next due",
        );
    }
    invalid(
        store
            .start_runs("a", &[start(&a), start(&a)])
            .await
            .map(drop),
        "a key twice",
    );
    invalid(store.start_runs("", &[start(&a)]).await.map(drop), "holder");
    invalid(store.pause("k", "").await.map(drop), "by");
    invalid(store.trigger("", "ops").await.map(drop), "key");
    // A refused batch wrote nothing.
    assert!(
        store
            .schedules(&keys(&["ok", "k"]))
            .await
            .unwrap()
            .is_empty()
    );
    // Empty batches are nothing to do.
    assert!(store.start_runs("a", &[]).await.unwrap().is_empty());
    assert!(store.end_runs("a", &[]).await.unwrap().is_empty());
    assert!(store.schedules(&[]).await.unwrap().is_empty());
}

/// 16 holders on four replicas compete for one key for a while, each starting runs while it
/// holds the lease and trying again after its lease expired. Every start after expiry is
/// refused, and the history, read by sequence number, has the epochs in order: a write from an
/// older epoch never lands after a newer epoch's.
pub async fn starts_under_contention_follow_the_epochs<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    const TTL: Duration = Duration::from_millis(300);
    const RUN: Duration = Duration::from_millis(2500);
    let first = ready(&*backend, &prefix).await;
    let mut replicas = vec![first.clone()];
    for _ in 1..4 {
        replicas.push(backend.open(&prefix).await);
    }
    let deadline = tokio::time::Instant::now() + RUN;
    let mut tasks = JoinSet::new();
    for c in 0..16 {
        let store = replicas[c % replicas.len()].clone();
        tasks.spawn(async move {
            let holder = format!("c{c}");
            let mut started = 0;
            while tokio::time::Instant::now() < deadline {
                let Some(lease) = acquire_one(&*store, &holder, "contested", TTL).await else {
                    tokio::time::sleep(Duration::from_millis(5 + fastrand::u64(0..20))).await;
                    continue;
                };
                let starts = [RunStart {
                    history_limit: 100_000,
                    ..start(&lease)
                }];
                for _ in 0..fastrand::usize(1..3) {
                    started += store.start_runs(&holder, &starts).await.unwrap().len();
                    tokio::time::sleep(TTL / 5).await;
                }
                tokio::time::sleep(TTL + Duration::from_millis(50)).await;
                let late = store.start_runs(&holder, &starts).await.unwrap();
                assert!(late.is_empty(), "{holder} started after its lease expired");
            }
            started
        });
    }
    let mut started = 0;
    while let Some(count) = tasks.join_next().await {
        started += count.unwrap();
    }
    let history = first.history("contested", 100_000).await.unwrap();
    assert_eq!(
        history.len(),
        started,
        "every answered start is in the history"
    );
    assert!(started >= 3, "too little progress: {started} starts");
    for pair in history.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        assert!(newer.seq > older.seq);
        assert!(
            newer.epoch >= older.epoch,
            "run {} at epoch {} after run {} at epoch {}",
            newer.seq,
            newer.epoch,
            older.seq,
            older.epoch
        );
        assert!(newer.started_ms >= older.started_ms);
    }
}

/// `try_acquire_with_records` answers, beside the leases won, records of those keys only, each
/// as `schedules` reads it; a store may answer none (the elector then reads them), but the
/// etcd store reads them in the acquisition's own round trip and must answer them.
pub async fn records_come_with_an_acquisition_as_schedules_reads_them<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let a = acquire_one(store, "a", "k", LONG).await.unwrap();
    let mut planned = start(&a);
    planned.next_due = NextDue::After(HOUR);
    assert_eq!(started(store, "a", &[planned]).await, [1]);
    store.release("a", &[a.to_ref()]).await.unwrap();
    acquire_one(store, "c", "held", LONG).await.unwrap();

    let wanted = keys(&["held", "k", "new"]);
    let acquired = store
        .try_acquire_with_records("b", &wanted, LONG, Duration::ZERO)
        .await
        .unwrap();
    let won: Vec<&str> = acquired.leases.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(won, ["k", "new"]);
    // "new" has no record; "k" has the one a left.
    let answered: Vec<&str> = acquired.records.iter().map(|r| r.key.as_str()).collect();
    if backend.name() == "etcd" {
        assert_eq!(answered, ["k"]);
    }
    assert!(answered.iter().all(|key| *key == "k"), "{answered:?}");
    for with_lease in &acquired.records {
        let read = record(store, &with_lease.key).await;
        assert!(with_lease.read_at_ms <= read.read_at_ms);
        assert_eq!(
            ScheduleRecord {
                read_at_ms: read.read_at_ms,
                ..with_lease.clone()
            },
            read
        );
    }

    // A holder that wins nothing is answered no record.
    let lost = store
        .try_acquire_with_records("d", &keys(&["k"]), LONG, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(lost, Acquired::default());
}
