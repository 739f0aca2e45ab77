//! The error every lease store call returns.

use std::error::Error;
use std::time::Duration;

/// What went wrong in a lease store call, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL names no backend this build can open.
    #[error("cannot open lease store `{url}`: {problem}; this build supports {supported}")]
    UnsupportedUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// Why it cannot be opened.
        problem: String,
        /// The URL forms this build accepts.
        supported: String,
    },

    /// An argument or option is out of range; the call did nothing.
    #[error("invalid {what}: {problem}")]
    InvalidInput {
        /// Which argument or option.
        what: &'static str,
        /// What is wrong with it and what is accepted.
        problem: String,
    },

    /// The call did not finish in time; it may or may not have taken effect.
    #[error(
        "lease store {operation} did not finish within {timeout:?}; check that the database is \
         reachable and not overloaded, or raise StoreOptions::operation_timeout"
    )]
    Timeout {
        /// The store method.
        operation: &'static str,
        /// The bound that passed.
        timeout: Duration,
    },

    /// The database refused the call or could not be reached; it may or may not have taken
    /// effect.
    #[error(
        "lease store {operation} failed: {source}; check that the database is reachable, that \
         the user may read and write the lease tables, and that initialise() has run"
    )]
    Backend {
        /// The store method.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },

    /// A lease, member, schedule or run row breaks the schema's invariants. The store does not
    /// touch it.
    #[error(
        "row `{key}` in table `{table}` is corrupted: {problem}; the store will not take it over \
         or change it: repair it by hand (a lease row needs a holder and an epoch above every \
         epoch ever issued for its key; a key's schedule row may be deleted together with its \
         runs rows, which resets the key's schedule and history)"
    )]
    Corrupted {
        /// The table holding the row.
        table: String,
        /// The row's key (lossily decoded if it is not UTF-8).
        key: String,
        /// What is wrong with it.
        problem: String,
    },

    /// An operator command or a read named a key that has no schedule record: no job with that
    /// key has run against this store.
    #[error(
        "no schedule record for key `{key}` in this store: check the job name (a cluster job's \
         key is `job@group`, a partition's `job#p`) and that the job has started once"
    )]
    UnknownKey {
        /// The key asked for.
        key: String,
    },

    /// A schedule record was written by a newer version of loopjob, in a format this build does
    /// not know. The store neither reads nor changes it.
    #[error(
        "schedule record `{key}` in table `{table}` has format {format}, written by a newer \
         loopjob; this build knows format {supported} and older: run the same loopjob version on \
         every replica and tool that shares this store"
    )]
    NewerRecord {
        /// The table holding the record.
        table: String,
        /// The record's key.
        key: String,
        /// The record's format.
        format: i64,
        /// The newest format this build knows.
        supported: i64,
    },

    /// The backend does not implement this operation.
    #[error("the {backend} lease store does not support {operation}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// The store method.
        operation: &'static str,
    },

    /// A store that needs a Tokio runtime was opened outside one.
    #[error(
        "opening a lease store needs a Tokio runtime: open it from async code running on Tokio"
    )]
    NoRuntime,
}

impl StoreError {
    /// Whether retrying the same call later may succeed: true for timeouts and database errors,
    /// false for bad input, unsupported URLs and corrupted rows.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Timeout { .. } | StoreError::Backend { .. }
        )
    }

    pub(crate) fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        StoreError::InvalidInput {
            what,
            problem: problem.into(),
        }
    }

    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
        allow(dead_code)
    )]
    pub(crate) fn corrupted(table: &str, key: &str, problem: impl Into<String>) -> Self {
        StoreError::Corrupted {
            table: table.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}
