//! The endpoints: thin handlers over [`HostHandle`] and the lease store.
//! The table of endpoints is in the [module docs](super).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::{
    self, ActionDone, ApiError, ClusterSchedule, JobView, JobsPage, Probe, RECENT_RUNS, Run,
    RunsPage, Times,
};
use super::auth::Access;
use super::dashboard;
use super::metrics::MetricsSource;
use crate::cluster::ClusterControl;
use crate::cluster::json::ClusterPage;
use crate::status::JobState;
use crate::store::LeaseStore;
use crate::{ControlError, HostHandle};

/// The longest request path (with its query) served; longer ones get 414.
pub(crate) const MAX_PATH: usize = 1024;
/// The largest request body accepted; no endpoint reads one, so larger ones get 413.
pub(crate) const MAX_BODY: u64 = 1024;
/// The most runs `GET /api/jobs/{name}/runs` answers with.
pub(crate) const MAX_RUNS: u32 = 1000;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) handle: HostHandle,
    /// The lease store, when the host has guarded jobs.
    pub(crate) store: Option<Arc<dyn LeaseStore>>,
    pub(crate) store_probe_timeout: Duration,
    pub(crate) access: Access,
    pub(crate) metrics: MetricsSource,
}

/// Every route, with the request bounds around them.
pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard.css", get(dashboard::style))
        .route("/dashboard.js", get(dashboard::script))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/jobs", get(jobs))
        .route("/api/cluster", get(cluster))
        .route("/api/jobs/{name}/runs", get(runs))
        .route("/api/jobs/{name}/trigger", post(trigger))
        .route("/api/jobs/{name}/pause", post(pause))
        .route("/api/jobs/{name}/resume", post(resume))
        .route("/api/jobs/{name}/cancel", post(cancel))
        .fallback(not_found)
        .layer(middleware::from_fn(bounded))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY as usize))
        .with_state(state)
}

