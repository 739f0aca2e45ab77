//! The cases every lease store must pass. Nothing here knows which backend it runs against.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loopjob::store::{Lease, LeaseRef, LeaseStore, MAX_NAME_LEN, ReleaseNotice, StoreError};
use tokio::task::JoinSet;

use crate::backends::{Backend, Corruption};
use crate::schedule::*;

/// Long enough never to expire during a case, however loaded the machine.
pub const LONG: Duration = Duration::from_secs(60);
/// Short enough to wait out, long enough that a loaded machine (CI runs four backends side by
/// side on two cores) does not outlive it between two statements; cases that use it sleep
/// [`PAST_SHORT`] to be sure it passed.
pub const SHORT: Duration = Duration::from_secs(1);
pub const PAST_SHORT: Duration = Duration::from_millis(1500);

type Case<B> = fn(Arc<B>, String) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        fn all_cases<B: Backend>() -> Vec<(&'static str, Case<B>)> {
            vec![$((stringify!($name), |backend, prefix| Box::pin($name(backend, prefix)))),*]
        }
    };
}

cases!(
    acquire_free_expired_others_and_own,
    epochs_increase_across_holders_releases_and_expiries,
    renew_keeps_only_matching_unexpired_leases,
    release_lets_another_holder_acquire_at_once,
    batches_of_1_100_and_1000,
    contenders_never_overlap,
    first_acquisitions_of_a_new_key_race_without_errors,
    membership_appears_and_expires,
    corrupted_rows_are_errors_naming_the_key,
    list_by_prefix_is_literal_and_exact,
    invalid_input_is_refused,
    initialise_is_idempotent_and_concurrent,
    releases_are_notified_where_supported,
    free_for_waits_by_the_store_clock_after_a_lease_frees,
    // The cluster schedule (schedule.rs).
    schedule_writes_are_fenced,
    starts_are_durable_and_a_pause_holds_them_back,
    next_due_is_worked_out_by_the_store_clock,
    plan_only_if_unset_writes_once,
    history_is_newest_first_and_bounded,
    ends_are_recorded_with_error_text_capped,
    unknown_keys_are_named,
    schedule_batches_of_1000,
    commands_are_notified_where_supported,
    initialise_migrates_the_previous_schema,
    bad_schedule_rows_are_errors_naming_the_key,
    schedule_input_is_checked,
    starts_under_contention_follow_the_epochs,
    records_come_with_an_acquisition_as_schedules_reads_them,
);

