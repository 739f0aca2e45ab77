//! The admin endpoint (feature `admin`): health and readiness probes, Prometheus metrics, a
//! JSON API to see and steer this node's jobs, and a dashboard page, served by axum.
//!
//! ```no_run
//! use std::time::Duration;
//! use loopjob::admin::AdminOptions;
//! use loopjob::{Host, Schedule};
//!
//! # async fn demo() -> Result<(), loopjob::BuildError> {
//! let host = Host::builder()
//!     .job_fn("report", Schedule::every(Duration::from_secs(60)), |_ctx| async { Ok(()) })
//!     .admin(AdminOptions::bind("127.0.0.1:9464".parse().unwrap()).token("s3cret"))
//!     .build()?; // binds here: an address in use fails the build
//! host.run().await; // serves while the host runs, stops with it
//! # Ok(()) }
//! ```
//!
//! Or from settings: `[loopjob.admin]` with `bind`, `token` or `token_env` (the variable that
//! holds the token) and `token_for_reads`.
//!
//! Security: it binds to loopback unless told otherwise. Every endpoint that changes something
//! requires `Authorization: Bearer <token>`, compared in constant time, and answers 403 when no
//! token is configured; reading endpoints require it with `token_for_reads`. No cookies are
//! used, so a page on another site cannot act with a visitor's credentials. Request paths and
//! bodies are bounded. The token is never logged and never shown by `Debug`.
//!
//! The JSON types below are the schema of the answers; `/api/cluster` and the runs share theirs
//! with the `loopjob` command's `--json` (see [`cluster::json`](crate::cluster::json)).
//!
//! # Endpoints
//!
//! | method and path | needs the token | answers |
//! |---|---|---|
//! | `GET /` | no | the dashboard page |
//! | `GET /healthz` | no | 200 while the host runs, 503 once it shuts down |
//! | `GET /readyz` | no | 200 once every job has started and the store answers, else 503 |
//! | `GET /metrics` | with `token_for_reads` | Prometheus text |
//! | `GET /api/jobs` | with `token_for_reads` | [`JobsPage`] |
//! | `GET /api/cluster` | with `token_for_reads` | [`ClusterPage`]: the cluster from the lease store (every guarded job's schedule, every lease, the partitioned jobs' members); 404 on a host without guarded jobs |
//! | `GET /api/jobs/{name}/runs?limit=N` | with `token_for_reads` | [`RunsPage`]: a guarded job's history (N from 1 to 1000, default 20) |
//! | `POST /api/jobs/{name}/trigger`, `/pause`, `/resume`, `/cancel` | yes | [`ActionDone`] |
//!
//! Errors answer `{"error": "..."}`: 400 for a bad query, 401 for a missing or wrong token, 403
//! when changes are disabled, 404 for an unknown job (or `/api/cluster` on a host without a
//! lease store), 409 for the history of a job that is not guarded, 413 and 414 for a body or
//! path too large, 503 when the host no longer runs or the lease store fails or does not answer
//! within the probe timeout (the probes and the rest of the page stay up).
//!
//! For a guarded job, pause, resume and trigger act on its cluster schedule through
//! [`HostHandle`](crate::HostHandle): they hold cluster-wide, whichever node leads.

mod api;
mod auth;
mod dashboard;
mod metrics;
mod options;
mod routes;
mod server;

pub use crate::cluster::json::{
    ClusterJob, ClusterMember, ClusterPage, KeyRecord, Mark, StoreLease,
};
pub use api::{
    ActionDone, ClusterSchedule, Counters, JobView, JobsPage, LastRun, Leadership, Lease, Probe,
    RECENT_RUNS, Run, RunsPage,
};
pub use options::{AdminOptions, DEFAULT_ADMIN_BIND, DEFAULT_STORE_PROBE_TIMEOUT};
pub(crate) use server::AdminServer;
