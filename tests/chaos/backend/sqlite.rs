//! SQLite: one file shared by every node on this host. Its store-wide fault is another process
//! holding the file's write lock.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use fastrand::Rng;
use sqlx::Connection;

use super::Backend;
use crate::clock::mono_ns;
use crate::faults::Kind;

pub struct Sqlite {
    pub path: PathBuf,
}

impl Sqlite {
    /// A fresh file in memory-backed `/dev/shm` where there is one (else under the test's
    /// temporary directory): the suite tests locking between processes, not the disk, and on
    /// a host whose disk other work keeps busy, every commit's fsync (`synchronous = FULL`)
    /// stalled all the nodes' writes for seconds at a time.
    pub fn new(name: &str) -> Sqlite {
        let path = super::scratch().join(format!("loopjob-{name}.db"));
        let sqlite = Sqlite { path };
        sqlite.remove_files();
        sqlite
    }

    fn remove_files(&self) {
        crate::sqlite_file::remove(&self.path);
    }
}

#[async_trait]
impl Backend for Sqlite {
    fn label(&self) -> &'static str {
        "sqlite"
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn proxied(&self) -> bool {
        false
    }

    /// SQLite's `now` is the wall clock of the process that asks: a node with a skewed clock
    /// would be a store with a clock of its own per node, which one host cannot have.
    fn own_clock(&self) -> bool {
        false
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Kill, Kind::Stop, Kind::DbLock]
    }

    /// Takes the file's write lock (`BEGIN IMMEDIATE`) from this process for `length`.
    async fn store_fault(&self, kind: Kind, length: Duration, _rng: &mut Rng) -> (u64, u64) {
        assert_eq!(
            kind,
            Kind::DbLock,
            "SQLite's own fault is the held write lock"
        );
        let mut conn = sqlx::sqlite::SqliteConnection::connect(&self.url())
            .await
            .expect("open the SQLite store file");
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await
            .expect("set busy timeout");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        let start = mono_ns();
        tokio::time::sleep(length).await;
        let end = mono_ns();
        sqlx::query("ROLLBACK")
            .execute(&mut conn)
            .await
            .expect("release the write lock");
        (start, end)
    }

    async fn clean_up(&self, _prefix: &str) {
        self.remove_files();
    }
}