/// Runs every case against `backend`, concurrently, each on its own table prefix, and fails
/// naming every case that failed.
pub async fn run<B: Backend>(backend: B) {
    let started = Instant::now();
    let backend = Arc::new(backend);
    let mut cases = JoinSet::new();
    // One prefix per run (its creation time and pid), after a sweep of what crashed runs left.
    let run_prefix = match backend.server_url() {
        Some(url) => crate::test_prefix::run_prefix(url, "ljt").await,
        None => crate::test_prefix::prefix_at(std::time::SystemTime::now(), "ljt"),
    };
    for (index, (name, case)) in all_cases::<B>().into_iter().enumerate() {
        let prefix = format!("{run_prefix}{index}_");
        let backend = backend.clone();
        cases.spawn(async move {
            backend.drop_tables(&prefix).await;
            let outcome = tokio::spawn(case(backend.clone(), prefix.clone())).await;
            backend.drop_tables(&prefix).await;
            (name, outcome.is_ok())
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = cases.join_next().await {
        let (name, passed) = joined.expect("case runner");
        if !passed {
            failed.push(name);
        }
    }
    eprintln!(
        "{} conformance: {} cases in {:.1?}",
        backend.name(),
        all_cases::<B>().len(),
        started.elapsed()
    );
    assert!(failed.is_empty(), "{} failed: {failed:?}", backend.name());
}

pub async fn ready<B: Backend>(backend: &B, prefix: &str) -> Arc<dyn LeaseStore> {
    let store = backend.open(prefix).await;
    store.initialise().await.expect("initialise");
    store
}

pub fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

pub async fn acquire_one(
    store: &dyn LeaseStore,
    holder: &str,
    key: &str,
    ttl: Duration,
) -> Option<Lease> {
    let mut won = store
        .try_acquire(holder, &keys(&[key]), ttl)
        .await
        .expect("try_acquire");
    assert!(won.len() <= 1, "one key, {} leases", won.len());
    won.pop()
}

async fn acquire_free_expired_others_and_own<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;

    // Free.
    let a = acquire_one(store, "a", "free", LONG)
        .await
        .expect("free key is won");
    // A key's first epoch is the backend's to choose (1 on memory and SQL; Redis starts from
    // its clock so that epochs survive a restart without persistence); then each acquisition
    // adds one.
    assert_eq!((a.key.as_str(), a.holder.as_str()), ("free", "a"));
    assert!(a.epoch >= 1, "{a:?}");
    // The store's expiry is about ttl after the store's now, which is about the local clock
    // here (same host): within a generous ten seconds.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (a.expires_at_ms - (now_ms + LONG.as_millis() as i64)).abs() < 10_000,
        "{a:?}"
    );

    // Another's, unexpired: not won.
    assert_eq!(acquire_one(store, "b", "free", LONG).await, None);

    // Own: won again with a new epoch; the old epoch is dead.
    let again = acquire_one(store, "a", "free", LONG)
        .await
        .expect("own key is won again");
    assert_eq!(again.epoch, a.epoch + 1);
    assert!(
        store
            .renew("a", &[a.to_ref()], LONG)
            .await
            .unwrap()
            .is_empty()
    );

    // Expired.
    let expiring = acquire_one(store, "a", "expiring", SHORT)
        .await
        .expect("won");
    tokio::time::sleep(PAST_SHORT).await;
    let b = acquire_one(store, "b", "expiring", LONG)
        .await
        .expect("expired key is won");
    assert_eq!((b.holder.as_str(), b.epoch), ("b", expiring.epoch + 1));

    // Mixed batch: only the free one is won, answers are sorted by key.
    let won = store
        .try_acquire("c", &keys(&["zzz", "free", "expiring", "aaa"]), LONG)
        .await
        .unwrap();
    let won: Vec<_> = won
        .iter()
        .map(|l| (l.key.as_str(), l.holder.as_str()))
        .collect();
    assert_eq!(won, [("aaa", "c"), ("zzz", "c")]);

    // An empty batch is nothing to do.
    assert!(store.try_acquire("c", &[], LONG).await.unwrap().is_empty());
}

async fn epochs_increase_across_holders_releases_and_expiries<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let mut last = 0;
    let mut check = |lease: Lease| {
        assert!(lease.epoch > last, "epoch {} after {last}", lease.epoch);
        last = lease.epoch;
        lease
    };
    let l = check(acquire_one(store, "a", "k", LONG).await.unwrap());
    store.release("a", &[l.to_ref()]).await.unwrap();
    let l = check(acquire_one(store, "b", "k", SHORT).await.unwrap());
    tokio::time::sleep(PAST_SHORT).await;
    let l2 = check(acquire_one(store, "a", "k", LONG).await.unwrap());
    // A stale holder releasing its old epoch changes nothing.
    store.release("b", &[l.to_ref()]).await.unwrap();
    assert_eq!(acquire_one(store, "b", "k", LONG).await, None);
    store.release("a", &[l2.to_ref()]).await.unwrap();
    let l = check(acquire_one(store, "a", "k", LONG).await.unwrap());
    check(acquire_one(store, "a", "k", LONG).await.unwrap());
    assert_eq!(l.epoch + 1, last);
    let listed = store.list("k").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].lease.epoch, last);
}

