//! What only the SQLite store must show: stores that share a database file hear each other's
//! releases and operator commands through the release bell (Unix datagram sockets in
//! `<file>-loopjob/`), only for their own tables; a socket left by a process that died is
//! removed; an in-memory database has no bell, so its followers poll.
#![cfg(all(feature = "sqlite", unix))]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use loopjob::store::{
    Lease, LeaseStore, NextDue, Plan, ReleaseNotice, ReleaseNotifications, SqliteStore,
    StoreOptions,
};

const LONG: Duration = Duration::from_secs(60);

/// A database file in a fresh directory, removed with everything beside it at the end.
struct Database {
    dir: PathBuf,
}

impl Database {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ljbell-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Database { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("jobs.db")
    }

    fn bell_dir(&self) -> PathBuf {
        self.dir.join("jobs.db-loopjob")
    }

    async fn open(&self, prefix: &str) -> Arc<dyn LeaseStore> {
        let url = format!("sqlite://{}", self.file().display());
        let options = StoreOptions::default().table_prefix(prefix);
        let store = Arc::new(SqliteStore::connect_lazy(&url, options).unwrap());
        store.initialise().await.unwrap();
        store
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next notice, within a second.
async fn next(notices: &mut ReleaseNotifications) -> Option<ReleaseNotice> {
    tokio::time::timeout(Duration::from_secs(1), notices.recv())
        .await
        .ok()
        .flatten()
}

/// Takes `key` for `holder` and releases it; answers the lease it held.
async fn take_and_release(store: &dyn LeaseStore, holder: &str, key: &str) -> Lease {
    let lease = store
        .try_acquire(holder, &[key.to_owned()], LONG)
        .await
        .unwrap()
        .remove(0);
    store.release(holder, &[lease.to_ref()]).await.unwrap();
    lease
}

fn sockets(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

#[tokio::test]
async fn a_follower_hears_a_release_and_a_holder_hears_commands_from_another_store() {
    let database = Database::new("hears");
    let leader = database.open("app_").await;
    let follower = database.open("app_").await;
    let mut notices = follower
        .release_notifications()
        .expect("a store on a database file has release notifications");

    let lease = take_and_release(&*leader, "n1", "global").await;
    assert_eq!(
        next(&mut notices).await,
        Some(ReleaseNotice::Released("global".to_owned()))
    );
    let won = follower
        .try_acquire("n2", &["global".to_owned()], LONG)
        .await
        .unwrap();
    assert_eq!(won.len(), 1, "the released lease is free at once");

    // A release of a lease not held (here: at an old epoch) changes nothing and rings nothing.
    leader.release("n1", &[lease.to_ref()]).await.unwrap();
    assert_eq!(next(&mut notices).await, None);

    // Operator commands from a third store reach the holder's.
    let plan = Plan {
        key: "global".to_owned(),
        epoch: won[0].epoch,
        next_due: NextDue::After(LONG),
        only_if_unset: true,
    };
    follower.plan("n2", &[plan]).await.unwrap();
    let operator = database.open("app_").await;
    operator.pause("global", "ops").await.unwrap();
    operator.trigger("global", "ops").await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            next(&mut notices).await,
            Some(ReleaseNotice::Commanded("global".to_owned()))
        );
    }
}

#[tokio::test]
async fn stores_with_other_tables_in_the_same_file_do_not_hear_each_other() {
    let database = Database::new("tables");
    let ours = database.open("ours_").await;
    let theirs = database.open("theirs_").await;
    let mut notices = ours.release_notifications().unwrap();
    take_and_release(&*theirs, "n1", "global").await;
    assert_eq!(next(&mut notices).await, None);
}

#[tokio::test]
async fn a_socket_left_by_a_dead_process_is_removed_and_the_store_drops_its_own() {
    let database = Database::new("stale");
    let store = database.open("app_").await;
    let listener = database.open("app_").await;
    let mut notices = listener.release_notifications().unwrap();
    assert_eq!(sockets(&database.bell_dir()), 1);

    // What a killed process leaves: a socket file nobody listens on.
    let dead = database.bell_dir().join("00000000dead0000");
    drop(std::os::unix::net::UnixDatagram::bind(&dead).unwrap());
    assert_eq!(sockets(&database.bell_dir()), 2);

    take_and_release(&*store, "n1", "k").await;
    assert_eq!(
        next(&mut notices).await,
        Some(ReleaseNotice::Released("k".to_owned())),
        "the live listener still hears it"
    );
    assert!(!dead.exists(), "the dead socket was removed");

    drop(notices);
    drop(listener);
    // The listener's task removes its socket once the store is gone.
    tokio::time::timeout(Duration::from_secs(5), async {
        while sockets(&database.bell_dir()) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the dropped store's socket is removed");
}

#[tokio::test]
async fn an_in_memory_database_has_no_bell() {
    let store = SqliteStore::connect_lazy("sqlite::memory:", StoreOptions::default()).unwrap();
    store.initialise().await.unwrap();
    assert!(store.release_notifications().is_none());
}

#[tokio::test]
async fn a_bell_that_cannot_be_made_leaves_followers_to_poll_and_releases_work() {
    let database = Database::new("nodir");
    // Something that is not a directory where the bell's directory would be.
    std::fs::write(database.bell_dir(), b"").unwrap();
    let store = database.open("app_").await;
    let follower = database.open("app_").await;
    assert!(follower.release_notifications().is_none());
    take_and_release(&*store, "n1", "k").await;
    let won = follower
        .try_acquire("n2", &["k".to_owned()], LONG)
        .await
        .unwrap();
    assert_eq!(won.len(), 1, "the release was committed");
}