/// Refuses long paths and large bodies before any handler sees them.
async fn bounded(request: Request, next: Next) -> Response {
    let path_len = request
        .uri()
        .path_and_query()
        .map_or(0, |path| path.as_str().len());
    if path_len > MAX_PATH {
        let message = format!("the request path is longer than {MAX_PATH} bytes");
        return ApiError::new(StatusCode::URI_TOO_LONG, message).into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY) {
        let message = format!("the request body is larger than {MAX_BODY} bytes");
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /api/jobs")
}

fn probe(ok: Result<(), String>) -> Response {
    match ok {
        Ok(()) => (
            StatusCode::OK,
            Json(Probe {
                status: "ok",
                reason: None,
            }),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "unavailable",
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

async fn healthz(State(state): State<AdminState>) -> Response {
    probe(match state.handle.token().is_cancelled() {
        false => Ok(()),
        true => Err("the host is shutting down".to_owned()),
    })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    probe(ready(&state).await)
}

/// Ready: running, every job past its start, and the store (if any) answering in time.
async fn ready(state: &AdminState) -> Result<(), String> {
    if state.handle.token().is_cancelled() {
        return Err("the host is shutting down".to_owned());
    }
    let starting: Vec<String> = state
        .handle
        .statuses()
        .into_iter()
        .filter(|status| status.state == JobState::Starting)
        .map(|status| status.name)
        .collect();
    if !starting.is_empty() {
        return Err(format!("jobs still starting: {}", starting.join(", ")));
    }
    if let Some(store) = &state.store {
        let timeout = state.store_probe_timeout;
        // A listing under a prefix no lease has: one cheap read.
        match tokio::time::timeout(timeout, store.list("loopjob-readyz-probe/")).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(format!("the lease store failed: {error}")),
            Err(_) => {
                return Err(format!(
                    "the lease store did not answer within {}",
                    humantime::format_duration(timeout)
                ));
            }
        }
    }
    Ok(())
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(error) = state.access.check_read(&headers) {
        return error.into_response();
    }
    match &state.metrics {
        MetricsSource::Prometheus(handle) => {
            handle.run_upkeep();
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
        MetricsSource::Unavailable(message) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message.clone()).into_response()
        }
    }
}

async fn jobs(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<JobsPage>, ApiError> {
    state.access.check_read(&headers)?;
    let times = Times::new(state.handle.wall_now());
    let node = state.handle.node();
    let views = state
        .handle
        .statuses()
        .into_iter()
        .map(|status| with_cluster(&state, JobView::new(status, &times)));
    Ok(Json(JobsPage {
        node: node.node_id().to_owned(),
        group: node.group().to_owned(),
        now_ms: times.now_ms(),
        jobs: futures_util::future::join_all(views).await,
    }))
}

/// The cluster from the store: 404 for a host without a store (none of its jobs is guarded),
/// 503 with the store's error when it fails or does not answer within the probe timeout.
async fn cluster(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<ClusterPage>, ApiError> {
    state.access.check_read(&headers)?;
    let Some(store) = state.store.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this host has no lease store (none of its jobs is guarded), so it has no cluster \
             view; see /api/jobs",
        ));
    };
    let backend = store.backend();
    let control = ClusterControl::new(store);
    let unavailable = |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
    match tokio::time::timeout(state.store_probe_timeout, control.status()).await {
        Ok(Ok(status)) => Ok(Json(ClusterPage::new(
            backend,
            status,
            state.handle.wall_now(),
        ))),
        Ok(Err(error)) => Err(unavailable(format!("the lease store failed: {error}"))),
        Err(_) => Err(unavailable(format!(
            "the lease store did not answer within {}",
            humantime::format_duration(state.store_probe_timeout)
        ))),
    }
}

/// Adds a guarded job's cluster schedule and recent runs, read from the store within the probe
/// timeout; a store that fails or is slow is reported in `cluster.error`, not as a failed page.
async fn with_cluster(state: &AdminState, mut view: JobView) -> JobView {
    let read = async {
        let schedule = state.handle.schedule(&view.name).await?;
        let runs = state.handle.history(&view.name, RECENT_RUNS).await?;
        Ok::<_, ControlError>((schedule, runs))
    };
    let cluster = match tokio::time::timeout(state.store_probe_timeout, read).await {
        Ok(Ok((schedule, runs))) => {
            view.recent_runs = runs.into_iter().map(Run::from).collect();
            ClusterSchedule::new(schedule)
        }
        Ok(Err(ControlError::NotGuarded { .. } | ControlError::UnknownJob { .. })) => {
            return view;
        }
        Ok(Err(error)) => ClusterSchedule::unreadable(error.to_string()),
        Err(_) => ClusterSchedule::unreadable(format!(
            "the lease store did not answer within {}",
            humantime::format_duration(state.store_probe_timeout)
        )),
    };
    view.cluster = Some(cluster);
    view
}

/// The query of `GET /api/jobs/{name}/runs`.
#[derive(Debug, serde::Deserialize)]
struct RunsQuery {
    limit: Option<u32>,
}

async fn runs(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<RunsPage>, ApiError> {
    state.access.check_read(&headers)?;
    let bad_limit = || {
        let message = format!("limit must be a whole number from 1 to {MAX_RUNS}, e.g. ?limit=20");
        ApiError::new(StatusCode::BAD_REQUEST, message)
    };
    let Ok(Query(query)) = query else {
        return Err(bad_limit());
    };
    let limit = query.limit.unwrap_or(RECENT_RUNS);
    if !(1..=MAX_RUNS).contains(&limit) {
        return Err(bad_limit());
    }
    let runs = state.handle.history(&name, limit).await?;
    Ok(Json(RunsPage {
        job: name,
        runs: runs.into_iter().map(Run::from).collect(),
    }))
}

/// What an action did, with the job's state after it.
fn done(state: &AdminState, job: String, action: &'static str) -> ActionDone {
    let after = state.handle.status(&job).map(|s| api::state_name(s.state));
    ActionDone {
        job,
        action,
        result: None,
        run_id: None,
        cancelled: None,
        state: after,
    }
}

async fn trigger(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ActionDone>, ApiError> {
    state.access.check_change(&headers)?;
    let (result, run_id) = api::triggered_name(state.handle.trigger(&name).await?);
    tracing::info!(job = %name, result, "triggered through the admin endpoint");
    Ok(Json(ActionDone {
        result: Some(result),
        run_id,
        ..done(&state, name, "trigger")
    }))
}

async fn pause(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ActionDone>, ApiError> {
    state.access.check_change(&headers)?;
    state.handle.pause(&name).await?;
    tracing::info!(job = %name, "paused through the admin endpoint");
    Ok(Json(done(&state, name, "pause")))
}

async fn resume(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ActionDone>, ApiError> {
    state.access.check_change(&headers)?;
    state.handle.resume(&name).await?;
    tracing::info!(job = %name, "resumed through the admin endpoint");
    Ok(Json(done(&state, name, "resume")))
}

async fn cancel(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ActionDone>, ApiError> {
    state.access.check_change(&headers)?;
    let cancelled = state.handle.cancel_runs(&name).await?;
    tracing::info!(job = %name, cancelled, "runs cancelled through the admin endpoint");
    Ok(Json(ActionDone {
        cancelled: Some(cancelled),
        ..done(&state, name, "cancel")
    }))
}