async fn renew_keeps_only_matching_unexpired_leases<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let held = store
        .try_acquire("a", &keys(&["k1", "k2", "k3"]), LONG)
        .await
        .unwrap();
    let short = acquire_one(store, "a", "k4", SHORT).await.unwrap();
    let others = acquire_one(store, "b", "k5", LONG).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;

    let mut asked: Vec<LeaseRef> = held.iter().map(Lease::to_ref).collect();
    asked[1].epoch += 1; // k2 at a wrong epoch
    asked.push(short.to_ref()); // k4 expired
    asked.push(others.to_ref()); // k5 is b's
    asked.push(LeaseRef::new("never", 1)); // no such row
    asked.push(held[0].to_ref()); // a duplicate
    let renewed = store.renew("a", &asked, LONG).await.unwrap();
    let names: Vec<_> = renewed.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(names, ["k1", "k3"]);
    for lease in &renewed {
        let before = held.iter().find(|h| h.key == lease.key).unwrap();
        assert_eq!((lease.holder.as_str(), lease.epoch), ("a", before.epoch));
        assert!(
            lease.expires_at_ms >= before.expires_at_ms,
            "renew moved expiry back"
        );
    }
    // An expired lease that nobody took is still not renewed: its holder must acquire again.
    assert!(
        store
            .renew("a", &[short.to_ref()], LONG)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.renew("a", &[], LONG).await.unwrap().is_empty());
    // Renewing b's lease as b works.
    assert_eq!(
        store
            .renew("b", &[others.to_ref()], LONG)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn release_lets_another_holder_acquire_at_once<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let other_replica = backend.open(&prefix).await;
    let a = acquire_one(&*store, "a", "k", LONG).await.unwrap();
    // Wrong holder or wrong epoch: no effect.
    store.release("b", &[a.to_ref()]).await.unwrap();
    store
        .release("a", &[LeaseRef::new("k", a.epoch + 1)])
        .await
        .unwrap();
    assert_eq!(acquire_one(&*other_replica, "b", "k", LONG).await, None);

    store.release("a", &[a.to_ref()]).await.unwrap();
    // Retrying a release is harmless.
    store.release("a", &[a.to_ref()]).await.unwrap();
    let status = &store.list("k").await.unwrap()[0];
    assert!(!status.is_held(), "{status:?}");
    assert!(
        store
            .renew("a", &[a.to_ref()], LONG)
            .await
            .unwrap()
            .is_empty()
    );

    let b = acquire_one(&*other_replica, "b", "k", LONG)
        .await
        .expect("released key is free at once");
    assert_eq!(b.epoch, a.epoch + 1);
    // A's late release of its old epoch does not free b's lease.
    store.release("a", &[a.to_ref()]).await.unwrap();
    assert_eq!(acquire_one(&*store, "a", "k", LONG).await, None);
    store.release("a", &[]).await.unwrap();
}

async fn batches_of_1_100_and_1000<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    for size in [1usize, 100, 1000] {
        let batch: Vec<String> = (0..size).map(|i| format!("b{size}/{i:04}")).collect();
        let won = store.try_acquire("a", &batch, LONG).await.unwrap();
        assert_eq!(won.len(), size);
        assert!(won.iter().all(|l| l.holder == "a"));
        assert!(
            store
                .try_acquire("b", &batch, LONG)
                .await
                .unwrap()
                .is_empty()
        );

        let refs: Vec<LeaseRef> = won.iter().map(Lease::to_ref).collect();
        assert_eq!(store.renew("a", &refs, LONG).await.unwrap().len(), size);
        assert_eq!(store.list(&format!("b{size}/")).await.unwrap().len(), size);

        store.release("a", &refs).await.unwrap();
        let taken = store.try_acquire("b", &batch, LONG).await.unwrap();
        assert_eq!(taken.len(), size);
        assert!(
            taken
                .iter()
                .zip(&won)
                .all(|(t, w)| t.key == w.key && t.epoch == w.epoch + 1 && t.holder == "b")
        );
        assert!(store.renew("a", &refs, LONG).await.unwrap().is_empty());
    }
}

/// 32 holders on four replicas compete for one key for a while. Each lease's validity runs from
/// its acquisition to the last expiry the store granted it (both by the store's clock: the
/// acquisition is `expires_at - ttl`); no two may overlap, and epochs must be unique.
async fn contenders_never_overlap<B: Backend>(backend: Arc<B>, prefix: String) {
    const TTL: Duration = Duration::from_millis(200);
    const RUN: Duration = Duration::from_millis(2500);
    let first = ready(&*backend, &prefix).await;
    let mut replicas = vec![first];
    for _ in 1..4 {
        replicas.push(backend.open(&prefix).await);
    }
    let deadline = tokio::time::Instant::now() + RUN;
    let mut tasks = JoinSet::new();
    for c in 0..32 {
        let store = replicas[c % replicas.len()].clone();
        tasks.spawn(async move {
            let holder = format!("c{c}");
            let mut held = Vec::new(); // (epoch, start, end) by the store's clock
            while tokio::time::Instant::now() < deadline {
                let Some(lease) = acquire_one(&*store, &holder, "contested", TTL).await else {
                    tokio::time::sleep(Duration::from_millis(5 + fastrand::u64(0..15))).await;
                    continue;
                };
                let start = lease.expires_at_ms - TTL.as_millis() as i64;
                let mut end = lease.expires_at_ms;
                for _ in 0..fastrand::usize(0..3) {
                    tokio::time::sleep(TTL / 4).await;
                    match store
                        .renew(&holder, &[lease.to_ref()], TTL)
                        .await
                        .unwrap()
                        .pop()
                    {
                        Some(renewed) => end = end.max(renewed.expires_at_ms),
                        None => break,
                    }
                }
                held.push((lease.epoch, start, end));
                // Let it expire, and give the others a chance.
                tokio::time::sleep(TTL + Duration::from_millis(fastrand::u64(0..50))).await;
            }
            held
        });
    }
    let mut all = Vec::new();
    while let Some(held) = tasks.join_next().await {
        all.extend(held.unwrap());
    }
    all.sort();
    assert!(all.len() >= 3, "too little progress: {all:?}");
    for pair in all.windows(2) {
        let ((e1, _, end1), (e2, start2, _)) = (pair[0], pair[1]);
        assert!(e2 > e1, "epoch {e1} granted twice: {all:?}");
        assert!(
            start2 >= end1,
            "epoch {e2} began at {start2} before epoch {e1} ended at {end1}"
        );
    }
}

