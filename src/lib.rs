//! Periodic background jobs for Rust services: run this every N seconds, never twice at once,
//! and (with a lease store) on one replica only.
//!
//! A [`LoopJob`] is a unit of periodic work. A [`Host`] runs one supervisor per job, which owns
//! the job's timing ([`Schedule`]: interval or cron expression in a time zone, initial delay,
//! fixed rate or fixed delay, jitter, alignment), its overlap (skip-if-running, `max_overlap`,
//! and the host-wide [`max_parallel_runs`](HostBuilder::max_parallel_runs)), its limits (timeout,
//! retries with backoff) and its cancellation: a [`CancellationToken`](tokio_util::sync::CancellationToken)
//! tree runs from the host to each job to each run, so shutdown reaches every run at once.
//! A job that fails, panics or hangs is logged and counted; it never stops its schedule or the
//! host.
//!
//! ```no_run
//! use std::time::Duration;
//! use loopjob::{Host, JobContext, JobError, LoopJob, Schedule};
//!
//! struct Cleanup;
//!
//! impl LoopJob for Cleanup {
//!     fn name(&self) -> &str { "cleanup" }
//!     fn schedule(&self) -> Schedule {
//!         Schedule::every(Duration::from_secs(60)).initial_delay(Duration::from_secs(5))
//!     }
//!     async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
//!         tracing::info!(run = ctx.run_id(), "cleaning up");
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), loopjob::Report> { // prints a failed build's problems
//!     let host = Host::builder().job(Cleanup).build()?;
//!     let report = host.run().await; // until Ctrl-C / SIGTERM, then graceful shutdown
//!     tracing::info!(?report, "stopped");
//!     Ok(())
//! }
//! ```
//!
//! An interval job is timed by the monotonic clock; a cron job (feature `cron`) by the wall
//! clock of its time zone: an unguarded one reads its node's, through the host's
//! [`WallClock`], a guarded one the lease store's (below).
//!
//! Data flows one way: [`settings`] are read and validated, the [`HostBuilder`] checks every job
//! (against the [`limits`]) before anything starts, the host spreads one supervisor per job over
//! its shards (tasks that each drive many jobs with one timer), and each supervisor starts its
//! runs. A job with a leader mode asks its [`guard`]: one elector task per host holds the leases
//! of every guarded job and reads their keys' schedule records, and one run ledger task per host
//! commits each guarded run's start to the lease [`store`] before the run begins, and records its
//! end. Each run gets a fresh [`JobContext`]; a [`HostHandle`] watches and steers the jobs.
//!
//! A guarded job is one job of the cluster: its timing, pause state and run history live in
//! the store beside its lease (its *cluster schedule*, see [`store::schedule`]), so whichever
//! replica leads runs it on one grid (an interval job) or at each occurrence of its expression
//! by the store's clock (a cron job), through failovers, deploys and restarts;
//! [`cluster::ClusterControl`] reads and steers it from a store URL, without a host.
//!
//! | module | what it is for |
//! |---|---|
//! | [`settings`] | TOML files and environment variables, validated, every problem at once |
//! | [`guard`] | leadership: one replica per group, one globally, or partitions shared out; the elector's safety argument ([`guard::elector`]); [`LeaderElector`] for code that is not a job |
//! | [`cluster`] | a guarded job's cluster schedule from a store URL: records, history, pause, resume, trigger; the whole cluster's status (jobs, leases, members) and its JSON schema (`cluster::json`, features `admin` or `cli`) |
//! | [`store`] | lease stores (memory, SQLite, PostgreSQL, MySQL, Redis, etcd), the contract they keep, and each lease key's schedule record and run history ([`store::schedule`]) |
//! | [`limits`] | the bounds every duration and count is checked against |
//! | `admin` | an HTTP admin endpoint and dashboard (feature `admin`) |
//!
//! The `loopjob` command (feature `cli`, `src/bin/loopjob.rs`) shows and steers a cluster's
//! guarded jobs from a store URL, without a host: a thin layer over [`cluster`].
//!
//! The library never prints: it logs through `tracing` (a span `loopjob.job` per job at `info`,
//! and inside it a span `loopjob.run` per attempt at `debug`, with the run id and attempt) and,
//! with the `metrics` feature, counts through `metrics`.
//!
//! The architecture, the safety argument of the leadership guard, the cluster schedule and the
//! lease store contract are in the repository's `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
// A `Duration` or `Instant` subtraction that underflows panics: one did, in a job's loop (see
// docs/RELIABILITY.md, item 21). Every one saturates instead.
#![warn(clippy::unchecked_time_subtraction)]

#[doc(hidden)]
pub mod __private;
#[cfg(feature = "admin")]
pub mod admin;
mod clock;
pub mod cluster;
mod control;
pub mod guard;
mod handle;
mod host;
mod identity;
mod job;
pub mod limits;
mod metrics;
mod report;
mod run;
mod run_slots;
mod schedule;
pub mod settings;
mod shard;
mod status;
pub mod store;
mod supervisor;

pub use clock::{SystemClock, TestClock, WallClock};
pub use control::Triggered;
pub use guard::{
    HeldLease, InvalidTiming, LeaderElector, LeaderState, LeadershipEvent, LostReason,
};
pub use handle::{ControlError, HostHandle};
pub use host::{BuildError, BuildProblem, DEFAULT_SHUTDOWN_GRACE, Host, HostBuilder};
pub use identity::{DEFAULT_GROUP, DEFAULT_GROUP_ENV, DEFAULT_NODE_ID_ENV, NodeIdentity};
pub use job::{JobContext, JobError, LoopJob, Resources};
pub use loopjob_macros::LoopJob;
pub use report::Report;
#[cfg(feature = "cron")]
pub use schedule::CronSchedule;
#[cfg(feature = "cron")]
pub use schedule::cron::WALL_CLOCK_RECHECK;
pub use schedule::{
    Cadence, CatchUp, MissedTicks, NextTick, Schedule, ScheduleMode, ScheduleProblem,
};
pub use settings::{
    LeaderMode, Leadership, Settings, SettingsError, SettingsLoader, SettingsProblem,
    SettingsWarning,
};
pub use status::{
    ClusterView, JobCounters, JobReport, JobState, JobStatus, LeadershipStatus, RunOutcome,
    ShutdownReport,
};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
