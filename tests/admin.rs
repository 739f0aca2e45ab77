//! The admin endpoint against a real listening server: each endpoint, its status codes and JSON,
//! the token (required, wrong, not configured), unknown jobs, and bounded requests.
#![cfg(feature = "admin")]

#[path = "support/faulty_store.rs"]
mod faulty_store;
#[path = "support/settings.rs"]
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use loopjob::admin::AdminOptions;
use loopjob::store::MemoryStore;
use loopjob::{BuildProblem, Host, HostBuilder, HostHandle, JobState, LeaderMode, Leadership};
use loopjob::{Schedule, ShutdownReport};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinHandle;

const TOKEN: &str = "t0ken-for-tests";

/// An hour away: every run in these tests is one they trigger.
fn hourly() -> Schedule {
    Schedule::every(Duration::from_secs(3600)).initial_delay(Duration::from_secs(3600))
}

/// Loopback, a free port.
fn any_port() -> AdminOptions {
    AdminOptions::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
}

struct Running {
    handle: HostHandle,
    base: String,
    host: JoinHandle<ShutdownReport>,
    http: reqwest::Client,
}

impl Running {
    /// Builds and runs the host, and waits until its jobs have started.
    async fn start(builder: HostBuilder) -> Running {
        let host = builder.build().expect("the host builds");
        let address = host.admin_address().expect("the admin endpoint is bound");
        assert!(address.ip().is_loopback());
        let handle = host.handle();
        let running = tokio::spawn(host.run_until(std::future::pending()));
        for name in handle.job_names() {
            handle
                .wait_for(&name, |status| status.state != JobState::Starting)
                .await
                .expect("the job starts");
        }
        Running {
            handle,
            base: format!("http://{address}"),
            host: running,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        (response.status(), response.text().await.expect("a body"))
    }

    async fn post(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn stop(self) {
        self.handle.shutdown();
        self.host.await.expect("the host stops");
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("a JSON body")
}

fn one_job(name: &str, options: AdminOptions) -> HostBuilder {
    Host::builder()
        .job_fn(name, hourly(), |_ctx| async { Ok(()) })
        .admin(options)
}

#[tokio::test]
async fn probes_answer_200_while_the_host_runs_and_the_server_stops_with_it() {
    let host = Running::start(one_job("probed", any_port())).await;
    let (status, body) = host.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "ok");
    let (status, body) = host.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let base = host.base.clone();
    host.stop().await;
    let after = reqwest::get(format!("{base}/healthz")).await;
    assert!(after.is_err(), "the server stopped with the host");
}

#[tokio::test]
async fn readyz_is_503_naming_the_store_when_it_fails_while_healthz_stays_up() {
    let store = faulty_store::FaultyStore::new(Arc::new(MemoryStore::new()), true);
    let builder = Host::builder()
        .store(store.clone())
        .job_fn("guarded_ready", hourly(), |_ctx| async { Ok(()) })
        .leadership("guarded_ready", Leadership::new(LeaderMode::Cluster))
        .admin(any_port());
    let host = Running::start(builder).await;
    assert_eq!(host.get("/readyz", None).await.0, StatusCode::OK);

    store.cut(true);
    let (status, body) = host.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body = json(&body);
    assert_eq!(body["status"], "unavailable");
    let reason = body["reason"].as_str().expect("a reason");
    assert!(reason.contains("lease store"), "{reason}");
    assert_eq!(host.get("/healthz", None).await.0, StatusCode::OK);

    store.cut(false);
    assert_eq!(host.get("/readyz", None).await.0, StatusCode::OK);
    host.stop().await;
}

#[tokio::test]
async fn api_jobs_shows_each_job_with_its_state_counters_and_leadership() {
    let builder = Host::builder()
        .store(Arc::new(MemoryStore::new()))
        .job_fn("plain_listed", hourly(), |_ctx| async { Ok(()) })
        .job_fn("guarded_listed", hourly(), |_ctx| async { Ok(()) })
        .leadership("guarded_listed", Leadership::new(LeaderMode::Cluster))
        .admin(any_port().token(TOKEN));
    let host = Running::start(builder).await;
    host.handle
        .wait_for("guarded_listed", |s| {
            s.leadership.as_ref().is_some_and(|l| !l.leases.is_empty())
        })
        .await
        .expect("this node leads");
    host.post("/api/jobs/plain_listed/trigger", Some(TOKEN))
        .await;
    host.handle
        .wait_for("plain_listed", |s| s.counters.succeeded == 1)
        .await
        .expect("the triggered run ends");

    let (status, body) = host.get("/api/jobs", None).await;
    assert_eq!(status, StatusCode::OK);
    let page = json(&body);
    assert_eq!(page["node"], host.handle.node().node_id());
    assert!(page["now_ms"].as_u64().expect("now_ms") > 1_600_000_000_000);
    let jobs = page["jobs"].as_array().expect("a list of jobs");
    assert_eq!(jobs.len(), 2);

    let plain = &jobs[0];
    assert_eq!(plain["name"], "plain_listed");
    assert_eq!(plain["state"], "idle");
    assert_eq!(plain["counters"]["runs"], 1);
    assert_eq!(plain["counters"]["succeeded"], 1);
    assert_eq!(plain["last_run"]["outcome"], "succeeded");
    assert!(plain["last_run"]["duration_ms"].is_u64());
    let next = plain["next_tick_ms"].as_u64().expect("a next tick");
    assert!(
        next > page["now_ms"].as_u64().unwrap() + 3_000_000,
        "about an hour away"
    );
    assert!(plain["leadership"].is_null());

    let guarded = &jobs[1];
    assert_eq!(guarded["name"], "guarded_listed");
    assert!(guarded["last_run"].is_null());
    assert_eq!(guarded["leadership"]["leader"], true);
    assert!(guarded["leadership"]["epoch"].as_u64().expect("an epoch") >= 1);
    assert_eq!(guarded["leadership"]["leases"].as_array().unwrap().len(), 1);
    host.stop().await;
}

#[tokio::test]
async fn actions_with_the_token_pause_resume_trigger_and_cancel() {
    let host = Running::start(one_job("steered", any_port().token(TOKEN))).await;

    let (status, body) = host.post("/api/jobs/steered/pause", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"], "pause");
    assert_eq!(body["state"], "paused");
    assert_eq!(
        host.handle.status("steered").unwrap().state,
        JobState::Paused
    );

    let (status, body) = host.post("/api/jobs/steered/resume", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "idle");
    assert_eq!(host.handle.status("steered").unwrap().state, JobState::Idle);

    let (status, body) = host.post("/api/jobs/steered/trigger", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], "started");
    assert_eq!(body["run_id"], 1);
    host.handle
        .wait_for("steered", |s| s.counters.runs == 1 && s.in_flight == 0)
        .await
        .expect("the run ends");

    let (status, body) = host.post("/api/jobs/steered/cancel", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["cancelled"], 0);
    host.stop().await;
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_changes_nothing() {
    let host = Running::start(one_job("guarded_by_token", any_port().token(TOKEN))).await;
    for token in [None, Some("wrong"), Some("t0ken-for-test"), Some("")] {
        let (status, body) = host.post("/api/jobs/guarded_by_token/pause", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        assert_eq!(
            host.handle.status("guarded_by_token").unwrap().state,
            JobState::Idle
        );
    }
    // The token is checked before the job is looked up: no names leak without it.
    let (status, _) = host.post("/api/jobs/nope/pause", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    host.stop().await;
}

#[tokio::test]
async fn without_a_configured_token_changes_are_403_and_say_to_configure_one() {
    let host = Running::start(one_job("no_token", any_port())).await;
    let (status, body) = host
        .post("/api/jobs/no_token/trigger", Some("anything"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("no admin token is configured"),
        "{message}"
    );
    assert_eq!(host.handle.status("no_token").unwrap().counters.runs, 0);
    // Reading stays open.
    assert_eq!(host.get("/api/jobs", None).await.0, StatusCode::OK);
    host.stop().await;
}

#[tokio::test]
async fn token_for_reads_closes_the_api_and_metrics_but_not_the_probes() {
    let options = any_port().token(TOKEN).token_for_reads(true);
    let host = Running::start(one_job("read_guarded", options)).await;
    for path in ["/api/jobs", "/metrics"] {
        assert_eq!(
            host.get(path, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        let wrong = host.get(path, Some("wrong")).await.0;
        assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            host.get(path, Some(TOKEN)).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    assert_eq!(host.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(host.get("/readyz", None).await.0, StatusCode::OK);
    let (status, page) = host.get("/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<title>loopjob</title>"));
    host.stop().await;
}

#[tokio::test]
async fn an_unknown_job_is_404_naming_it() {
    let host = Running::start(one_job("known", any_port().token(TOKEN))).await;
    for action in ["trigger", "pause", "resume", "cancel"] {
        let (status, body) = host
            .post(&format!("/api/jobs/missing/{action}"), Some(TOKEN))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("`missing`") && message.contains("known"),
            "{message}"
        );
    }
    let (status, body) = host.get("/api/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json(&body)["error"].is_string());
    host.stop().await;
}

#[tokio::test]
async fn oversize_bodies_and_paths_are_refused() {
    let host = Running::start(one_job("bounded", any_port().token(TOKEN))).await;
    let response = host
        .http
        .post(format!("{}/api/jobs/bounded/pause", host.base))
        .bearer_auth(TOKEN)
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(host.handle.status("bounded").unwrap().state, JobState::Idle);

    let long = "a".repeat(2000);
    let (status, body) = host
        .post(&format!("/api/jobs/{long}/pause"), Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert!(body["error"].as_str().unwrap().contains("1024"));
    host.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_runs_counted() {
    let host = Running::start(one_job("measured", any_port().token(TOKEN))).await;
    host.post("/api/jobs/measured/trigger", Some(TOKEN)).await;
    host.handle
        .wait_for("measured", |s| s.counters.succeeded == 1)
        .await
        .expect("the run ends");
    let (status, text) = host.get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    // Parsed back: `name{labels} value` lines.
    let runs: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with("loopjob_runs_total{"))
        .filter(|line| line.contains("job=\"measured\"") && line.contains("outcome=\"succeeded\""))
        .map(|line| line.rsplit(' ').next().unwrap().parse().expect("a number"))
        .collect();
    assert_eq!(runs, [1.0], "{text}");
    assert!(text.contains("# TYPE loopjob_runs_total counter"), "{text}");
    host.stop().await;
}

#[tokio::test]
async fn an_address_in_use_fails_the_build_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let error = one_job("clash", AdminOptions::bind(address))
        .build()
        .expect_err("the address is in use");
    assert!(matches!(
        error.problems(),
        [BuildProblem::AdminBind { address: a, .. }] if *a == address
    ));
    assert!(error.to_string().contains(&address.to_string()), "{error}");
}

#[test]
fn the_token_never_shows_in_debug() {
    let options = any_port().token(TOKEN);
    assert!(!format!("{options:?}").contains(TOKEN));
    let built = one_job("debugged", options).build().unwrap();
    assert!(!format!("{built:?}").contains(TOKEN));
}

#[tokio::test]
async fn settings_enable_it_with_a_token() {
    let toml = format!(
        "[loopjob.admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\ntoken_for_reads = true\n"
    );
    let builder = Host::builder().settings(settings::load(&toml, &[])).job_fn(
        "configured",
        hourly(),
        |_ctx| async { Ok(()) },
    );
    let host = Running::start(builder).await;
    assert_eq!(
        host.get("/api/jobs", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = host.post("/api/jobs/configured/pause", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    host.stop().await;
}

#[test]
fn settings_problems_name_the_key_and_never_show_the_token() {
    let toml = "[loopjob.admin]\nbind = \"localhost\"\ntoken_env = \"LOOPJOB_TEST_NO_SUCH_VAR\"\n\
                tokn = \"s3cret-value\"\n";
    let problems = settings::build_problems(settings::load(toml, &[]));
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let all = text.join("\n");
    assert_eq!(problems.len(), 3, "{all}");
    assert!(
        all.contains("bind") && all.contains("127.0.0.1:9464"),
        "{all}"
    );
    assert!(all.contains("LOOPJOB_TEST_NO_SUCH_VAR"), "{all}");
    assert!(
        all.contains("tokn") && all.contains("did you mean"),
        "{all}"
    );
    assert!(!all.contains("s3cret-value"), "{all}");
}

/// A host with one guarded job on `store`, which this node leads once the test waits for it.
async fn guarded_host(name: &str, store: Arc<dyn loopjob::store::LeaseStore>) -> Running {
    let builder = Host::builder()
        .store(store)
        .job_fn(name, hourly(), |_ctx| async { Ok(()) })
        .leadership(name, Leadership::new(LeaderMode::Cluster))
        .admin(any_port().token(TOKEN));
    let host = Running::start(builder).await;
    host.handle
        .wait_for(name, |s| {
            s.leadership.as_ref().is_some_and(|l| !l.leases.is_empty())
        })
        .await
        .expect("this node leads");
    // The leader writes the job's schedule record right after it wins the lease.
    for _ in 0..200 {
        let written = host.handle.schedule(name).await;
        if written.is_ok_and(|view| !view.records.is_empty()) {
            return host;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the schedule record of {name} was not written within 10 s");
}

#[tokio::test]
async fn a_guarded_job_shows_its_cluster_schedule_and_runs_and_is_steered_cluster_wide() {
    let host = guarded_host("clustered", Arc::new(MemoryStore::new())).await;

    let (status, body) = host.post("/api/jobs/clustered/trigger", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "requested");
    let ran = tokio::time::timeout(
        Duration::from_secs(10),
        host.handle
            .wait_for("clustered", |s| s.counters.succeeded == 1),
    )
    .await;
    assert!(matches!(ran, Ok(Ok(_))), "the requested run ran");

    let (status, body) = host.post("/api/jobs/clustered/pause", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = host.get("/api/jobs", None).await;
    let job = &json(&body)["jobs"][0];
    assert_eq!(job["cluster"]["paused"], true, "{job}");
    assert!(job["cluster"]["error"].is_null());
    let recent = job["recent_runs"].as_array().expect("recent runs");
    assert!(!recent.is_empty(), "{job}");
    assert_eq!(recent[0]["outcome"], "succeeded");
    assert_eq!(
        recent[0]["holder"]
            .as_str()
            .map(|h| h.contains(host.handle.node().node_id())),
        Some(true),
        "{job}"
    );
    assert_eq!(recent[0]["triggered"], true);

    let (status, body) = host.get("/api/jobs/clustered/runs?limit=5", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = json(&body);
    assert_eq!(page["job"], "clustered");
    assert_eq!(page["runs"][0]["outcome"], "succeeded");

    let (status, _) = host.post("/api/jobs/clustered/resume", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = host.get("/api/jobs", None).await;
    assert_eq!(json(&body)["jobs"][0]["cluster"]["paused"], false);
    host.stop().await;
}

#[tokio::test]
async fn the_runs_endpoint_refuses_bad_limits_unguarded_and_unknown_jobs() {
    let host = Running::start(one_job("local_only", any_port())).await;
    for query in ["?limit=0", "?limit=1001", "?limit=abc", "?limit=-1"] {
        let (status, body) = host
            .get(&format!("/api/jobs/local_only/runs{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            json(&body)["error"].as_str().unwrap().contains("limit"),
            "{body}"
        );
    }
    let (status, body) = host.get("/api/jobs/local_only/runs", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("not guarded"),
        "{body}"
    );
    let (status, _) = host.get("/api/jobs/nowhere/runs", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = host.get("/api/jobs", None).await;
    let job = &json(&body)["jobs"][0];
    assert!(
        job["cluster"].is_null() && job["recent_runs"] == serde_json::json!([]),
        "{job}"
    );
    host.stop().await;
}

#[tokio::test]
async fn with_the_store_away_the_cluster_parts_say_so_and_the_page_stays_up() {
    let store = faulty_store::FaultyStore::new(Arc::new(MemoryStore::new()), true);
    let host = guarded_host("stranded", store.clone()).await;
    store.cut(true);
    let (status, body) = host.get("/api/jobs", None).await;
    assert_eq!(status, StatusCode::OK);
    let job = &json(&body)["jobs"][0];
    let error = job["cluster"]["error"].as_str().expect("the store's error");
    assert!(error.contains("store"), "{error}");
    let (status, body) = host.get("/api/jobs/stranded/runs", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = host.post("/api/jobs/stranded/pause", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(host.get("/healthz", None).await.0, StatusCode::OK);
    store.cut(false);
    host.stop().await;
}

#[tokio::test]
async fn while_the_host_shuts_down_the_probes_answer_503_and_the_server_stops_after_the_jobs() {
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let builder = Host::builder()
        .job_fn("finishing", hourly(), move |ctx| {
            let held = held.clone();
            async move {
                // Finishes its work only when the test lets it, after shutdown began.
                ctx.cancelled().await;
                held.notified().await;
                Ok(())
            }
        })
        .shutdown_grace(Duration::from_secs(30))
        .admin(any_port());
    let host = Running::start(builder).await;
    host.handle.trigger("finishing").await.expect("a run");
    host.handle
        .wait_for("finishing", |s| s.in_flight == 1)
        .await
        .expect("the run is in flight");

    host.handle.shutdown();
    let (status, body) = host.get("/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        json(&body)["reason"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );
    assert_eq!(
        host.get("/readyz", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    release.notify_one();
    let base = host.base.clone();
    host.host.await.expect("the host stops");
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

/// A node `node` on `store` with a global job `shared` and a job `spread` partitioned in two.
async fn cluster_node(node: &str, store: Arc<dyn loopjob::store::LeaseStore>) -> Running {
    let builder = Host::builder()
        .node(loopjob::NodeIdentity::new(node, "g"))
        .store(store)
        .job_fn("shared", hourly(), |_ctx| async { Ok(()) })
        .leadership("shared", Leadership::new(LeaderMode::Global))
        .job_fn("spread", hourly(), |_ctx| async { Ok(()) })
        .leadership(
            "spread",
            Leadership::new(LeaderMode::Partitioned).partitions(2),
        )
        .admin(any_port().token(TOKEN));
    Running::start(builder).await
}

/// `GET /api/cluster` once `ready` holds for it (within 10 s).
async fn cluster_page(host: &Running, ready: impl Fn(&Value) -> bool) -> Value {
    let mut page = Value::Null;
    for _ in 0..200 {
        let (status, body) = host.get("/api/cluster", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        page = json(&body);
        if ready(&page) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the cluster did not settle within 10 s: {page}");
}

#[tokio::test]
async fn api_cluster_shows_the_jobs_leases_and_members_that_two_hosts_share() {
    let store = Arc::new(MemoryStore::new());
    let a = cluster_node("node-a", store.clone()).await;
    let b = cluster_node("node-b", store).await;
    // Settled: both jobs' records written, and both nodes members of the partitioned job.
    let settled = |page: &Value| {
        page["jobs"].as_array().map_or(0, Vec::len) == 2
            && page["jobs"][1]["keys"].as_array().map_or(0, Vec::len) == 2
            && page["members"].as_array().map_or(0, Vec::len) == 2
    };
    let page = cluster_page(&a, settled).await;
    assert_eq!(page["store"], "memory");
    assert!(page["now_ms"].as_u64().expect("now_ms") > 1_600_000_000_000);

    let shared = &page["jobs"][0];
    assert_eq!(shared["name"], "shared");
    assert_eq!(shared["paused"], false);
    assert!(shared["next_due_ms"].is_i64(), "{shared}");
    assert_eq!(shared["keys"][0]["key"], "shared");
    assert!(shared["keys"][0]["read_at_ms"].is_i64());
    assert_eq!(page["jobs"][1]["name"], "spread");

    let leases = page["leases"].as_array().expect("leases");
    let keys: Vec<&str> = leases.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["shared", "spread#0", "spread#1"], "{page}");
    let lease = &leases[0];
    assert_eq!(lease["job"], "shared");
    assert_eq!(lease["held"], true);
    assert!(lease["epoch"].as_u64().unwrap() >= 1);
    assert!(lease["remaining_ms"].as_u64().unwrap() > 0);
    assert!(lease["expires_ms"].is_i64());
    let holder = lease["holder"].as_str().unwrap();
    assert!(
        holder.starts_with("node-a/") || holder.starts_with("node-b/"),
        "{holder}"
    );

    let members: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|m| assert_eq!(m["job"], "spread"))
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert!(members[0].starts_with("node-a/"), "{members:?}");
    assert!(members[1].starts_with("node-b/"), "{members:?}");

    // Node B sees the same cluster, and a pause given on A.
    let (status, _) = a.post("/api/jobs/shared/pause", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let on_b = cluster_page(&b, |page| page["jobs"][0]["paused"] == true).await;
    // (The partitions may move to B meanwhile, as the two nodes share them out.)
    let shared_on_b = &on_b["leases"][0];
    assert_eq!(shared_on_b["key"], "shared");
    assert_eq!(shared_on_b["holder"], lease["holder"], "the same holder");
    assert_eq!(shared_on_b["epoch"], lease["epoch"]);
    let mark = &on_b["jobs"][0]["keys"][0]["paused"];
    assert!(mark["by"].is_string() && mark["at_ms"].is_i64(), "{mark}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn api_cluster_is_503_with_the_store_error_while_health_stays_up() {
    let store = faulty_store::FaultyStore::new(Arc::new(MemoryStore::new()), true);
    let host = guarded_host("outaged", store.clone()).await;
    assert_eq!(host.get("/api/cluster", None).await.0, StatusCode::OK);

    store.cut(true);
    let (status, body) = host.get("/api/cluster", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = json(&body)["error"].as_str().expect("an error").to_owned();
    assert!(error.contains("the lease store failed"), "{error}");
    assert_eq!(host.get("/healthz", None).await.0, StatusCode::OK);

    store.cut(false);
    assert_eq!(host.get("/api/cluster", None).await.0, StatusCode::OK);
    host.stop().await;
}

#[tokio::test]
async fn api_cluster_is_503_when_the_store_does_not_answer_within_the_probe_timeout() {
    let store = faulty_store::FaultyStore::new(Arc::new(MemoryStore::new()), true);
    let builder = Host::builder()
        .store(store.clone())
        .job_fn("stalled", hourly(), |_ctx| async { Ok(()) })
        .leadership("stalled", Leadership::new(LeaderMode::Global))
        .admin(any_port().store_probe_timeout(Duration::from_millis(200)));
    let host = Running::start(builder).await;
    store.silence_lists(true);
    let (status, body) = host.get("/api/cluster", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = json(&body)["error"].as_str().expect("an error").to_owned();
    assert!(error.contains("did not answer within 200ms"), "{error}");
    assert_eq!(host.get("/healthz", None).await.0, StatusCode::OK);
    store.silence_lists(false);
    host.stop().await;
}

#[tokio::test]
async fn api_cluster_is_404_on_a_host_without_guarded_jobs() {
    let host = Running::start(one_job("alone", any_port())).await;
    let (status, body) = host.get("/api/cluster", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error = json(&body)["error"].as_str().expect("an error").to_owned();
    assert!(error.contains("no lease store"), "{error}");
    host.stop().await;
}

#[tokio::test]
async fn api_cluster_needs_the_token_when_reads_do() {
    let builder = Host::builder()
        .store(Arc::new(MemoryStore::new()))
        .job_fn("closed", hourly(), |_ctx| async { Ok(()) })
        .leadership("closed", Leadership::new(LeaderMode::Global))
        .admin(any_port().token(TOKEN).token_for_reads(true));
    let host = Running::start(builder).await;
    let (status, body) = host.get("/api/cluster", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(json(&body)["error"].is_string());
    let wrong = host.get("/api/cluster", Some("wrong")).await.0;
    assert_eq!(wrong, StatusCode::UNAUTHORIZED);
    let (status, body) = host.get("/api/cluster", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["store"], "memory");
    host.stop().await;
}