async fn membership_appears_and_expires<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let names = |members: Vec<loopjob::store::Member>| {
        members
            .into_iter()
            .map(|m| (m.scope, m.member))
            .collect::<Vec<_>>()
    };
    let pair = |s: &str, m: &str| (s.to_owned(), m.to_owned());
    // A heartbeat answers with the live members of its scope, itself among them.
    let first = store.heartbeat("sync", "web-2", LONG).await.unwrap();
    assert_eq!(names(first), [pair("sync", "web-2")]);
    let second = store.heartbeat("sync", "web-1", LONG).await.unwrap();
    assert_eq!(
        names(second),
        [pair("sync", "web-1"), pair("sync", "web-2")]
    );
    store.heartbeat("other", "web-3", LONG).await.unwrap();
    assert_eq!(
        names(store.members("sync").await.unwrap()),
        [pair("sync", "web-1"), pair("sync", "web-2")]
    );
    // A heartbeat with a short ttl shortens the membership, which then expires. (Joining with
    // the short ttl and reading the members back raced the ttl on a loaded SQLite file.)
    store.heartbeat("sync", "web-1", SHORT).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        names(store.members("sync").await.unwrap()),
        [pair("sync", "web-2")]
    );
    // A heartbeat brings an expired member back, and repeating it is harmless.
    store.heartbeat("sync", "web-1", LONG).await.unwrap();
    assert_eq!(
        store.heartbeat("sync", "web-1", LONG).await.unwrap().len(),
        2
    );
    assert_eq!(store.members("sync").await.unwrap().len(), 2);
    assert_eq!(
        names(store.members("other").await.unwrap()),
        [pair("other", "web-3")]
    );
    assert!(store.members("nobody").await.unwrap().is_empty());

    // Names are kept byte for byte, whatever they hold: quotes, a backslash, a statement's end,
    // letters that differ only in case, trailing spaces, non-ASCII.
    let odd = ["o'k\\\"; --", "Ü-node ", "ü-node"];
    for member in odd {
        store.heartbeat("it's", member, LONG).await.unwrap();
    }
    let mut expected: Vec<_> = odd.iter().map(|member| pair("it's", member)).collect();
    expected.sort();
    assert_eq!(names(store.members("it's").await.unwrap()), expected);
}

