//! Periodic background jobs for Rust services.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod identity;
mod job;
mod schedule;
pub mod store;

pub use identity::{DEFAULT_GROUP, NodeIdentity};
pub use job::{JobContext, JobError, LoopJob, Resources};
pub use schedule::{MissedTicks, NextTick, Schedule, ScheduleMode, ScheduleProblem};