async fn corrupted_rows_are_errors_naming_the_key<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let rows = [
        ("bad-null", Corruption::NullHolder),
        ("bad-negative", Corruption::NegativeEpoch),
    ];
    if !backend.corrupt(&prefix, &rows).await {
        eprintln!(
            "{}: corrupted rows cannot exist in this backend; case not applicable",
            backend.name()
        );
        return;
    }
    let names_key = |result: Result<Vec<Lease>, StoreError>, key: &str| match result {
        Err(StoreError::Corrupted { key: named, .. }) => assert_eq!(named, key),
        other => panic!("expected Corrupted naming {key}, got {other:?}"),
    };
    for (key, _) in rows {
        let listed = store
            .list(key)
            .await
            .map(|s| s.into_iter().map(|s| s.lease).collect());
        names_key(listed, key);
        names_key(
            store.try_acquire("a", &keys(&["good", key]), LONG).await,
            key,
        );
    }
    let err = store.list("").await.unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("bad-"), "{err}");
    // The failed acquisitions took nothing, and the store works for healthy keys.
    let good = acquire_one(store, "b", "good", LONG)
        .await
        .expect("good key untouched");
    assert_eq!(
        store
            .renew("b", &[good.to_ref()], LONG)
            .await
            .unwrap()
            .len(),
        1
    );
    store.release("b", &[good.to_ref()]).await.unwrap();
    // Renew and release never match a corrupted row.
    assert!(
        store
            .renew("someone", &[LeaseRef::new("bad-negative", 0)], LONG)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn list_by_prefix_is_literal_and_exact<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let names = [
        "a%b", "a_c", "aXb", "Job", "job", "job#1", "job ", "jöb", "z",
    ];
    store.try_acquire("h", &keys(&names), LONG).await.unwrap();
    let listed = |p: &'static str| async move {
        store
            .list(p)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.lease.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(listed("a%").await, ["a%b"]);
    assert_eq!(listed("a_").await, ["a_c"]);
    assert_eq!(listed("job").await, ["job", "job ", "job#1"]);
    assert_eq!(listed("J").await, ["Job"]);
    assert_eq!(listed("jö").await, ["jöb"]);
    assert_eq!(listed("").await.len(), names.len());
    assert!(listed("nothing").await.is_empty());
    // Case and trailing spaces make different keys.
    assert!(acquire_one(store, "other", "JOB", LONG).await.is_some());
    assert!(acquire_one(store, "other", "job  ", LONG).await.is_some());
    let status = &store.list("z").await.unwrap()[0];
    assert!(
        status.is_held() && status.remaining <= LONG && status.remaining > LONG / 2,
        "{status:?}"
    );
}

async fn invalid_input_is_refused<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let store = &*store;
    let invalid = |result: Result<(), StoreError>| match result {
        Err(StoreError::InvalidInput { .. }) => {}
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    let long = "x".repeat(MAX_NAME_LEN + 1);
    invalid(store.try_acquire("", &keys(&["k"]), LONG).await.map(drop));
    invalid(store.try_acquire("a", &keys(&[""]), LONG).await.map(drop));
    invalid(
        store
            .try_acquire("a", std::slice::from_ref(&long), LONG)
            .await
            .map(drop),
    );
    invalid(
        store
            .try_acquire("a", &keys(&["k"]), Duration::ZERO)
            .await
            .map(drop),
    );
    invalid(
        store
            .renew(&long, &[LeaseRef::new("k", 1)], LONG)
            .await
            .map(drop),
    );
    invalid(store.release("a", &[LeaseRef::new("", 1)]).await);
    invalid(store.heartbeat("", "m", LONG).await.map(drop));
    invalid(
        store
            .heartbeat("s", "m", Duration::from_secs(400 * 24 * 3600))
            .await
            .map(drop),
    );
    invalid(store.members("").await.map(drop));
    // The longest accepted names work, and an impossible epoch simply matches nothing.
    let max = "k".repeat(MAX_NAME_LEN);
    let won = store
        .try_acquire(&max, std::slice::from_ref(&max), LONG)
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    assert!(
        store
            .renew(&max, &[LeaseRef::new(&max, u64::MAX)], LONG)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.list("").await.unwrap()[0].is_held());
}

/// Replicas that start together all try to create the same new keys at once: exactly one wins
/// each key, and the others are told they lost it, never given an error (on PostgreSQL the
/// creations once collided on the epochs index, outside the insert's conflict target).
async fn first_acquisitions_of_a_new_key_race_without_errors<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    const CONTENDERS: usize = 8;
    const ROUNDS: usize = 25;
    let first = ready(&*backend, &prefix).await;
    let mut replicas = vec![first];
    for _ in 1..CONTENDERS {
        replicas.push(backend.open(&prefix).await);
    }
    for round in 0..ROUNDS {
        let fresh = keys(&[&format!("new{round}a"), &format!("new{round}b")]);
        let start = Arc::new(tokio::sync::Barrier::new(CONTENDERS));
        let mut tasks = JoinSet::new();
        for (c, store) in replicas.iter().enumerate() {
            let (store, fresh, start) = (store.clone(), fresh.clone(), start.clone());
            tasks.spawn(async move {
                start.wait().await;
                store.try_acquire(&format!("c{c}"), &fresh, LONG).await
            });
        }
        let mut winners = std::collections::HashMap::new();
        while let Some(answer) = tasks.join_next().await {
            let won = answer
                .unwrap()
                .unwrap_or_else(|error| panic!("round {round}: a racing creation failed: {error}"));
            for lease in won {
                assert!(
                    winners.insert(lease.key.clone(), lease.holder).is_none(),
                    "round {round}: {} won twice",
                    lease.key
                );
            }
        }
        assert_eq!(winners.len(), fresh.len(), "round {round}: every key won");
    }
}

async fn initialise_is_idempotent_and_concurrent<B: Backend>(backend: Arc<B>, prefix: String) {
    let mut starts = JoinSet::new();
    for _ in 0..4 {
        let store = backend.open(&prefix).await;
        starts.spawn(async move { store.initialise().await });
    }
    while let Some(started) = starts.join_next().await {
        started.unwrap().expect("concurrent initialise");
    }
    let store = ready(&*backend, &prefix).await;
    let lease = acquire_one(&*store, "a", "k", LONG).await.unwrap();
    store.initialise().await.unwrap();
    // Initialising again keeps the rows.
    assert_eq!(store.list("k").await.unwrap()[0].lease, lease);
    assert!(!store.backend().is_empty());
}

async fn releases_are_notified_where_supported<B: Backend>(backend: Arc<B>, prefix: String) {
    let store = ready(&*backend, &prefix).await;
    let follower = backend.open(&prefix).await;
    let Some(mut notices) = follower.release_notifications() else {
        eprintln!(
            "{}: no release notifications; followers poll",
            backend.name()
        );
        return;
    };
    let lease = acquire_one(&*store, "a", "notified", LONG).await.unwrap();
    // The subscription may start listening asynchronously: release until a notice arrives.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        let mut lease = lease;
        loop {
            store.release("a", &[lease.to_ref()]).await.unwrap();
            let wait = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match notices.recv().await {
                        Some(ReleaseNotice::Released(key)) => return key,
                        Some(_) => continue,
                        None => panic!("notifications closed"),
                    }
                }
            });
            if let Ok(key) = wait.await {
                return key;
            }
            lease = acquire_one(&*store, "a", "notified", LONG).await.unwrap();
        }
    })
    .await
    .expect("a release notice within 10 s");
    assert_eq!(heard, "notified");
    assert!(
        acquire_one(&*follower, "b", "notified", LONG)
            .await
            .is_some()
    );
}

async fn free_for_waits_by_the_store_clock_after_a_lease_frees<B: Backend>(
    backend: Arc<B>,
    prefix: String,
) {
    let store = ready(&*backend, &prefix).await;
    let patient = backend.open(&prefix).await;
    let take = |holder: &'static str, key: &'static str, free_for: Duration| {
        let patient = patient.clone();
        async move {
            patient
                .try_acquire_free_for(holder, &keys(&[key]), LONG, free_for)
                .await
                .expect("try_acquire_free_for")
        }
    };
    // A key never held, and one's own key, are taken at once whatever the wait.
    let new = take("b", "new", LONG).await;
    assert_eq!(new.len(), 1);
    assert_eq!(take("b", "new", LONG).await[0].epoch, new[0].epoch + 1);

    // Released just now: free, but not for long enough.
    let a = acquire_one(&*store, "a", "k", LONG).await.unwrap();
    store.release("a", &[a.to_ref()]).await.unwrap();
    assert!(take("b", "k", LONG).await.is_empty(), "freed too recently");
    // Expired or released SHORT ago (by the store's clock): a wait of SHORT is met.
    tokio::time::sleep(PAST_SHORT).await;
    assert!(
        take("b", "k", LONG).await.is_empty(),
        "still not free for a minute"
    );
    let b = take("b", "k", SHORT).await;
    assert_eq!(b.len(), 1, "free for longer than SHORT");
    assert_eq!(b[0].epoch, a.epoch + 1);

    // The same holds for a lease that expired instead of being released.
    let c = acquire_one(&*store, "c", "x", SHORT).await.unwrap();
    assert!(take("d", "x", LONG).await.is_empty());
    tokio::time::sleep(PAST_SHORT + SHORT).await;
    let d = take("d", "x", Duration::from_millis(100)).await;
    assert_eq!(d.first().map(|lease| lease.epoch), Some(c.epoch + 1));
}
